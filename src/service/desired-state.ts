/**
 * The desired state of each host, read from the store: the in-process
 * DesiredStateSource of the embedded daemon. The service calls `changed()`
 * after every committed change; agents subscribed to a host then read its
 * snapshot again.
 */
import { EventEmitter } from 'node:events';

import type { DesiredState, DesiredStateSource } from '../model/observation.js';
import type { Port } from '../model/resources.js';
import type { Snapshot, Store } from '../store/store.js';

/** Told of every committed change of the desired state; returns the revision that change made. */
export interface DesiredStateFeed {
  changed(): number;
  readonly revision: number;
}

/** What of a full snapshot concerns one host (see DesiredState). */
export function desiredStateOf(all: Snapshot, host: string, revision: number): DesiredState {
  const ports = new Map(all.ports.filter((port) => !port.deleting).map((port) => [port.id, port]));
  const onHost = (portId: string) => ports.get(portId)?.host_id === host;
  const services = all.tapServices.filter((service) => !service.deleting && ports.has(service.port_id));
  const servicePorts = new Map(services.map((service) => [service.id, service.port_id]));
  const tapFlows = all.tapFlows.filter((flow) => {
    const servicePort = servicePorts.get(flow.tap_service_id);
    return !flow.deleting && servicePort !== undefined && ports.has(flow.source_port)
      && (onHost(flow.source_port) || onHost(servicePort));
  });
  const tapMirrors = all.tapMirrors.filter((mirror) => !mirror.deleting && onHost(mirror.port_id));
  const tapServices = services.filter((service) => onHost(service.port_id)
    || tapFlows.some((flow) => flow.tap_service_id === service.id));
  const wanted = new Set<string>();
  for (const port of ports.values()) if (port.host_id === host) wanted.add(port.id);
  for (const service of tapServices) wanted.add(service.port_id);
  for (const flow of tapFlows) wanted.add(flow.source_port);
  const hostPorts: Port[] = [...ports.values()].filter((port) => wanted.has(port.id));
  return { revision, ports: hostPorts, tapServices, tapFlows, tapMirrors };
}

export class LocalDesiredState implements DesiredStateSource, DesiredStateFeed {
  private current = 0;
  private readonly events = new EventEmitter();

  constructor(private readonly store: Store) {
    this.events.setMaxListeners(0);
  }

  get revision(): number {
    return this.current;
  }

  changed(): number {
    this.current += 1;
    this.events.emit('change');
    return this.current;
  }

  snapshot(host: string): DesiredState {
    return desiredStateOf(this.store.snapshot(), host, this.current);
  }

  subscribe(_host: string, listener: () => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }
}
