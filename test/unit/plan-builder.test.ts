import { describe, expect, it } from 'vitest';

import { buildPlan, deriveStatuses, mirrorTunnelId } from '../../src/agent/plan-builder.js';
import type { EngineStats } from '../../src/engine/engine.js';
import type { Port, TapFlow, TapMirror, TapService } from '../../src/model/resources.js';
import type { Snapshot } from '../../src/store/store.js';

const base = { project_id: 'p', name: '', description: '', status_reason: null, created_at: '', updated_at: '' };
const port = (id: string, ifname: string, netns: string | null = 'hostns'): Port =>
  ({ ...base, id, interface: ifname, netns, host_id: 'h', mac_address: null, status: 'ACTIVE' });

function snapshot(overrides: Partial<Snapshot> = {}): Snapshot {
  const services: TapService[] = [{ ...base, id: 'ts', port_id: 'mon', status: 'DOWN' }];
  const flows: TapFlow[] = [
    { ...base, id: 'f-in', tap_service_id: 'ts', source_port: 'vm', direction: 'IN', vlan_filter: '1-5,9', status: 'DOWN' },
    { ...base, id: 'f-out', tap_service_id: 'ts', source_port: 'vm', direction: 'OUT', vlan_filter: null, status: 'DOWN' },
  ];
  const mirrors: TapMirror[] = [{
    ...base, id: 'tm', port_id: 'vm', directions: { IN: 101, OUT: 102 }, remote_ip: '192.0.2.1', mirror_type: 'erspanv1', status: 'DOWN',
  }];
  return { ports: [port('mon', 'monh'), port('vm', 'vmh')], tapServices: services, tapFlows: flows, tapMirrors: mirrors, ...overrides };
}

describe('buildPlan', () => {
  it('captures each source port once, with one rule per flow and one tunnel per mirror direction', () => {
    const plan = buildPlan(snapshot());
    expect(plan.sources).toEqual([{ id: 'vm', ifname: 'vmh', netns: 'hostns' }]);
    expect(plan.sinks).toEqual([
      { id: 'ts', kind: 'port', ifname: 'monh', netns: 'hostns' },
      { id: 'tm/IN', kind: 'erspan', remoteIp: '192.0.2.1', session: 101, netns: 'hostns' },
      { id: 'tm/OUT', kind: 'erspan', remoteIp: '192.0.2.1', session: 102, netns: 'hostns' },
    ]);
    expect(plan.rules).toEqual([
      { id: 'f-in', sourceId: 'vm', sinkId: 'ts', direction: 'IN', vlans: [[1, 5], [9, 9]] },
      { id: 'f-out', sourceId: 'vm', sinkId: 'ts', direction: 'OUT' },
      { id: 'tm/IN', sourceId: 'vm', sinkId: 'tm/IN', direction: 'IN' },
      { id: 'tm/OUT', sourceId: 'vm', sinkId: 'tm/OUT', direction: 'OUT' },
    ]);
  });

  it('makes GRE mirrors GRE sinks keyed by the tunnel id', () => {
    const mirrors: TapMirror[] = [{ ...base, id: 'g', port_id: 'vm', directions: { OUT: 7 }, remote_ip: '2001:db8::1', mirror_type: 'gre', status: 'DOWN' }];
    const plan = buildPlan(snapshot({ tapMirrors: mirrors, tapFlows: [] }));
    expect(plan.sinks.filter((sink) => sink.kind === 'gre')).toEqual([{ id: 'g/OUT', kind: 'gre', remoteIp: '2001:db8::1', key: 7, netns: 'hostns' }]);
  });

  it('leaves out everything being deleted, and mirrors when asked to', () => {
    const state = snapshot();
    state.tapFlows[0]!.status = 'PENDING_DELETE';
    const plan = buildPlan(state, { withoutMirrors: true });
    expect(plan.rules.map((rule) => rule.id)).toEqual(['f-out']);
    expect(plan.sinks.map((sink) => sink.id)).toEqual(['ts']);
    state.tapServices[0]!.status = 'PENDING_DELETE';
    expect(buildPlan(state, { withoutMirrors: true })).toEqual({ sources: [], sinks: [], rules: [] });
  });

  it('omits netns for ports in the daemon\'s own namespace', () => {
    const plan = buildPlan(snapshot({ ports: [port('mon', 'monh', null), port('vm', 'vmh', null)], tapMirrors: [] }));
    expect(plan.sources).toEqual([{ id: 'vm', ifname: 'vmh' }]);
  });
});

describe('deriveStatuses', () => {
  const healthy: EngineStats = {
    sources: [{ id: 'vm', ok: true, packets: 0, bytes: 0, ringDrops: 0, ringFreezes: 0, truncated: 0, blockTimeoutMs: 1 }],
    sinks: ['ts', mirrorTunnelId('tm', 'IN'), mirrorTunnelId('tm', 'OUT')].map((id) => ({ id, ok: true, packets: 0, bytes: 0, errors: 0, truncated: 0, fragmented: 0 })),
    rules: [],
  };
  const up = new Map([['vm', { ok: true, up: true, mac: '02:00:00:00:00:01' }], ['mon', { ok: true, up: true, mac: '02:00:00:00:00:02' }]]);

  it('reports ACTIVE when the data path runs everything', () => {
    const updates = deriveStatuses(snapshot(), healthy, up);
    expect(updates.filter((u) => u.kind !== 'port').map((u) => [u.id, u.status])).toEqual([
      ['ts', 'ACTIVE'], ['f-in', 'ACTIVE'], ['f-out', 'ACTIVE'], ['tm', 'ACTIVE'],
    ]);
    expect(updates.find((u) => u.id === 'vm')).toMatchObject({ status: 'ACTIVE', macAddress: '02:00:00:00:00:01' });
  });

  it('reports ERROR with the engine\'s reason, naming the port and interface', () => {
    const stats: EngineStats = { ...healthy, sources: [{ ...healthy.sources[0]!, ok: false, reason: "interface 'vmh' does not exist" }] };
    const updates = deriveStatuses(snapshot(), stats, new Map([['vm', { ok: false, reason: "interface 'vmh' does not exist" }]]));
    const flow = updates.find((u) => u.id === 'f-in')!;
    expect(flow.status).toBe('ERROR');
    expect(flow.reason).toBe("source port vm (vmh@hostns): interface 'vmh' does not exist");
    expect(updates.find((u) => u.id === 'tm')).toMatchObject({ status: 'ERROR' });
    expect(updates.find((u) => u.id === 'ts')).toMatchObject({ status: 'ACTIVE' });
    expect(updates.find((u) => u.id === 'vm')).toMatchObject({ kind: 'port', status: 'ERROR' });
  });

  it('reports an unroutable tunnel as the mirror\'s ERROR', () => {
    const stats: EngineStats = {
      ...healthy,
      sinks: healthy.sinks.map((sink) => (sink.id === 'tm/OUT' ? { ...sink, ok: false, reason: 'no route to 192.0.2.1' } : sink)),
    };
    const mirror = deriveStatuses(snapshot(), stats, up).find((u) => u.id === 'tm')!;
    expect(mirror).toMatchObject({ status: 'ERROR', reason: 'OUT tunnel to 192.0.2.1: no route to 192.0.2.1' });
  });

  it('writes nothing when nothing changed', () => {
    const state = snapshot();
    for (const row of [...state.tapServices, ...state.tapFlows, ...state.tapMirrors]) row.status = 'ACTIVE';
    state.ports = state.ports.map((p) => ({ ...p, mac_address: up.get(p.id)!.mac }));
    expect(deriveStatuses(state, healthy, up)).toEqual([]);
  });

  it('puts everything in ERROR when the engine refused the plan', () => {
    const updates = deriveStatuses(snapshot(), { failure: 'the data path refused the plan: boom' }, up);
    expect(updates.filter((u) => u.kind !== 'port').every((u) => u.status === 'ERROR' && u.reason === 'the data path refused the plan: boom')).toBe(true);
  });
});
