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
import type { Counters, DesiredState, Observation, ObservedStatus } from '../model/observation.js';
import type { Port, ResourceKind } from '../model/resources.js';
import { parseVlanFilter } from '../model/vlan-filter.js';

/** The plan id of one direction of a tap mirror: its tunnel sink and the rule feeding it. */
export const mirrorTunnelId = (mirrorId: string, direction: 'IN' | 'OUT') => `${mirrorId}/${direction}`;

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
    });
  }
  for (const mirror of desired.tapMirrors) {
    if (!local(mirror.port_id)) continue;
    const port = ports.get(mirror.port_id)!;
    // The tunnel leaves from the port's own namespace: the host side of the workload routes it.
    const netns = port.netns === null ? {} : { netns: port.netns };
    for (const direction of ['IN', 'OUT'] as const) {
      const tunnelId = mirror.directions[direction];
      if (tunnelId === undefined) continue;
      const id = mirrorTunnelId(mirror.id, direction);
      sinks.push(mirror.mirror_type === 'gre'
        ? { id, kind: 'gre', remoteIp: mirror.remote_ip, key: tunnelId, ...netns }
        : { id, kind: 'erspan', remoteIp: mirror.remote_ip, session: tunnelId, ...netns });
      rules.push({ id, sourceId: port.id, sinkId: id, direction });
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
  rules: Array<{ id: string; ok?: boolean; reason?: string; packets: number; bytes: number; oversize: number; unavailable: number }>;
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
});

function sum(parts: readonly Counters[]): Counters {
  const total: Counters = { packets: 0, bytes: 0, drops: {} };
  for (const part of parts) {
    total.packets += part.packets;
    total.bytes += part.bytes;
    for (const [cause, count] of Object.entries(part.drops)) total.drops[cause] = (total.drops[cause] ?? 0) + count;
  }
  return total;
}

/**
 * What this host observes of every resource of its desired state, from the
 * stats of the plan just applied (or the reason the data path refused it).
 * A resource whose state the data path has not reported yet is left out.
 */
export function observe(desired: DesiredState, host: string, stats: DataPathStats | { failure: string }): Observation[] {
  const ports = new Map(desired.ports.map((port) => [port.id, port]));
  const local = (portId: string) => ports.get(portId)?.host_id === host;
  const observations: Observation[] = [];
  const add = (kind: ResourceKind, id: string, status: ObservedStatus, reason: string | null, extra: Partial<Observation> = {}) =>
    observations.push({ kind, id, status, reason, ...extra });

  if ('failure' in stats) {
    for (const port of desired.ports) if (local(port.id)) add('port', port.id, 'ERROR', stats.failure);
    for (const service of desired.tapServices) if (local(service.port_id)) add('tap_service', service.id, 'ERROR', stats.failure);
    for (const flow of desired.tapFlows) add('tap_flow', flow.id, 'ERROR', stats.failure);
    for (const mirror of desired.tapMirrors) add('tap_mirror', mirror.id, 'ERROR', stats.failure);
    return observations;
  }

  const sources = new Map(stats.sources.map((source) => [source.id, source]));
  const sinks = new Map(stats.sinks.map((sink) => [sink.id, sink]));
  const rules = new Map(stats.rules.map((rule) => [rule.id, rule]));
  const interfaces = new Map((stats.interfaces ?? []).map((state) => [state.id, state]));
  const terminations = new Map((stats.terminations ?? []).map((termination) => [termination.id, termination]));
  const problem = (what: string, health: Health | undefined): string | undefined => {
    if (!health) return `${what} is not running in the data path`;
    return health.ok ? undefined : `${what}: ${health.reason ?? 'failed'}`;
  };
  const ruleProblem = (id: string): string | undefined => {
    const rule = rules.get(id);
    if (!rule) return 'not running in the data path';
    return rule.ok === false ? rule.reason ?? 'failed' : undefined;
  };

  for (const port of desired.ports) {
    if (!local(port.id)) continue;
    const state = interfaces.get(port.id);
    if (!state) continue;
    const source = sources.get(port.id);
    const counters = source ? { packets: source.packets, bytes: source.bytes, drops: { capture: source.captureDrops } } : undefined;
    const seen = { present: state.present, up: state.up, running: state.running, mac: state.present && state.mac !== '' ? state.mac : null, mtu: state.present ? state.mtu : null };
    const extra = { interface: seen, ...(counters ? { counters } : {}) };
    if (!state.present) add('port', port.id, 'ERROR', state.reason ?? `interface '${port.interface}' does not exist`, extra);
    // Another spelling of an interface an earlier port names (a symlinked namespace path, an altname).
    else if (state.sameAs !== undefined) add('port', port.id, 'ERROR', `interface is already registered as port ${state.sameAs}`, extra);
    else if (!state.up) add('port', port.id, 'DOWN', 'interface is down', extra);
    else if (!state.running) add('port', port.id, 'DOWN', 'interface has no carrier', extra);
    else add('port', port.id, 'ACTIVE', null, extra);
  }

  const serviceProblems = new Map<string, string | undefined>();
  for (const service of desired.tapServices) {
    if (!local(service.port_id)) continue;
    const sink = sinks.get(service.id);
    const issue = problem(`destination ${portLabel(ports.get(service.port_id))}`, sink);
    serviceProblems.set(service.id, issue);
    // What arrived through tunnels from other hosts went out of the port too.
    const tunnelled = terminations.get(service.id);
    const counters = sink ? {
      counters: {
        packets: sink.packets + (tunnelled?.packets ?? 0),
        bytes: sink.bytes + (tunnelled?.bytes ?? 0),
        drops: { send_errors: sink.errors + (tunnelled?.errors ?? 0) },
      },
    } : {};
    add('tap_service', service.id, issue ? 'ERROR' : 'ACTIVE', issue ?? null, counters);
  }

  const services = new Map(desired.tapServices.map((service) => [service.id, service]));
  for (const flow of desired.tapFlows) {
    const service = services.get(flow.tap_service_id);
    let issue: string | undefined;
    let counters: Counters | undefined;
    const serviceHost = service ? ports.get(service.port_id)?.host_id : undefined;
    if (desired.tunnels && service && serviceHost !== undefined && serviceHost !== host && local(flow.source_port)
      && desired.tunnels.underlay[serviceHost] === undefined) {
      // Nothing failed here: the tunnel waits for the other host's agent to say where it is.
      add('tap_flow', flow.id, 'DOWN', `waiting for the underlay address of host ${serviceHost}'s agent`);
      continue;
    }
    if (desired.tunnels && service && serviceHost === host && !local(flow.source_port)) {
      // This host ends the tunnel from the source's host: the termination into the tap service's port.
      issue = problem(`tunnel from host ${ports.get(flow.source_port)?.host_id} into tap service ${service.id}`, terminations.get(service.id));
    }
    if (local(flow.source_port)) {
      issue = problem(`source ${portLabel(ports.get(flow.source_port))}`, sources.get(flow.source_port))
        ?? (service && !local(service.port_id) ? problem(`tap service ${service.id} on host ${ports.get(service.port_id)?.host_id}`, sinks.get(service.id)) : undefined)
        ?? ruleProblem(flow.id);
      const rule = rules.get(flow.id);
      if (rule) counters = ruleCounters(rule);
    }
    if (!issue && serviceProblems.get(flow.tap_service_id)) issue = `tap service ${flow.tap_service_id} is in ERROR`;
    add('tap_flow', flow.id, issue ? 'ERROR' : 'ACTIVE', issue ?? null, counters ? { counters } : {});
  }

  for (const mirror of desired.tapMirrors) {
    if (!local(mirror.port_id)) continue;
    let issue = problem(`source ${portLabel(ports.get(mirror.port_id))}`, sources.get(mirror.port_id));
    const parts: Record<string, Counters> = {};
    for (const direction of ['IN', 'OUT'] as const) {
      if (mirror.directions[direction] === undefined) continue;
      const id = mirrorTunnelId(mirror.id, direction);
      issue ??= problem(`${direction} tunnel to ${mirror.remote_ip}`, sinks.get(id));
      const rule = rules.get(id);
      if (!issue && rule?.ok === false) issue = `${direction} tunnel to ${mirror.remote_ip}: ${rule.reason ?? 'failed'}`;
      if (rule) parts[direction] = ruleCounters(rule);
    }
    const counted = Object.values(parts);
    add('tap_mirror', mirror.id, issue ? 'ERROR' : 'ACTIVE', issue ?? null, counted.length > 0 ? { counters: sum(counted), parts } : {});
  }
  return observations;
}
