import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type Plan, type RulePlan, type RuleStats } from '../../src/engine/engine.js';
import { makeUdpFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';
import { tsharkFields, tunnelPackets, writePcap } from './tunnel-decode.js';

const VM_MAC = '02:00:00:00:0f:01';
const HOST_MAC = '02:00:00:00:0f:02';
const HOST_UNDERLAY = '10.98.0.1';
const COLLECTOR = '10.98.0.2';

/**
 * An IPv4/UDP frame to dstPort (checksums zero: nothing routes it), with its
 * sequence number in the payload, optionally 802.1Q-tagged and padded to length.
 */
function udpFrame(options: { dstPort: number; sequence: number; vlan?: number; length?: number; toVm?: boolean }): Buffer {
  const [dst, src] = options.toVm ? [VM_MAC, HOST_MAC] : [HOST_MAC, VM_MAC];
  const { toVm: _, ...rest } = options;
  return makeUdpFrame({ dst, src, marker: 'tapas-flt', length: 60, ...rest });
}

/** The test frames of a capture (our UDP payload marker), as hex. */
function ours(frames: Buffer[]): string[] {
  return frames.filter((frame) => frame.includes('tapas-flt')).map((frame) => frame.toString('hex'));
}
const hex = (frames: Buffer[]) => frames.map((frame) => frame.toString('hex'));

/**
 * Per-rule filters, sampling and snaplen with real frames: a "VM" behind vmh
 * in a host namespace, two monitors (mon0, mon1) behind monh and mon2h, and an
 * underlay to a collector namespace for ERSPAN. Frames are sent by a generator
 * that shares no code with tapas (test/tools/send-frames.py) and read back
 * with tcpdump; ERSPAN is decoded by tshark and the test's own decoder.
 */
describe.skipIf(!netnsAvailable)(`per-rule filter, sample_rate and snaplen (${netnsSkipReason})`, () => {
  const lab = new Lab('filter');
  let host: string, vm: string, monitor: string, monitor2: string, collector: string;
  let engine: Engine;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    monitor2 = await lab.namespace('mon2');
    await lab.veth(host, 'mon2h', monitor2, 'mon1');
    collector = await lab.namespace('col');
    await lab.underlay(host, HOST_UNDERLAY, collector, COLLECTOR);
    engine = new Engine();
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  // Functions: the namespaces are made in beforeAll.
  const source = () => ({ id: 'vm', ifname: 'vmh', netns: host });
  const monA = () => ({ id: 'a', kind: 'port' as const, ifname: 'monh', netns: host });
  const monB = () => ({ id: 'b', kind: 'port' as const, ifname: 'mon2h', netns: host });

  async function runPlan(rules: RulePlan[], send: { fromVm?: Buffer[]; toVm?: Buffer[] }) {
    const plan: Plan = { sources: [source()], sinks: [monA(), monB()], rules };
    const applied = await engine.apply(plan);
    expect(applied.rules.every((rule) => rule.ok), JSON.stringify(applied.rules)).toBe(true);
    const before = new Map(applied.rules.map((rule) => [rule.id, rule]));
    const captureA = await lab.capture(monitor, 'mon0');
    const captureB = await lab.capture(monitor2, 'mon1');
    if (send.fromVm) await lab.sendFrames(vm, 'vm0', send.fromVm);
    if (send.toVm) await lab.sendFrames(host, 'vmh', send.toVm);
    const [a, b] = [await captureA.stop(), await captureB.stop()];
    const stats = engine.stats();
    // Counters since this plan ran (rule ids are reused from test to test).
    const delta = (id: string): RuleStats => {
      const now = stats.rules.find((rule) => rule.id === id)!;
      const then = before.get(id)!;
      return { ...now, packets: now.packets - then.packets, filtered: now.filtered - then.filtered,
        sampledOut: now.sampledOut - then.sampledOut, truncated: now.truncated - then.truncated };
    };
    expect(stats.sources.find((s) => s.id === 'vm')!.captureDrops).toBe(0);
    return { a, b, delta };
  }

  it('two flows of one source with different filters each see exactly their frames, from one capture', async () => {
    const fromVm = [
      ...Array.from({ length: 40 }, (_, i) => udpFrame({ dstPort: 1000, sequence: i })),
      ...Array.from({ length: 30 }, (_, i) => udpFrame({ dstPort: 2000, sequence: i })),
      ...Array.from({ length: 20 }, (_, i) => udpFrame({ dstPort: 3000, sequence: i })),
    ].sort((x, y) => x.readUInt32BE(42 + 12) - y.readUInt32BE(42 + 12));  // interleaved
    const { a, b, delta } = await runPlan([
      { id: 'f1000', sourceId: 'vm', sinkId: 'a', direction: 'OUT', filter: 'udp dst port 1000' },
      { id: 'f2000', sourceId: 'vm', sinkId: 'b', direction: 'OUT', filter: 'udp and dst port 2000' },
    ], { fromVm });
    expect(ours(a)).toEqual(hex(fromVm.filter((f) => f.readUInt16BE(36) === 1000)));
    expect(ours(b)).toEqual(hex(fromVm.filter((f) => f.readUInt16BE(36) === 2000)));
    expect(ours(a)).toHaveLength(40);
    expect(ours(b)).toHaveLength(30);
    expect(delta('f1000')).toMatchObject({ packets: 40, filtered: 50, sampledOut: 0, truncated: 0 });
    expect(delta('f2000')).toMatchObject({ packets: 30, filtered: 60, sampledOut: 0, truncated: 0 });
  });

  it('a filter sees the VLAN tag the kernel moved into ring metadata: `vlan 10` in both directions', async () => {
    const make = (toVm: boolean) => [undefined, 10, 20, 10, undefined, 11].map((vlan, i) => udpFrame({ dstPort: 53, sequence: i, vlan, toVm }));
    const fromVm = make(false);
    const toVm = make(true);
    const { a, b, delta } = await runPlan([
      { id: 'v10', sourceId: 'vm', sinkId: 'a', direction: 'BOTH', filter: 'vlan 10 and udp port 53' },
      // `vlan` moves the offsets of what follows it by the tag (pcap-filter(7)): it goes last.
      { id: 'untagged', sourceId: 'vm', sinkId: 'b', direction: 'BOTH', filter: 'udp and not vlan' },
    ], { fromVm, toVm });
    const tagged = (f: Buffer) => (f.readUInt16BE(12) === 0x8100 ? f.readUInt16BE(14) & 0xfff : undefined);
    expect(ours(a)).toEqual(hex([...fromVm, ...toVm].filter((f) => tagged(f) === 10)));
    expect(ours(a)).toHaveLength(4);
    expect(ours(b)).toEqual(hex([...fromVm, ...toVm].filter((f) => tagged(f) === undefined)));
    expect(delta('v10')).toMatchObject({ packets: 4, filtered: 8 });
    expect(delta('untagged')).toMatchObject({ packets: 4, filtered: 8 });
  });

  it('snaplen 96: copies are the first 96 bytes; shorter frames go whole; truncated is counted', async () => {
    const fromVm = [300, 60, 96, 97, 1500].map((length, i) => udpFrame({ dstPort: 7, sequence: i, length }));
    const { a, delta } = await runPlan([{ id: 'cut', sourceId: 'vm', sinkId: 'a', direction: 'OUT', snaplen: 96 }], { fromVm });
    expect(ours(a)).toEqual(hex(fromVm.map((f) => f.subarray(0, 96))));
    expect(ours(a).map((h) => h.length / 2)).toEqual([96, 60, 96, 96, 96]);
    expect(delta('cut')).toMatchObject({ packets: 5, truncated: 3 });
  });

  it('sample_rate 10 over 10,000 frames sends exactly 1,000 (the 1st of every 10), the rest counted as sampled out', async () => {
    const fromVm = Array.from({ length: 10_000 }, (_, i) => udpFrame({ dstPort: 5000, sequence: i }));
    const { a, b, delta } = await runPlan([
      { id: 'sampled', sourceId: 'vm', sinkId: 'a', direction: 'OUT', sampleRate: 10 },
      // Independent of other rules: one without sampling on the same source sees every frame.
      { id: 'all', sourceId: 'vm', sinkId: 'b', direction: 'OUT' },
    ], { fromVm });
    // Deterministic, so the tolerance is zero: frames 0, 10, 20, ... of what reached the stage.
    expect(ours(a)).toHaveLength(1000);
    expect(ours(a)).toEqual(hex(fromVm.filter((_, i) => i % 10 === 0)));
    // Every frame reached the other rule (its monitor's veth may drop some of a 10,000-frame burst: counted in the engine).
    expect(delta('all')).toMatchObject({ packets: 10_000, sampledOut: 0 });
    expect(ours(b).length).toBeGreaterThan(1000);
    expect(delta('sampled')).toMatchObject({ packets: 1000, sampledOut: 9000, oversize: 0, unavailable: 0 });
  });

  it('sampling counts only what the filter passed', async () => {
    const fromVm = Array.from({ length: 100 }, (_, i) => udpFrame({ dstPort: i % 2 === 0 ? 1000 : 2000, sequence: i }));
    const { a, delta } = await runPlan([
      { id: 'fs', sourceId: 'vm', sinkId: 'a', direction: 'OUT', filter: 'udp dst port 1000', sampleRate: 5 },
    ], { fromVm });
    const passed = fromVm.filter((f) => f.readUInt16BE(36) === 1000);
    expect(ours(a)).toEqual(hex(passed.filter((_, i) => i % 5 === 0)));
    expect(delta('fs')).toMatchObject({ packets: 10, filtered: 50, sampledOut: 40 });
  });

  it('dedup: two rules that select a frame identically into one sink send it once; different snaplens send both', async () => {
    const fromVm = Array.from({ length: 10 }, (_, i) => udpFrame({ dstPort: 1000, sequence: i, length: 200 }));
    const same = await runPlan([
      { id: 'd1', sourceId: 'vm', sinkId: 'a', direction: 'OUT', filter: 'udp' },
      { id: 'd2', sourceId: 'vm', sinkId: 'a', direction: 'BOTH', filter: 'udp port 1000', snaplen: 500 },  // longer than the frame: whole
    ], { fromVm });
    expect(ours(same.a)).toEqual(hex(fromVm));
    expect(same.delta('d1').packets).toBe(10);
    expect(same.delta('d2').packets).toBe(10);

    const different = await runPlan([
      { id: 'd1', sourceId: 'vm', sinkId: 'a', direction: 'OUT' },
      { id: 'd2', sourceId: 'vm', sinkId: 'a', direction: 'OUT', snaplen: 96 },
      { id: 'd3', sourceId: 'vm', sinkId: 'a', direction: 'OUT', snaplen: 96 },
    ], { fromVm });
    expect(ours(different.a)).toEqual(hex(fromVm.flatMap((f) => [f, f.subarray(0, 96)])));
  });

  it('a filter libpcap does not compile refuses the rule with libpcap\'s message; the rest runs', async () => {
    const applied = await engine.apply({
      sources: [source()], sinks: [monA()],
      rules: [
        { id: 'bad', sourceId: 'vm', sinkId: 'a', direction: 'BOTH', filter: 'udp prot 1000' },
        { id: 'good', sourceId: 'vm', sinkId: 'a', direction: 'BOTH', filter: 'udp' },
      ],
    });
    const bad = applied.rules.find((rule) => rule.id === 'bad')!;
    expect(bad.ok).toBe(false);
    expect(bad.reason).toMatch(/^rule 'bad' has a filter that does not compile: can't parse filter expression: syntax error/);
    expect(applied.rules.find((rule) => rule.id === 'good')!.ok).toBe(true);
    await expect(engine.apply({ sources: [], sinks: [], rules: [{ id: 'r', sourceId: 's', sinkId: 'k', direction: 'IN', snaplen: 63 }] }))
      .rejects.toThrow(/snaplen.*64 to 262144/);
  });

  it('ERSPAN copies cut by snaplen carry T=1 (tshark), whole ones T=0', async () => {
    const fromVm = [400, 80].map((length, i) => udpFrame({ dstPort: 9, sequence: i, length }));
    await engine.apply({
      sources: [source()],
      sinks: [
        { id: 'e2', kind: 'erspan', remoteIp: COLLECTOR, session: 11, netns: host },
        { id: 'e3', kind: 'erspan3', remoteIp: COLLECTOR, session: 12, netns: host },
      ],
      rules: [
        { id: 'e2', sourceId: 'vm', sinkId: 'e2', direction: 'OUT', snaplen: 96 },
        { id: 'e3', sourceId: 'vm', sinkId: 'e3', direction: 'OUT', snaplen: 128 },
      ],
    });
    const capture = await lab.capture(collector, 'ul1');
    await lab.sendFrames(vm, 'vm0', fromVm);
    const wire = await capture.stop(500);
    const packets = tunnelPackets(wire);
    const e2 = packets.filter((p) => p.erspan?.session === 11);
    const e3 = packets.filter((p) => p.erspan3?.session === 12);
    expect(hex(e2.map((p) => p.inner))).toEqual(hex([fromVm[0]!.subarray(0, 96), fromVm[1]!]));
    expect(e2.map((p) => p.erspan!.truncated)).toEqual([true, false]);
    expect(hex(e3.map((p) => p.inner))).toEqual(hex([fromVm[0]!.subarray(0, 128), fromVm[1]!]));
    expect(e3.map((p) => p.erspan3!.truncated)).toEqual([true, false]);

    const pcap = join(lab.dir, `erspan-snaplen-${Date.now()}.pcap`);
    writePcap(pcap, wire);
    const decoded = await tsharkFields(pcap, ['erspan.spanid', 'erspan.truncated', 'frame.len']);
    expect(decoded.map((d) => [d['erspan.spanid'], d['erspan.truncated']]).sort())
      .toEqual([['11', '0'], ['11', '1'], ['12', '0'], ['12', '1']]);
    const stats = engine.stats();
    expect(stats.rules.find((r) => r.id === 'e2')!.truncated).toBe(1);
    expect(stats.rules.find((r) => r.id === 'e3')!.truncated).toBe(1);
  });
});
