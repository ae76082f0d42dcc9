/**
 * The observed state: what each host's agent last reported, kept in memory.
 * Observations are not part of the record. They describe a running data path,
 * are stale the moment a process restarts, and change every second (counters),
 * so they are never written to the SQLite store; a restarted daemon shows
 * DOWN until its agents have reported again.
 */
import { EventEmitter } from 'node:events';

import type { AgentInfo, Counters, HostReport, HostUpdate, Observation, ObservationSink } from '../model/observation.js';
import type { ResourceKind } from '../model/resources.js';
import { timestamp } from '../store/store.js';

export interface Rates {
  packets_per_second: number;
  bits_per_second: number;
}

/** One host's observation of one resource, as the control plane keeps it. */
export interface StoredObservation extends Observation {
  host: string;
  observed_at: string;
  /** Rates since the host's previous report of the same resource; absent on the first. */
  rates?: Rates;
}

export interface AgentRecord extends AgentInfo {
  started_at: string;
  heartbeat_at: string;
  /** The desired-state revision of the host's last report; -1 before the first. */
  revision: number;
}

interface HostRecord {
  agent: AgentRecord;
  /** Monotonic time of the last report, for rates. */
  reportedAtMs: number;
  /** Monotonic time this book last heard of the agent (this host's clock: agents' clocks may differ). */
  heardAtMs: number;
  observations: Map<string, StoredObservation>;
  /** Keys of observations with counters whose rates are not known to be zero: the next update without them zeroes their rates. */
  unsettled: Set<string>;
}

const keyOf = (kind: ResourceKind, id: string) => `${kind}/${id}`;

/** Whether a stored observation's rates are still to come down to zero (it has counters and rates that are not zero). */
const unsettled = (observation: StoredObservation) => observation.counters !== undefined
  && (observation.rates === undefined || observation.rates.packets_per_second !== 0 || observation.rates.bits_per_second !== 0);

/** Whether two plain JSON values are equal. */
function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.hasOwn(b, key) && same((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]));
}

/** An agent reports every second or so; this long without a report, its observations are not shown as current. */
export const SILENT_AFTER_MS = 30_000;

function ratesBetween(previous: Counters | undefined, current: Counters | undefined, seconds: number): Rates | undefined {
  if (!previous || !current || seconds <= 0) return undefined;
  const packets = current.packets - previous.packets;
  const bytes = current.bytes - previous.bytes;
  // A counter that went backwards was restarted: no rate this time.
  if (packets < 0 || bytes < 0) return undefined;
  return { packets_per_second: packets / seconds, bits_per_second: (bytes * 8) / seconds };
}

/** Whether a resource's status may show differently: its status, reason or interface (a port's MAC) differ. */
const showsDifferently = (before: StoredObservation | undefined, after: StoredObservation) => !before
  || before.status !== after.status || before.reason !== after.reason || !same(before.interface, after.interface);

export class ObservationBook implements ObservationSink {
  private readonly hosts = new Map<string, HostRecord>();
  private readonly events = new EventEmitter();
  /** Grows whenever what statuses are derived from may have changed (see statusKey). */
  private statusVersion = 0;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.events.setMaxListeners(0);
  }

  register(info: AgentInfo): void {
    const at = timestamp();
    const existing = this.hosts.get(info.host);
    this.hosts.set(info.host, {
      agent: { ...info, started_at: at, heartbeat_at: at, revision: -1 },
      reportedAtMs: existing?.reportedAtMs ?? this.now(),
      heardAtMs: this.now(),
      observations: existing?.observations ?? new Map(),
      unsettled: existing?.unsettled ?? new Set(),
    });
    this.statusVersion += 1;
    this.events.emit('change', info.host);
  }

  report(report: HostReport): void {
    const record = this.hosts.get(report.host);
    if (!record) throw new Error(`no agent registered for host '${report.host}'`);
    const at = timestamp();
    const nowMs = this.now();
    const seconds = (nowMs - record.reportedAtMs) / 1000;
    const observations = new Map<string, StoredObservation>();
    record.unsettled = new Set();
    let differs = false;
    for (const observation of report.observations) {
      const key = keyOf(observation.kind, observation.id);
      const previous = record.observations.get(key);
      const stored = this.stored(report.host, observation, previous, seconds, at);
      observations.set(key, stored);
      if (unsettled(stored)) record.unsettled.add(key);
      if (stored !== previous && showsDifferently(previous, stored)) differs = true;
    }
    // Resources it no longer reports (every new one was counted above).
    if (differs || [...record.observations.keys()].some((key) => !observations.has(key))) this.statusVersion += 1;
    record.observations = observations;
    record.reportedAtMs = nowMs;
    record.heardAtMs = nowMs;
    record.agent.heartbeat_at = at;
    record.agent.revision = report.revision;
    this.events.emit('change', report.host);
  }

  /**
   * What changed since the host's last report or update (see HostUpdate):
   * the changed observations replace theirs, and every other one whose
   * counters moved before (a rate that was not zero) now has rates of zero.
   * Costs what changed, not what the host runs; tells listeners only when
   * something changed.
   */
  update(update: HostUpdate): void {
    const record = this.hosts.get(update.host);
    if (!record) throw new Error(`no agent registered for host '${update.host}'`);
    const at = timestamp();
    const nowMs = this.now();
    const seconds = (nowMs - record.reportedAtMs) / 1000;
    let changed = false;
    const given = new Set<string>();
    for (const observation of update.changed) {
      const key = keyOf(observation.kind, observation.id);
      given.add(key);
      const previous = record.observations.get(key);
      const stored = this.stored(update.host, observation, previous, seconds, at);
      if (stored === previous) continue;
      changed = true;
      if (showsDifferently(previous, stored)) this.statusVersion += 1;
      record.observations.set(key, stored);
      if (unsettled(stored)) record.unsettled.add(key);
      else record.unsettled.delete(key);
    }
    for (const key of record.unsettled) {
      if (given.has(key)) continue;
      const previous = record.observations.get(key);
      // The same counters as last time: rates of zero (none yet when no time passed).
      const rates = previous && ratesBetween(previous.counters, previous.counters, seconds);
      if (!previous) record.unsettled.delete(key);
      if (!previous || !rates) continue;
      record.observations.set(key, { ...previous, observed_at: at, rates });
      record.unsettled.delete(key);
      changed = true;
    }
    record.reportedAtMs = nowMs;
    record.heardAtMs = nowMs;
    record.agent.heartbeat_at = at;
    if (record.agent.revision !== update.revision) {
      record.agent.revision = update.revision;
      changed = true;
    }
    if (changed) this.events.emit('change', update.host);
  }

  /**
   * An observation as stored, with its rates since the previous one; the
   * previous object itself when nothing changed, so that observed_at says
   * when the host last saw it change (as in cluster mode).
   */
  private stored(host: string, observation: Observation, previous: StoredObservation | undefined, seconds: number, at: string): StoredObservation {
    // No time since the last report (two in the same instant): the rates it had.
    const rates = seconds > 0 ? ratesBetween(previous?.counters, observation.counters, seconds) : previous?.rates;
    const stored: StoredObservation = { ...observation, host, observed_at: previous?.observed_at ?? at, ...(rates ? { rates } : {}) };
    if (previous && same(previous, stored)) return previous;
    stored.observed_at = at;
    return stored;
  }

  unregister(host: string): void {
    if (!this.hosts.delete(host)) return;
    this.statusVersion += 1;
    this.events.emit('change', host);
  }

  /**
   * Cluster mode: everything known of one host, as its keys in etcd say it
   * (the agent's registration and its observations, rates computed by the
   * agent), replacing what was known. `agent.revision` is in this book's
   * numbering (see EtcdPublisher.effectiveRevision).
   */
  replaceHost(agent: AgentRecord, observations: readonly StoredObservation[]): void {
    const existing = this.hosts.get(agent.host);
    this.hosts.set(agent.host, {
      agent: { ...agent },
      reportedAtMs: existing?.reportedAtMs ?? this.now(),
      heardAtMs: this.now(),
      observations: new Map(observations.map((observation) => [keyOf(observation.kind, observation.id), observation])),
      // Rates come from the agent in cluster mode: nothing to settle here.
      unsettled: new Set(),
    });
    this.statusVersion += 1;
    this.events.emit('change', agent.host);
  }

  /** Cluster mode: the host's agent has applied the desired state up to this revision (this book's numbering). */
  setRevision(host: string, revision: number): void {
    const record = this.hosts.get(host);
    if (!record) return;
    record.heardAtMs = this.now();
    if (record.agent.revision === revision) return;
    record.agent.revision = revision;
    this.events.emit('change', host);
  }

  /** The hosts with an agent. */
  hostsWithAgents(): string[] {
    return [...this.hosts.keys()];
  }

  /** The revision of the host's last report (this book's numbering); undefined without an agent. */
  revisionOf(host: string): number | undefined {
    return this.hosts.get(host)?.agent.revision;
  }

  /** Calls listener with the host after every register, report and unregister. */
  onChange(listener: (host: string) => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }

  hasAgent(host: string): boolean {
    return this.hosts.has(host);
  }

  /**
   * When a registered agent last reported, if that is longer ago than
   * silentAfterMs: its observations may no longer be true (a hung data path,
   * a partitioned host whose lease has not expired yet).
   */
  silentSince(host: string, silentAfterMs = SILENT_AFTER_MS): string | undefined {
    const record = this.hosts.get(host);
    if (!record) return undefined;
    return this.now() - record.heardAtMs > silentAfterMs ? record.agent.heartbeat_at : undefined;
  }

  /**
   * Equal for as long as every status derived from this book (deriveLifecycle,
   * a port's MAC) would come out the same: what was derived under an equal key
   * may be shown again. Changes with observations' statuses, reasons and
   * interfaces, with agents coming and going, and with agents falling silent.
   */
  statusKey(): string {
    let silent = '';
    for (const [host, record] of this.hosts) {
      if (this.now() - record.heardAtMs > SILENT_AFTER_MS) silent += ` ${host}@${record.agent.heartbeat_at}`;
    }
    return `${this.statusVersion}${silent}`;
  }

  agents(): AgentRecord[] {
    return [...this.hosts.values()].map((record) => ({ ...record.agent }));
  }

  observation(host: string, kind: ResourceKind, id: string): StoredObservation | undefined {
    return this.hosts.get(host)?.observations.get(keyOf(kind, id));
  }

  /** Every observation of a resource, one per host that reported it. */
  observationsOf(kind: ResourceKind, id: string): StoredObservation[] {
    const found: StoredObservation[] = [];
    for (const record of this.hosts.values()) {
      const observation = record.observations.get(keyOf(kind, id));
      if (observation) found.push(observation);
    }
    return found;
  }

  /**
   * Whether host no longer carries a resource whose delete was accepted at
   * desired-state revision `since`: its agent is gone, or it reported a
   * revision at least that new without the resource.
   */
  released(host: string, kind: ResourceKind, id: string, since: number): boolean {
    const record = this.hosts.get(host);
    if (!record) return true;
    return record.agent.revision >= since && !record.observations.has(keyOf(kind, id));
  }
}
