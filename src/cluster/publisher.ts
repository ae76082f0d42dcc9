/**
 * The control plane's side of cluster mode, outward: the desired state of
 * every host, from the SQLite store into etcd (PREFIX/v1/nodes/HOST/...), one
 * key per resource per host that needs it (see keys.ts). It is the
 * DesiredStateFeed of the service: told of every committed change, it
 * publishes the keys that changed (coalescing changes that arrive while a
 * publish is in flight), so a change touches O(1) keys. It also publishes,
 * into a host's prefix, what that host needs of others: the GRE key of each
 * tap service on another host its flows feed, and that host's underlay
 * address (learned from its agent's registration, and kept when the agent
 * goes away: a peer that comes back is reached at once).
 *
 * Revisions. The service counts desired-state changes itself (`changed()`
 * returns a number at once, while etcd is written asynchronously), and an
 * agent reports the etcd revision of the desired state it applied. This
 * publisher keeps a log of its transactions (the changes each covered, its
 * etcd revision and the hosts whose keys it touched) and translates: a host
 * that applied etcd revision R has applied every change up to the last
 * transaction before the first one after R that touched its keys (see
 * effectiveRevision). A delete is thus complete once every involved host
 * reported an etcd revision at or after the transaction that removed the
 * resource from its keys.
 */
import { EventEmitter } from 'node:events';

import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';

import type { DesiredStateFeed } from '../service/desired-state.js';
import type { Snapshot, Store } from '../store/store.js';
import { batches, commit, errorText, readPrefix, retryWarning, type WriteOp } from './etcd.js';
import type { Keyspace } from './keys.js';
import { sharesByHost } from './shares.js';

const RETRY_MS = 1000;
/** Log entries kept at most, however far behind an agent is. */
const MAX_LOG = 100_000;

interface LogEntry {
  /** Every change up to this count is published once this transaction is applied. */
  covers: number;
  /** The transaction's etcd revision. */
  revision: number;
  /** Hosts whose keys it touched. */
  hosts: Set<string>;
}

export class EtcdPublisher implements DesiredStateFeed {
  private changes = 0;
  /** What etcd holds under nodes/, as far as this publisher knows: key → value. */
  private readonly published = new Map<string, string>();
  private readonly tunnelKeys = new Map<string, number>();
  /** The keys in use, while one publish allocates. */
  private usedKeys: Set<number> | undefined;
  /** No key below it is free, while one publish allocates. */
  private keyCursor = 1;
  private readonly underlay = new Map<string, string>();
  private log: LogEntry[] = [];
  /** Changes covered before the first entry of the log. */
  private baseCovers = 0;
  /** Changes covered by what was published so far. */
  private coveredChanges = 0;
  private lastRevision = 0;
  private publishing: Promise<void> | undefined;
  private again = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private readonly events = new EventEmitter();
  /** Keys written or deleted by the last publish (for tests and logs). */
  lastWrites = 0;
  private readonly publishFailed: ReturnType<typeof retryWarning>;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keyspace,
    private readonly store: Store,
    private readonly logger: Logger,
  ) {
    this.publishFailed = retryWarning(logger);
  }

  /**
   * Reads what is published (tunnel keys and underlay addresses survive a
   * restart of the server that way), then publishes the store's state.
   * Resolves after the first attempt, which may fail: then it retries every
   * second, in the background.
   */
  async start(): Promise<void> {
    this.started = true;
    await new Promise<void>((resolve) => {
      this.events.once('attempted', resolve);
      this.schedule();
    });
  }

  get revision(): number {
    return this.changes;
  }

  changed(): number {
    this.changes += 1;
    this.schedule();
    return this.changes;
  }

  /** A host's agent says where its tunnels end. */
  setUnderlay(host: string, address: string): void {
    if (this.underlay.get(host) === address) return;
    this.underlay.set(host, address);
    this.schedule();
  }

  /** The GRE key of a tap service, once published. */
  tunnelKey(serviceId: string): number | undefined {
    return this.tunnelKeys.get(serviceId);
  }

  /**
   * The changes (in the service's count) that a host which applied etcd
   * revision `applied` of its keys has carried out.
   */
  effectiveRevision(host: string, applied: number): number {
    let covers = this.baseCovers;
    for (const entry of this.log) {
      if (entry.revision > applied && entry.hosts.has(host)) break;
      covers = entry.covers;
    }
    return covers;
  }

  /**
   * Reads what etcd holds before the next publish and writes what differs:
   * after a reconnect, etcd may have lost keys (restored from a backup, or
   * wiped) that this publisher believes are there.
   */
  reread(): void {
    this.needsRead = true;
    this.schedule();
  }

  /** Called after every publish that covered more changes or touched hosts' keys. */
  onPublished(listener: () => void): () => void {
    this.events.on('published', listener);
    return () => this.events.off('published', listener);
  }

  /** Forgets log entries every agent has gone past (their etcd revisions). */
  prune(appliedByHost: ReadonlyMap<string, number>): void {
    const oldest = Math.min(...appliedByHost.values());
    while (this.log.length > 1 && (this.log[0]!.revision <= oldest || this.log.length > MAX_LOG)) {
      this.baseCovers = this.log.shift()!.covers;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.publishing?.catch(() => undefined);
  }

  private schedule(): void {
    if (this.closed || !this.started) return;
    if (this.publishing) {
      this.again = true;
      return;
    }
    if (this.retryTimer) return;
    this.publishing = this.publish().then(() => {
      this.publishing = undefined;
      this.events.emit('attempted');
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    }, (error: unknown) => {
      this.publishing = undefined;
      this.again = false;
      this.events.emit('attempted');
      if (this.closed) return;
      this.publishFailed({ err: errorText(error) }, 'cannot publish the desired state to etcd; retrying');
      this.needsRead = true;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.schedule();
      }, RETRY_MS);
    });
  }

  /** Set when what etcd holds is not known for sure (at start, after a failed write). */
  private needsRead = true;

  private async readPublished(): Promise<void> {
    const read = await readPrefix(this.client, this.keys.nodes);
    this.published.clear();
    for (const { key, value } of read.kvs) {
      this.published.set(key, value);
      const where = this.keys.parseNode(key);
      if (!where) continue;
      try {
        const parsed = JSON.parse(value) as { tunnel_key?: unknown; underlay_ip?: unknown };
        if ('kind' in where && where.kind === 'tap_service' && typeof parsed.tunnel_key === 'number' && !this.tunnelKeys.has(where.id)) {
          this.tunnelKeys.set(where.id, parsed.tunnel_key);
        }
        if ('peer' in where && typeof parsed.underlay_ip === 'string' && !this.underlay.has(where.peer)) {
          this.underlay.set(where.peer, parsed.underlay_ip);
        }
      } catch {
        // not ours: replaced by the next publish
      }
    }
    this.lastRevision = Math.max(this.lastRevision, read.revision);
    this.needsRead = false;
  }

  private async publish(): Promise<void> {
    if (this.needsRead) await this.readPublished();
    const covers = this.changes;
    const wanted = this.desiredKeys(this.store.snapshot());
    const ops: Array<WriteOp & { host: string }> = [];
    for (const [key, value] of wanted) {
      if (this.published.get(key) !== value) ops.push({ put: key, value, host: this.hostOf(key) });
    }
    for (const key of this.published.keys()) {
      if (!wanted.has(key)) ops.push({ delete: key, host: this.hostOf(key) });
    }
    this.lastWrites = ops.length;
    if (ops.length === 0) {
      if (covers > this.coveredChanges) this.record({ covers, revision: this.lastRevision, hosts: new Set() });
      return;
    }
    // One host's keys together where they fit, so an agent rarely sees half a change.
    ops.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
    const parts = batches(ops);
    for (const [index, part] of parts.entries()) {
      const revision = await commit(this.client, part.map(({ host: _, ...op }) => op));
      for (const op of part) {
        if ('delete' in op) this.published.delete(op.delete);
        else this.published.set(op.put, op.value);
      }
      this.lastRevision = revision;
      const last = index === parts.length - 1;
      this.record({ covers: last ? covers : this.coveredChanges, revision, hosts: new Set(part.map((op) => op.host)) });
    }
    this.logger.debug({ writes: ops.length, revision: this.lastRevision, covers }, 'published the desired state');
  }

  private record(entry: LogEntry): void {
    this.log.push(entry);
    this.coveredChanges = entry.covers;
    this.events.emit('published');
  }

  private hostOf(key: string): string {
    return this.keys.parseNode(key)?.host ?? '';
  }

  /** Every key of nodes/ the store's state asks for, with its value. */
  private desiredKeys(snapshot: Snapshot): Map<string, string> {
    const wanted = new Map<string, string>();
    // A key is freed once its tap service is gone from the store (every host let go of it), never earlier.
    const live = new Set(snapshot.tapServices.map((service) => service.id));
    for (const id of this.tunnelKeys.keys()) if (!live.has(id)) this.tunnelKeys.delete(id);
    this.usedKeys = undefined;
    this.keyCursor = 1;
    // A record is written the same way into every host that gets it.
    const texts = new Map<string, string>();
    const text = (id: string, record: () => unknown) => {
      let found = texts.get(id);
      if (found === undefined) {
        found = JSON.stringify(record());
        texts.set(id, found);
      }
      return found;
    };
    for (const [host, share] of sharesByHost(snapshot)) {
      const portHosts = new Map(share.ports.map((port) => [port.id, port.host_id]));
      const servicePorts = new Map(share.tapServices.map((service) => [service.id, service.port_id]));
      for (const port of share.ports) wanted.set(this.keys.resource(host, 'port', port.id), text(port.id, () => forAgents(port)));
      for (const service of share.tapServices) {
        wanted.set(this.keys.resource(host, 'tap_service', service.id),
          text(service.id, () => ({ ...forAgents(service), tunnel_key: this.keyOf(service.id) })));
      }
      const peers = new Set<string>();
      for (const flow of share.tapFlows) {
        wanted.set(this.keys.resource(host, 'tap_flow', flow.id), text(flow.id, () => forAgents(flow)));
        const serviceHost = portHosts.get(servicePorts.get(flow.tap_service_id) ?? '');
        if (portHosts.get(flow.source_port) === host && serviceHost !== undefined && serviceHost !== host) peers.add(serviceHost);
      }
      for (const mirror of share.tapMirrors) wanted.set(this.keys.resource(host, 'tap_mirror', mirror.id), text(mirror.id, () => forAgents(mirror)));
      for (const peer of peers) {
        const address = this.underlay.get(peer);
        if (address !== undefined) wanted.set(this.keys.peer(host, peer), JSON.stringify({ underlay_ip: address }));
      }
    }
    return wanted;
  }

  /** The GRE key of a tap service: the lowest one free, kept for its life. */
  private keyOf(serviceId: string): number {
    const known = this.tunnelKeys.get(serviceId);
    if (known !== undefined) return known;
    this.usedKeys ??= new Set(this.tunnelKeys.values());
    let key = this.keyCursor;
    while (this.usedKeys.has(key)) key += 1;
    this.tunnelKeys.set(serviceId, key);
    this.usedKeys.add(key);
    this.keyCursor = key + 1;
    return key;
  }
}

/**
 * A record as agents get it: what the data path needs. Names, descriptions and
 * update times are the users' business; leaving them out keeps a rename from
 * touching any host's keys (and compute hosts from learning them).
 */
function forAgents<T extends { name: string; description: string; updated_at: string }>(record: T): Omit<T, 'name' | 'description' | 'updated_at'> {
  const { name: _name, description: _description, updated_at: _updated, ...rest } = record;
  return rest;
}
