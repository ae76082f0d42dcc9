/**
 * Integrity rules over the graph of ports and tap flows: loops and flows that
 * would deliver the same frame twice. Pure functions over store rows.
 */
import type { Direction, TapFlow, TapService } from '../model/resources.js';
import { parseVlanFilter, type VlanRanges } from '../model/vlan-filter.js';

/**
 * Whether a new flow from sourcePortId into a service on destinationPortId
 * would let mirrored traffic come back to where it was captured: the
 * destination is the source itself, or the destination's traffic already
 * reaches the source through other services (A's monitor mirrored into B whose
 * monitor is mirrored into A).
 *
 * Returns the chain of port ids from the destination back to the source, or
 * undefined when there is no loop.
 */
export function findLoop(
  sourcePortId: string,
  destinationPortId: string,
  services: readonly TapService[],
  flows: readonly TapFlow[],
): string[] | undefined {
  const servicePort = new Map(services.map((service) => [service.id, service.port_id]));
  // Edges of the graph: a flow copies what its source port carries onto its service's port.
  const copiesTo = new Map<string, string[]>();
  for (const flow of flows) {
    if (flow.deleting) continue;
    const to = servicePort.get(flow.tap_service_id);
    if (to === undefined) continue;
    copiesTo.set(flow.source_port, [...(copiesTo.get(flow.source_port) ?? []), to]);
  }
  const previous = new Map<string, string>();
  const queue = [destinationPortId];
  const seen = new Set(queue);
  while (queue.length > 0) {
    const port = queue.shift()!;
    if (port === sourcePortId) {
      const chain = [port];
      for (let at = port; at !== destinationPortId;) {
        at = previous.get(at)!;
        chain.unshift(at);
      }
      return chain;
    }
    for (const next of copiesTo.get(port) ?? []) {
      if (seen.has(next)) continue;
      seen.add(next);
      previous.set(next, port);
      queue.push(next);
    }
  }
  return undefined;
}

function directionsOverlap(a: Direction, b: Direction): boolean {
  return a === b || a === 'BOTH' || b === 'BOTH';
}

function vlansOverlap(a: VlanRanges | undefined, b: VlanRanges | undefined): boolean {
  // No filter: every frame, tagged or not, so it overlaps any filter.
  if (a === undefined || b === undefined) return true;
  return a.some(([lowA, highA]) => b.some(([lowB, highB]) => lowA <= highB && lowB <= highA));
}

const rangesOf = (filter: string | null): VlanRanges | undefined => (filter === null ? undefined : parseVlanFilter(filter));

/**
 * The existing flow that already copies some of the same frames from the same
 * port into the same service, if any: both would deliver those frames twice.
 */
export function findOverlappingFlow(
  candidate: Pick<TapFlow, 'source_port' | 'tap_service_id' | 'direction' | 'vlan_filter'>,
  flows: readonly TapFlow[],
): TapFlow | undefined {
  const candidateVlans = rangesOf(candidate.vlan_filter);
  return flows.find((flow) => !flow.deleting
    && flow.source_port === candidate.source_port
    && flow.tap_service_id === candidate.tap_service_id
    && directionsOverlap(flow.direction, candidate.direction)
    && vlansOverlap(rangesOf(flow.vlan_filter), candidateVlans));
}
