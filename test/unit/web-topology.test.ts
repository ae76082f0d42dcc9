import { describe, expect, it } from 'vitest';

import { RateHistory } from '../../web/src/history.js';
import { buildTopology, layoutKey, layoutTopology } from '../../web/src/topology.js';
import type { Inventory, Port, StatsReport } from '../../web/src/types.js';

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const common = (n: number, name: string) => ({ id: id(n), name, description: '', project_id: 'p', status: 'ACTIVE' as const, status_reason: null });
const port = (n: number, name: string, host: string, ifname: string): Port => ({
  ...common(n, name), mac_address: null, 'binding:host_id': host, 'binding:profile': { interface: ifname },
});

function inventory(): Inventory {
  return {
    ports: [port(1, 'vm1', 'a', 'vm1h'), port(2, 'mon', 'a', 'monh'), port(3, 'vm9', 'b', 'vm9h')],
    tap_services: [{ ...common(10, 'ts'), port_id: id(2) }],
    tap_flows: [
      { ...common(20, 'tf'), tap_service_id: id(10), source_port: id(1), direction: 'BOTH', vlan_filter: null },
      { ...common(21, 'tf9'), tap_service_id: id(10), source_port: id(3), direction: 'IN', vlan_filter: '1-5' },
      // A flow from a port this caller cannot list.
      { ...common(22, ''), tap_service_id: id(10), source_port: id(99), direction: 'OUT', vlan_filter: null },
    ],
    tap_mirrors: [
      { ...common(30, 'tm'), port_id: id(1), directions: { IN: 1, OUT: 2 }, remote_ip: '192.0.2.9', mirror_type: 'erspanv1' },
      { ...common(31, 'tm2'), port_id: id(3), directions: { OUT: 7 }, remote_ip: '192.0.2.9', mirror_type: 'gre' },
    ],
    agents: [
      { id: 'x', host: 'a', alive: true, heartbeat_timestamp: '', configurations: {} },
      { id: 'y', host: 'c', alive: false, heartbeat_timestamp: '', configurations: {} },
    ],
  };
}

describe('the web page\'s topology', () => {
  it('has a node per resource, one per remote, the ports others refer to, and each host\'s agent', () => {
    const topology = buildTopology(inventory(), null);
    const keys = topology.nodes.map((node) => node.key);
    expect(keys).toEqual(expect.arrayContaining([
      `port:${id(1)}`, `port:${id(2)}`, `port:${id(3)}`, `port:${id(99)}`, `tap_service:${id(10)}`,
      `tap_flow:${id(20)}`, `tap_flow:${id(21)}`, `tap_flow:${id(22)}`, `tap_mirror:${id(30)}`, `tap_mirror:${id(31)}`,
      'remote:192.0.2.9', 'agent:a', 'agent:b', 'agent:c',
    ]));
    expect(new Set(keys).size).toBe(keys.length);
    expect(topology.hosts).toEqual([{ name: 'a', agent: 'alive' }, { name: 'b', agent: 'none' }, { name: 'c', agent: 'dead' }]);
    const agentB = topology.nodes.find((node) => node.key === 'agent:b')!;
    expect([agentB.status, agentB.reason]).toEqual(['DOWN', 'no agent on host b']);
    expect(topology.nodes.find((node) => node.key === `tap_flow:${id(22)}`)!.label).toBe('00000000');
    expect(topology.nodes.find((node) => node.key === `tap_mirror:${id(30)}`)!.detail).toBe('ERSPAN II IN=1 OUT=2');
    expect(topology.edges.map((edge) => `${edge.from}>${edge.to}`)).toEqual(expect.arrayContaining([
      `port:${id(1)}>tap_flow:${id(20)}`, `tap_flow:${id(20)}>tap_service:${id(10)}`, `tap_service:${id(10)}>port:${id(2)}`,
      `port:${id(3)}>tap_mirror:${id(31)}`, `tap_mirror:${id(31)}>remote:192.0.2.9`,
    ]));
  });

  it('takes statuses from the stats stream when it has them', () => {
    const stats = {
      time: new Date().toISOString(), tap_mirrors: [], tap_services: [],
      tap_flows: [{ id: id(20), status: 'ERROR', status_reason: 'interface gone' }],
    } as unknown as StatsReport;
    const flow = buildTopology(inventory(), stats).nodes.find((node) => node.key === `tap_flow:${id(20)}`)!;
    expect([flow.status, flow.reason]).toEqual(['ERROR', 'interface gone']);
    // A status change does not move anything.
    expect(layoutKey(buildTopology(inventory(), stats))).toBe(layoutKey(buildTopology(inventory(), null)));
  });

  it('lays out every node inside the drawing, none over another, each inside its host\'s box, copies flowing left to right', () => {
    const layout = layoutTopology(buildTopology(inventory(), null));
    const placed = [...layout.nodes.values()];
    for (const node of placed) {
      expect(node.x - node.width / 2).toBeGreaterThanOrEqual(0);
      expect(node.y - node.height / 2).toBeGreaterThanOrEqual(0);
      expect(node.x + node.width / 2).toBeLessThanOrEqual(layout.width);
      expect(node.y + node.height / 2).toBeLessThanOrEqual(layout.height);
    }
    for (const [i, a] of placed.entries()) {
      for (const b of placed.slice(i + 1)) {
        const apart = Math.abs(a.x - b.x) >= (a.width + b.width) / 2 || Math.abs(a.y - b.y) >= (a.height + b.height) / 2;
        expect(apart, `${a.item.key} and ${b.item.key}`).toBe(true);
      }
    }
    expect(layout.hosts.map((host) => host.item.name)).toEqual(['a', 'b', 'c']);
    for (const host of layout.hosts) {
      for (const node of placed.filter((candidate) => candidate.item.host === host.item.name)) {
        expect(Math.abs(node.x - host.x) + node.width / 2).toBeLessThanOrEqual(host.width / 2 + 0.5);
        expect(Math.abs(node.y - host.y) + node.height / 2).toBeLessThanOrEqual(host.height / 2 + 0.5);
      }
    }
    const x = (key: string) => layout.nodes.get(key)!.x;
    expect(x(`port:${id(1)}`)).toBeLessThan(x(`tap_flow:${id(20)}`));
    expect(x(`tap_flow:${id(20)}`)).toBeLessThan(x(`tap_service:${id(10)}`));
    expect(x(`tap_service:${id(10)}`)).toBeLessThan(x(`port:${id(2)}`));
    expect(layout.edges.every((edge) => edge.points.length >= 2)).toBe(true);
  });

  it('draws no host boxes for a single host', () => {
    const single = { ...inventory(), ports: inventory().ports.slice(0, 2), agents: null, tap_flows: [], tap_mirrors: [] };
    const topology = buildTopology(single, null);
    expect(topology.hosts).toEqual([{ name: 'a', agent: null }]);
    expect(layoutTopology(topology).hosts).toEqual([]);
  });
});

describe('the web page\'s rate history', () => {
  const rated = (packets: number | null, bytes: number | null, drops: Record<string, number>, pps: number | null = null) =>
    ({ packets, bytes, drops, packets_per_second: pps, bits_per_second: pps === null ? null : pps * 800 });
  const report = (second: number, flow: ReturnType<typeof rated>, direction: ReturnType<typeof rated>): StatsReport => ({
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString(),
    tap_flows: [{ id: 'f', name: 'f', project_id: 'p', status: 'ACTIVE', status_reason: null, hosts: [], tap_service_id: 's', source_port: 'p', direction: 'IN', ...flow }],
    tap_mirrors: [{
      id: 'm', name: 'm', project_id: 'p', status: 'ACTIVE', status_reason: null, hosts: [], port_id: 'p', remote_ip: '192.0.2.1', mirror_type: 'gre',
      ...direction, directions: { IN: { tunnel_id: 1, ...direction } },
    }],
    tap_services: [],
  });

  it('keeps the hosts\' rates, and computes drop rates, and a mirror direction\'s rates, from the counters', () => {
    const history = new RateHistory();
    history.add(report(0, rated(100, 10_000, { ring: 1 }, 50), rated(10, 1000, {})));
    expect(history.latest('tap_flow:f')).toEqual({ pps: 50, bps: 40_000, dps: null });
    expect(history.latest('tap_mirror:m:IN')).toEqual({ pps: null, bps: null, dps: null });
    history.add(report(2, rated(300, 30_000, { ring: 5, tx: 1 }, 100), rated(30, 3000, {})));
    expect(history.latest('tap_flow:f')).toEqual({ pps: 100, bps: 80_000, dps: 2.5 });
    expect(history.latest('tap_mirror:m:IN')).toEqual({ pps: 10, bps: 8000, dps: 0 });
    // A counter that went back (a restart) gives no rate, not a negative one.
    history.add(report(3, rated(5, 500, {}, null), rated(1, 100, {})));
    expect(history.latest('tap_mirror:m:IN')).toEqual({ pps: null, bps: null, dps: 0 });
    expect(history.latest('tap_flow:f')).toEqual({ pps: null, bps: null, dps: null });
    expect(history.get('tap_flow:f')!.time).toHaveLength(3);
  });
});
