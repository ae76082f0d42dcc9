/**
 * `tapas agent` after its options are parsed: the same Agent as the embedded
 * daemon's, fed from etcd (EtcdDesiredState) and reporting into it
 * (EtcdObservations), driving a local Engine. Runs until SIGTERM or SIGINT,
 * then revokes its lease (its keys vanish at once) and stops the engine.
 */
import { isIP } from 'node:net';

import pino from 'pino';

import { Agent } from '../agent/agent.js';
import { connectEtcd } from '../cluster/etcd.js';
import { EtcdDesiredState } from '../cluster/etcd-desired-state.js';
import { EtcdObservations } from '../cluster/etcd-observations.js';
import { Keyspace } from '../cluster/keys.js';
import { Engine } from '../engine/engine.js';
import type { AgentFlags } from './agent-command.js';
import { UsageError } from './errors.js';
import { etcdSettingsOf } from './etcd-options.js';

export async function runAgent(flags: AgentFlags): Promise<void> {
  const settings = await etcdSettingsOf(flags);
  if (!settings) throw new UsageError('tapas agent needs --etcd URL[,URL...]');
  if (flags.underlayIp === undefined) throw new UsageError('tapas agent needs --underlay-ip IP: where other hosts reach this host\'s tunnels');
  if (isIP(flags.underlayIp) === 0) throw new UsageError(`invalid --underlay-ip '${flags.underlayIp}': an IPv4 or IPv6 address`);
  if (flags.host === '' || flags.host.length > 255) throw new UsageError('--host must be 1 to 255 characters');
  const workers = Number(flags.workers);
  const interval = Number(flags.interval);
  const ttl = Number(flags.leaseTtl);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new UsageError(`--workers must be 1 to 64, not '${flags.workers}'`);
  if (!Number.isInteger(interval) || interval < 50) throw new UsageError(`--interval must be an integer >= 50, not '${flags.interval}'`);
  if (!Number.isInteger(ttl) || ttl < 2 || ttl > 3600) throw new UsageError(`--lease-ttl must be 2 to 3600 seconds, not '${flags.leaseTtl}'`);

  const logger = pino({ level: flags.logLevel, base: { pid: process.pid, host: flags.host } });
  const client = connectEtcd(settings);
  const keys = new Keyspace(settings.prefix);
  const desired = new EtcdDesiredState(client, keys, flags.host, logger.child({ component: 'desired' }));
  const observations = new EtcdObservations(client, keys, {
    ttlSeconds: ttl, heartbeatMs: Math.min(10_000, (ttl * 1000) / 2), logger: logger.child({ component: 'report' }),
  });
  const engine = new Engine({ workers, priority: flags.priority, datapath: flags.datapath });
  if (engine.datapathFallback) logger.warn({ reason: engine.datapathFallback }, 'using the packet data path: bpf cannot run here');
  const agent = new Agent({
    host: flags.host, desired, observations, dataPath: engine, datapathName: engine.datapath, underlayIp: flags.underlayIp,
    logger: logger.child({ component: 'agent' }), intervalMs: interval,
  });

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, 'stopping');
    await agent.stop();
    await observations.close();
    await desired.close();
    await engine.close();
    client.close();
    logger.info('stopped');
  };
  const stopped = new Promise<void>((resolve, reject) => {
    const on = (signal: NodeJS.Signals) => void stop(signal).then(resolve, reject);
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });

  logger.info({ etcd: settings.endpoints, prefix: keys.root, underlayIp: flags.underlayIp }, 'starting');
  // The first read of the desired state: retried until etcd answers (nothing runs before it).
  await Promise.race([desired.start(), stopped]);
  if (!stopping) {
    await agent.start();
    logger.info({ revision: desired.currentRevision }, 'running');
  }
  await stopped;
}
