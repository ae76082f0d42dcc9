/**
 * The agent's ObservationSink in cluster mode: its registration and its
 * observations as keys under PREFIX/v1/state/HOST/, every one tied to a
 * lease the agent keeps alive. When the agent stops, it revokes the lease;
 * when it dies or loses etcd for longer than the lease's TTL, the lease
 * expires: either way its keys vanish, and the control plane sees that the
 * host has no agent.
 *
 * A report writes only what changed since the last write etcd confirmed:
 * changed observations are put, released ones deleted, and the agent key
 * (with the revision the report applied) is put in the same transaction, or
 * in the last one when a report needs more than etcd's 128 operations. Rates
 * are computed here, between this agent's own reports, so that an unchanged
 * observation is not written again. The agent key is rewritten at least every
 * heartbeat interval, as Neutron's agents report their heartbeat.
 *
 * A lost lease (etcd said it expired, or no keepalive got through for twice
 * its TTL) is replaced by a new one and everything is written again.
 */
import type { Etcd3, Lease } from 'etcd3';
import type { Logger } from 'pino';

import type { AgentInfo, Counters, HostReport, Observation, ObservationSink } from '../model/observation.js';
import { timestamp } from '../store/store.js';
import { batches, commit, errorText, retryWarning, type WriteOp } from './etcd.js';
import type { Keyspace } from './keys.js';

export interface EtcdObservationsOptions {
  /** Lease TTL in seconds (default 10): how long the agent's keys outlive it. */
  ttlSeconds?: number;
  /** How often the agent key is rewritten when nothing else changed (default 10 s). */
  heartbeatMs?: number;
  logger: Logger;
}

/** What the agent key says. */
export interface AgentValue extends AgentInfo {
  started_at: string;
  heartbeat_at: string;
  /** The etcd revision of the desired state the last report applied; -1 before the first. */
  revision: number;
}

/** What an observation key says: the observation, when it was made, and its rates. */
export interface ObservationValue extends Observation {
  observed_at: string;
  rates?: { packets_per_second: number; bits_per_second: number };
}

const RETRY_MS = 1000;

export class EtcdObservations implements ObservationSink {
  private readonly ttl: number;
  private readonly heartbeatMs: number;
  private agent: AgentInfo | undefined;
  private startedAt = timestamp();
  private lastReport: HostReport | undefined;
  /** Observation values of the last report, by key. */
  private wanted = new Map<string, string>();
  /** What etcd holds under the current lease, as far as confirmed writes tell. */
  private written = new Map<string, string>();
  private agentWrittenAt = 0;
  private previousCounters = new Map<string, { counters: Counters; atMs: number }>();
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private writing: Promise<void> | undefined;
  private again = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private closing: Promise<void> | undefined;
  /** Leases granted so far (1 normally; more after a lease was lost). */
  leasesGranted = 0;
  private readonly writeFailed: ReturnType<typeof retryWarning>;
  /** Resolves once the registration is in etcd. */
  readonly registered: Promise<void>;
  private registeredResolve!: () => void;

  constructor(
    private readonly client: Etcd3,
    private readonly keys: Keyspace,
    options: EtcdObservationsOptions,
    private readonly logger = options.logger,
  ) {
    this.ttl = options.ttlSeconds ?? 10;
    this.heartbeatMs = options.heartbeatMs ?? 10_000;
    this.registered = new Promise((resolve) => { this.registeredResolve = resolve; });
    this.writeFailed = retryWarning(this.logger);
  }

  register(agent: AgentInfo): void {
    this.agent = agent;
    this.startedAt = timestamp();
    this.heartbeatTimer = setInterval(() => this.schedule(), this.heartbeatMs);
    this.heartbeatTimer.unref();
    this.schedule();
  }

  report(report: HostReport): void {
    if (this.stopped) return;
    const nowMs = performance.now();
    const at = timestamp();
    const wanted = new Map<string, string>();
    const counted = new Map<string, { counters: Counters; atMs: number }>();
    for (const observation of report.observations) {
      const key = this.keys.observation(report.host, observation.kind, observation.id);
      let rates: ObservationValue['rates'];
      if (observation.counters) {
        counted.set(key, { counters: observation.counters, atMs: nowMs });
        rates = ratesBetween(this.previousCounters.get(key), observation.counters, nowMs);
      }
      // observed_at changes only with the observation: an unchanged one is not written again.
      const body = JSON.stringify({ ...observation, ...(rates ? { rates } : {}) });
      const previous = this.written.get(key);
      const observedAt = previous !== undefined && withoutTime(previous) === body ? timeOf(previous) : at;
      wanted.set(key, JSON.stringify({ ...JSON.parse(body), observed_at: observedAt }));
    }
    this.previousCounters = counted;
    this.wanted = wanted;
    this.lastReport = report;
    this.schedule();
  }

  unregister(_host: string): void {
    void this.close();
  }

  /** Stops writing and revokes the lease: the agent's keys are gone at once. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopped = true;
      if (this.retryTimer) clearTimeout(this.retryTimer);
      if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
      await this.writing?.catch(() => undefined);
      const lease = this.lease;
      this.lease = undefined;
      if (lease) await lease.revoke().catch((error: unknown) => this.logger.warn({ err: errorText(error) }, 'cannot revoke the lease; the keys expire with it'));
    })();
    return this.closing;
  }

  /** The lease the keys are written with, once granted. */
  get currentLease(): string | undefined {
    return this.leaseId;
  }

  private schedule(): void {
    if (this.stopped || !this.agent) return;
    if (this.writing) {
      this.again = true;
      return;
    }
    this.writing = this.write().then(() => {
      this.writing = undefined;
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    }, (error: unknown) => {
      this.writing = undefined;
      this.again = false;
      if (this.stopped) return;
      this.writeFailed({ err: errorText(error) }, 'cannot write observations to etcd; retrying');
      if (isLeaseGone(error)) this.dropLease();
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        this.schedule();
      }, RETRY_MS);
    });
  }

  private dropLease(): void {
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    this.written = new Map();
    this.agentWrittenAt = 0;
    lease?.removeAllListeners();
    lease?.on('lost', () => undefined);
    lease?.release();
  }

  private async grantLease(): Promise<string> {
    if (this.lease && this.leaseId) return this.leaseId;
    const lease = this.client.lease(this.ttl);
    this.lease = lease;
    lease.on('lost', (error: Error) => {
      if (this.lease !== lease || this.stopped) return;
      this.logger.warn({ err: errorText(error) }, 'the agent\'s lease was lost; registering again with a new one');
      this.dropLease();
      this.schedule();
    });
    try {
      this.leaseId = await lease.grant();
    } catch (error) {
      if (this.lease === lease) this.dropLease();
      throw error;
    }
    this.leasesGranted += 1;
    return this.leaseId;
  }

  private async write(): Promise<void> {
    const agent = this.agent!;
    const lease = await this.grantLease();
    const ops: WriteOp[] = [];
    const changed = new Map<string, string | undefined>();
    for (const [key, value] of this.wanted) {
      if (this.written.get(key) !== value) {
        ops.push({ put: key, value, lease });
        changed.set(key, value);
      }
    }
    const agentKey = this.keys.agent(agent.host);
    for (const key of this.written.keys()) {
      if (key !== agentKey && !this.wanted.has(key)) {
        ops.push({ delete: key });
        changed.set(key, undefined);
      }
    }
    const record: Omit<AgentValue, 'heartbeat_at'> = {
      ...agent, started_at: this.startedAt, revision: this.lastReport?.revision ?? -1,
    };
    const previous = this.written.get(agentKey);
    const due = Date.now() - this.agentWrittenAt >= this.heartbeatMs;
    if (ops.length > 0 || previous === undefined || due || withoutHeartbeat(previous) !== JSON.stringify(record)) {
      const value = JSON.stringify({ ...record, heartbeat_at: timestamp() });
      // Last: the revision goes in with (or after) the observations it applies to.
      ops.push({ put: agentKey, value, lease });
      changed.set(agentKey, value);
    }
    if (ops.length === 0) return;
    for (const batch of batches(ops)) {
      await commit(this.client, batch);
      if (this.leaseId !== lease) return; // the lease was lost meanwhile: everything is written again
      for (const op of batch) {
        const key = 'delete' in op ? op.delete : op.put;
        const value = changed.get(key);
        if (value === undefined) this.written.delete(key);
        else this.written.set(key, value);
      }
    }
    if (changed.has(agentKey)) {
      this.agentWrittenAt = Date.now();
      this.registeredResolve();
    }
  }
}

function ratesBetween(previous: { counters: Counters; atMs: number } | undefined, current: Counters, nowMs: number): ObservationValue['rates'] {
  if (!previous) return undefined;
  const seconds = (nowMs - previous.atMs) / 1000;
  const packets = current.packets - previous.counters.packets;
  const bytes = current.bytes - previous.counters.bytes;
  // A counter that went backwards was restarted: no rate this time.
  if (seconds <= 0 || packets < 0 || bytes < 0) return undefined;
  return { packets_per_second: Math.round((packets / seconds) * 100) / 100, bits_per_second: Math.round((bytes * 8) / seconds) };
}

function withoutTime(value: string): string {
  const { observed_at: _, ...rest } = JSON.parse(value) as ObservationValue;
  return JSON.stringify(rest);
}

function timeOf(value: string): string {
  return (JSON.parse(value) as ObservationValue).observed_at;
}

function withoutHeartbeat(value: string): string {
  const { heartbeat_at: _, ...rest } = JSON.parse(value) as AgentValue;
  return JSON.stringify(rest);
}

function isLeaseGone(error: unknown): boolean {
  const text = errorText(error);
  return /lease not found|requested lease not found|EtcdLeaseInvalid|lease.*expired/i.test(text) || (error as { name?: string })?.name === 'EtcdLeaseInvalidError';
}
