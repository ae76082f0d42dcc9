/**
 * How the engine splits one plan between the kernel's tc programs and the
 * AF_PACKET engine (src/engine/bpf.ts), and how it merges their stats back.
 * Pure functions: no kernel needed.
 */
import { describe, expect, it } from 'vitest';

import { mergeStats, splitPlan } from '../../src/engine/bpf.js';
import type { EngineStats, Plan } from '../../src/engine/engine.js';

const plan: Plan = {
  sources: [
    { id: 'a', ifname: 'vm-a', netns: 'h' },
    { id: 'b', ifname: 'vm-b', netns: 'h' },
    { id: 'c', ifname: 'vm-c' },
  ],
  sinks: [
    { id: 'mon', kind: 'port', ifname: 'mon', netns: 'h' },
    { id: 'gre', kind: 'gre', remoteIp: '192.0.2.1', key: 1 },
    { id: 'peer', kind: 'host', host: 'other' },
  ],
  rules: [
    { id: 'a-mon', sourceId: 'a', sinkId: 'mon', direction: 'BOTH', vlans: [[1, 2]] },
    { id: 'b-mon', sourceId: 'b', sinkId: 'mon', direction: 'IN' },
    { id: 'b-gre', sourceId: 'b', sinkId: 'gre', direction: 'OUT' },
    { id: 'c-mon', sourceId: 'c', sinkId: 'mon', direction: 'OUT' },
    { id: 'a-peer', sourceId: 'a', sinkId: 'peer', direction: 'IN' },
    { id: 'a-wide', sourceId: 'a', sinkId: 'mon', direction: 'IN', vlans: [[1, 1], [3, 3], [5, 5], [7, 7], [9, 9]] },
    { id: 'x', sourceId: 'missing', sinkId: 'mon', direction: 'IN' },
  ],
  interfaces: [{ id: 'p', ifname: 'vm-a', netns: 'h' }],
};

describe('splitPlan', () => {
  const split = splitPlan(plan);

  it('gives the kernel the port sinks in the source\'s namespace, with their VLAN ranges', () => {
    expect(split.bpf.rules).toEqual([
      { id: 'a-mon', sourceId: 'a', sinkIfname: 'mon', sinkNetns: 'h', direction: 'BOTH', vlans: [[1, 2]] },
      { id: 'b-mon', sourceId: 'b', sinkIfname: 'mon', sinkNetns: 'h', direction: 'IN' },
    ]);
    expect(split.bpf.sources.map((s) => s.id)).toEqual(['a', 'b']);
  });

  it('leaves everything else on AF_PACKET, saying why', () => {
    expect(Object.fromEntries(split.fallback)).toEqual({
      'b-gre': "the tunnel's underlay is in another network namespace than the source (a bpf clone stays in its namespace)",
      'c-mon': 'the tap service port is in another network namespace than the source (a bpf clone stays in its namespace)',
      'a-peer': 'the bpf data path does not send to other hosts yet',
      'a-wide': 'more than 4 VLAN ranges',
      x: 'the plan check refuses it',
    });
    expect(split.packet.rules.map((r) => r.id)).toEqual(['b-gre', 'c-mon', 'a-peer', 'a-wide', 'x']);
  });

  it('leaves a rule that filters, samples or cuts its copies on AF_PACKET', () => {
    for (const stage of [{ filter: 'udp' }, { sampleRate: 10 }, { snaplen: 96 }]) {
      const staged = splitPlan({ ...plan, rules: [{ id: 'b-mon', sourceId: 'b', sinkId: 'mon', direction: 'IN', ...stage }] });
      expect(staged.bpf.rules).toEqual([]);
      expect(Object.fromEntries(staged.fallback)).toEqual({ 'b-mon': 'the bpf data path does not filter, sample or cut copies yet' });
    }
    // sample_rate 1 is every frame: the kernel serves it.
    const everyFrame = splitPlan({ ...plan, rules: [{ id: 'b-mon', sourceId: 'b', sinkId: 'mon', direction: 'IN', sampleRate: 1 }] });
    expect(everyFrame.bpf.rules.map((r) => r.id)).toEqual(['b-mon']);
  });

  it('opens a ring only for sources with a rule on AF_PACKET; sinks and watched interfaces stay', () => {
    // a and b have AF_PACKET rules too (a-peer, a-wide, b-gre); a source all of whose rules run in the kernel has no ring.
    expect(split.packet.sources.map((s) => s.id)).toEqual(['a', 'b', 'c']);
    const kernelOnly = splitPlan({ ...plan, rules: plan.rules.filter((r) => r.id === 'b-mon') });
    expect(kernelOnly.packet.sources.map((s) => s.id)).toEqual(['a', 'c']);
    expect([...kernelOnly.bpfSources]).toEqual(['b']);
    expect(kernelOnly.packet.sinks).toBe(plan.sinks);
    expect(kernelOnly.packet.interfaces).toBe(plan.interfaces);
  });

  it('gives the kernel a GRE or ERSPAN II tunnel to an IPv4 collector routed in the source\'s namespace; other tunnels stay on AF_PACKET', () => {
    const tunnels = splitPlan({
      ...plan,
      sinks: [
        { id: 'g', kind: 'gre', remoteIp: '192.0.2.1', key: 7, netns: 'h' },
        { id: 'g6', kind: 'gre', remoteIp: '2001:db8::1', key: 7, netns: 'h' },
        { id: 'gt', kind: 'gre', remoteIp: '192.0.2.2', key: 7, netns: 'h', truncate: true },
        { id: 'gs', kind: 'gre', remoteIp: '192.0.2.3', key: 7, netns: 'h', sequence: true },
        { id: 'e', kind: 'erspan', remoteIp: '192.0.2.4', session: 7, netns: 'h' },
        { id: 'ei', kind: 'erspan', remoteIp: '192.0.2.5', session: 8, index: 3, netns: 'h' },
        { id: 'e6', kind: 'erspan', remoteIp: '2001:db8::2', session: 9, netns: 'h' },
        { id: 'e3', kind: 'erspan3', remoteIp: '192.0.2.6', session: 10, netns: 'h' },
      ],
      rules: [
        { id: 'g', sourceId: 'b', sinkId: 'g', direction: 'BOTH' },
        { id: 'g6', sourceId: 'b', sinkId: 'g6', direction: 'IN' },
        { id: 'gt', sourceId: 'b', sinkId: 'gt', direction: 'IN' },
        { id: 'gs', sourceId: 'b', sinkId: 'gs', direction: 'IN' },
        { id: 'e', sourceId: 'b', sinkId: 'e', direction: 'IN' },
        { id: 'ei', sourceId: 'b', sinkId: 'ei', direction: 'IN' },
        { id: 'e6', sourceId: 'b', sinkId: 'e6', direction: 'IN' },
        { id: 'e3', sourceId: 'b', sinkId: 'e3', direction: 'IN' },
      ],
    });
    expect(tunnels.bpf.rules).toEqual([
      { id: 'g', sourceId: 'b', direction: 'BOTH', tunnelRemote: '192.0.2.1', greKey: 7, sinkNetns: 'h' },
      { id: 'e', sourceId: 'b', direction: 'IN', tunnelRemote: '192.0.2.4', erspanSession: 7, sinkNetns: 'h' },
      { id: 'ei', sourceId: 'b', direction: 'IN', tunnelRemote: '192.0.2.5', erspanSession: 8, erspanIndex: 3, sinkNetns: 'h' },
    ]);
    expect(Object.fromEntries(tunnels.fallback)).toEqual({
      g6: 'the bpf data path sends GRE to IPv4 collectors only',
      gt: 'the bpf data path does not cut GRE copies to the path MTU',
      gs: 'the bpf data path does not number GRE packets (sequence)',
      e6: 'the bpf data path sends ERSPAN to IPv4 collectors only',
      e3: 'the bpf data path does not send to ERSPAN3 tunnels yet',
    });
  });

  it('sends a duplicate rule id to the plan check of the AF_PACKET engine', () => {
    const twice = splitPlan({ ...plan, rules: [plan.rules[1]!, plan.rules[1]!] });
    expect(twice.bpf.rules).toEqual([]);
    expect(twice.packet.rules).toHaveLength(2);
  });
});

describe('mergeStats', () => {
  it('puts the kernel\'s rules and sources in plan order and adds its copies to the port sink', () => {
    const small: Plan = { ...plan, rules: plan.rules.filter((r) => r.id === 'b-mon' || r.id === 'b-gre') };
    const split = splitPlan(small);
    const packet: EngineStats = {
      sources: [
        { id: 'a', ok: true, packets: 0, bytes: 0, captureDrops: 0, truncated: 0 },
        { id: 'b', ok: true, packets: 9, bytes: 900, captureDrops: 0, truncated: 0 },
        { id: 'c', ok: true, packets: 0, bytes: 0, captureDrops: 0, truncated: 0 },
      ],
      sinks: [
        { id: 'mon', ok: true, packets: 0, bytes: 0, errors: 0, truncated: 0, fragmented: 0 },
        { id: 'gre', ok: true, packets: 9, bytes: 900, errors: 0, truncated: 0, fragmented: 0 },
      ],
      rules: [{ id: 'b-gre', ok: true, packets: 9, bytes: 900, oversize: 0, unavailable: 0, filtered: 0, sampledOut: 0, truncated: 0 }],
      interfaces: [],
    };
    const merged = mergeStats(small, split, packet, {
      sources: [{ id: 'b', ok: true, attach: 'tcx', packets: 12, bytes: 1200 }],
      rules: [{ id: 'b-mon', ok: true, packets: 5, bytes: 500, errors: 1, oversize: 2, truncated: 0, fragmented: 0 }],
    });
    expect(merged.rules).toEqual([
      { id: 'b-mon', ok: true, packets: 5, bytes: 500, oversize: 2, unavailable: 1, filtered: 0, sampledOut: 0, truncated: 0, datapath: 'bpf' },
      {
        id: 'b-gre', ok: true, packets: 9, bytes: 900, oversize: 0, unavailable: 0, filtered: 0, sampledOut: 0, truncated: 0, datapath: 'packet',
        datapathReason: "the tunnel's underlay is in another network namespace than the source (a bpf clone stays in its namespace)",
      },
    ]);
    // b has a rule on AF_PACKET: its ring's counters are the source's.
    expect(merged.sources[1]).toBe(packet.sources[1]);
    expect(merged.sinks[0]).toMatchObject({ id: 'mon', packets: 5, bytes: 500, errors: 1 });
    expect(merged.sinks[1]).toBe(packet.sinks[1]);
  });
});
