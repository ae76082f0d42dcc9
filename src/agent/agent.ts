/**
 * The agent: makes the data path match the store and reports back what it
 * does. One reconcile reads a snapshot, looks at every port's interface,
 * applies the plan, writes statuses, and removes the rows whose delete the
 * data path has now carried out. It runs after every change (coalesced) and
 * on a timer, so an interface that vanishes or comes back shows in the
 * statuses without anyone asking.
 */
import type { Logger } from 'pino';

import type { EngineStats, InterfaceInfo, Plan } from '../engine/engine.js';
import type { ResourceKind } from '../model/resources.js';
import type { Snapshot, Store } from '../store/store.js';
import { buildPlan, deriveStatuses, type InterfaceObservation } from './plan-builder.js';

/** What the agent needs from the data path: the Engine fits it. */
export interface DataPath {
  apply(plan: Plan): Promise<EngineStats>;
  stats(): EngineStats;
}

export type InterfaceProbe = (ifname: string, netns?: string) => InterfaceInfo;

export interface AgentOptions {
  store: Store;
  dataPath: DataPath;
  probe: InterfaceProbe;
  logger: Logger;
  /** How often to look again without being asked (interfaces come and go). */
  intervalMs?: number;
}

// Children before parents, so a purge never leaves a row pointing at nothing.
const PURGE_ORDER: ReadonlyArray<[ResourceKind, keyof Snapshot]> = [
  ['tap_flow', 'tapFlows'], ['tap_mirror', 'tapMirrors'], ['tap_service', 'tapServices'], ['port', 'ports'],
];

export class Agent {
  private readonly options: Required<AgentOptions>;
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The last apply failure logged: a refused plan is retried every tick, but logged once. */
  private lastFailure: string | undefined;
  private lastSnapshot: Snapshot = { ports: [], tapServices: [], tapFlows: [], tapMirrors: [] };

  constructor(options: AgentOptions) {
    this.options = { intervalMs: 1000, ...options };
  }

  start(): Promise<void> {
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

  /** Stops the timer and waits for the reconcile in progress, if any. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.queued;
    await this.running;
  }

  /** The state the last reconcile worked from: labels for the metrics. */
  get snapshot(): Snapshot {
    return this.lastSnapshot;
  }

  private async reconcile(): Promise<void> {
    const { store, logger } = this.options;
    try {
      const snapshot = store.snapshot();
      const interfaces = this.observeInterfaces(snapshot);
      const { stats, applied, mirrorsExcluded } = await this.applyPlan(snapshot);
      const updates = deriveStatuses(snapshot, stats, interfaces, mirrorsExcluded);
      if (updates.length > 0) {
        store.setStatuses(updates);
        for (const update of updates) {
          logger.info({ kind: update.kind, id: update.id, status: update.status, reason: update.reason ?? undefined }, 'status');
        }
      }
      if (applied) this.purgeReleased(snapshot);
      this.lastSnapshot = snapshot;
    } catch (error) {
      // The store is closing or broken: log and let the next tick try again.
      logger.error({ err: error }, 'reconcile failed');
    }
  }

  /**
   * Applies the plan of a snapshot. If the engine refuses it and it has tunnel
   * sinks (the newest and most environment-dependent part of a plan), applies
   * it again without tap mirrors, so local mirroring keeps running.
   */
  private async applyPlan(snapshot: Snapshot): Promise<{
    stats: EngineStats | { failure: string }; applied: boolean; mirrorsExcluded?: string;
  }> {
    const plan = buildPlan(snapshot);
    try {
      const stats = await this.options.dataPath.apply(plan);
      this.lastFailure = undefined;
      return { stats, applied: true };
    } catch (error) {
      const failure = `the data path refused the plan: ${(error as Error).message}`;
      this.logFailureOnce(failure, error, plan);
      if (!plan.sinks.some((sink) => sink.kind !== 'port')) return { stats: { failure }, applied: false };
      const withoutMirrors = buildPlan(snapshot, { withoutMirrors: true });
      try {
        return { stats: await this.options.dataPath.apply(withoutMirrors), applied: true, mirrorsExcluded: failure };
      } catch (retryError) {
        this.logFailureOnce(`${failure}; without tap mirrors: ${(retryError as Error).message}`, retryError, withoutMirrors);
        return { stats: { failure }, applied: false };
      }
    }
  }

  /** A refused plan is retried every tick; say so once per distinct failure, not every second. */
  private logFailureOnce(failure: string, error: unknown, plan: Plan): void {
    if (failure !== this.lastFailure) this.options.logger.error({ err: error, plan }, 'apply failed');
    this.lastFailure = failure;
  }

  private observeInterfaces(snapshot: Snapshot): Map<string, InterfaceObservation> {
    const seen = new Map<string, InterfaceObservation>();
    for (const port of snapshot.ports) {
      if (port.status === 'PENDING_DELETE') continue;
      try {
        const info = this.options.probe(port.interface, port.netns ?? undefined);
        seen.set(port.id, { ok: true, up: info.up, mac: info.mac });
      } catch (error) {
        seen.set(port.id, { ok: false, reason: (error as Error).message });
      }
    }
    return seen;
  }

  /** The plan just applied left out every PENDING_DELETE row of the snapshot: the data path has let go of them. */
  private purgeReleased(snapshot: Snapshot): void {
    const { store, logger } = this.options;
    store.transaction(() => {
      for (const [kind, key] of PURGE_ORDER) {
        const ids = snapshot[key].filter((row) => row.status === 'PENDING_DELETE').map((row) => row.id);
        if (ids.length === 0) continue;
        const removed = store.purge(kind, ids);
        if (removed > 0) logger.info({ kind, ids }, 'deleted');
      }
    });
  }
}
