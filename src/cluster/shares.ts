/**
 * Every host's share of the desired state in one pass over the store's
 * snapshot: for each host what `desiredStateOf(snapshot, host)` gives (its
 * ports, the tap services, tap flows and tap mirrors with a port on it, the
 * ports on other hosts those refer to), but in time linear in the resources
 * instead of hosts × resources, for the publisher, which needs all of them.
 * Arrays keep the snapshot's order.
 */
import type { Port, TapFlow, TapMirror, TapService } from '../model/resources.js';
import type { Snapshot } from '../store/store.js';

export interface HostShare {
  ports: Port[];
  tapServices: TapService[];
  tapFlows: TapFlow[];
  tapMirrors: TapMirror[];
}

export function sharesByHost(all: Snapshot): Map<string, HostShare> {
  const ports = new Map(all.ports.filter((port) => !port.deleting).map((port) => [port.id, port]));
  const services = new Map(all.tapServices.filter((service) => !service.deleting && ports.has(service.port_id)).map((service) => [service.id, service]));
  const hostOf = (portId: string) => ports.get(portId)!.host_id;

  // Which hosts get each resource.
  const portHosts = new Map<string, Set<string>>();
  const serviceHosts = new Map<string, Set<string>>();
  const flowHosts = new Map<string, Set<string>>();
  const add = (index: Map<string, Set<string>>, id: string, host: string) => {
    let hosts = index.get(id);
    if (!hosts) {
      hosts = new Set();
      index.set(id, hosts);
    }
    hosts.add(host);
  };
  for (const port of ports.values()) add(portHosts, port.id, port.host_id);
  for (const service of services.values()) add(serviceHosts, service.id, hostOf(service.port_id));
  for (const flow of all.tapFlows) {
    const service = services.get(flow.tap_service_id);
    if (flow.deleting || !service || !ports.has(flow.source_port)) continue;
    for (const host of [hostOf(flow.source_port), hostOf(service.port_id)]) {
      add(flowHosts, flow.id, host);
      add(serviceHosts, service.id, host);
      add(portHosts, flow.source_port, host);
    }
  }
  // A tap service a host gets brings its port along.
  for (const [serviceId, hosts] of serviceHosts) for (const host of hosts) add(portHosts, services.get(serviceId)!.port_id, host);

  const shares = new Map<string, HostShare>();
  const share = (host: string): HostShare => {
    let found = shares.get(host);
    if (!found) {
      found = { ports: [], tapServices: [], tapFlows: [], tapMirrors: [] };
      shares.set(host, found);
    }
    return found;
  };
  for (const port of ports.values()) for (const host of portHosts.get(port.id) ?? []) share(host).ports.push(port);
  for (const service of services.values()) for (const host of serviceHosts.get(service.id) ?? []) share(host).tapServices.push(service);
  for (const flow of all.tapFlows) for (const host of flowHosts.get(flow.id) ?? []) share(host).tapFlows.push(flow);
  for (const mirror of all.tapMirrors) {
    if (!mirror.deleting && ports.has(mirror.port_id)) share(hostOf(mirror.port_id)).tapMirrors.push(mirror);
  }
  return shares;
}
