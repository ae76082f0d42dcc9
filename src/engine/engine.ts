import {
  loadAddon, type EngineStats, type NativeEngine, type RingSettings, type WorkerPriority,
} from './native.js';
import type { Plan } from './plan.js';

export interface EngineOptions {
  /** Worker threads, 1 to 1024; more than one spreads each source over a PACKET_FANOUT_HASH group. */
  workers?: number;
  /** Default 'high' (nice -10): see WorkerPriority. Needs CAP_SYS_NICE; without it workers stay at nice 0. */
  priority?: WorkerPriority;
  /** The AF_PACKET ring of every source (default: TPACKET_V3, 16 blocks of 128 KiB, block timeout by source count). */
  ring?: RingSettings;
}

/**
 * The data path seen from JavaScript: `apply` a plan, read `stats`, `close`.
 * Packets never touch this thread; the native workers own every socket.
 */
export class Engine {
  private readonly native: NativeEngine;
  private closed = false;
  private applying: Promise<void> = Promise.resolve();
  /** Sinks of the last plan that are tap services on other hosts, by id: their host. */
  private remoteSinks = new Map<string, string>();
  /** Rules of the last plan into such sinks, by id: the host. */
  private remoteRules = new Map<string, string>();

  /** Throws a TypeError for invalid options, an Error when the engine cannot start (no descriptors or threads left). */
  constructor(options: EngineOptions = {}) {
    this.native = new (loadAddon().NativeEngine)({
      workers: options.workers ?? 1,
      priority: options.priority ?? 'high',
      ...(options.ring ? { ring: options.ring } : {}),
    });
  }

  /**
   * Makes the data path match the plan: opens what is new, closes what is gone,
   * re-opens what changed and leaves everything else running without loss.
   * What the plan check refuses is reported in the stats instead (see Plan);
   * only an unreadable plan rejects, changing nothing. Idempotent. Returns the
   * stats right after, so failures show at once, interfaces included.
   */
  async apply(plan: Plan): Promise<EngineStats> {
    if (this.closed) throw new Error('the engine is closed');
    const run = this.applying.then(() => this.native.apply(plan));
    this.applying = run.catch(() => undefined);
    await run;
    this.remoteSinks = new Map(plan.sinks.flatMap((sink) => (sink.kind === 'host' ? [[sink.id, sink.host] as const] : [])));
    this.remoteRules = new Map(plan.rules.flatMap((rule) => {
      const host = this.remoteSinks.get(rule.sinkId);
      return host === undefined ? [] : [[rule.id, host] as const];
    }));
    return this.stats();
  }

  stats(): EngineStats {
    return this.explained(this.native.stats());
  }

  /**
   * This engine reaches no other host (tunnels between agents come with
   * cluster mode): the native engine refuses such a sink, and the rules into
   * it, as of an unknown kind; say what it is instead.
   */
  private explained(stats: EngineStats): EngineStats {
    if (this.remoteSinks.size === 0) return stats;
    const reasonFor = (host: string) => `the tap service's port is on host ${host}, and this data path has no tunnel to other hosts`;
    return {
      ...stats,
      sinks: stats.sinks.map((sink) => {
        const host = this.remoteSinks.get(sink.id);
        return host === undefined ? sink : { ...sink, ok: false, reason: reasonFor(host) };
      }),
      // Only the sink's own refusal is reworded: a rule refused for another reason (a duplicate id) keeps it.
      rules: stats.rules.map((rule) => {
        const host = this.remoteRules.get(rule.id);
        return host === undefined || rule.reason !== "unknown sink kind 'host'" ? rule : { ...rule, reason: reasonFor(host) };
      }),
    };
  }

  /** Stops every worker; stats() keeps returning the final counters. */
  async close(): Promise<EngineStats> {
    if (!this.closed) {
      this.closed = true;
      await this.applying;
      this.native.close();
    }
    return this.stats();
  }
}

export { WORKER_PRIORITIES } from './native.js';
export type {
  EngineStats, InterfaceStats, PacketSourceStats, RingSettings, RuleStats, SinkStats, SourceStats,
  EndpointHealth, WorkerPriority,
} from './native.js';
export type * from './plan.js';
