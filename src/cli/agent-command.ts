/**
 * `tapas agent`: the agent of one compute host in cluster mode. Its options
 * here; the agent itself (etcd client, engine) is loaded only when it runs.
 */
import { hostname } from 'node:os';

import { Command, Option } from 'commander';

import { WORKER_PRIORITIES, type WorkerPriority } from '../engine/native.js';
import { addEtcdOptions, type EtcdFlags } from './etcd-options.js';

export interface AgentFlags extends EtcdFlags {
  host: string;
  underlayIp?: string;
  workers: string;
  priority: WorkerPriority;
  datapath: 'packet' | 'bpf' | 'auto';
  interval: string;
  leaseTtl: string;
  logLevel: string;
}

export function registerAgent(program: Command): void {
  const agent = program
    .command('agent')
    .description('run the agent of this compute host (cluster mode): mirror what etcd says this host must, report what runs')
    .addHelpText('after', `
The agent watches its host's desired state in etcd (PREFIX/v1/nodes/HOST/), applies it
to the local mirror engine, and reports observations and counters under PREFIX/v1/state/HOST/,
tied to a lease: when the agent stops or dies, they vanish within --lease-ttl, and what
involves this host goes DOWN, "no agent on host HOST". When etcd is unreachable it keeps
mirroring what it has, and reads everything again once etcd answers.

A tap flow from a port on this host into a tap service on host B is sent to B's agent in
GRE (key = the tap service's, sequence numbers on) to B's --underlay-ip; tunnels from other
hosts into this host's tap services end here, their frames go out of the tap service's port.
Run it as root, in the namespace whose routing reaches the other hosts' underlay addresses.

  tapas agent --host compute-1 --etcd http://192.0.2.1:2379 --underlay-ip 192.0.2.11

See docs/cluster.md for the keys, etcd roles and failure handling.`)
    .option('--host <name>', 'this host\'s name: the binding:host_id of its ports', hostname())
    .option('--underlay-ip <ip>', 'the address on which other hosts\' agents reach this host\'s tunnels (required)')
    .option('--workers <n>', 'engine worker threads', '1')
    .addOption(new Option('--priority <level>', 'scheduling of the engine\'s workers: nice 0, nice -10, or SCHED_FIFO')
      .choices([...WORKER_PRIORITIES]).default('high'))
    .addOption(new Option('--datapath <path>', 'packet: AF_PACKET rings and worker threads; bpf: tc programs copy to local tap service ports '
      + 'in the kernel, other rules run on packet (docs/engine.md); auto: bpf where it can run, else packet')
      .choices(['packet', 'bpf', 'auto']).default('packet'))
    .option('--interval <ms>', 'how often the agent re-checks interfaces and engine health, and reports counters', '1000')
    .option('--lease-ttl <seconds>', 'how long the agent\'s keys outlive it when it dies or loses etcd', '10')
    .option('--log-level <level>', 'pino log level', 'info');
  addEtcdOptions(agent, 'the etcd endpoints of the cluster (required)')
    .action(async (flags: AgentFlags) => {
      const { runAgent } = await import('./agent-run.js');
      await runAgent(flags);
    });
}
