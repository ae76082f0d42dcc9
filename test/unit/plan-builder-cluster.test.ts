import { describe, expect, it } from 'vitest';

import { buildPlan, observe, type DataPathStats } from '../../src/agent/plan-builder.js';
import type { DesiredState } from '../../src/model/observation.js';
import type { Port, TapFlow, TapService } from '../../src/model/resources.js';

const base = { project_id: 'p', name: '', description: '', deleting: false, created_at: '', updated_at: '' };
const port = (id: string, ifname: string, host: string): Port => ({ ...base, id, interface: ifname, netns: null, host_id: host });
const flow = (id: string, source: string, service: string): TapFlow =>
  ({ ...base, id, tap_service_id: service, source_port: source, direction: 'BOTH', vlan_filter: null });

/**
 * Hosts A and B. On A: vm-a (a source), mon-a (tap service ts-a). On B: vm-b,
 * mon-b (tap service ts-b). Flows: vm-a → ts-b (across), vm-b → ts-b (local
 * on B), vm-a → ts-a (local on A).
 */
function desired(host: 'A' | 'B', underlay: Record<string, string> = { A: '192.0.2.11', B: '192.0.2.12' }): DesiredState {
  const ports = [port('vm-a', 'vmh', 'A'), port('mon-a', 'monh', 'A'), port('vm-b', 'vmh', 'B'), port('mon-b', 'monh', 'B')];
  const services: TapService[] = [{ ...base, id: 'ts-a', port_id: 'mon-a' }, { ...base, id: 'ts-b', port_id: 'mon-b' }];
  const flows = [flow('a-b', 'vm-a', 'ts-b'), flow('b-b', 'vm-b', 'ts-b'), flow('a-a', 'vm-a', 'ts-a')];
  const peer = host === 'A' ? 'B' : 'A';
  return {
    revision: 5, ports, tapServices: services, tapFlows: flows, tapMirrors: [],
    tunnels: { keys: { 'ts-a': 1, 'ts-b': 2 }, underlay: underlay[peer] === undefined ? {} : { [peer]: underlay[peer]! } },
  };
}

const allOk = (plan: ReturnType<typeof buildPlan>): DataPathStats => ({
  sources: plan.sources.map((s) => ({ id: s.id, ok: true, packets: 0, bytes: 0, captureDrops: 0 })),
  sinks: plan.sinks.map((s) => ({ id: s.id, ok: true, packets: 0, bytes: 0, errors: 0 })),
  rules: plan.rules.map((r) => ({ id: r.id, ok: true, packets: 0, bytes: 0, oversize: 0, unavailable: 0 })),
  interfaces: (plan.interfaces ?? []).map((i) => ({ id: i.id, present: true, up: true, running: true, mac: '02:00:00:00:00:01', mtu: 1500 })),
  terminations: (plan.terminations ?? []).map((t) => ({ id: t.id, ok: true, packets: 4, errors: 0 })),
});

describe('plans across hosts (cluster mode)', () => {
  it('sends a flow into another host\'s tap service to that host\'s underlay address, with the service\'s key; local flows stay local', () => {
    const plan = buildPlan(desired('A'), 'A');
    expect(plan.sinks).toEqual([
      { id: 'ts-a', kind: 'port', ifname: 'monh' },
      { id: 'ts-b', kind: 'host', host: 'B', remoteIp: '192.0.2.12', key: 2 },
    ]);
    expect(plan.rules.map((rule) => [rule.id, rule.sinkId])).toEqual([['a-b', 'ts-b'], ['a-a', 'ts-a']]);
    expect(plan.sources).toEqual([{ id: 'vm-a', ifname: 'vmh' }]);
    // No flow of another host feeds ts-a: nothing to terminate on A.
    expect(plan.terminations).toBeUndefined();
  });

  it('terminates the tunnels into a local tap service fed from other hosts', () => {
    const plan = buildPlan(desired('B'), 'B');
    expect(plan.terminations).toEqual([{ id: 'ts-b', key: 2, sinkId: 'ts-b' }]);
    expect(plan.rules.map((rule) => rule.id)).toEqual(['b-b']);
    const observed = observe(desired('B'), 'B', allOk(plan));
    expect(observed.find((o) => o.id === 'a-b')).toMatchObject({ status: 'ACTIVE' });
    // What arrived through the tunnel went out of the port too.
    expect(observed.find((o) => o.id === 'ts-b')?.counters?.packets).toBe(4);
  });

  it('puts a flow from another host in ERROR when its tunnel cannot be terminated', () => {
    const plan = buildPlan(desired('B'), 'B');
    const stats = allOk(plan);
    stats.terminations = [{ id: 'ts-b', ok: false, reason: 'cannot terminate the tunnel from other hosts: no CAP_NET_RAW', packets: 0, errors: 0 }];
    expect(observe(desired('B'), 'B', stats).find((o) => o.id === 'a-b')).toMatchObject({
      status: 'ERROR', reason: 'tunnel from host A into tap service ts-b: cannot terminate the tunnel from other hosts: no CAP_NET_RAW',
    });
  });

  it('waits, DOWN, for the underlay address of the other host\'s agent', () => {
    const state = desired('A', {});
    const plan = buildPlan(state, 'A');
    expect(plan.sinks.find((sink) => sink.id === 'ts-b')).toEqual({ id: 'ts-b', kind: 'host', host: 'B', key: 2 });
    expect(observe(state, 'A', allOk(plan)).find((o) => o.id === 'a-b')).toEqual({
      kind: 'tap_flow', id: 'a-b', status: 'DOWN', reason: 'waiting for the underlay address of host B\'s agent',
    });
  });

  it('builds the embedded daemon\'s plans as before: no addresses, no keys, no terminations', () => {
    const { tunnels: _, ...embedded } = desired('A');
    const plan = buildPlan(embedded, 'A');
    expect(plan.sinks.find((sink) => sink.id === 'ts-b')).toEqual({ id: 'ts-b', kind: 'host', host: 'B' });
    expect(buildPlan({ ...desired('B'), tunnels: undefined }, 'B').terminations).toBeUndefined();
  });
});
