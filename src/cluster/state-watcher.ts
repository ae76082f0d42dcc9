/**
 * The control plane's side of cluster mode, inward: the agents' keys under
 * PREFIX/v1/state/ into the ObservationBook, from which statuses, stats,
 * metrics and GET /v2.0/agents are derived as in the embedded daemon.
 *
 * A full read, then a watch from its revision + 1; each watch response (the
 * events of one transaction, or of several) is applied whole, host by host.
 * After a disconnect or a cancelled watch (compaction) it reads in full
 * again. A host's observations count only while its agent key exists: the
 * agent writes that key last, and its lease takes every key along when it
 * expires. The revision an agent reports (an etcd revision) is translated
 * into the service's count of changes by the publisher.
 */
import type { Etcd3, Watcher } from 'etcd3';
import type { Logger } from 'pino';

import type { AgentRecord, ObservationBook, StoredObservation } from '../service/observations.js';
import { errorText, readPrefix, retryWarning } from './etcd.js';
import type { AgentValue, ObservationValue } from './etcd-observations.js';
import type { Keyspace } from './keys.js';
import type { EtcdPublisher } from './publisher.js';

const RETRY_MS = 1000;

interface WatchResponse {
  header: { revision: string };
  events: Array<{ type: 'Put' | 'Delete'; kv: { key: Buffer; value: Buffer } }>;
}

interface HostState {
  agent?: AgentValue;
  observations: Map<string, StoredObservation>;
}

export class EtcdStateWatcher {
  private readonly hosts = new Map<string, HostState>();
  private watcher: Watcher | undefined;
  private generation = 0;
  private resyncing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private unsubscribe: (() => void) | undefined;
  /** Full reads made (the first, and one per reconnect or compaction). */
  resyncs = 0;
  private readonly readFailed: ReturnType<typeof retryWarning>;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keyspace,
    private readonly book: ObservationBook,
    private readonly publisher: EtcdPublisher,
    private readonly logger: Logger,
  ) {
    this.readFailed = retryWarning(logger);
  }

  /** Resolves after the first attempt to read (retried in the background when it fails). */
  async start(): Promise<void> {
    this.unsubscribe = this.publisher.onPublished(() => this.translateRevisions());
    await this.resync('start').catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    // A read in flight ends within its deadline; a watch being created while etcd is away may
    // wait for it: it is cancelled when it comes (closed is set), without holding up the close.
    await Promise.race([this.resyncing?.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    await this.dropWatcher();
  }

  private resync(why: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.resyncing) return this.resyncing;
    this.generation += 1;
    const generation = this.generation;
    this.resyncing = (async () => {
      await this.dropWatcher();
      const read = await readPrefix(this.client, this.keys.state);
      if (this.closed) return;
      const fresh = new Map<string, HostState>();
      for (const { key, value } of read.kvs) this.put(fresh, key, value);
      const touched = new Set([...this.hosts.keys(), ...fresh.keys()]);
      this.hosts.clear();
      for (const [host, state] of fresh) this.hosts.set(host, state);
      const watcher = await this.client.watch().prefix(this.keys.state).startRevision(String(read.revision + 1)).create();
      if (this.closed || generation !== this.generation) {
        await watcher.cancel().catch(() => undefined);
        return;
      }
      this.watcher = watcher;
      watcher.on('data', (response: WatchResponse) => {
        if (generation === this.generation) this.apply(response);
      });
      watcher.on('disconnected', () => this.lost(generation, 'the watch stream broke'));
      watcher.on('error', (error: Error) => this.lost(generation, `the watch was cancelled: ${errorText(error)}`));
      this.resyncs += 1;
      // etcd came back: it may not hold what was published before (a restore, a wipe).
      if (why !== 'start') this.publisher.reread();
      this.logger.info({ why, revision: read.revision, agents: [...fresh.values()].filter((state) => state.agent).length }, 'agents\' state read');
      for (const host of touched) this.publish(host);
    })().then(() => {
      this.resyncing = undefined;
    }, (error: unknown) => {
      this.resyncing = undefined;
      this.readFailed({ err: errorText(error), why }, 'cannot read the agents\' state from etcd; retrying');
      if (!this.closed) this.retryTimer = setTimeout(() => void this.resync(why), RETRY_MS);
      throw error;
    });
    return this.resyncing;
  }

  private lost(generation: number, why: string): void {
    if (generation !== this.generation || this.closed) return;
    this.logger.warn({ why }, 'lost the watch on the agents\' state; reading it again');
    void this.resync(why).catch(() => undefined);
  }

  private async dropWatcher(): Promise<void> {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (!watcher) return;
    watcher.removeAllListeners();
    watcher.on('error', () => undefined);
    await watcher.cancel().catch(() => undefined);
  }

  private apply(response: WatchResponse): void {
    const touched = new Set<string>();
    for (const event of response.events) {
      const key = event.kv.key.toString();
      const host = event.type === 'Put' ? this.put(this.hosts, key, event.kv.value.toString()) : this.remove(key);
      if (host !== undefined) touched.add(host);
    }
    for (const host of touched) this.publish(host);
  }

  /** Records one key's value; returns its host. */
  private put(into: Map<string, HostState>, key: string, text: string): string | undefined {
    const where = this.keys.parseState(key);
    if (!where) return undefined;
    let state = into.get(where.host);
    if (!state) {
      state = { observations: new Map() };
      into.set(where.host, state);
    }
    try {
      if ('agent' in where) {
        state.agent = JSON.parse(text) as AgentValue;
      } else {
        const value = JSON.parse(text) as ObservationValue;
        state.observations.set(`${where.kind}/${where.id}`, { ...value, kind: where.kind, id: where.id, host: where.host });
      }
    } catch {
      this.logger.warn({ key }, 'ignoring an agent key that is not JSON');
    }
    return where.host;
  }

  private remove(key: string): string | undefined {
    const where = this.keys.parseState(key);
    if (!where) return undefined;
    const state = this.hosts.get(where.host);
    if (!state) return undefined;
    if ('agent' in where) delete state.agent;
    else state.observations.delete(`${where.kind}/${where.id}`);
    if (!state.agent && state.observations.size === 0) this.hosts.delete(where.host);
    return where.host;
  }

  /** Makes the book say what etcd says of one host. */
  private publish(host: string): void {
    const state = this.hosts.get(host);
    if (!state?.agent) {
      this.book.unregister(host);
      return;
    }
    const agent = state.agent;
    if (agent.underlay_ip) this.publisher.setUnderlay(host, agent.underlay_ip);
    const record: AgentRecord = {
      host,
      datapath: agent.datapath,
      ...(agent.underlay_ip ? { underlay_ip: agent.underlay_ip } : {}),
      started_at: agent.started_at,
      heartbeat_at: agent.heartbeat_at,
      revision: agent.revision < 0 ? -1 : this.publisher.effectiveRevision(host, agent.revision),
    };
    this.book.replaceHost(record, [...state.observations.values()]);
  }

  /** After a publish, hosts whose keys it did not touch have applied it too. */
  private translateRevisions(): void {
    const applied = new Map<string, number>();
    for (const [host, state] of this.hosts) {
      if (!state.agent || state.agent.revision < 0) continue;
      applied.set(host, state.agent.revision);
      this.book.setRevision(host, this.publisher.effectiveRevision(host, state.agent.revision));
    }
    if (applied.size > 0) this.publisher.prune(applied);
  }
}
