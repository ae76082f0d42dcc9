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
import { buildPlan, observe, type DataPathStats } from './plan-builder.js';

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
      } else {
        this.changed = false;
        const previous = this.applied;
        desired = this.options.desired.snapshot(host);
        stats = await this.applyPlan(desired);
        // A refused plan leaves the previous one running: report that revision, so that no
        // delete counts as carried out while the data path may still carry it.
        if ('failure' in stats && previous) {
          this.report(previous.revision, observe(desired, host, stats));
          return;
        }
      }
      this.report(desired.revision, observe(desired, host, stats));
    } catch (error) {
      // The desired state could not be read (the store is closing): the next tick tries again.
      logger.error({ err: error }, 'reconcile failed');
    }
  }

  private report(revision: number, observations: Observation[]): void {
    const statuses = new Map<string, string>();
    for (const { kind, id, status, reason } of observations) {
      const key = `${kind}/${id}`;
      const text = reason ? `${status}: ${reason}` : status;
      statuses.set(key, text);
      if (this.lastStatuses.get(key) !== text) this.options.logger.info({ kind, id, status, reason: reason ?? undefined }, 'status');
    }
    this.lastStatuses = statuses;
    this.options.observations.report({ host: this.options.host, revision, observations });
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
