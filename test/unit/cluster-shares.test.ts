import { describe, expect, it } from 'vitest';

import { sharesByHost } from '../../src/cluster/shares.js';
import { desiredStateOf } from '../../src/service/desired-state.js';
import type { Port, TapFlow, TapMirror, TapService } from '../../src/model/resources.js';
import type { Snapshot } from '../../src/store/store.js';

/** A deterministic pseudo-random sequence (mulberry32). */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function snapshotOf(seed: number): Snapshot {
  const next = random(seed);
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!;
  const base = { project_id: 'p', name: '', description: '', created_at: '', updated_at: '' };
  const deleting = () => next() < 0.1;
  const hosts = ['a', 'b', 'c', 'd'];
  const ports: Port[] = Array.from({ length: 30 }, (_, i) => ({
    ...base, id: `port-${i}`, interface: `if${i}`, netns: null, host_id: pick(hosts), deleting: deleting(),
  }));
  const portIds = [...ports.map((port) => port.id), 'port-missing'];
  const tapServices: TapService[] = Array.from({ length: 10 }, (_, i) => ({ ...base, id: `ts-${i}`, port_id: pick(portIds), deleting: deleting() }));
  const serviceIds = [...tapServices.map((service) => service.id), 'ts-missing'];
  const tapFlows: TapFlow[] = Array.from({ length: 40 }, (_, i) => ({
    ...base, id: `tf-${i}`, tap_service_id: pick(serviceIds), source_port: pick(portIds), direction: 'BOTH', vlan_filter: null, deleting: deleting(),
  }));
  const tapMirrors: TapMirror[] = Array.from({ length: 10 }, (_, i) => ({
    ...base, id: `tm-${i}`, port_id: pick(portIds), directions: { IN: i + 1 }, remote_ip: '192.0.2.1', mirror_type: 'gre', deleting: deleting(),
  }));
  return { ports, tapServices, tapFlows, tapMirrors };
}

describe('every host\'s share in one pass', () => {
  it('is what desiredStateOf gives each host, for random stores with deletes and dangling references', () => {
    for (let seed = 1; seed <= 200; seed += 1) {
      const snapshot = snapshotOf(seed);
      const shares = sharesByHost(snapshot);
      for (const host of ['a', 'b', 'c', 'd']) {
        const { revision: _, ...expected } = desiredStateOf(snapshot, host, 0);
        const share = shares.get(host) ?? { ports: [], tapServices: [], tapFlows: [], tapMirrors: [] };
        expect(share, `seed ${seed}, host ${host}`).toEqual(expected);
      }
    }
  });
});
