/**
 * Desired state → plan, and engine stats → statuses. Pure functions: the
 * agent feeds them the store's snapshot and the engine's counters.
 *
 * Plan ids are resource UUIDs: a source is the port it captures (so a port
 * feeding several services is captured once), a port sink is the tap service,
 * a rule is the tap flow.
 */
import type { EngineStats, Plan, RulePlan, SinkPlan, SinkStats, SourceStats } from '../engine/engine.js';
import type { Port, ResourceKind, Status } from '../model/resources.js';
import { parseVlanFilter } from '../model/vlan-filter.js';
import type { Snapshot, StatusUpdate } from '../store/store.js';

export interface InterfaceObservation {
  ok: boolean;
  up?: boolean;
  mac?: string;
  reason?: string;
}

const live = <T extends { status: Status }>(rows: readonly T[]) => rows.filter((row) => row.status !== 'PENDING_DELETE');

/** The plan id of one direction of a tap mirror: its tunnel sink and the rule feeding it. */
export const mirrorTunnelId = (mirrorId: string, direction: 'IN' | 'OUT') => `${mirrorId}/${direction}`;

export interface PlanOptions {
  /** Leave tap mirrors out (the engine refused their tunnel sinks). */
  withoutMirrors?: boolean;
}

export function buildPlan(snapshot: Snapshot, options: PlanOptions = {}): Plan {
  const ports = new Map(live(snapshot.ports).map((port) => [port.id, port]));
  const services = live(snapshot.tapServices).filter((service) => ports.has(service.port_id));
  const serviceIds = new Set(services.map((service) => service.id));
  const flows = live(snapshot.tapFlows).filter((flow) => serviceIds.has(flow.tap_service_id) && ports.has(flow.source_port));
  const mirrors = options.withoutMirrors ? [] : live(snapshot.tapMirrors).filter((mirror) => ports.has(mirror.port_id));

  const sinks: SinkPlan[] = services.map((service) => ({ ...interfaceOf(service.id, ports.get(service.port_id)!), kind: 'port' as const }));
  const rules: RulePlan[] = flows.map((flow) => ({
    id: flow.id,
    sourceId: flow.source_port,
    sinkId: flow.tap_service_id,
    direction: flow.direction,
    ...(flow.vlan_filter === null ? {} : { vlans: parseVlanFilter(flow.vlan_filter) }),
  }));
  for (const mirror of mirrors) {
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

  const sourcePortIds = [...new Set(rules.map((rule) => rule.sourceId))];
  return { sources: sourcePortIds.map((id) => interfaceOf(id, ports.get(id)!)), sinks, rules };
}

function interfaceOf(id: string, port: Port) {
  return port.netns === null ? { id, ifname: port.interface } : { id, ifname: port.interface, netns: port.netns };
}

function portLabel(port: Port | undefined): string {
  if (!port) return 'port';
  const where = port.netns ? `${port.interface}@${port.netns}` : port.interface;
  return `port ${port.id} (${where})`;
}

type Health = Pick<SourceStats | SinkStats, 'ok' | 'reason'> | undefined;

/**
 * The status of every live TaaS resource, as the data path reports it, and of
 * every port, as its interface looks. Only changes are returned.
 */
export function deriveStatuses(
  snapshot: Snapshot,
  stats: EngineStats | { failure: string },
  interfaces: ReadonlyMap<string, InterfaceObservation>,
  /** Why tap mirrors were left out of the plan, if they were. */
  mirrorsExcluded?: string,
): StatusUpdate[] {
  const ports = new Map(snapshot.ports.map((port) => [port.id, port]));
  const failure = 'failure' in stats ? stats.failure : undefined;
  const sources = new Map('failure' in stats ? [] : stats.sources.map((s) => [s.id, s]));
  const sinks = new Map('failure' in stats ? [] : stats.sinks.map((s) => [s.id, s]));
  const updates: StatusUpdate[] = [];

  const report = (kind: ResourceKind, row: { id: string; status: Status; status_reason: string | null }, status: Status, reason: string | null) => {
    if (row.status !== status || row.status_reason !== reason) updates.push({ kind, id: row.id, status, reason });
  };
  const problem = (what: string, health: Health): string | undefined => {
    if (failure) return failure;
    if (!health) return `${what} is not running in the data path`;
    return health.ok ? undefined : `${what}: ${health.reason ?? 'failed'}`;
  };

  const serviceProblems = new Map<string, string | undefined>();
  for (const service of live(snapshot.tapServices)) {
    const issue = problem(`destination ${portLabel(ports.get(service.port_id))}`, sinks.get(service.id));
    serviceProblems.set(service.id, issue);
    report('tap_service', service, issue ? 'ERROR' : 'ACTIVE', issue ?? null);
  }
  for (const flow of live(snapshot.tapFlows)) {
    const issue = problem(`source ${portLabel(ports.get(flow.source_port))}`, sources.get(flow.source_port))
      ?? (serviceProblems.get(flow.tap_service_id) && `tap service ${flow.tap_service_id} is in ERROR`);
    report('tap_flow', flow, issue ? 'ERROR' : 'ACTIVE', issue ?? null);
  }
  for (const mirror of live(snapshot.tapMirrors)) {
    let issue = mirrorsExcluded ?? problem(`source ${portLabel(ports.get(mirror.port_id))}`, sources.get(mirror.port_id));
    for (const direction of ['IN', 'OUT'] as const) {
      if (issue || mirror.directions[direction] === undefined) continue;
      issue = problem(`${direction} tunnel to ${mirror.remote_ip}`, sinks.get(mirrorTunnelId(mirror.id, direction)));
    }
    report('tap_mirror', mirror, issue ? 'ERROR' : 'ACTIVE', issue ?? null);
  }
  for (const port of live(snapshot.ports)) {
    const seen = interfaces.get(port.id);
    if (!seen) continue;
    let status: Status = 'ACTIVE';
    let reason: string | null = null;
    if (!seen.ok) {
      status = 'ERROR';
      reason = seen.reason ?? 'interface not found';
    } else if (!seen.up) {
      status = 'DOWN';
      reason = 'interface is down';
    }
    const mac = seen.mac ?? port.mac_address;
    if (port.status !== status || port.status_reason !== reason || port.mac_address !== mac) {
      updates.push({ kind: 'port', id: port.id, status, reason, macAddress: mac });
    }
  }
  return updates;
}
