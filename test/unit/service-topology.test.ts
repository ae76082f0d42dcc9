import { describe, expect, it } from 'vitest';

import type { Direction, TapFlow } from '../../src/model/resources.js';
import { findOverlappingFlow } from '../../src/service/topology.js';

const base = { project_id: 'p', name: '', description: '', deleting: false, created_at: '', updated_at: '' };
const flow = (id: string, source: string, serviceId: string, direction: Direction = 'BOTH', vlan: string | null = null,
  deleting = false): TapFlow => ({
  ...base, id, source_port: source, tap_service_id: serviceId, direction, vlan_filter: vlan, deleting,
});

describe('findOverlappingFlow', () => {
  const existing = [flow('f1', 'vm', 'S', 'IN', '10-20'), flow('f2', 'vm', 'S', 'OUT')];
  const candidate = (direction: Direction, vlan: string | null, source = 'vm', serviceId = 'S') =>
    ({ source_port: source, tap_service_id: serviceId, direction, vlan_filter: vlan });

  it('finds a flow copying some of the same frames into the same service', () => {
    expect(findOverlappingFlow(candidate('IN', '15'), existing)?.id).toBe('f1');
    expect(findOverlappingFlow(candidate('BOTH', '1-9'), existing)?.id).toBe('f2');
    expect(findOverlappingFlow(candidate('IN', null), existing)?.id).toBe('f1');
  });

  it('accepts disjoint VLANs, another direction, another source or another service', () => {
    expect(findOverlappingFlow(candidate('IN', '21-30'), existing)).toBeUndefined();
    expect(findOverlappingFlow(candidate('IN', '15', 'vm2'), existing)).toBeUndefined();
    expect(findOverlappingFlow(candidate('BOTH', null, 'vm', 'T'), existing)).toBeUndefined();
  });
});
