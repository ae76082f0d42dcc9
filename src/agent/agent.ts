/**
 * The agent of one host: makes its data path match the host's desired state
 * and reports what the data path does. It knows the control plane only
 * through two interfaces: a DesiredStateSource (a snapshot, and word of
 * changes) and an ObservationSink (its reports). One reconcile reads the
 * snapshot, applies its plan, and reports an observation of every resource.
 * It runs after every change (coalesced) and on a timer, so counters, vanished
 * interfaces and ones that came back show without anyone asking; a tick with
 * no change only reads the data path's stats.
 */
import type { Logger } from 'pino';

import type { Plan } from '../engine/plan.js';
import type { DesiredState, DesiredStateSource, Observation, ObservationSink } from '../model/observation.js';
import { buildPlan, Observer, type DataPathStats } from './plan-builder.js';

/** What the agent needs from a data path: the Engine fits it. */
export interface DataPath {
  apply(plan: Plan): Promise<DataPathStats>;
  stats(): DataPathStats;
}

export interface AgentOptions {
  host: string;
  desired: DesiredStateSource;
  observations: ObservationSink;
  dataPath: DataPath;
  /** Named in the agent's registration (packet, bpf). */
  datapathName?: string;
  underlayIp?: string;
  logger: Logger;
  /** How often to look again without being asked (counters, interfaces that come and go). */
  intervalMs?: number;
}

export class Agent {
  private readonly options: AgentOptions & { intervalMs: number };
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  /** The desired state the data path runs; undefined until a plan of it was applied. */
  private applied: DesiredState | undefined;
  /** Set when the source told of a change: the next reconcile reads a new snapshot. */
  private changed = true;
  /** The last apply failure logged: a refused plan is retried every tick, but logged once. */
  private lastFailure: string | undefined;
  /** What the last report said of each resource, to log changes only. */
  private lastStatuses = new Map<string, string>();
  /** Observes the applied desired state, keeping what it saw between ticks. */
  private observer: Observer | undefined;
  /** The data path's stats the last observations were made from. */
  private lastStats: DataPathStats | undefined;
  /** The last complete report was of the observer's desired state: an update may follow it. */
  private reportedInFull = false;

  constructor(options: AgentOptions) {
    this.options = { intervalMs: 1000, ...options };
  }

  /** Registers with the control plane, reaches the desired state once, then keeps at it. */
  start(): Promise<void> {
    const { host, observations, desired } = this.options;
    observations.register({
      host,
      datapath: this.options.datapathName ?? 'packet',
      ...(this.options.underlayIp ? { underlay_ip: this.options.underlayIp } : {}),
    });
    this.unsubscribe = desired.subscribe(host, () => {
      this.changed = true;
      void this.trigger();
    });
    const first = this.trigger();
    this.timer = setInterval(() => void this.trigger(), this.options.intervalMs);
    this.timer.unref();
    return first;
  }

  /**
   * Asks for a reconcile that starts after this call. Calls that arrive while
   * one runs share the next one. Resolves once that reconcile has finished.
   */
  trigger(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.queued) return this.queued;
    const previous = this.running ?? Promise.resolve();
    const next = previous.then(() => {
      this.queued = undefined;
      const run = this.reconcile();
      this.running = run;
      return run;
    });
    this.queued = next;
    return next;
  }

  /** Stops listening and the timer, waits for the reconcile in progress, and unregisters. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearInterval(this.timer);
    await this.queued;
    await this.running;
    this.options.observations.unregister(this.options.host);
  }

  private async reconcile(): Promise<void> {
    const { host, logger } = this.options;
    try {
      let desired = this.applied;
      let stats: DataPathStats | { failure: string };
      if (desired && !this.changed) {
        // Nothing changed: no snapshot, no apply; the counters and health are fresh from the data path.
        stats = this.options.dataPath.stats();
        const observer = this.observerOf(desired);
        if (this.reportedInFull && this.options.observations.update) {
          // Only what changed, made again only where the data path's stats changed (none when idle).
          const { changed, gone } = stats === this.lastStats ? { changed: [], gone: false } : observer.changes(stats);
          this.lastStats = stats;
          if (!gone) {
            this.update(desired.revision, changed);
            return;
          }
        } else {
          observer.changes(stats);
          this.lastStats = stats;
        }
        this.report(desired.revision, observer.observations(), true);
        return;
      }
      this.changed = false;
      const previous = this.applied;
      desired = this.options.desired.snapshot(host);
      stats = await this.applyPlan(desired);
      const observer = new Observer(desired, host);
      const observations = observer.observe(stats);
      if ('failure' in stats) {
        // A refused plan leaves the previous one running: report that revision, so that no
        // delete counts as carried out while the data path may still carry it.
        this.report(previous ? previous.revision : desired.revision, observations, false);
        return;
      }
      this.observer = observer;
      this.lastStats = stats;
      this.report(desired.revision, observations, true);
    } catch (error) {
      // The desired state could not be read (the store is closing): the next tick tries again.
      logger.error({ err: error }, 'reconcile failed');
    }
  }

  /** The observer of this desired state (the one last applied). */
  private observerOf(desired: DesiredState): Observer {
    if (this.observer?.desired !== desired) {
      this.observer = new Observer(desired, this.options.host);
      this.lastStats = undefined;
      this.reportedInFull = false;
    }
    return this.observer;
  }

  /** A complete report. ofObserver: of the observer's desired state, so that updates may follow. */
  private report(revision: number, observations: Observation[], ofObserver: boolean): void {
    const statuses = new Map<string, string>();
    for (const { kind, id, status, reason } of observations) {
      const key = `${kind}/${id}`;
      const text = reason ? `${status}: ${reason}` : status;
      statuses.set(key, text);
      if (this.lastStatuses.get(key) !== text) this.options.logger.info({ kind, id, status, reason: reason ?? undefined }, 'status');
    }
    this.lastStatuses = statuses;
    this.options.observations.report({ host: this.options.host, revision, observations });
    this.reportedInFull = ofObserver;
  }

  /** Only what changed since the last report or update (a heartbeat when nothing did). */
  private update(revision: number, changed: Observation[]): void {
    for (const { kind, id, status, reason } of changed) {
      const key = `${kind}/${id}`;
      const text = reason ? `${status}: ${reason}` : status;
      if (this.lastStatuses.get(key) !== text) this.options.logger.info({ kind, id, status, reason: reason ?? undefined }, 'status');
      this.lastStatuses.set(key, text);
    }
    this.options.observations.update!({ host: this.options.host, revision, changed });
  }

  private async applyPlan(desired: DesiredState): Promise<DataPathStats | { failure: string }> {
    const plan = buildPlan(desired, this.options.host);
    try {
      const stats = await this.options.dataPath.apply(plan);
      this.applied = desired;
      this.lastFailure = undefined;
      return stats;
    } catch (error) {
      // The next tick reads and applies again.
      this.changed = true;
      const failure = `the data path refused the plan: ${(error as Error).message}`;
      if (failure !== this.lastFailure) this.options.logger.error({ err: error, plan }, 'apply failed');
      this.lastFailure = failure;
      return { failure };
    }
  }
}
