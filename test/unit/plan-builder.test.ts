import { describe, expect, it } from 'vitest';

import { buildPlan, mirrorTunnelId, observe, Observer, type DataPathStats } from '../../src/agent/plan-builder.js';
import type { DesiredState } from '../../src/model/observation.js';
import type { Port, TapFlow, TapMirror, TapService } from '../../src/model/resources.js';

const base = { project_id: 'p', name: '', description: '', deleting: false, created_at: '', updated_at: '' };
const port = (id: string, ifname: string, netns: string | null = 'hostns', host = 'h'): Port =>
  ({ ...base, id, interface: ifname, netns, host_id: host });

function snapshot(overrides: Partial<DesiredState> = {}): DesiredState {
  const services: TapService[] = [{ ...base, id: 'ts', port_id: 'mon' }];
  const flows: TapFlow[] = [
    { ...base, id: 'f-in', tap_service_id: 'ts', source_port: 'vm', direction: 'IN', vlan_filter: '1-5,9' },
    { ...base, id: 'f-out', tap_service_id: 'ts', source_port: 'vm', direction: 'OUT', vlan_filter: null },
  ];
  const mirrors: TapMirror[] = [{
    ...base, id: 'tm', port_id: 'vm', directions: { IN: 101, OUT: 102 }, remote_ip: '192.0.2.1', mirror_type: 'erspanv1',
  }];
  return { revision: 1, ports: [port('mon', 'monh'), port('vm', 'vmh')], tapServices: services, tapFlows: flows, tapMirrors: mirrors, ...overrides };
}

describe('buildPlan', () => {
  it('captures each source port once, with one rule per flow and one tunnel per mirror direction', () => {
    const plan = buildPlan(snapshot(), 'h');
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
    expect(plan.interfaces).toEqual([{ id: 'mon', ifname: 'monh', netns: 'hostns' }, { id: 'vm', ifname: 'vmh', netns: 'hostns' }]);
  });

  it('puts a flow\'s and a mirror\'s filter, sample_rate and snaplen on their rules (null and sample_rate 1: left out)', () => {
    const flows = [
      { ...base, id: 'f', tap_service_id: 'ts', source_port: 'vm', direction: 'BOTH', vlan_filter: null, packet_filter: 'udp port 53', snaplen: 96, sample_rate: 10 },
      { ...base, id: 'g', tap_service_id: 'ts', source_port: 'vm', direction: 'IN', vlan_filter: null, packet_filter: null, snaplen: null, sample_rate: 1 },
    ] as TapFlow[];
    const mirrors = [{
      ...base, id: 'm', port_id: 'vm', directions: { IN: 5, OUT: 6 }, remote_ip: '192.0.2.1', mirror_type: 'erspanv1', udp_port: null,
      packet_filter: 'tcp', snaplen: 128, sample_rate: null,
    }] as TapMirror[];
    const plan = buildPlan(snapshot({ tapFlows: flows, tapMirrors: mirrors }), 'h');
    expect(plan.rules).toEqual([
      { id: 'f', sourceId: 'vm', sinkId: 'ts', direction: 'BOTH', filter: 'udp port 53', sampleRate: 10, snaplen: 96 },
      { id: 'g', sourceId: 'vm', sinkId: 'ts', direction: 'IN' },
      { id: 'm/IN', sourceId: 'vm', sinkId: 'm/IN', direction: 'IN', filter: 'tcp', snaplen: 128 },
      { id: 'm/OUT', sourceId: 'vm', sinkId: 'm/OUT', direction: 'OUT', filter: 'tcp', snaplen: 128 },
    ]);
  });

  it('makes GRE mirrors GRE sinks keyed by the tunnel id', () => {
    const mirrors: TapMirror[] = [{ ...base, id: 'g', port_id: 'vm', directions: { OUT: 7 }, remote_ip: '2001:db8::1', mirror_type: 'gre' }];
    const plan = buildPlan(snapshot({ tapMirrors: mirrors, tapFlows: [] }), 'h');
    expect(plan.sinks.filter((sink) => sink.kind === 'gre')).toEqual([{ id: 'g/OUT', kind: 'gre', remoteIp: '2001:db8::1', key: 7, netns: 'hostns' }]);
  });

  it('makes erspanv2 mirrors ERSPAN III sinks and vxlan mirrors VXLAN sinks to their UDP port; BOTH is one tunnel and one BOTH rule', () => {
    const mirrors: TapMirror[] = [
      { ...base, id: 'e3', port_id: 'vm', directions: { BOTH: 9 }, remote_ip: '192.0.2.5', mirror_type: 'erspanv2', udp_port: null },
      { ...base, id: 'vx', port_id: 'vm', directions: { IN: 70000, OUT: 70001 }, remote_ip: '192.0.2.6', mirror_type: 'vxlan', udp_port: 4790 },
    ];
    const plan = buildPlan(snapshot({ tapMirrors: mirrors, tapFlows: [] }), 'h');
    expect(plan.sinks.filter((sink) => sink.kind !== 'port')).toEqual([
      { id: 'e3/BOTH', kind: 'erspan3', remoteIp: '192.0.2.5', session: 9, netns: 'hostns' },
      { id: 'vx/IN', kind: 'vxlan', remoteIp: '192.0.2.6', vni: 70000, port: 4790, netns: 'hostns' },
      { id: 'vx/OUT', kind: 'vxlan', remoteIp: '192.0.2.6', vni: 70001, port: 4790, netns: 'hostns' },
    ]);
    expect(plan.rules).toEqual([
      { id: 'e3/BOTH', sourceId: 'vm', sinkId: 'e3/BOTH', direction: 'BOTH' },
      { id: 'vx/IN', sourceId: 'vm', sinkId: 'vx/IN', direction: 'IN' },
      { id: 'vx/OUT', sourceId: 'vm', sinkId: 'vx/OUT', direction: 'OUT' },
    ]);
    // The BOTH tunnel's counters are the mirror's BOTH part.
    const stats: DataPathStats = {
      sources: [{ id: 'vm', ok: true, packets: 5, bytes: 500, captureDrops: 0 }],
      sinks: plan.sinks.map((sink) => ({ id: sink.id, ok: true, packets: 3, bytes: 300, errors: 0 })),
      rules: plan.rules.map((rule) => ({ id: rule.id, ok: true, packets: 3, bytes: 300, oversize: 0, unavailable: 0 })),
      interfaces: [],
    };
    const seen = observe(snapshot({ tapMirrors: mirrors, tapFlows: [] }), 'h', stats).find((o) => o.id === 'e3');
    expect(seen).toMatchObject({ status: 'ACTIVE', parts: { BOTH: { packets: 3, bytes: 300 } } });
  });

  it('omits netns for ports in the daemon\'s own namespace', () => {
    const plan = buildPlan(snapshot({ ports: [port('mon', 'monh', null), port('vm', 'vmh', null)], tapMirrors: [] }), 'h');
    expect(plan.sources).toEqual([{ id: 'vm', ifname: 'vmh' }]);
  });

  it('honours binding:host_id: a port on another host is not this agent\'s', () => {
    const state = snapshot({ ports: [port('mon', 'monh', null, 'h2'), port('vm', 'vmh', null, 'h1')] });
    const source = buildPlan(state, 'h1');
    expect(source.sources.map((s) => s.id)).toEqual(['vm']);
    expect(source.sinks).toContainEqual({ id: 'ts', kind: 'host', host: 'h2' });
    expect(source.rules.map((r) => [r.id, r.sinkId])).toEqual([['f-in', 'ts'], ['f-out', 'ts'], ['tm/IN', 'tm/IN'], ['tm/OUT', 'tm/OUT']]);
    expect(source.interfaces!.map((i) => i.id)).toEqual(['vm']);
    const destination = buildPlan(state, 'h2');
    expect(destination).toEqual({ sources: [], sinks: [{ id: 'ts', kind: 'port', ifname: 'monh' }], rules: [], interfaces: [{ id: 'mon', ifname: 'monh' }] });
    expect(buildPlan(state, 'h3')).toEqual({ sources: [], sinks: [], rules: [], interfaces: [] });
  });
});

describe('observe', () => {
  const healthy: DataPathStats = {
    sources: [{ id: 'vm', ok: true, packets: 10, bytes: 1000, captureDrops: 2 }],
    sinks: ['ts', mirrorTunnelId('tm', 'IN'), mirrorTunnelId('tm', 'OUT')].map((id) => ({ id, ok: true, packets: 0, bytes: 0, errors: 0 })),
    rules: ['f-in', 'f-out', 'tm/IN', 'tm/OUT'].map((id) => ({ id, ok: true, packets: 3, bytes: 300, oversize: 1, unavailable: 0 })),
    interfaces: [
      { id: 'vm', present: true, up: true, running: true, mac: '02:00:00:00:00:01', mtu: 1500 },
      { id: 'mon', present: true, up: true, running: true, mac: '02:00:00:00:00:02', mtu: 1500 },
    ],
  };
  const byId = (observations: ReturnType<typeof observe>) => new Map(observations.map((o) => [o.id, o]));

  it('reports ACTIVE with counters when the data path runs everything', () => {
    const seen = byId(observe(snapshot(), 'h', healthy));
    expect([...seen.values()].map((o) => [o.id, o.status])).toEqual([
      ['mon', 'ACTIVE'], ['vm', 'ACTIVE'], ['ts', 'ACTIVE'], ['f-in', 'ACTIVE'], ['f-out', 'ACTIVE'], ['tm', 'ACTIVE'],
    ]);
    expect(seen.get('vm')).toMatchObject({ interface: { mac: '02:00:00:00:00:01', mtu: 1500 }, counters: { packets: 10, drops: { capture: 2 } } });
    expect(seen.get('f-in')!.counters).toEqual({ packets: 3, bytes: 300, drops: { oversize: 1, unavailable: 0 }, datapath: 'packet' });
    expect(seen.get('tm')).toMatchObject({ counters: { packets: 6, bytes: 600, drops: { oversize: 2 } }, parts: { IN: { packets: 3 }, OUT: { packets: 3 } } });
  });

  it('says which data path runs each rule and why AF_PACKET\'s: packet when the data path does not say, one path over a mirror\'s directions', () => {
    const why = 'the bpf data path does not filter, sample or cut copies yet';
    const stats: DataPathStats = {
      ...healthy,
      rules: healthy.rules.map((rule) => (rule.id === 'f-in' ? { ...rule, datapath: 'bpf' as const }
        : rule.id === 'f-out' ? rule
        : { ...rule, datapath: 'packet' as const, datapathReason: why })),
    };
    const seen = byId(observe(snapshot(), 'h', stats));
    expect(seen.get('f-in')!.counters).toMatchObject({ datapath: 'bpf' });
    expect(seen.get('f-in')!.counters!.datapath_reason).toBeUndefined();
    expect(seen.get('f-out')!.counters).toMatchObject({ datapath: 'packet' });
    expect(seen.get('f-out')!.counters!.datapath_reason).toBeUndefined();
    expect(seen.get('tm')).toMatchObject({
      counters: { datapath: 'packet', datapath_reason: why },
      parts: { IN: { datapath: 'packet', datapath_reason: why }, OUT: { datapath: 'packet', datapath_reason: why } },
    });
    // Directions on different paths: the sum says none, each direction says its own.
    const split: DataPathStats = { ...stats, rules: stats.rules.map((rule) => (rule.id === 'tm/IN' ? { ...rule, datapath: 'bpf' as const, datapathReason: undefined } : rule)) };
    const mirror = byId(observe(snapshot(), 'h', split)).get('tm')!;
    expect(mirror.counters!.datapath).toBeUndefined();
    expect(mirror.parts).toMatchObject({ IN: { datapath: 'bpf' }, OUT: { datapath: 'packet', datapath_reason: why } });
    // The observation stays plain JSON (an etcd value in cluster mode).
    expect(JSON.parse(JSON.stringify(mirror))).toEqual(mirror);
  });

  it('carries what the rules\' stages took as counters.selection, summed over a mirror\'s directions; absent while all are 0', () => {
    const stats: DataPathStats = {
      ...healthy,
      rules: healthy.rules.map((rule, i) => ({ ...rule, filtered: i === 1 ? 0 : 4, sampledOut: i === 1 ? 0 : 5, truncated: i === 1 ? 0 : 2 })),
    };
    const seen = byId(observe(snapshot(), 'h', stats));
    expect(seen.get('f-in')!.counters).toEqual({ packets: 3, bytes: 300, drops: { oversize: 1, unavailable: 0 }, selection: { filtered: 4, sampled_out: 5, truncated: 2 }, datapath: 'packet' });
    expect(seen.get('f-out')!.counters!.selection).toBeUndefined();
    expect(seen.get('tm')).toMatchObject({
      counters: { selection: { filtered: 8, sampled_out: 10, truncated: 4 } }, parts: { IN: { selection: { filtered: 4 } } },
    });
  });

  it('reports ERROR with the engine\'s reason, naming the port and interface', () => {
    const stats: DataPathStats = {
      ...healthy,
      sources: [{ ...healthy.sources[0]!, ok: false, reason: "interface 'vmh' does not exist" }],
      interfaces: [{ id: 'vm', present: false, up: false, running: false, mac: '', mtu: 0, reason: "interface 'vmh' does not exist" }, healthy.interfaces![1]!],
    };
    const seen = byId(observe(snapshot(), 'h', stats));
    expect(seen.get('f-in')).toMatchObject({ status: 'ERROR', reason: "source port vm (vmh@hostns): interface 'vmh' does not exist" });
    expect(seen.get('tm')).toMatchObject({ status: 'ERROR' });
    expect(seen.get('ts')).toMatchObject({ status: 'ACTIVE' });
    expect(seen.get('vm')).toMatchObject({ kind: 'port', status: 'ERROR', reason: "interface 'vmh' does not exist", interface: { present: false, mac: null } });
  });

  it('reports a port that is another spelling of an earlier port\'s interface as ERROR, naming that port', () => {
    const twin = port('twin', 'vmh', '/tmp/link-to-hostns');
    const stats: DataPathStats = {
      ...healthy,
      interfaces: [...healthy.interfaces!, { ...healthy.interfaces![0]!, id: 'twin', sameAs: 'vm' }],
    };
    const seen = byId(observe(snapshot({ ports: [port('mon', 'monh'), port('vm', 'vmh'), twin] }), 'h', stats));
    expect(seen.get('twin')).toMatchObject({
      kind: 'port', status: 'ERROR', reason: 'interface is already registered as port vm', interface: { present: true, mac: '02:00:00:00:00:01' },
    });
    expect(seen.get('vm')).toMatchObject({ status: 'ACTIVE', reason: null });
  });

  it('reports a port that is down or has lost its carrier as DOWN, with the reason', () => {
    const down = { ...healthy, interfaces: [{ ...healthy.interfaces![0]!, up: false, running: false }, { ...healthy.interfaces![1]!, running: false }] };
    const seen = byId(observe(snapshot(), 'h', down));
    expect(seen.get('vm')).toMatchObject({ status: 'DOWN', reason: 'interface is down' });
    expect(seen.get('mon')).toMatchObject({ status: 'DOWN', reason: 'interface has no carrier' });
  });

  it('reports an unroutable tunnel as the mirror\'s ERROR', () => {
    const stats: DataPathStats = {
      ...healthy,
      sinks: healthy.sinks.map((sink) => (sink.id === 'tm/OUT' ? { ...sink, ok: false, reason: 'no route to 192.0.2.1' } : sink)),
    };
    expect(byId(observe(snapshot(), 'h', stats)).get('tm')).toMatchObject({ status: 'ERROR', reason: 'OUT tunnel to 192.0.2.1: no route to 192.0.2.1' });
  });

  it('reports a rule the data path refused on its own resource only', () => {
    const stats: DataPathStats = {
      ...healthy,
      rules: healthy.rules.map((rule) => (rule.id === 'f-out' ? { ...rule, ok: false, reason: 'destination port mon is also a mirrored source' } : rule)),
    };
    const seen = byId(observe(snapshot(), 'h', stats));
    expect(seen.get('f-out')).toMatchObject({ status: 'ERROR', reason: 'destination port mon is also a mirrored source' });
    expect(seen.get('f-in')!.status).toBe('ACTIVE');
  });

  it('leaves out ports whose interface the data path has not looked at yet', () => {
    expect(byId(observe(snapshot(), 'h', { ...healthy, interfaces: [] })).has('vm')).toBe(false);
  });

  it('puts everything in ERROR when the data path refused the plan', () => {
    const observations = observe(snapshot(), 'h', { failure: 'the data path refused the plan: boom' });
    expect(observations).toHaveLength(6);
    expect(observations.every((o) => o.status === 'ERROR' && o.reason === 'the data path refused the plan: boom')).toBe(true);
  });

  it('observes on each host only its own side of a flow across hosts', () => {
    const state = snapshot({ ports: [port('mon', 'monh', null, 'h2'), port('vm', 'vmh', null, 'h1')], tapMirrors: [] });
    const onSource = observe(state, 'h1', { ...healthy, sinks: [{ id: 'ts', ok: false, reason: 'no tunnel to host h2' }] });
    expect(onSource.map((o) => [o.kind, o.id, o.status])).toEqual([['port', 'vm', 'ACTIVE'], ['tap_flow', 'f-in', 'ERROR'], ['tap_flow', 'f-out', 'ERROR']]);
    expect(onSource[1]!.reason).toBe('tap service ts on host h2: no tunnel to host h2');
    const onDestination = observe(state, 'h2', healthy);
    expect(onDestination.map((o) => [o.kind, o.id, o.status])).toEqual([
      ['port', 'mon', 'ACTIVE'], ['tap_service', 'ts', 'ACTIVE'], ['tap_flow', 'f-in', 'ACTIVE'], ['tap_flow', 'f-out', 'ACTIVE'],
    ]);
  });
});

describe('Observer (incremental observe)', () => {
  /** A seeded generator, so that a failure can be replayed. */
  const random = (seed: number) => () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };

  it('changes() keeps the same observations as observe() from scratch, over 300 ticks of random changes, and returns what differs', () => {
    const next = random(7);
    const ports = [port('mon', 'monh'), port('mon2', 'mon2h'), ...Array.from({ length: 8 }, (_, i) => port(`vm${i}`, `vm${i}h`))];
    const services: TapService[] = [{ ...base, id: 'ts', port_id: 'mon' }, { ...base, id: 'ts2', port_id: 'mon2' }];
    const flows: TapFlow[] = Array.from({ length: 8 }, (_, i) => ({
      ...base, id: `f${i}`, tap_service_id: i % 2 ? 'ts' : 'ts2', source_port: `vm${i}`, direction: 'BOTH', vlan_filter: null,
    }));
    const mirrors: TapMirror[] = [{ ...base, id: 'tm', port_id: 'vm1', directions: { IN: 101, OUT: 102 }, remote_ip: '192.0.2.1', mirror_type: 'gre' }];
    const desired = snapshot({ ports, tapServices: services, tapFlows: flows, tapMirrors: mirrors });
    const plan = buildPlan(desired, 'h');
    const health = () => (next() < 0.8 ? { ok: true } : { ok: false, reason: `broken ${Math.floor(next() * 3)}` });
    const count = () => Math.floor(next() * 3);
    let stats: DataPathStats = {
      sources: plan.sources.map((s) => ({ id: s.id, ok: true, packets: 0, bytes: 0, captureDrops: 0 })),
      sinks: plan.sinks.map((s) => ({ id: s.id, ok: true, packets: 0, bytes: 0, errors: 0 })),
      rules: plan.rules.map((r) => ({ id: r.id, ok: true, packets: 0, bytes: 0, oversize: 0, unavailable: 0 })),
      interfaces: plan.interfaces!.map((i) => ({ id: i.id, present: true, up: true, running: true, mac: '02:00:00:00:00:01', mtu: 1500 })),
    };
    const observer = new Observer(desired, 'h');
    expect(observer.observe(stats)).toEqual(observe(desired, 'h', stats));
    let previous = observe(desired, 'h', stats);
    for (let tick = 0; tick < 300; tick += 1) {
      // Each list, entry by entry: kept (the same object), or replaced by one that may or may not differ.
      const vary = <T extends object>(list: T[], change: (entry: T) => T) => (next() < 0.5 ? list : list.map((entry) => (next() < 0.2 ? change(entry) : entry)));
      stats = {
        sources: vary(stats.sources, (s) => ({ ...s, ...health(), packets: s.packets + count() })),
        sinks: vary(stats.sinks, (s) => ({ ...s, ...health(), bytes: s.bytes + count() })),
        rules: vary(stats.rules, (r) => ({ ...r, packets: r.packets + count() })),
        interfaces: vary(stats.interfaces!, (i) => ({ ...i, up: next() < 0.8, running: next() < 0.8 })),
      };
      if (tick % 50 === 49) stats = { ...stats, interfaces: stats.interfaces!.slice(1) };
      const failure = tick % 70 === 69 ? { failure: 'the data path refused the plan: no' } : undefined;
      const { changed } = observer.changes(failure ?? stats);
      const expected = observe(desired, 'h', failure ?? stats);
      expect(observer.observations()).toEqual(expected);
      const before = new Map(previous.map((o) => [`${o.kind}/${o.id}`, o]));
      expect(changed).toEqual(expected.filter((o) => JSON.stringify(before.get(`${o.kind}/${o.id}`)) !== JSON.stringify(o)));
      previous = expected;
    }
  });
});
