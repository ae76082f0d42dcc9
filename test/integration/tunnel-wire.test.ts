import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, type Plan, type SinkPlan } from '../../src/engine/engine.js';
import { makeFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';
import { tsharkFields, tunnelPackets, writePcap, type TunnelPacket } from './tunnel-decode.js';

const VM_MAC = '02:00:00:00:07:01';
const HOST_MAC = '02:00:00:00:07:02';
const HOST_UNDERLAY = '10.99.0.1';
const COLLECTOR = '10.99.0.2';

const hex = (frames: Buffer[]) => frames.map((frame) => frame.toString('hex'));

/** An IPv4 frame whose TOS carries DSCP EF (46): ERSPAN must report cos 5. */
function ipv4FrameWithDscpEf(vlan?: number): Buffer {
  const tag = vlan === undefined ? [] : [0x81, 0x00, 0x00, vlan];
  const ip = Buffer.from([0x45, 0xb8, 0x00, 46, 0, 1, 0, 0, 64, 253, 0, 0, 10, 1, 1, 1, 10, 1, 1, 2, ...Array(26).fill(0x5a)]);
  return Buffer.concat([Buffer.from([2, 0, 0, 0, 7, 1, 2, 0, 0, 0, 7, 2, ...tag, 0x08, 0x00]), ip]);
}

/** An IPv4/UDP frame from the VM; the source port makes it a flow of its own. */
function udpFrame(sourcePort: number): Buffer {
  const ip = Buffer.from('4500002e00004000401100000a0101010a010102', 'hex');
  const udp = Buffer.alloc(26);
  udp.writeUInt16BE(sourcePort, 0);
  udp.writeUInt16BE(9, 2);
  udp.writeUInt16BE(26, 4);
  return Buffer.concat([Buffer.from('020000000702020000000701', 'hex'), Buffer.from('0800', 'hex'), ip, udp]);
}

/**
 * A "VM" behind vmh (the source port) in a host namespace whose underlay link
 * ul0 leads to a collector namespace. Nothing listens for GRE there: the wire
 * is read with tcpdump and decoded by tshark and by the test's own decoder.
 */
const DATA_PATHS: Array<{ name: string; lab: string; options: EngineOptions }> = [
  { name: 'AF_PACKET', lab: 'tun', options: {} },
  { name: 'bpf', lab: 'tunb', options: { datapath: 'bpf' } },
];

describe.skipIf(!netnsAvailable).each(DATA_PATHS)(`GRE and ERSPAN tunnels on the wire, $name (${netnsSkipReason})`, ({ lab: labName, options }) => {
  const bpf = options.datapath === 'bpf';
  const lab = new Lab(labName);
  let host: string, vm: string, collector: string;
  let engine: Engine;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    collector = await lab.namespace('col');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.underlay(host, HOST_UNDERLAY, collector, COLLECTOR);
    engine = new Engine(options);
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  /** IN goes to one tunnel, OUT to another, as TaaS directions do. */
  function plan(inSink: SinkPlan, outSink: SinkPlan, extraSources: Plan['sources'] = []): Plan {
    return {
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }, ...extraSources],
      sinks: [inSink, outSink],
      rules: [
        { id: 'in', sourceId: 'vm', sinkId: inSink.id, direction: 'IN' },
        { id: 'out', sourceId: 'vm', sinkId: outSink.id, direction: 'OUT' },
      ],
    };
  }

  /** Sends frames to and from the VM and returns what arrived on the collector's underlay. */
  async function mirror(toVm: Buffer[], fromVm: Buffer[]): Promise<{ packets: TunnelPacket[]; pcap: string }> {
    const capture = await lab.capture(collector, 'ul1');
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    const frames = await capture.stop(500);
    const pcap = join(lab.dir, `underlay-${Date.now()}.pcap`);
    writePcap(pcap, frames);
    return { packets: tunnelPackets(frames), pcap };
  }

  it('GRE: IN and OUT arrive under their own keys, inner frames equal the originals byte for byte', async () => {
    await engine.apply(plan(
      { id: 'gre-in', kind: 'gre', remoteIp: COLLECTOR, key: 101, netns: host },
      { id: 'gre-out', kind: 'gre', remoteIp: COLLECTOR, key: 102, netns: host },
    ));
    const toVm = [1, 2, 3].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'gre-i', sequence: n, length: 60 + n * 100 }));
    const fromVm = [1, 2].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'gre-o', sequence: n }));
    const { packets, pcap } = await mirror(toVm, fromVm);

    expect(hex(packets.filter((p) => p.key === 101).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(packets.filter((p) => p.key === 102).map((p) => p.inner))).toEqual(hex(fromVm));
    expect(packets).toHaveLength(toVm.length + fromVm.length);

    const decoded = await tsharkFields(pcap, ['gre.key', 'gre.proto', 'ip.src', 'ip.dst', 'eth.type']);
    expect(decoded.map((d) => d['gre.key'])).toEqual(['0x00000065', '0x00000065', '0x00000065', '0x00000066', '0x00000066']);
    for (const packet of decoded) {
      expect(packet['gre.proto']).toBe('0x6558');
      expect(packet['ip.src']).toBe(HOST_UNDERLAY);
      expect(packet['ip.dst']).toBe(COLLECTOR);
    }
  });

  it('ERSPAN II: tshark reads version 1, spanid, OpenStack index and consecutive sequence numbers per tunnel', async () => {
    await engine.apply(plan(
      { id: 'erspan-in', kind: 'erspan', remoteIp: COLLECTOR, session: 101, netns: host },
      { id: 'erspan-out', kind: 'erspan', remoteIp: COLLECTOR, session: 102, netns: host },
    ));
    const toVm = [1, 2, 3, 4].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'ers-i', sequence: n }));
    const fromVm = [1, 2, 3].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'ers-o', sequence: n, length: 400 }));
    const { packets, pcap } = await mirror(toVm, fromVm);

    expect(hex(packets.filter((p) => p.erspan?.session === 101).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(packets.filter((p) => p.erspan?.session === 102).map((p) => p.inner))).toEqual(hex(fromVm));

    const decoded = await tsharkFields(pcap, ['gre.proto', 'erspan.version', 'erspan.spanid', 'erspan.index',
      'gre.sequence_number', 'erspan.truncated', 'erspan.vlan', 'erspan.encap']);
    expect(decoded).toHaveLength(toVm.length + fromVm.length);
    for (const [session, count] of [[101, toVm.length], [102, fromVm.length]] as const) {
      const tunnel = decoded.filter((d) => d['erspan.spanid'] === String(session));
      expect(tunnel).toHaveLength(count);
      for (const packet of tunnel) {
        expect(packet).toMatchObject({ 'gre.proto': '0x88be', 'erspan.version': '1', 'erspan.truncated': '0', 'erspan.vlan': '0', 'erspan.encap': '0' });
        // OpenStack's drivers read the tunnel id as hex digits: 101 -> 0x101.
        expect(Number(packet['erspan.index'])).toBe(parseInt(String(session), 16));
      }
      const sequence = tunnel.map((packet) => Number(packet['gre.sequence_number']));
      expect(sequence).toEqual(sequence.map((_, i) => sequence[0]! + i));
    }
  });

  it('ERSPAN reports the VLAN with en=3 and the class of service from the inner DSCP', async () => {
    await engine.apply(plan(
      { id: 'erspan-in', kind: 'erspan', remoteIp: COLLECTOR, session: 101, netns: host },
      { id: 'erspan-out', kind: 'erspan', remoteIp: COLLECTOR, session: 102, netns: host },
    ));
    const tagged = ipv4FrameWithDscpEf(42);
    const untagged = ipv4FrameWithDscpEf();
    const { packets, pcap } = await mirror([], [tagged, untagged]);
    expect(hex(packets.map((p) => p.inner))).toEqual(hex([tagged, untagged]));
    const decoded = await tsharkFields(pcap, ['erspan.vlan', 'erspan.encap', 'erspan.cos']);
    expect(decoded).toEqual([
      { 'erspan.vlan': '42', 'erspan.encap': '3', 'erspan.cos': '5' },
      { 'erspan.vlan': '0', 'erspan.encap': '0', 'erspan.cos': '5' },
    ]);
  });

  it('ERSPAN truncates a 1514-byte frame to the 1500-byte underlay, sets T and counts it', async () => {
    await engine.apply(plan(
      { id: 'erspan-in', kind: 'erspan', remoteIp: COLLECTOR, session: 101, netns: host },
      { id: 'erspan-out', kind: 'erspan', remoteIp: COLLECTOR, session: 102, netns: host },
    ));
    const before = engine.stats().sinks.find((s) => s.id === 'erspan-in')!;
    const big = makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'ers-big', sequence: 1, length: 1514 });
    const small = makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'ers-big', sequence: 2, length: 1464 });
    const { packets, pcap } = await mirror([big, small], []);

    // 1500 - 20 (IPv4) - 8 (GRE with sequence) - 8 (ERSPAN II) = 1464 bytes of the frame fit.
    expect(packets.map((p) => p.inner.length)).toEqual([1464, 1464]);
    expect(packets[0]!.inner.equals(big.subarray(0, 1464))).toBe(true);
    expect(packets[1]!.inner.equals(small)).toBe(true);
    expect(packets.map((p) => p.erspan?.truncated)).toEqual([true, false]);
    const decoded = await tsharkFields(pcap, ['erspan.truncated', 'ip.len', 'ip.flags.df']);
    expect(decoded).toEqual([
      { 'erspan.truncated': '1', 'ip.len': '1500', 'ip.flags.df': '1' },
      { 'erspan.truncated': '0', 'ip.len': '1500', 'ip.flags.df': '1' },
    ]);
    const after = engine.stats().sinks.find((s) => s.id === 'erspan-in')!;
    expect(after.truncated - before.truncated).toBe(1);
    expect(after.packets - before.packets).toBe(2);
    expect(after.errors).toBe(0);
  });

  it('GRE lets the kernel fragment a frame above the path MTU (counted), or truncates it when configured', async () => {
    await engine.apply(plan(
      { id: 'gre-in', kind: 'gre', remoteIp: COLLECTOR, key: 7, netns: host },
      { id: 'gre-cut', kind: 'gre', remoteIp: COLLECTOR, key: 8, netns: host, truncate: true },
    ));
    const big = makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'gre-big', sequence: 1, length: 1514 });
    const bigOut = makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'gre-big', sequence: 2, length: 1514 });
    const { packets, pcap } = await mirror([big], [bigOut]);

    const whole = packets.find((p) => p.key === 7)!;
    expect(whole.inner.equals(big)).toBe(true);  // reassembled from two fragments
    const cut = packets.find((p) => p.key === 8)!;
    // 1500 - 20 (IPv4) - 8 (GRE with key) = 1472 bytes of the frame fit.
    expect(cut.inner.equals(bigOut.subarray(0, 1472))).toBe(true);

    // On the wire: the fragmenting tunnel's two fragments (DF clear; offset in 8-byte units), then the
    // truncated packet (DF set). 1514 + 8 bytes of GRE = 1480 + 42.
    const onWire = await tsharkFields(pcap, ['ip.flags.mf', 'ip.flags.df', 'ip.frag_offset', 'ip.len'], 'ip.proto == 47', ['-o', 'ip.defragment:FALSE']);
    expect(onWire).toEqual([
      { 'ip.flags.mf': '1', 'ip.flags.df': '0', 'ip.frag_offset': '0', 'ip.len': '1500' },
      { 'ip.flags.mf': '0', 'ip.flags.df': '0', 'ip.frag_offset': '185', 'ip.len': '62' },
      { 'ip.flags.mf': '0', 'ip.flags.df': '1', 'ip.frag_offset': '0', 'ip.len': '1500' },
    ]);
    const stats = engine.stats().sinks;
    expect(stats.find((s) => s.id === 'gre-in')).toMatchObject({ fragmented: 1, truncated: 0, errors: 0 });
    expect(stats.find((s) => s.id === 'gre-cut')).toMatchObject({ fragmented: 0, truncated: 1, errors: 0 });
  });

  it('two workers draw ERSPAN sequence numbers from one counter per tunnel: no duplicates, no gaps', async () => {
    const twoWorkers = new Engine({ ...options, workers: 2 });
    try {
      await twoWorkers.apply({
        sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
        sinks: [{ id: 'erspan-fanout', kind: 'erspan', remoteIp: COLLECTOR, session: 77, netns: host }],
        rules: [{ id: 'out', sourceId: 'vm', sinkId: 'erspan-fanout', direction: 'OUT' }],
      });
      // 64 UDP flows (source ports), so that the fanout flow hash spreads them over both workers.
      const fromVm = Array.from({ length: 64 }, (_, n) => udpFrame(40000 + n));
      const { packets } = await mirror([], fromVm);
      const tunnel = packets.filter((p) => p.erspan?.session === 77);
      expect(tunnel).toHaveLength(fromVm.length);
      const sequence = tunnel.map((p) => p.sequence!).sort((a, b) => a - b);
      expect(sequence).toEqual(sequence.map((_, i) => sequence[0]! + i));
    } finally {
      await twoWorkers.close();
    }
  });

  it('never captures its own tunnel packets when the underlay itself is a mirrored source', async () => {
    const underlay = { id: 'underlay', ifname: 'ul0', netns: host };
    const erspan: SinkPlan = { id: 'erspan-loop', kind: 'erspan', remoteIp: COLLECTOR, session: 9, netns: host };
    await engine.apply({
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }, underlay],
      sinks: [erspan],
      rules: [
        { id: 'vm-both', sourceId: 'vm', sinkId: erspan.id, direction: 'BOTH' },
        { id: 'underlay-both', sourceId: 'underlay', sinkId: erspan.id, direction: 'BOTH' },
      ],
    });
    const before = engine.stats().sources.find((s) => s.id === 'underlay')!.packets;
    const toVm = [1, 2, 3, 4, 5].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'loop', sequence: n }));
    const capture = await lab.capture(collector, 'ul1');
    await lab.sendFrames(host, 'vmh', toVm);
    await sleep(1000);  // a feedback loop would have sent thousands by now
    const frames = await capture.stop(300);
    const packets = tunnelPackets(frames);

    // Each VM frame arrives once; nothing inside a tunnel packet is itself one of our tunnel packets.
    expect(hex(packets.map((p) => p.inner).filter((inner) => toVm.some((f) => f.equals(inner))))).toEqual(hex(toVm));
    const innerTunnels = packets.filter((p) => p.inner.readUInt16BE(12) === 0x0800 && p.inner[23] === 47);
    expect(innerTunnels).toHaveLength(0);
    // What the underlay source did see is other traffic (ARP, ICMP), a handful of packets.
    const underlaySeen = engine.stats().sources.find((s) => s.id === 'underlay')!.packets - before;
    expect(underlaySeen).toBeLessThan(20);
    expect(packets.length).toBeLessThan(toVm.length + 20);
  });
});
