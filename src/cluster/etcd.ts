/**
 * The etcd client of cluster mode (the npm etcd3 client, over gRPC) and the
 * few operations tapas builds on it: a paged read of a prefix at one
 * revision, and transactions of puts and deletes split to etcd's limit.
 *
 * The client's own fault handling is switched off: its default circuit
 * breaker refuses every call for 5 s after three failures, and its watch
 * streams back off up to 30 s. tapas's loops retry by themselves, every
 * second, and re-read in full after a reconnect (see etcd-desired-state.ts).
 */
import { readFileSync } from 'node:fs';

import { Etcd3, type IOptions, type IKeyValue, type IRequestOp } from 'etcd3';

import { prefixEnd } from './keys.js';

export interface EtcdSettings {
  /** http://HOST:PORT or https://HOST:PORT, one per member. */
  endpoints: string[];
  /** Key prefix (default /tapas). */
  prefix: string;
  /** etcd authentication by user and password. */
  user?: string;
  password?: string;
  /** TLS: the CA that signed etcd's certificate, and this client's certificate and key (etcd's --client-cert-auth). */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;
/** Keys per page of a prefix read. */
const PAGE = 1000;
const CALL_TIMEOUT_MS = 5000;

/**
 * A policy that runs the call once (cockatiel's IPolicy, as the etcd3 client
 * calls it). Async: the client hands it functions that throw synchronously
 * and catches only a rejection.
 */
const once = {
  execute: async <T>(fn: (context: { signal: AbortSignal }) => Promise<T> | T): Promise<T> => fn({ signal: new AbortController().signal }),
};

interface Backoff {
  duration: number;
  next(): Backoff;
}
/** Watch stream reconnects: 100 ms, doubling to 2 s. */
const backoff = (duration: number): Backoff => ({ duration, next: () => backoff(Math.min(2000, Math.max(100, duration * 2))) });

export function parseEndpoints(text: string): string[] {
  const endpoints = text.split(',').map((part) => part.trim()).filter((part) => part !== '');
  for (const endpoint of endpoints) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new Error(`'${endpoint}' is not an etcd endpoint URL (http://HOST:PORT or https://HOST:PORT)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`'${endpoint}': an etcd endpoint is http:// or https://`);
  }
  if (endpoints.length === 0) throw new Error('no etcd endpoint given');
  return endpoints;
}

export function connectEtcd(settings: EtcdSettings): Etcd3 {
  const options: IOptions = {
    hosts: settings.endpoints,
    dialTimeout: CALL_TIMEOUT_MS,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    faultHandling: { host: () => once as never, global: once as never, watchBackoff: backoff(100) as never },
    grpcOptions: {
      // Notice a dead connection (an etcd host gone without a FIN) within seconds.
      'grpc.keepalive_time_ms': 5000,
      'grpc.keepalive_timeout_ms': 3000,
      'grpc.keepalive_permit_without_calls': 1,
    },
  };
  if (settings.user !== undefined) options.auth = { username: settings.user, password: settings.password ?? '' };
  if (settings.caFile !== undefined || settings.certFile !== undefined) {
    options.credentials = {
      // No CA file: the system's roots (gRPC's createSsl takes null for them).
      rootCertificate: settings.caFile === undefined ? null as unknown as Buffer : readFileSync(settings.caFile),
      ...(settings.keyFile === undefined ? {} : { privateKey: readFileSync(settings.keyFile) }),
      ...(settings.certFile === undefined ? {} : { certChain: readFileSync(settings.certFile) }),
    };
  }
  return new Etcd3(options);
}

export interface PrefixRead {
  /** The store's revision the read saw. */
  revision: number;
  kvs: Array<{ key: string; value: string; modRevision: number }>;
}

/** Every key under prefix, at one revision, in pages. */
export async function readPrefix(client: Etcd3, prefix: string): Promise<PrefixRead> {
  const end = prefixEnd(prefix);
  const kvs: PrefixRead['kvs'] = [];
  let from = Buffer.from(prefix);
  let revision: number | undefined;
  for (;;) {
    const response = await client.kv.range({ key: from, range_end: end, limit: PAGE, ...(revision === undefined ? {} : { revision }) });
    revision ??= Number(response.header.revision);
    for (const kv of response.kvs as IKeyValue[]) {
      kvs.push({ key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) });
    }
    if (!response.more || response.kvs.length === 0) break;
    from = Buffer.concat([response.kvs.at(-1)!.key, Buffer.from([0])]);
  }
  return { revision, kvs };
}

export type WriteOp = { put: string; value: string; lease?: string } | { delete: string };

function requestOf(op: WriteOp): IRequestOp {
  if ('delete' in op) return { request_delete_range: { key: Buffer.from(op.delete) } };
  return { request_put: { key: Buffer.from(op.put), value: Buffer.from(op.value), ...(op.lease === undefined ? {} : { lease: op.lease }) } };
}

/** One transaction of at most MAX_TXN_OPS writes; resolves with its revision. */
export async function commit(client: Etcd3, ops: readonly WriteOp[]): Promise<number> {
  if (ops.length > MAX_TXN_OPS) throw new Error(`a transaction of ${ops.length} operations exceeds etcd's ${MAX_TXN_OPS}`);
  const response = await client.kv.txn({ compare: [], success: ops.map(requestOf), failure: [] });
  return Number(response.header.revision);
}

/** Splits ops into transactions of at most MAX_TXN_OPS, keeping the order. */
export function batches<T>(ops: readonly T[], size = MAX_TXN_OPS): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < ops.length; i += size) out.push(ops.slice(i, i + size));
  return out;
}

/**
 * A warning for a loop that retries every second while etcd is away: logged
 * when it first happens or says something new, then at most every 30 s.
 */
export function retryWarning(logger: { warn(object: object, message: string): void }, intervalMs = 30_000) {
  let last = '';
  let at = 0;
  return (object: { err?: string; [key: string]: unknown }, message: string): void => {
    const key = `${message}\n${object.err ?? ''}`;
    const now = Date.now();
    if (key === last && now - at < intervalMs) return;
    last = key;
    at = now;
    logger.warn(object, message);
  };
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
