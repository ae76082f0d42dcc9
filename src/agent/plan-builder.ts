/**
 * Desired state → plan, and what the data path reports → observations. Pure
 * functions of one host's desired state: the agent feeds them what its
 * DesiredStateSource gives and what its data path counts.
 *
 * Plan ids are resource UUIDs: a source is the port it captures (so a port
 * feeding several services is captured once), a port sink is the tap service,
 * a rule is the tap flow, and each direction of a tap mirror is a tunnel sink
 * with the rule feeding it. In cluster mode a tap flow into a tap service on
 * another host is a rule into a 'host' sink (the tunnel to that host's agent,
 * id = the tap service), and a local tap service fed from other hosts has a
 * termination (id = the tap service).
 */
import type { Plan, RulePlan, SinkPlan, TerminationPlan } from '../engine/plan.js';
import { addSelection, datapathOf, type Counters, type DesiredState, type Observation, type ObservedStatus } from '../model/observation.js';
import type { Port, ResourceKind, TapFlow, TapMirror, TapService } from '../model/resources.js';
import { MIRROR_DIRECTIONS, VXLAN_DEFAULT_PORT, type MirrorDirection } from '../model/contract.js';
import { parseVlanFilter } from '../model/vlan-filter.js';

/** The plan id of one direction of a tap mirror (IN, OUT or BOTH): its tunnel sink and the rule feeding it. */
export const mirrorTunnelId = (mirrorId: string, direction: MirrorDirection) => `${mirrorId}/${direction}`;

/** One direction of a tap mirror as a tunnel sink: the tunnel id is the key, session or VNI of its mirror_type. */
function mirrorSink(mirror: TapMirror, id: string, tunnelId: number, netns: { netns?: string }): SinkPlan {
  const remoteIp = mirror.remote_ip;
  switch (mirror.mirror_type) {
    case 'gre': return { id, kind: 'gre', remoteIp, key: tunnelId, ...netns };
    case 'erspanv1': return { id, kind: 'erspan', remoteIp, session: tunnelId, ...netns };
    // A BOTH mirror keeps each frame's direction in the D bit of its one session.
    case 'erspanv2': return { id, kind: 'erspan3', remoteIp, session: tunnelId, ...netns };
    case 'vxlan': return { id, kind: 'vxlan', remoteIp, vni: tunnelId, port: mirror.udp_port ?? VXLAN_DEFAULT_PORT, ...netns };
  }
}

/** This host's part of the desired state, as a plan: ports on other hosts are not this agent's. */
export function buildPlan(desired: DesiredState, host: string): Plan {
  const ports = new Map(desired.ports.map((port) => [port.id, port]));
  const local = (portId: string) => ports.get(portId)?.host_id === host;
  const services = new Map(desired.tapServices.filter((service) => ports.has(service.port_id)).map((service) => [service.id, service]));

  const sinks: SinkPlan[] = [];
  const rules: RulePlan[] = [];
  for (const service of services.values()) {
    if (local(service.port_id)) sinks.push({ ...interfaceOf(service.id, ports.get(service.port_id)!), kind: 'port' });
  }
  const remoteSinks = new Set<string>();
  for (const flow of desired.tapFlows) {
    const service = services.get(flow.tap_service_id);
    if (!service || !local(flow.source_port)) continue;
    if (!local(service.port_id) && !remoteSinks.has(service.id)) {
      remoteSinks.add(service.id);
      const peer = ports.get(service.port_id)!.host_id;
      const remoteIp = desired.tunnels?.underlay[peer];
      const key = desired.tunnels?.keys[service.id];
      sinks.push({ id: service.id, kind: 'host', host: peer, ...(remoteIp === undefined ? {} : { remoteIp }), ...(key === undefined ? {} : { key }) });
    }
    rules.push({
      id: flow.id,
      sourceId: flow.source_port,
      sinkId: service.id,
      direction: flow.direction,
      ...(flow.vlan_filter === null ? {} : { vlans: parseVlanFilter(flow.vlan_filter) }),
      ...selectionOf(flow),
    });
  }
  for (const mirror of desired.tapMirrors) {
    if (!local(mirror.port_id)) continue;
    const port = ports.get(mirror.port_id)!;
    // The tunnel leaves from the port's own namespace: the host side of the workload routes it.
    const netns = port.netns === null ? {} : { netns: port.netns };
    for (const direction of MIRROR_DIRECTIONS) {
      const tunnelId = mirror.directions[direction];
      if (tunnelId === undefined) continue;
      const id = mirrorTunnelId(mirror.id, direction);
      sinks.push(mirrorSink(mirror, id, tunnelId, netns));
      rules.push({ id, sourceId: port.id, sinkId: id, direction, ...selectionOf(mirror) });
    }
  }

  // Local tap services that tap flows of other hosts feed: the tunnels into them end here.
  const terminations: TerminationPlan[] = [];
  for (const service of services.values()) {
    const key = desired.tunnels?.keys[service.id];
    if (key === undefined || !local(service.port_id)) continue;
    const fedFromElsewhere = desired.tapFlows.some((flow) => flow.tap_service_id === service.id
      && ports.has(flow.source_port) && !local(flow.source_port));
    if (fedFromElsewhere) terminations.push({ id: service.id, key, sinkId: service.id });
  }

  const sourcePortIds = [...new Set(rules.map((rule) => rule.sourceId))];
  const localPorts = desired.ports.filter((port) => port.host_id === host);
  return {
    sources: sourcePortIds.map((id) => interfaceOf(id, ports.get(id)!)),
    sinks,
    rules,
    interfaces: localPorts.map((port) => interfaceOf(port.id, port)),
    ...(terminations.length > 0 ? { terminations } : {}),
  };
}

/** A tap flow's or tap mirror's filter, sample_rate and snaplen as rule fields (null: left out, every frame whole). */
function selectionOf(resource: TapFlow | TapMirror): Pick<RulePlan, 'filter' | 'sampleRate' | 'snaplen'> {
  return {
    ...(resource.packet_filter === null || resource.packet_filter === undefined || resource.packet_filter === '' ? {} : { filter: resource.packet_filter }),
    ...(resource.sample_rate === null || resource.sample_rate === undefined || resource.sample_rate === 1 ? {} : { sampleRate: resource.sample_rate }),
    ...(resource.snaplen === null || resource.snaplen === undefined ? {} : { snaplen: resource.snaplen }),
  };
}

function interfaceOf(id: string, port: Port) {
  return port.netns === null ? { id, ifname: port.interface } : { id, ifname: port.interface, netns: port.netns };
}

/** What the agent reads of a data path's stats: any backend that reports these fits. */
interface Health {
  id: string;
  ok: boolean;
  reason?: string;
}

export interface DataPathStats {
  sources: Array<Health & { packets: number; bytes: number; captureDrops: number }>;
  sinks: Array<Health & { packets: number; bytes: number; errors: number }>;
  rules: Array<{
    id: string; ok?: boolean; reason?: string; packets: number; bytes: number; oversize: number; unavailable: number;
    /** What the rule's own stages took out or cut (absent: a data path without them). */
    filtered?: number; sampledOut?: number; truncated?: number;
    /** Which data path runs the rule, and why AF_PACKET's when the kernel's could not (absent: AF_PACKET's, the engine's only one). */
    datapath?: 'bpf' | 'packet'; datapathReason?: string;
  }>;
  /** Tunnels from other hosts' agents into local tap services (cluster mode), by tap service id. */
  terminations?: Array<Health & { packets: number; bytes?: number; errors: number }>;
  interfaces?: Array<{ id: string; present: boolean; up: boolean; running: boolean; mac: string; mtu: number; reason?: string; sameAs?: string }>;
}

function portLabel(port: Port | undefined): string {
  if (!port) return 'port';
  const where = port.netns ? `${port.interface}@${port.netns}` : port.interface;
  return `port ${port.id} (${where})`;
}

const ruleCounters = (rule: DataPathStats['rules'][number]): Counters => ({
  packets: rule.packets, bytes: rule.bytes, drops: { oversize: rule.oversize, unavailable: rule.unavailable },
  ...(rule.filtered || rule.sampledOut || rule.truncated
    ? { selection: { filtered: rule.filtered ?? 0, sampled_out: rule.sampledOut ?? 0, truncated: rule.truncated ?? 0 } }
    : {}),
  datapath: rule.datapath ?? 'packet',
  ...(rule.datapathReason === undefined ? {} : { datapath_reason: rule.datapathReason }),
});

function sum(parts: readonly Counters[]): Counters {
  const total: Counters = { packets: 0, bytes: 0, drops: {} };
  for (const part of parts) {
    total.packets += part.packets;
    total.bytes += part.bytes;
    for (const [cause, count] of Object.entries(part.drops)) total.drops[cause] = (total.drops[cause] ?? 0) + count;
    if (part.selection) total.selection = addSelection(total.selection, part.selection);
  }
  return { ...total, ...datapathOf(parts) };
}

/**
 * What this host observes of every resource of its desired state, from the
 * stats of the plan just applied (or the reason the data path refused it).
 * A resource whose state the data path has not reported yet is left out.
 */
export function observe(desired: DesiredState, host: string, stats: DataPathStats | { failure: string }): Observation[] {
  return new Observer(desired, host).observe(stats);
}

type StatsList = 'sources' | 'sinks' | 'rules' | 'interfaces' | 'terminations';
const STATS_LISTS: readonly StatsList[] = ['sources', 'sinks', 'rules', 'interfaces', 'terminations'];
type Entry<L extends StatsList> = NonNullable<DataPathStats[L]>[number];
const NO_ENTRIES: readonly never[] = [];

/** One resource of the desired state: which data-path entries its observation reads, and how it is made. */
interface Watched {
  /** `list/id` of every entry it depends on. */
  reads: string[];
  make: () => Observation | undefined;
}

/**
 * observe(), kept between the agent's ticks for one desired state: observe()
 * makes every observation; changes() makes again only those of resources
 * whose data-path entries are other objects than last time (a data path that
 * hands out the same objects for what did not change, as the Engine does,
 * makes an idle tick cost next to nothing) and returns those that differ.
 */
export class Observer {
  private readonly ports: Map<string, Port>;
  private readonly services: Map<string, TapService>;
  private readonly watched: Watched[] = [];
  /** `list/id` → the indexes in watched of what reads that entry. */
  private readonly readers = new Map<string, number[]>();
  private readonly entries: { [L in StatsList]: Map<string, Entry<L>> } = {
    sources: new Map(), sinks: new Map(), rules: new Map(), interfaces: new Map(), terminations: new Map(),
  };
  private last: DataPathStats | { failure: string } | undefined;
  /** The last observation of each watched resource (undefined: not reported yet). */
  private current: Array<Observation | undefined> = [];
  private all: Observation[] | undefined;

  constructor(readonly desired: DesiredState, private readonly host: string) {
    this.ports = new Map(desired.ports.map((port) => [port.id, port]));
    this.services = new Map(desired.tapServices.map((service) => [service.id, service]));
    const watch = (reads: string[], make: () => Observation | undefined) => {
      const index = this.watched.push({ reads, make }) - 1;
      for (const read of reads) {
        const list = this.readers.get(read);
        if (list) list.push(index);
        else this.readers.set(read, [index]);
      }
    };
    for (const port of desired.ports) {
      if (this.local(port.id)) watch([`interfaces/${port.id}`, `sources/${port.id}`], () => this.port(port));
    }
    for (const service of desired.tapServices) {
      if (this.local(service.port_id)) watch([`sinks/${service.id}`, `terminations/${service.id}`], () => this.service(service));
    }
    for (const flow of desired.tapFlows) {
      watch([`sources/${flow.source_port}`, `sinks/${flow.tap_service_id}`, `terminations/${flow.tap_service_id}`, `rules/${flow.id}`],
        () => this.flow(flow));
    }
    for (const mirror of desired.tapMirrors) {
      const tunnels = MIRROR_DIRECTIONS.map((direction) => mirrorTunnelId(mirror.id, direction));
      watch([`sources/${mirror.port_id}`, ...tunnels.flatMap((id) => [`sinks/${id}`, `rules/${id}`])], () => this.mirror(mirror));
    }
  }

  /** Every observation, from these stats. */
  observe(stats: DataPathStats | { failure: string }): Observation[] {
    this.changes(stats);
    return this.observations();
  }

  /** Every observation as of the last observe() or changes(), in the desired state's order. */
  observations(): Observation[] {
    this.all ??= this.current.filter((observation): observation is Observation => observation !== undefined);
    return this.all;
  }

  /**
   * What differs from the last observe() or changes() (everything, the first
   * time); `gone`: a resource reported before is left out now (the data path
   * no longer reports its entries).
   */
  changes(stats: DataPathStats | { failure: string }): { changed: Observation[]; gone: boolean } {
    const last = this.last;
    this.last = stats;
    if ('failure' in stats) return this.remake(this.watched.map((_, index) => index));
    if (last === undefined || 'failure' in last) {
      for (const list of STATS_LISTS) this.index(list, stats[list] ?? NO_ENTRIES);
      return this.remake(this.watched.map((_, index) => index));
    }
    const dirty = new Set<number>();
    for (const list of STATS_LISTS) {
      const before = last[list] ?? NO_ENTRIES;
      const after = stats[list] ?? NO_ENTRIES;
      if (before === after) continue;
      const map = this.entries[list] as Map<string, unknown>;
      const touched = (id: string) => {
        for (const index of this.readers.get(`${list}/${id}`) ?? NO_ENTRIES) dirty.add(index);
      };
      if (before.length === after.length && before.every((entry, i) => entry.id === after[i]!.id)) {
        for (let i = 0; i < after.length; i += 1) {
          if (before[i] === after[i]) continue;
          map.set(after[i]!.id, after[i]);
          touched(after[i]!.id);
        }
      } else {
        for (const entry of before) touched(entry.id);
        for (const entry of after) touched(entry.id);
        this.index(list, after);
      }
    }
    return this.remake([...dirty].sort((a, b) => a - b));
  }

  private index<L extends StatsList>(list: L, entries: readonly Entry<L>[]): void {
    const map = this.entries[list] as Map<string, Entry<L>>;
    map.clear();
    for (const entry of entries) map.set(entry.id, entry);
  }

  private remake(indexes: readonly number[]): { changed: Observation[]; gone: boolean } {
    const changed: Observation[] = [];
    let gone = false;
    for (const index of indexes) {
      const before = this.current[index];
      const after = this.watched[index]!.make();
      if (after === undefined ? before === undefined : before !== undefined && sameJson(before, after)) continue;
      this.current[index] = after;
      this.all = undefined;
      if (after) changed.push(after);
      else gone = true;
    }
    return { changed, gone };
  }

  private local(portId: string): boolean {
    return this.ports.get(portId)?.host_id === this.host;
  }

  private problem(what: string, health: Health | undefined): string | undefined {
    if (!health) return `${what} is not running in the data path`;
    return health.ok ? undefined : `${what}: ${health.reason ?? 'failed'}`;
  }

  private ruleProblem(id: string): string | undefined {
    const rule = this.entries.rules.get(id);
    if (!rule) return 'not running in the data path';
    return rule.ok === false ? rule.reason ?? 'failed' : undefined;
  }

  /** Why a local tap service is in ERROR (its destination port); undefined when it is not, or not local. */
  private serviceProblem(service: TapService): string | undefined {
    if (!this.local(service.port_id)) return undefined;
    return this.problem(`destination ${portLabel(this.ports.get(service.port_id))}`, this.entries.sinks.get(service.id));
  }

  private port(port: Port): Observation | undefined {
    if (this.last && 'failure' in this.last) return observation('port', port.id, 'ERROR', this.last.failure);
    const state = this.entries.interfaces.get(port.id);
    if (!state) return undefined;
    const source = this.entries.sources.get(port.id);
    const counters = source ? { packets: source.packets, bytes: source.bytes, drops: { capture: source.captureDrops } } : undefined;
    const seen = { present: state.present, up: state.up, running: state.running, mac: state.present && state.mac !== '' ? state.mac : null, mtu: state.present ? state.mtu : null };
    const extra = { interface: seen, ...(counters ? { counters } : {}) };
    if (!state.present) return observation('port', port.id, 'ERROR', state.reason ?? `interface '${port.interface}' does not exist`, extra);
    // Another spelling of an interface an earlier port names (a symlinked namespace path, an altname).
    if (state.sameAs !== undefined) return observation('port', port.id, 'ERROR', `interface is already registered as port ${state.sameAs}`, extra);
    if (!state.up) return observation('port', port.id, 'DOWN', 'interface is down', extra);
    if (!state.running) return observation('port', port.id, 'DOWN', 'interface has no carrier', extra);
    return observation('port', port.id, 'ACTIVE', null, extra);
  }

  private service(service: TapService): Observation {
    if (this.last && 'failure' in this.last) return observation('tap_service', service.id, 'ERROR', this.last.failure);
    const sink = this.entries.sinks.get(service.id);
    const issue = this.serviceProblem(service);
    // What arrived through tunnels from other hosts went out of the port too.
    const tunnelled = this.entries.terminations.get(service.id);
    const counters = sink ? {
      counters: {
        packets: sink.packets + (tunnelled?.packets ?? 0),
        bytes: sink.bytes + (tunnelled?.bytes ?? 0),
        drops: { send_errors: sink.errors + (tunnelled?.errors ?? 0) },
      },
    } : {};
    return observation('tap_service', service.id, issue ? 'ERROR' : 'ACTIVE', issue ?? null, counters);
  }

  private flow(flow: TapFlow): Observation {
    if (this.last && 'failure' in this.last) return observation('tap_flow', flow.id, 'ERROR', this.last.failure);
    const { desired, host, ports } = this;
    const service = this.services.get(flow.tap_service_id);
    let issue: string | undefined;
    let counters: Counters | undefined;
    const serviceHost = service ? ports.get(service.port_id)?.host_id : undefined;
    if (desired.tunnels && service && serviceHost !== undefined && serviceHost !== host && this.local(flow.source_port)
      && desired.tunnels.underlay[serviceHost] === undefined) {
      // Nothing failed here: the tunnel waits for the other host's agent to say where it is.
      return observation('tap_flow', flow.id, 'DOWN', `waiting for the underlay address of host ${serviceHost}'s agent`);
    }
    if (desired.tunnels && service && serviceHost === host && !this.local(flow.source_port)) {
      // This host ends the tunnel from the source's host: the termination into the tap service's port.
      issue = this.problem(`tunnel from host ${ports.get(flow.source_port)?.host_id} into tap service ${service.id}`,
        this.entries.terminations.get(service.id));
    }
    if (this.local(flow.source_port)) {
      issue = this.problem(`source ${portLabel(ports.get(flow.source_port))}`, this.entries.sources.get(flow.source_port))
        ?? (service && !this.local(service.port_id)
          ? this.problem(`tap service ${service.id} on host ${ports.get(service.port_id)?.host_id}`, this.entries.sinks.get(service.id))
          : undefined)
        ?? this.ruleProblem(flow.id);
      const rule = this.entries.rules.get(flow.id);
      if (rule) counters = ruleCounters(rule);
    }
    if (!issue && service && this.serviceProblem(service)) issue = `tap service ${flow.tap_service_id} is in ERROR`;
    return observation('tap_flow', flow.id, issue ? 'ERROR' : 'ACTIVE', issue ?? null, counters ? { counters } : {});
  }

  private mirror(mirror: TapMirror): Observation | undefined {
    if (this.last && 'failure' in this.last) return observation('tap_mirror', mirror.id, 'ERROR', this.last.failure);
    if (!this.local(mirror.port_id)) return undefined;
    let issue = this.problem(`source ${portLabel(this.ports.get(mirror.port_id))}`, this.entries.sources.get(mirror.port_id));
    const parts: Record<string, Counters> = {};
    for (const direction of MIRROR_DIRECTIONS) {
      if (mirror.directions[direction] === undefined) continue;
      const id = mirrorTunnelId(mirror.id, direction);
      issue ??= this.problem(`${direction} tunnel to ${mirror.remote_ip}`, this.entries.sinks.get(id));
      const rule = this.entries.rules.get(id);
      if (!issue && rule?.ok === false) issue = `${direction} tunnel to ${mirror.remote_ip}: ${rule.reason ?? 'failed'}`;
      if (rule) parts[direction] = ruleCounters(rule);
    }
    const counted = Object.values(parts);
    return observation('tap_mirror', mirror.id, issue ? 'ERROR' : 'ACTIVE', issue ?? null, counted.length > 0 ? { counters: sum(counted), parts } : {});
  }
}

function observation(kind: ResourceKind, id: string, status: ObservedStatus, reason: string | null, extra: Partial<Observation> = {}): Observation {
  return { kind, id, status, reason, ...extra };
}

/** Whether two plain JSON values (observations) are equal. */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  const keysA = Object.keys(a);
  const keysB = Object.keys(b);
  if (keysA.length !== keysB.length) return false;
  for (const key of keysA) {
    if (!Object.hasOwn(b, key) || !sameJson((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) return false;
  }
  return true;
}
