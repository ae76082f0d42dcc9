/**
 * The agent's DesiredStateSource in cluster mode: its host's desired state,
 * read from etcd (PREFIX/v1/nodes/HOST/) and kept in memory.
 *
 * A full read of the prefix gives the state and the revision it was read at;
 * a watch from that revision + 1 keeps it current, each watch response (one
 * transaction's events at a time) applied whole. `snapshot()` answers from
 * memory, so an agent whose etcd is unreachable keeps the data path it has:
 * nothing is torn down for want of etcd.
 *
 * The etcd3 client resumes a broken watch stream by itself, from the last
 * revision it saw; that fails when the history was compacted meanwhile (the
 * watch is cancelled) and misses a store that was restored from an older
 * backup. So after any disconnect or cancellation this source does not trust
 * the resumed stream: it reads the prefix in full again and watches from the
 * revision of that read. The revision it reports is that of the last read or
 * watch response: every change of the host's keys up to it has been seen.
 */
import type { Etcd3, Watcher } from 'etcd3';
import type { Logger } from 'pino';

import type { DesiredState, DesiredStateSource } from '../model/observation.js';
import type { Port, TapFlow, TapMirror, TapService } from '../model/resources.js';
import { errorText, readPrefix, retryWarning } from './etcd.js';
import type { Keyspace } from './keys.js';

const RETRY_MS = 1000;

interface WatchResponse {
  header: { revision: string };
  events: Array<{ type: 'Put' | 'Delete'; kv: { key: Buffer; value: Buffer; mod_revision: string } }>;
}

export class EtcdDesiredState implements DesiredStateSource {
  private readonly values = new Map<string, string>();
  private revision = 0;
  private readonly listeners = new Set<() => void>();
  private watcher: Watcher | undefined;
  /** Bumped by every resync: a watcher of an older generation is ignored. */
  private generation = 0;
  private closed = false;
  private resyncing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readyResolve!: () => void;
  /** Resolves after the first complete read. */
  readonly ready: Promise<void> = new Promise((resolve) => { this.readyResolve = resolve; });
  /** How many full reads were made (the first, and one per reconnect or compaction). */
  resyncs = 0;
  private readonly readFailed: ReturnType<typeof retryWarning>;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keyspace,
    private readonly host: string,
    private readonly logger: Logger,
  ) {
    this.readFailed = retryWarning(logger);
  }

  /** Starts reading and watching; resolves once the first read is done (it retries until etcd answers). */
  async start(): Promise<void> {
    this.resync('start');
    await this.ready;
  }

  snapshot(host: string): DesiredState {
    if (host !== this.host) throw new Error(`this source serves host '${this.host}', not '${host}'`);
    const ports: Port[] = [];
    const tapServices: TapService[] = [];
    const tapFlows: TapFlow[] = [];
    const tapMirrors: TapMirror[] = [];
    const keys: Record<string, number> = {};
    const underlay: Record<string, string> = {};
    for (const [key, text] of this.values) {
      const where = this.keys.parseNode(key);
      if (!where || where.host !== this.host) continue;
      let value: Record<string, unknown>;
      try {
        // Names and descriptions are not published (see publisher.ts): the records carry empty ones.
        value = { name: '', description: '', ...JSON.parse(text) as Record<string, unknown> };
      } catch {
        this.logger.warn({ key }, 'ignoring a desired-state key that is not JSON');
        continue;
      }
      if ('peer' in where) {
        if (typeof value.underlay_ip === 'string') underlay[where.peer] = value.underlay_ip;
        continue;
      }
      switch (where.kind) {
        case 'port':
          ports.push(value as unknown as Port);
          break;
        case 'tap_service': {
          const { tunnel_key: tunnelKey, ...service } = value;
          if (typeof tunnelKey === 'number') keys[where.id] = tunnelKey;
          tapServices.push(service as unknown as TapService);
          break;
        }
        case 'tap_flow':
          tapFlows.push(value as unknown as TapFlow);
          break;
        case 'tap_mirror':
          tapMirrors.push(value as unknown as TapMirror);
          break;
      }
    }
    return {
      revision: this.revision,
      ports: ports.sort(byAge),
      tapServices: tapServices.sort(byAge),
      tapFlows: tapFlows.sort(byAge),
      tapMirrors: tapMirrors.sort(byAge),
      tunnels: { keys, underlay },
    };
  }

  subscribe(host: string, listener: () => void): () => void {
    if (host !== this.host) throw new Error(`this source serves host '${this.host}', not '${host}'`);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The etcd revision the state in memory was read at, or last changed by a watch event. */
  get currentRevision(): number {
    return this.revision;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    // A read in flight ends within its deadline; a watch being created while etcd is away may
    // wait for it: it is cancelled when it comes (closed is set), without holding up the close.
    await Promise.race([this.resyncing?.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    await this.dropWatcher();
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }

  /** Reads the prefix in full and watches from there; retried every second until it works. */
  private resync(why: string): void {
    if (this.closed || this.resyncing) return;
    this.generation += 1;
    const generation = this.generation;
    this.resyncing = (async () => {
      await this.dropWatcher();
      const prefix = this.keys.node(this.host);
      const read = await readPrefix(this.client, prefix);
      if (this.closed) return;
      this.values.clear();
      for (const { key, value } of read.kvs) this.values.set(key, value);
      this.revision = read.revision;
      this.resyncs += 1;
      const watcher = await this.client.watch().prefix(prefix).startRevision(String(read.revision + 1)).create();
      if (this.closed || generation !== this.generation) {
        await watcher.cancel().catch(() => undefined);
        return;
      }
      this.watcher = watcher;
      watcher.on('data', (response: WatchResponse) => {
        if (generation === this.generation) this.apply(response);
      });
      // Whatever the client would do next, start over from a full read.
      watcher.on('disconnected', () => this.lost(generation, 'the watch stream broke'));
      watcher.on('error', (error: Error) => this.lost(generation, `the watch was cancelled: ${errorText(error)}`));
      this.logger.info({ why, revision: read.revision, keys: read.kvs.length }, 'desired state read');
      this.readyResolve();
      this.notify();
    })().then(() => {
      this.resyncing = undefined;
    }, (error: unknown) => {
      this.resyncing = undefined;
      this.readFailed({ err: errorText(error), why }, 'cannot read the desired state from etcd; the data path keeps what it runs; retrying');
      if (!this.closed) this.retryTimer = setTimeout(() => this.resync(why), RETRY_MS);
    });
  }

  private lost(generation: number, why: string): void {
    if (generation !== this.generation || this.closed) return;
    this.logger.warn({ why }, 'lost the watch on the desired state; reading it again');
    this.resync(why);
  }

  private async dropWatcher(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (!watcher) return;
    watcher.removeAllListeners();
    // Keep an 'error' listener: the client may still emit one for a watcher it cancels.
    watcher.on('error', () => undefined);
    await watcher.cancel().catch(() => undefined);
  }

  private apply(response: WatchResponse): void {
    let revision = this.revision;
    for (const event of response.events) {
      const key = event.kv.key.toString();
      if (event.type === 'Put') this.values.set(key, event.kv.value.toString());
      else this.values.delete(key);
      revision = Math.max(revision, Number(event.kv.mod_revision));
    }
    // A progress notification (no events) says that everything up to its revision was sent.
    if (response.events.length === 0) revision = Math.max(revision, Number(response.header.revision));
    if (revision === this.revision && response.events.length === 0) return;
    this.revision = revision;
    this.notify();
  }
}

function byAge(a: { created_at: string; id: string }, b: { created_at: string; id: string }): number {
  return a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
