/**
 * The status a client sees, derived from the observations of every host a
 * resource involves (TaaS's lifecycle, across hosts):
 * - being deleted → PENDING_DELETE;
 * - any involved host reports a failure → ERROR, with that host's reason;
 * - every involved host reports it running → ACTIVE;
 * - otherwise DOWN: a host has no agent at all ("no agent on host X", the
 *   first such host), or reported it down (its reason), or not reported yet.
 */
import type { Lifecycle, Port, ResourceKind, ResourceOf, Shown, TapFlow, TapMirror, TapService } from '../model/resources.js';
import type { ObservationBook } from './observations.js';

/** How to find where a resource's ports are. */
export interface Placement {
  hostOfPort(portId: string): string | undefined;
  portOfService(serviceId: string): string | undefined;
}

/** The hosts a resource involves: where its ports are (a tap flow: its source's and its tap service's). */
export function involvedHosts<K extends ResourceKind>(kind: K, resource: ResourceOf[K], placement: Placement): string[] {
  const hostsOf = (...portIds: Array<string | undefined>) => [...new Set(portIds
    .map((portId) => (portId === undefined ? undefined : placement.hostOfPort(portId)))
    .filter((host): host is string => host !== undefined))];
  switch (kind) {
    case 'port':
      return [(resource as Port).host_id];
    case 'tap_service':
      return hostsOf((resource as TapService).port_id);
    case 'tap_flow': {
      const flow = resource as TapFlow;
      return hostsOf(flow.source_port, placement.portOfService(flow.tap_service_id));
    }
    case 'tap_mirror':
      return hostsOf((resource as TapMirror).port_id);
  }
  return [];
}

export function deriveLifecycle(
  kind: ResourceKind, id: string, deleting: boolean, hosts: readonly string[], book: ObservationBook,
): Lifecycle {
  if (deleting) return { status: 'PENDING_DELETE', status_reason: null };
  let waiting: string | null = null;
  // A host without an agent explains more than another host's DOWN (which may wait for it).
  let noAgent: string | null = null;
  let reported = 0;
  for (const host of hosts) {
    if (!book.hasAgent(host)) {
      noAgent ??= `no agent on host ${host}`;
      continue;
    }
    const silentSince = book.silentSince(host);
    if (silentSince !== undefined) {
      waiting ??= `the agent on host ${host} has not reported since ${silentSince}`;
      continue;
    }
    const observation = book.observation(host, kind, id);
    if (!observation) continue;
    if (observation.status === 'ERROR') return { status: 'ERROR', status_reason: nameHost(host, hosts, observation.reason) };
    if (observation.status === 'DOWN') waiting ??= nameHost(host, hosts, observation.reason);
    else reported += 1;
  }
  if (hosts.length > 0 && reported === hosts.length) return { status: 'ACTIVE', status_reason: null };
  return { status: 'DOWN', status_reason: noAgent ?? waiting };
}

/** A reason names its host when the resource spans several, so the operator knows where to look. */
function nameHost(host: string, hosts: readonly string[], reason: string | null): string | null {
  if (reason === null || hosts.length < 2) return reason;
  return `on host ${host}: ${reason}`;
}

/**
 * Joins derived statuses to records. Built once per request over the current
 * ports, so a list of thousands derives in one pass.
 */
export class StatusView implements Placement {
  private readonly portHosts: Map<string, string>;
  private readonly servicePorts: Map<string, string>;

  constructor(
    ports: readonly Port[],
    services: readonly TapService[],
    private readonly book: ObservationBook,
  ) {
    this.portHosts = new Map(ports.map((port) => [port.id, port.host_id]));
    this.servicePorts = new Map(services.map((service) => [service.id, service.port_id]));
  }

  hostOfPort(portId: string): string | undefined {
    return this.portHosts.get(portId);
  }

  portOfService(serviceId: string): string | undefined {
    return this.servicePorts.get(serviceId);
  }

  hostsOf<K extends ResourceKind>(kind: K, resource: ResourceOf[K]): string[] {
    return involvedHosts(kind, resource, this);
  }

  show<K extends ResourceKind>(kind: K, resource: ResourceOf[K]): Shown<K> {
    const lifecycle = deriveLifecycle(kind, resource.id, resource.deleting, this.hostsOf(kind, resource), this.book);
    if (kind !== 'port') return { ...resource, ...lifecycle } as unknown as Shown<K>;
    const port = resource as Port;
    const seen = this.book.observation(port.host_id, 'port', port.id)?.interface;
    return { ...resource, ...lifecycle, mac_address: seen?.mac ?? null } as unknown as Shown<K>;
  }
}
