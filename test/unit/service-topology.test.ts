import { describe, expect, it } from 'vitest';

import type { Direction, TapFlow, TapService } from '../../src/model/resources.js';
import { findLoop, findOverlappingFlow } from '../../src/service/topology.js';

const base = { project_id: 'p', name: '', description: '', deleting: false, created_at: '', updated_at: '' };
const service = (id: string, port: string): TapService => ({ ...base, id, port_id: port });
const flow = (id: string, source: string, serviceId: string, direction: Direction = 'BOTH', vlan: string | null = null,
  deleting = false): TapFlow => ({
  ...base, id, source_port: source, tap_service_id: serviceId, direction, vlan_filter: vlan, deleting,
});

describe('findLoop', () => {
  const services = [service('A', 'pa'), service('B', 'pb'), service('C', 'pc')];

  it('finds a flow from a service port into its own service', () => {
    expect(findLoop('pa', 'pa', services, [])).toEqual(['pa']);
  });

  it('finds a cycle through several services and names the chain', () => {
    const flows = [flow('1', 'pa', 'B'), flow('2', 'pb', 'C')];
    // A new flow pc -> A: A's port reaches pb, pb reaches pc.
    expect(findLoop('pc', 'pa', services, flows)).toEqual(['pa', 'pb', 'pc']);
  });

  it('accepts chains that do not come back', () => {
    const flows = [flow('1', 'pa', 'B'), flow('2', 'pb', 'C')];
    expect(findLoop('vm', 'pa', services, flows)).toBeUndefined();
    expect(findLoop('pa', 'pc', services, flows)).toBeUndefined();
  });

  it('ignores flows being deleted', () => {
    const flows = [flow('1', 'pa', 'B', 'BOTH', null, true)];
    expect(findLoop('pb', 'pa', services, flows)).toBeUndefined();
  });
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
