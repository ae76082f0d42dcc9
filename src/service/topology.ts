/**
 * Flows that would deliver the same frame twice. Loops cannot form: a port
 * that receives a tap service's copies is never a source (taas-service.ts).
 */
import type { Direction, TapFlow } from '../model/resources.js';
import { parseVlanFilter, type VlanRanges } from '../model/vlan-filter.js';

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
