/**
 * `tapas serve`'s options. The daemon itself (fastify, SQLite, the engine) is
 * loaded only when the command runs, so that every other command starts fast.
 */
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';

import { Command, Option } from 'commander';

import type { AuthMode } from '../api/auth.js';
import { WORKER_PRIORITIES, type WorkerPriority } from '../engine/native.js';
import { RESOURCE_KINDS, type ResourceKind } from '../model/resources.js';
import { DEFAULT_QUOTAS, UNLIMITED, type QuotaLimits } from '../service/quotas.js';
import { UsageError } from './errors.js';
import { addEtcdOptions, type EtcdFlags } from './etcd-options.js';

export interface ServeFlags extends EtcdFlags {
  priority: WorkerPriority;
  datapath: 'packet' | 'bpf' | 'auto';
  listen: string;
  stateDir: string;
  auth?: AuthMode;
  tokens?: string;
  host: string;
  quota: Partial<QuotaLimits>;
  workers: string;
  agentInterval: string;
  logLevel: string;
}

function defaultStateDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/tapas' : join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'tapas');
}

function parseQuota(text: string, previous: Partial<QuotaLimits>): Partial<QuotaLimits> {
  const match = /^([a-z_]+)=(-?\d+)$/.exec(text);
  const resource = match?.[1] as ResourceKind | undefined;
  const limit = Number(match?.[2]);
  if (!match || !RESOURCE_KINDS.includes(resource!) || limit < UNLIMITED) {
    throw new UsageError(`invalid --quota '${text}': expected RESOURCE=N with RESOURCE one of ${RESOURCE_KINDS.join(', ')} and N >= -1`);
  }
  return { ...previous, [resource!]: limit };
}

export function registerServe(program: Command): void {
  const serve = program
    .command('serve')
    .description('run the daemon: the TaaS API, its store and the agent driving the mirror engine')
    .addHelpText('after', `
Embedded mode (the default): one host; its agent and mirror engine run in this process.

Cluster mode (--etcd URL[,URL...]): the API and the SQLite store of what users asked for,
and no data path. The daemon publishes each host's desired state into etcd and turns
the reports of the agents (\`tapas agent\` on every compute host) into statuses. Every
port must name its host (\`tapas port create ... --host NAME\`); a port on a host without
an agent stays DOWN, "no agent on host NAME". See docs/cluster.md.`)
    .option('--listen <host:port>', 'address of the API', '127.0.0.1:9696')
    .option('--state-dir <dir>', 'where the store lives', defaultStateDir())
    .addOption(new Option('--auth <mode>', 'noauth (loopback only) or token (default when --tokens is given)').choices(['noauth', 'token']))
    .option('--tokens <file>', 'static tokens: {"tokens": [{"token", "project_id", "roles": ["admin"|"member"|"reader"]}]}')
    .option('--host <name>', 'this host\'s name (binding:host_id of its ports)', hostname())
    .addOption(new Option('--quota <resource=N>', `per-project quota, repeatable (${RESOURCE_KINDS.join(', ')}; -1 = unlimited); `
      + 'the admin can override it per project with PUT /v2.0/quotas/PROJECT')
      .argParser(parseQuota).default({}, Object.entries(DEFAULT_QUOTAS).map(([kind, limit]) => `${kind}=${limit}`).join(' ')))
    .option('--workers <n>', 'engine worker threads', '1')
    .addOption(new Option('--priority <level>', 'scheduling of the engine\'s workers: nice 0, nice -10, or SCHED_FIFO')
      .choices([...WORKER_PRIORITIES]).default('high'))
    .addOption(new Option('--datapath <path>', 'packet: AF_PACKET rings and worker threads; bpf: tc programs copy to local tap service ports '
      + 'in the kernel, other rules run on packet (docs/engine.md); auto: bpf where it can run, else packet')
      .choices(['packet', 'bpf', 'auto']).default('packet'))
    .option('--agent-interval <ms>', 'how often the agent re-checks interfaces and engine health', '1000')
    .option('--log-level <level>', 'pino log level', 'info');
  addEtcdOptions(serve, 'cluster mode: the etcd endpoints through which agents on every host are fed (no local data path)')
    .action(async (flags: ServeFlags) => {
      const { runServe } = await import('./serve.js');
      await runServe(flags);
    });
}
