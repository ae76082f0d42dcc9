import {
  loadAddon, type EngineStats, type EngineStatsChanges, type NativeEngine, type RingSettings, type WorkerPriority,
} from './native.js';
import { Collector, type CollectorOptions } from './collector.js';
import { mergeStats, openBpf, rebaseSinks, reuseUnchanged, splitPlan, type BpfAttach, type SinkBaselines, type SplitPlan } from './bpf.js';
import type { NativeBpf } from './native.js';
import type { HostSinkPlan, Plan, SinkPlan, TerminationPlan } from './plan.js';

export interface EngineOptions {
  /** Worker threads, 1 to 1024; more than one spreads each source over a PACKET_FANOUT_HASH group. */
  workers?: number;
  /** Default 'high' (nice -10): see WorkerPriority. Needs CAP_SYS_NICE; without it workers stay at nice 0. */
  priority?: WorkerPriority;
  /** The AF_PACKET ring of every source (default: TPACKET_V3, 16 blocks of 128 KiB, block timeout by source count). */
  ring?: RingSettings;
  /**
   * 'packet' (the default): AF_PACKET rings and worker threads. 'bpf': tc
   * programs copy frames in the kernel (bpf_clone_redirect) for every rule
   * they can serve — a port sink in the source's namespace — and the rest
   * runs on AF_PACKET, each rule's stats saying which path and why
   * (docs/engine.md, "The bpf data path"). The constructor throws when BPF
   * cannot be used here (no privileges, no BPF in the kernel). 'auto': bpf
   * where it can run, else packet, with the reason in `datapathFallback`.
   */
  datapath?: 'packet' | 'bpf' | 'auto';
  /** The bpf data path's attachment: tcx links where the kernel has them (default 'auto'), or force one kind. */
  bpfAttach?: BpfAttach;
}

/** A tunnel from peer agents into a local tap service (Plan.terminations), as it runs. */
export interface TerminationStats {
  id: string;
  ok: boolean;
  reason?: string;
  /** Tunnel packets of this key received. */
  received: number;
  /** Inner frames sent out of the tap service's port. */
  packets: number;
  bytes: number;
  /** Frames that could not be sent (send errors, too large for the port). */
  errors: number;
  /** Packets of this tunnel that were not well-formed GRE. */
  malformed: number;
}

/** The native engine's stats, and the tunnel terminations this wrapper runs beside it. */
export type DataPathEngineStats = EngineStats & { terminations: TerminationStats[] };

interface RunningTermination {
  /** What it was opened with, to tell a changed termination. */
  spec: string;
  options: CollectorOptions;
  collector?: Collector;
  reason?: string;
  /** When to try again after a failure to open (monotonic ms). */
  retryAt: number;
}

const TERMINATION_RETRY_MS = 1000;

/**
 * The data path seen from JavaScript: `apply` a plan, read `stats`, `close`.
 * Packets never touch this thread; the native workers own every socket.
 *
 * Cluster mode adds two things the addon does not know: a sink into a tap
 * service on another host (kind 'host') runs as a sequenced GRE tunnel to the
 * peer agent's underlay address, and the plan's terminations run as
 * collectors (native threads) that put the frames peers send into a local tap
 * service's port.
 */
export class Engine {
  private readonly native: NativeEngine;
  /** The kernel data path, with datapath 'bpf'. */
  private readonly bpf: NativeBpf | undefined;
  /** The last plan and how it was split between the two data paths (datapath 'bpf'). */
  private split: { plan: Plan; split: SplitPlan } | undefined;
  private lastMerged: EngineStats | undefined;
  /** Each kernel rule's counters when it took its present sink (datapath 'bpf'). */
  private readonly sinkBaselines: SinkBaselines = new Map();
  private closed = false;
  /** The data path this engine runs: 'bpf' (with AF_PACKET for what the kernel cannot serve) or 'packet'. */
  readonly datapath: 'packet' | 'bpf';
  /** With datapath 'auto' on a host where BPF cannot run: why this engine runs 'packet'. */
  readonly datapathFallback: string | undefined;
  private applying: Promise<void> = Promise.resolve();
  /** Sinks of the last plan that are tap services on other hosts and cannot run: their reason. */
  private remoteSinks = new Map<string, string>();
  /** Rules of the last plan into such sinks, by id: the reason. */
  private remoteRules = new Map<string, string>();
  private readonly terminations = new Map<string, RunningTermination>();
  /** Terminations the last plan asked for that cannot run at all, with the reason. */
  private refusedTerminations = new Map<string, string>();
  /** The native stats as last read: patched with what changed, so that unchanged entries (and lists) stay the same objects. */
  private nativeStats: EngineStats | undefined;
  private lastExplained: { input: EngineStats; remoteSinks: Map<string, string>; output: EngineStats } | undefined;
  private lastTerminations: TerminationStats[] = [];
  private lastStats: DataPathEngineStats | undefined;

  /** Throws a TypeError for invalid options, an Error when the engine cannot start (no descriptors or threads left). */
  constructor(options: EngineOptions = {}) {
    if (options.datapath !== undefined && !['packet', 'bpf', 'auto'].includes(options.datapath)) {
      throw new TypeError(`the engine option 'datapath' must be packet, bpf or auto, not '${String(options.datapath)}'`);
    }
    // First: a host without BPF fails here, before any thread starts.
    let fallback: string | undefined;
    if (options.datapath === 'auto') {
      try {
        this.bpf = openBpf(options.bpfAttach);
      } catch (error) {
        if (error instanceof TypeError) throw error;
        fallback = (error as Error).message;
      }
    } else {
      this.bpf = options.datapath === 'bpf' ? openBpf(options.bpfAttach) : undefined;
    }
    this.datapath = this.bpf ? 'bpf' : 'packet';
    this.datapathFallback = fallback;
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
  async apply(plan: Plan): Promise<DataPathEngineStats> {
    if (this.closed) throw new Error('the engine is closed');
    const { terminations = [], ...rest } = plan;
    let nativePlan: Plan = { ...rest, sinks: plan.sinks.map(tunnelToPeer) };
    const bpf = this.bpf;
    let run: Promise<void>;
    if (bpf) {
      // The same plan, another backend: the kernel takes what it can serve.
      const split = splitPlan(nativePlan);
      nativePlan = split.packet;
      const packetPlan = nativePlan;
      run = this.applying.then(async () => {
        // A rule that takes another sink counts for it from here.
        rebaseSinks(this.split?.plan, plan, bpf.stats(), this.sinkBaselines);
        await bpf.apply(split.bpf);
        await this.native.apply(packetPlan);
        this.split = { plan: { ...rest, sinks: plan.sinks.map(tunnelToPeer) }, split };
      });
    } else {
      run = this.applying.then(() => this.native.apply(nativePlan));
    }
    this.applying = run.catch(() => undefined);
    await run;
    this.remoteSinks = new Map(nativePlan.sinks.flatMap((sink) => (sink.kind === 'host' ? [[sink.id, unreachableReason(sink)] as const] : [])));
    this.remoteRules = new Map(plan.rules.flatMap((rule) => {
      const reason = this.remoteSinks.get(rule.sinkId);
      return reason === undefined ? [] : [[rule.id, reason] as const];
    }));
    this.terminate(plan, terminations);
    return this.stats();
  }

  /**
   * The stats right now. What did not change since the previous call is the
   * same object as then — an entry, a list, or the whole result when nothing
   * changed — so that a reader can tell what changed by identity, and an idle
   * engine costs next to nothing to read. Do not modify what it returns.
   */
  stats(): DataPathEngineStats {
    const native = this.withBpf(this.explained(this.readNative()));
    const terminations = this.terminationStats();
    const last = this.lastStats;
    if (last && native.sources === last.sources && native.sinks === last.sinks && native.rules === last.rules
      && native.interfaces === last.interfaces && terminations === last.terminations) return last;
    this.lastStats = { ...native, terminations };
    return this.lastStats;
  }

  /** With datapath 'bpf': the kernel path's counters merged in, unchanged entries kept as the same objects. */
  private withBpf(packet: EngineStats): EngineStats {
    if (!this.bpf || !this.split) return packet;
    const merged = mergeStats(this.split.plan, this.split.split, packet, this.bpf.stats(), this.sinkBaselines);
    this.lastMerged = reuseUnchanged(merged, this.lastMerged);
    return this.lastMerged;
  }

  /** The native stats, converted only where they changed since the last read. */
  private readNative(): EngineStats {
    const changes: EngineStatsChanges = this.native.statsChanges();
    const last = this.nativeStats;
    if (changes.full || !last) {
      const { full: _, ...stats } = changes as { full: true } & EngineStats;
      this.nativeStats = stats;
      return stats;
    }
    const patched = <T>(list: T[], changed: Array<[number, T]>): T[] => {
      if (changed.length === 0) return list;
      const copy = list.slice();
      for (const [at, entry] of changed) copy[at] = entry;
      return copy;
    };
    const sources = patched(last.sources, changes.sources);
    const sinks = patched(last.sinks, changes.sinks);
    const rules = patched(last.rules, changes.rules);
    const interfaces = patched(last.interfaces, changes.interfaces);
    if (sources === last.sources && sinks === last.sinks && rules === last.rules && interfaces === last.interfaces) return last;
    this.nativeStats = { sources, sinks, rules, interfaces };
    return this.nativeStats;
  }

  /**
   * A sink into another host without a tunnel to it: the native engine
   * refuses it, and the rules into it, as of an unknown kind; say what it is
   * instead.
   */
  private explained(stats: EngineStats): EngineStats {
    if (this.remoteSinks.size === 0) return stats;
    const last = this.lastExplained;
    if (last && last.input === stats && last.remoteSinks === this.remoteSinks) return last.output;
    const output = this.explainedAnew(stats);
    this.lastExplained = { input: stats, remoteSinks: this.remoteSinks, output };
    return output;
  }

  private explainedAnew(stats: EngineStats): EngineStats {
    return {
      ...stats,
      sinks: stats.sinks.map((sink) => {
        const reason = this.remoteSinks.get(sink.id);
        return reason === undefined ? sink : { ...sink, ok: false, reason };
      }),
      // Only the sink's own refusal is reworded: a rule refused for another reason (a duplicate id) keeps it.
      rules: stats.rules.map((rule) => {
        const reason = this.remoteRules.get(rule.id);
        return reason === undefined || rule.reason !== "unknown sink kind 'host'" ? rule : { ...rule, reason };
      }),
    };
  }

  /** Opens, keeps or closes a collector per termination of the plan. */
  private terminate(plan: Plan, wanted: readonly TerminationPlan[]): void {
    const refused = new Map<string, string>();
    const keep = new Set<string>();
    for (const termination of wanted) {
      const sink = plan.sinks.find((candidate) => candidate.id === termination.sinkId);
      if (!sink || sink.kind !== 'port') {
        refused.set(termination.id, `the tunnel into it names no port sink '${termination.sinkId}'`);
        continue;
      }
      const options: CollectorOptions = {
        key: termination.key, toIfname: sink.ifname, ...(sink.netns === undefined ? {} : { toNetns: sink.netns }),
      };
      const spec = JSON.stringify(options);
      keep.add(termination.id);
      const running = this.terminations.get(termination.id);
      if (running?.spec === spec) continue;
      running?.collector?.close();
      this.terminations.set(termination.id, { spec, options, retryAt: 0 });
    }
    for (const [id, running] of this.terminations) {
      if (keep.has(id)) continue;
      running.collector?.close();
      this.terminations.delete(id);
    }
    this.refusedTerminations = refused;
    this.openTerminations();
  }

  /** Opens what is not open yet; one that failed is tried again after a second. */
  private openTerminations(): void {
    if (this.closed) return;
    const now = performance.now();
    for (const running of this.terminations.values()) {
      if (running.collector || now < running.retryAt) continue;
      try {
        running.collector = new Collector(running.options);
        delete running.reason;
      } catch (error) {
        running.reason = `cannot terminate the tunnel from other hosts: ${(error as Error).message}`;
        running.retryAt = now + TERMINATION_RETRY_MS;
      }
    }
  }

  /** The terminations' stats; the previous list (and entries) again when nothing changed. */
  private terminationStats(): TerminationStats[] {
    const stats = this.terminationStatsAnew();
    const last = this.lastTerminations;
    const same = (a: TerminationStats, b: TerminationStats | undefined) => b !== undefined && a.id === b.id && a.ok === b.ok
      && a.reason === b.reason && a.received === b.received && a.packets === b.packets && a.bytes === b.bytes
      && a.errors === b.errors && a.malformed === b.malformed;
    let changed = stats.length !== last.length;
    for (let i = 0; i < stats.length; i += 1) {
      if (same(stats[i]!, last[i])) stats[i] = last[i]!;
      else changed = true;
    }
    if (!changed) return last;
    this.lastTerminations = stats;
    return stats;
  }

  private terminationStatsAnew(): TerminationStats[] {
    this.openTerminations();
    const stats: TerminationStats[] = [];
    for (const [id, reason] of this.refusedTerminations) stats.push({ id, ok: false, reason, received: 0, packets: 0, bytes: 0, errors: 0, malformed: 0 });
    for (const [id, running] of this.terminations) {
      const counted = running.collector?.stats();
      stats.push({
        id,
        ok: running.collector !== undefined,
        ...(running.reason === undefined ? {} : { reason: running.reason }),
        received: (counted?.accepted ?? 0) + (counted?.malformed ?? 0),
        packets: counted?.written ?? 0,
        bytes: counted?.writtenBytes ?? 0,
        errors: (counted?.outputErrors ?? 0) + (counted?.oversize ?? 0),
        malformed: counted?.malformed ?? 0,
      });
    }
    return stats;
  }

  /** Stops every worker and collector; stats() keeps returning the final counters. */
  async close(): Promise<DataPathEngineStats> {
    if (!this.closed) {
      this.closed = true;
      await this.applying;
      this.native.close();
      // Detaches every tc program: nothing of tapas stays on the interfaces.
      this.bpf?.close();
      for (const running of this.terminations.values()) running.collector?.close();
    }
    return this.stats();
  }
}

/** A sink into a tap service on another host, as the native engine runs it: a sequenced GRE tunnel, when it can. */
function tunnelToPeer(sink: SinkPlan): SinkPlan {
  if (sink.kind !== 'host' || sink.remoteIp === undefined || sink.key === undefined) return sink;
  return { id: sink.id, kind: 'gre', remoteIp: sink.remoteIp, key: sink.key, sequence: true };
}

function unreachableReason(sink: HostSinkPlan): string {
  if (sink.key !== undefined && sink.remoteIp === undefined) {
    return `the tap service's port is on host ${sink.host}, whose underlay address is not known (its agent has not registered yet)`;
  }
  return `the tap service's port is on host ${sink.host}, and this data path has no tunnel to other hosts`;
}

/**
 * Compiles a pcap-filter expression as the engine will (libpcap, Ethernet
 * frames): null when it compiles, else libpcap's message (pcap_geterr). The
 * API checks a tap flow's or tap mirror's `filter` with it.
 */
export function compileFilter(expression: string): string | null {
  return loadAddon().compileFilter(expression);
}

export { WORKER_PRIORITIES } from './native.js';
export type {
  EngineStats, InterfaceStats, PacketSourceStats, RingSettings, RuleStats, SinkStats, SourceStats,
  EndpointHealth, WorkerPriority,
} from './native.js';
export type * from './plan.js';
