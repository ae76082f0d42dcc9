/**
 * The bpf data path (issue 12, first slice): the same plan, another backend.
 * `splitPlan` gives the kernel's tc programs the rules they can serve (a
 * port sink in the source's network namespace, at most 4 VLAN ranges) and
 * leaves every other rule on the AF_PACKET engine, saying why; `mergeStats`
 * puts both back into the one stats shape of the plan.
 */
import { bpfObjectPath, loadAddon, type EngineStats, type NativeBpf, type NativeBpfPlan, type NativeBpfStats, type RuleStats, type SinkStats, type SourceStats } from './native.js';
import type { Plan, RulePlan } from './plan.js';
import { canonicalNetns } from '../model/netns.js';
import { isIP } from 'node:net';

/** How the bpf data path attaches: tcx links where the kernel has them (Linux 6.6), else cls_bpf on clsact. */
export type BpfAttach = 'auto' | 'tcx' | 'tc';

/** VLAN ranges one rule of the tc program holds (TAPAS_BPF_MAX_VLAN_RANGES in native/bpf/mirror.h). */
const MAX_VLAN_RANGES = 4;

export interface SplitPlan {
  /** What the AF_PACKET engine runs: the plan without the rules the kernel serves, nor their sources when no other rule needs them. */
  packet: Plan;
  bpf: NativeBpfPlan;
  /** Rules left on the AF_PACKET path, with the reason. */
  fallback: Map<string, string>;
  /** Sources only the bpf path serves (not in the packet plan). */
  bpfSources: Set<string>;
}

/** A netns spelling compared by its canonical spelling (`/run/netns//N/` is N); omitted and '' are the engine's own. The loader checks the namespaces themselves. */
const nsOf = (netns: string | undefined) => canonicalNetns(netns ?? '');

export function splitPlan(plan: Plan): SplitPlan {
  const count = <T extends { id: string }>(list: readonly T[]) => {
    const seen = new Map<string, number>();
    for (const entry of list) seen.set(entry.id, (seen.get(entry.id) ?? 0) + 1);
    return seen;
  };
  const sourceIds = count(plan.sources);
  const sinkIds = count(plan.sinks);
  const ruleIds = count(plan.rules);
  const fallback = new Map<string, string>();
  const served: RulePlan[] = [];
  // A tap service port that is also a plan source (with rules or without) is a loop the AF_PACKET engine refuses.
  const sourcePorts = new Set(plan.sources.map((s) => `${nsOf(s.netns)}\0${s.ifname}`));
  for (const rule of plan.rules) {
    const source = plan.sources.find((s) => s.id === rule.sourceId);
    const sink = plan.sinks.find((s) => s.id === rule.sinkId);
    // What the plan check refuses stays with the AF_PACKET engine, which reports it as ever.
    let reason: string | undefined;
    if (ruleIds.get(rule.id) !== 1 || sourceIds.get(rule.sourceId) !== 1 || sinkIds.get(rule.sinkId) !== 1 || !source || !sink) {
      reason = 'the plan check refuses it';
    } else if (sink.kind === 'gre' || sink.kind === 'erspan') {
      if (isIP(sink.remoteIp) !== 4) reason = `the bpf data path sends ${sink.kind.toUpperCase()} to IPv4 collectors only`;
      else if (sink.kind === 'gre' && sink.truncate) reason = 'the bpf data path does not cut GRE copies to the path MTU';
      else if (sink.kind === 'gre' && sink.sequence) reason = 'the bpf data path does not number GRE packets (sequence)';
      else if (nsOf(sink.netns) !== nsOf(source.netns)) {
        reason = "the tunnel's underlay is in another network namespace than the source (a bpf clone stays in its namespace)";
      }
    } else if (sink.kind !== 'port') {
      reason = sink.kind === 'file' ? 'the bpf data path does not write files'
        : `the bpf data path does not send to ${sink.kind === 'host' ? 'other hosts' : `${sink.kind.toUpperCase()} tunnels`} yet`;
    } else if (sourcePorts.has(`${nsOf(sink.netns)}\0${sink.ifname}`)) {
      reason = 'the plan check refuses it';
    } else if (nsOf(sink.netns) !== nsOf(source.netns)) {
      reason = 'the tap service port is in another network namespace than the source (a bpf clone stays in its namespace)';
    } else if ((rule.vlans?.length ?? 0) > MAX_VLAN_RANGES) {
      reason = `more than ${MAX_VLAN_RANGES} VLAN ranges`;
    } else if (rule.vlans?.some(([low, high]) => low > high)) {
      reason = 'the plan check refuses it';
    } else if (rule.filter !== undefined || (rule.sampleRate ?? 1) > 1 || rule.snaplen !== undefined) {
      reason = 'the bpf data path does not filter, sample or cut copies yet';
    }
    if (reason === undefined) served.push(rule);
    else fallback.set(rule.id, reason);
  }
  const packetRuleSources = new Set(plan.rules.filter((r) => fallback.has(r.id)).map((r) => r.sourceId));
  const bpfRuleSources = new Set(served.map((r) => r.sourceId));
  const bpfSources = new Set([...bpfRuleSources].filter((id) => !packetRuleSources.has(id)));
  const sinks = new Map(plan.sinks.map((s) => [s.id, s]));
  return {
    packet: {
      ...plan,
      sources: plan.sources.filter((s) => !bpfSources.has(s.id)),
      rules: plan.rules.filter((r) => fallback.has(r.id)),
    },
    bpf: {
      sources: plan.sources.filter((s) => bpfRuleSources.has(s.id))
        .map((s) => ({ id: s.id, ifname: s.ifname, ...(s.netns === undefined ? {} : { netns: s.netns }) })),
      rules: served.map((rule) => {
        const sink = sinks.get(rule.sinkId)!;
        if (sink.kind !== 'port' && sink.kind !== 'gre' && sink.kind !== 'erspan') throw new Error('unreachable: only port, GRE and ERSPAN II sinks are served');
        return {
          id: rule.id, sourceId: rule.sourceId, direction: rule.direction,
          ...(sink.kind === 'port' ? { sinkIfname: sink.ifname }
            : sink.kind === 'gre' ? { tunnelRemote: sink.remoteIp, greKey: sink.key }
            : { tunnelRemote: sink.remoteIp, erspanSession: sink.session, ...(sink.index === undefined ? {} : { erspanIndex: sink.index }) }),
          ...(sink.netns === undefined ? {} : { sinkNetns: sink.netns }),
          ...(rule.vlans?.length ? { vlans: rule.vlans } : {}),
        };
      }),
    },
    fallback,
    bpfSources,
  };
}

/** Loads the tc programs: throws why the bpf data path cannot run here. */
export function openBpf(attach: BpfAttach = 'auto'): NativeBpf {
  try {
    return new (loadAddon().NativeBpf)({ objectPath: bpfObjectPath(), attach });
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw new Error(`the bpf data path cannot run here: ${(error as Error).message}`);
  }
}

/** A kernel rule's counters when it took its present sink, by rule id (none: from zero). See mergeStats and rebaseSinks. */
export type SinkBaselines = Map<string, SinkCounts>;
type SinkCounts = { packets: number; bytes: number; errors: number; truncated: number; fragmented: number };
const NO_COUNTS: SinkCounts = { packets: 0, bytes: 0, errors: 0, truncated: 0, fragmented: 0 };

/**
 * The plan's stats, in plan order: the AF_PACKET engine's entries, the bpf
 * path's rules and the sources only it serves, and its copies added to the
 * sinks' counters. A kernel rule counts for its whole life, as an AF_PACKET
 * rule does, also across a change of its sink; a sink counts only the
 * copies sent into it. `baselines` (kept by the caller between calls)
 * remembers each rule's counters when it took its present sink.
 */
export function mergeStats(plan: Plan, split: SplitPlan, packet: EngineStats, bpf: NativeBpfStats, baselines: SinkBaselines = new Map()): EngineStats {
  const bpfRules = new Map(bpf.rules.map((r) => [r.id, r]));
  const bpfSources = new Map(bpf.sources.map((s) => [s.id, s]));
  const packetRules = new Map(packet.rules.map((r) => [r.id, r]));
  const packetSources = new Map(packet.sources.map((s) => [s.id, s]));
  const rules: RuleStats[] = [];
  const added = new Map<string, SinkCounts>();
  for (const rule of plan.rules) {
    const kernel = bpfRules.get(rule.id);
    if (kernel) {
      rules.push({
        id: rule.id, ok: kernel.ok, ...(kernel.reason === undefined ? {} : { reason: kernel.reason }),
        packets: kernel.packets, bytes: kernel.bytes, oversize: kernel.oversize, unavailable: kernel.errors,
        filtered: 0, sampledOut: 0, truncated: kernel.truncated, datapath: 'bpf',
      });
      // Counters below the baseline restarted (the rule left the kernel path and came back): from zero.
      const recorded = baselines.get(rule.id);
      const base = recorded && kernel.packets >= recorded.packets && kernel.errors >= recorded.errors ? recorded : NO_COUNTS;
      const sum = added.get(rule.sinkId) ?? { ...NO_COUNTS };
      sum.packets += kernel.packets - base.packets;
      sum.bytes += kernel.bytes - base.bytes;
      sum.errors += kernel.errors - base.errors;
      sum.truncated += kernel.truncated - base.truncated;
      sum.fragmented += kernel.fragmented - base.fragmented;
      added.set(rule.sinkId, sum);
      continue;
    }
    const packetRule = packetRules.get(rule.id);
    if (packetRule) {
      const reason = split.fallback.get(rule.id);
      rules.push({ ...packetRule, datapath: 'packet', ...(reason === undefined ? {} : { datapathReason: reason }) });
    }
  }
  // Duplicate rule ids: the packet engine reports each; keep what it said for those not listed above.
  for (const packetRule of packet.rules) if (!rules.some((r) => r === packetRule || r.id === packetRule.id)) rules.push(packetRule);
  const sources: SourceStats[] = [];
  for (const source of plan.sources) {
    const kernel = split.bpfSources.has(source.id) ? bpfSources.get(source.id) : undefined;
    if (kernel) {
      sources.push({
        id: source.id, ok: kernel.ok, ...(kernel.reason === undefined ? {} : { reason: kernel.reason }),
        packets: kernel.packets, bytes: kernel.bytes, captureDrops: 0, truncated: 0, bpf: { attach: kernel.attach ?? '' },
      });
    } else {
      const packetSource = packetSources.get(source.id);
      if (packetSource && !sources.includes(packetSource)) sources.push(packetSource);
    }
  }
  for (const packetSource of packet.sources) if (!sources.includes(packetSource)) sources.push(packetSource);
  const sinks: SinkStats[] = packet.sinks.map((sink) => {
    const sum = added.get(sink.id);
    if (!sum) return sink;
    return {
      ...sink, packets: sink.packets + sum.packets, bytes: sink.bytes + sum.bytes, errors: sink.errors + sum.errors,
      truncated: sink.truncated + sum.truncated, fragmented: sink.fragmented + sum.fragmented,
    };
  });
  return { sources, sinks, rules, interfaces: packet.interfaces };
}

/**
 * Before `next` replaces `previous`: a rule that takes another sink counts
 * for it from its present counters, a new rule from zero.
 */
export function rebaseSinks(previous: Plan | undefined, next: Plan, bpf: NativeBpfStats, baselines: SinkBaselines): void {
  const counters = new Map(bpf.rules.map((r) => [r.id, r]));
  const sinkBefore = new Map(previous?.rules.map((r) => [r.id, r.sinkId]) ?? []);
  for (const rule of next.rules) {
    const was = sinkBefore.get(rule.id);
    if (was === rule.sinkId) continue;
    const kernel = counters.get(rule.id);
    if (was === undefined || !kernel) baselines.delete(rule.id);
    else baselines.set(rule.id, { packets: kernel.packets, bytes: kernel.bytes, errors: kernel.errors, truncated: kernel.truncated, fragmented: kernel.fragmented });
  }
}

/** The same object as before for what did not change (stats() hands out unchanged entries and lists by identity). */
export function reuseUnchanged(next: EngineStats, last: EngineStats | undefined): EngineStats {
  if (!last) return next;
  const same = (a: object, b: object | undefined): boolean => {
    if (b === undefined) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((key) => {
      const x = (a as Record<string, unknown>)[key];
      const y = (b as Record<string, unknown>)[key];
      return x === y || (typeof x === 'object' && x !== null && typeof y === 'object' && y !== null && same(x, y));
    });
  };
  const list = <T extends object>(now: T[], before: T[]): T[] => {
    let changed = now.length !== before.length;
    const out = now.map((entry, i) => {
      if (same(entry, before[i])) return before[i]!;
      changed = true;
      return entry;
    });
    return changed ? out : before;
  };
  const sources = list(next.sources, last.sources);
  const sinks = list(next.sinks, last.sinks);
  const rules = list(next.rules, last.rules);
  const interfaces = next.interfaces;
  if (sources === last.sources && sinks === last.sinks && rules === last.rules && interfaces === last.interfaces) return last;
  return { sources, sinks, rules, interfaces };
}
