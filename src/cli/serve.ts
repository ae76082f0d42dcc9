/**
 * `tapas serve`: the daemon. Opens the store, restores the data path from it
 * (the agent applies the stored state before the API accepts requests), then
 * serves the TaaS API. SIGTERM/SIGINT drain in-flight requests, stop the
 * agent and the engine, and close the store.
 */
import { isIP } from 'node:net';

import pino, { type Logger } from 'pino';

import { Agent } from '../agent/agent.js';
import { loadTokens, noauth, tokenAuth, tokensFileIsShared, TokensFileError, type AuthMode } from '../api/auth.js';
import { Metrics } from '../api/metrics.js';
import { buildApi } from '../api/server.js';
import { Engine, type WorkerPriority } from '../engine/engine.js';
import { LocalDesiredState } from '../service/desired-state.js';
import { ObservationBook } from '../service/observations.js';
import { DEFAULT_QUOTAS, type QuotaLimits } from '../service/quotas.js';
import { TaasStats } from '../service/stats.js';
import { TaasService } from '../service/taas-service.js';
import { Store, StoreError } from '../store/store.js';
import { ClusterLink } from '../cluster/control-plane.js';
import type { EtcdSettings } from '../cluster/etcd.js';
import { UsageError } from './errors.js';
import type { ServeFlags } from './serve-command.js';
import { etcdSettingsOf } from './etcd-options.js';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface DaemonOptions {
  listen: ListenAddress;
  stateDir: string;
  auth: AuthMode;
  tokensFile?: string;
  hostId: string;
  quotas: QuotaLimits;
  workers: number;
  priority?: WorkerPriority;
  /** The data path of the embedded agent's engine (EngineOptions.datapath); default packet. */
  datapath?: 'packet' | 'bpf' | 'auto';
  /** How often the agent looks at interfaces and engine health unasked. */
  agentIntervalMs: number;
  /** Cluster mode: agents on every host, fed through this etcd; no data path in this process. */
  etcd?: EtcdSettings;
  logger: Logger;
}

export interface Daemon {
  /** The API's base URL (with the real port when listening on port 0). */
  url: string;
  close(): Promise<void>;
}

export function parseListen(text: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || !host || port > 65535) throw new UsageError(`invalid --listen '${text}': expected HOST:PORT or [IPv6]:PORT`);
  return { host, port };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}



export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { logger } = options;
  if (options.auth === 'noauth' && !isLoopback(options.listen.host)) {
    throw new UsageError(`refusing to listen on ${options.listen.host} without token auth: noauth makes every caller admin `
      + '(use --auth token --tokens FILE, or a loopback address)');
  }
  let authenticate;
  if (options.auth === 'token') {
    if (!options.tokensFile) throw new UsageError('--auth token needs --tokens FILE');
    authenticate = tokenAuth(loadTokens(options.tokensFile));
    if (tokensFileIsShared(options.tokensFile)) {
      logger.warn({ file: options.tokensFile }, 'the tokens file is readable by other users: chmod 600 it');
    }
  } else {
    authenticate = noauth();
  }

  const store = new Store(options.stateDir);
  const observations = new ObservationBook();
  // Cluster mode: the desired state goes to etcd, the agents' observations come from it.
  const cluster = options.etcd ? new ClusterLink(store, options.etcd, observations, logger) : undefined;
  // The embedded mode: the agent of this host runs in this process, linked to the
  // control plane by the in-process desired state and observation book.
  const local = cluster ? undefined : new LocalDesiredState(store);
  const service = new TaasService(store, {
    // In cluster mode a port must name its host: there is no "this host".
    ...(cluster ? {} : { hostId: options.hostId }), quotas: options.quotas, desired: cluster?.publisher ?? local!, observations,
  });
  const engine = local && new Engine({
    workers: options.workers, ...(options.priority ? { priority: options.priority } : {}), ...(options.datapath ? { datapath: options.datapath } : {}),
  });
  if (engine && engine.datapathFallback) logger.warn({ reason: engine.datapathFallback }, 'using the packet data path: bpf cannot run here');
  const agent = local && engine && new Agent({
    host: options.hostId, desired: local, observations, dataPath: engine, datapathName: engine.datapath,
    logger: logger.child({ component: 'agent' }), intervalMs: options.agentIntervalMs,
  });
  const metrics = new Metrics({
    resources: () => service.everything(),
    observationsOf: (kind, id) => observations.observationsOf(kind, id),
  });
  const app = buildApi({
    service, stats: new TaasStats(service, observations), agents: () => observations.agents(), metrics, authenticate, logger: logger.child({ component: 'api' }),
    metricsNeedAuth: options.auth === 'token',
    ...(options.auth === 'noauth' ? { loopbackOnly: { listenHost: options.listen.host } } : {}),
  });

  const closeAll = async () => {
    await app.close();
    await agent?.stop();
    await engine?.close();
    await cluster?.close();
    store.close();
  };
  try {
    // Restore the data path before taking requests: after a crash, mirroring resumes first.
    await agent?.start();
    await cluster?.start();
    await app.listen({ host: options.listen.host, port: options.listen.port });
  } catch (error) {
    await closeAll();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.listen.port;
  const host = options.listen.host.includes(':') ? `[${options.listen.host}]` : options.listen.host;
  const url = `http://${host}:${port}`;
  logger.info({
    url, stateDir: options.stateDir, auth: options.auth, schemaVersion: store.schemaVersion,
    ...(options.etcd ? { etcd: options.etcd.endpoints, etcdPrefix: cluster!.keys.root } : {}),
  }, 'listening');
  return { url, close: closeAll };
}

/** `tapas serve` after its options are parsed: runs until SIGTERM or SIGINT. */
export async function runServe(flags: ServeFlags): Promise<void> {
  const workers = Number(flags.workers);
  const interval = Number(flags.agentInterval);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new UsageError(`--workers must be 1 to 64, not '${flags.workers}'`);
  if (!Number.isInteger(interval) || interval < 50) throw new UsageError(`--agent-interval must be an integer >= 50, not '${flags.agentInterval}'`);
  const etcd = await etcdSettingsOf(flags);
  const logger = pino({ level: flags.logLevel, base: { pid: process.pid } });
  let daemon: Daemon;
  try {
    daemon = await startDaemon({
      listen: parseListen(flags.listen),
      stateDir: flags.stateDir,
      auth: flags.auth ?? (flags.tokens ? 'token' : 'noauth'),
      ...(flags.tokens ? { tokensFile: flags.tokens } : {}),
      hostId: flags.host,
      quotas: { ...DEFAULT_QUOTAS, ...flags.quota },
      workers,
      priority: flags.priority,
      datapath: flags.datapath,
      agentIntervalMs: interval,
      ...(etcd ? { etcd } : {}),
      logger,
    });
  } catch (error) {
    if (error instanceof TokensFileError) throw new UsageError(error.message);
    if (error instanceof StoreError) throw new Error(error.message);
    throw error;
  }
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) process.exit(1); // a second signal: stop waiting
      stopping = true;
      logger.info({ signal }, 'stopping');
      daemon.close().then(() => {
        logger.info('stopped');
        resolve();
      }, (error: unknown) => {
        logger.error({ err: error }, 'stop failed');
        process.exit(1);
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
