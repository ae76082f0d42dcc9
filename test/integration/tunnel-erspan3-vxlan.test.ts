import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Collector } from '../../src/engine/collector.js';
import { Engine, type Plan, type SinkPlan } from '../../src/engine/engine.js';
import { makeFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';
import { readPcap } from '../helpers/pcap.js';
import { tsharkFields, tunnelPackets, vxlanPackets, writePcap } from './tunnel-decode.js';

const VM_MAC = '02:00:00:00:0e:01';
const HOST_MAC = '02:00:00:00:0e:02';
const HOST_UNDERLAY = '10.97.0.1';
const COLLECTOR = '10.97.0.2';
const HOST_UNDERLAY6 = 'fd00:97::1';
const COLLECTOR6 = 'fd00:97::2';

const hex = (frames: Buffer[]) => frames.map((frame) => frame.toString('hex'));

/**
 * ERSPAN type III and VXLAN as tapas sends them, and both directions in one
 * tunnel: a "VM" behind vmh in a host namespace whose underlay ul0 leads to a
 * collector namespace (IPv4 and IPv6). Nothing terminates the tunnels there:
 * the wire is read with tcpdump and decoded by tshark and by the test's own
 * decoder (tunnel-decode.ts, which shares no code with the engine).
 */
describe.skipIf(!netnsAvailable)(`ERSPAN III, VXLAN and BOTH on the wire (${netnsSkipReason})`, () => {
  const lab = new Lab('e3vx');
  let host: string, vm: string, collector: string;
  let engine: Engine;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    collector = await lab.namespace('col');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.underlay(host, HOST_UNDERLAY, collector, COLLECTOR);
    // IPv6 on the same link, beside IPv4.
    for (const [ns, ifname, address] of [[host, 'ul0', HOST_UNDERLAY6], [collector, 'ul1', COLLECTOR6]] as const) {
      await lab.exec(ns, 'sysctl', ['-qw', `net.ipv6.conf.${ifname}.disable_ipv6=0`]);
      await lab.exec(ns, 'ip', ['addr', 'add', `${address}/64`, 'dev', ifname, 'nodad']);
    }
    engine = new Engine();
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  const source = () => ({ id: 'vm', ifname: 'vmh', netns: host });

  /** Sends frames to and from the VM and returns what arrived on the collector's underlay, and its pcap. */
  async function mirror(toVm: Buffer[], fromVm: Buffer[]): Promise<{ frames: Buffer[]; pcap: string }> {
    const capture = await lab.capture(collector, 'ul1');
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    const frames = await capture.stop(500);
    const pcap = join(lab.dir, `underlay-${Date.now()}.pcap`);
    writePcap(pcap, frames);
    return { frames, pcap };
  }

  const frames = (stream: string, count: number, to: boolean, length?: number) => Array.from({ length: count }, (_, i) => makeFrame({
    dst: to ? VM_MAC : HOST_MAC, src: to ? HOST_MAC : VM_MAC, stream, sequence: i + 1, ...(length ? { length } : {}),
  }));

  it('ERSPAN III: tshark reads version 2, the session, hardware id, granularity and D (IN 0, OUT 1); sequences per tunnel', async () => {
    const plan: Plan = {
      sources: [source()],
      sinks: [
        { id: 'in', kind: 'erspan3', remoteIp: COLLECTOR, session: 201, hwid: 42, netns: host },
        { id: 'out', kind: 'erspan3', remoteIp: COLLECTOR, session: 202, netns: host },
      ],
      rules: [
        { id: 'in', sourceId: 'vm', sinkId: 'in', direction: 'IN' },
        { id: 'out', sourceId: 'vm', sinkId: 'out', direction: 'OUT' },
      ],
    };
    const applied = await engine.apply(plan);
    expect(applied.sinks.every((sink) => sink.ok), JSON.stringify(applied.sinks)).toBe(true);
    const before = Math.floor(Date.now() * 10) >>> 0;  // 100 us units, cut to 32 bits
    const toVm = frames('e3-i', 3, true);
    const fromVm = frames('e3-o', 2, false, 300);
    const { frames: wire, pcap } = await mirror(toVm, fromVm);
    const after = Math.floor(Date.now() * 10) >>> 0;

    const packets = tunnelPackets(wire);
    expect(hex(packets.filter((p) => p.erspan3?.session === 201).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(packets.filter((p) => p.erspan3?.session === 202).map((p) => p.inner))).toEqual(hex(fromVm));
    for (const packet of packets) {
      // The timestamp is CLOCK_REALTIME in 100 us units (gra 0), as the Linux erspan driver sends it.
      expect(packet.erspan3!.timestamp).toBeGreaterThanOrEqual(before);
      expect(packet.erspan3!.timestamp).toBeLessThanOrEqual(after);
    }

    const decoded = await tsharkFields(pcap, ['gre.proto', 'erspan.version', 'erspan.spanid', 'erspan.hw', 'erspan.direction',
      'erspan.gra', 'erspan.o', 'erspan.truncated', 'gre.sequence_number', 'erspan.p', 'erspan.ft']);
    expect(decoded).toHaveLength(5);
    for (const [session, hw, direction, count] of [['201', '42', '0', 3], ['202', '0', '1', 2]] as const) {
      const tunnel = decoded.filter((d) => d['erspan.spanid'] === session);
      expect(tunnel).toHaveLength(count);
      for (const packet of tunnel) {
        expect(packet).toMatchObject({
          'gre.proto': '0x22eb', 'erspan.version': '2', 'erspan.hw': hw, 'erspan.direction': direction,
          'erspan.gra': '0', 'erspan.o': '0', 'erspan.truncated': '0', 'erspan.p': '1', 'erspan.ft': '0',
        });
      }
      // One counter per tunnel, consecutive.
      const sequences = tunnel.map((d) => Number(d['gre.sequence_number']));
      expect(sequences).toEqual(sequences.map((_, i) => sequences[0]! + i));
    }
  });

  it('a BOTH rule over ERSPAN III: one session, IN frames with D=0 and OUT frames with D=1', async () => {
    await engine.apply({
      sources: [source()],
      sinks: [{ id: 'both', kind: 'erspan3', remoteIp: COLLECTOR, session: 300, netns: host }],
      rules: [{ id: 'both', sourceId: 'vm', sinkId: 'both', direction: 'BOTH' }],
    });
    const toVm = frames('b3-i', 4, true);
    const fromVm = frames('b3-o', 3, false);
    const { frames: wire, pcap } = await mirror(toVm, fromVm);
    const packets = tunnelPackets(wire);
    expect(packets.every((p) => p.erspan3?.session === 300)).toBe(true);
    expect(hex(packets.filter((p) => p.erspan3!.d === 0).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(packets.filter((p) => p.erspan3!.d === 1).map((p) => p.inner))).toEqual(hex(fromVm));

    const decoded = await tsharkFields(pcap, ['erspan.spanid', 'erspan.direction', 'eth.src']);
    expect(decoded).toHaveLength(7);
    // tshark's eth.src is the outer frame's then the inner one's: the inner source tells the direction.
    const inner = (d: Record<string, string>) => d['eth.src']!.split(',').at(-1);
    expect(new Set(decoded.map((d) => d['erspan.spanid']))).toEqual(new Set(['300']));
    expect(decoded.filter((d) => d['erspan.direction'] === '0').map(inner)).toEqual(Array(4).fill(HOST_MAC));
    expect(decoded.filter((d) => d['erspan.direction'] === '1').map(inner)).toEqual(Array(3).fill(VM_MAC));
  });

  it('a BOTH rule over GRE and over ERSPAN II: both directions under one key / one session', async () => {
    for (const sink of [
      { id: 'both', kind: 'gre', remoteIp: COLLECTOR, key: 77, netns: host },
      { id: 'both', kind: 'erspan', remoteIp: COLLECTOR, session: 77, netns: host },
    ] satisfies SinkPlan[]) {
      await engine.apply({ sources: [source()], sinks: [sink], rules: [{ id: 'both', sourceId: 'vm', sinkId: 'both', direction: 'BOTH' }] });
      const toVm = frames(`b${sink.kind}-i`, 2, true);
      const fromVm = frames(`b${sink.kind}-o`, 2, false);
      const packets = tunnelPackets((await mirror(toVm, fromVm)).frames);
      expect(packets).toHaveLength(4);
      if (sink.kind === 'gre') expect(packets.map((p) => p.key)).toEqual([77, 77, 77, 77]);
      else expect(packets.map((p) => p.erspan?.session)).toEqual([77, 77, 77, 77]);
      expect(hex(packets.map((p) => p.inner)).sort()).toEqual(hex([...toVm, ...fromVm]).sort());
    }
  });

  it('ERSPAN III truncates above the path MTU with T set; tshark agrees', async () => {
    await engine.apply({
      sources: [source()],
      sinks: [{ id: 'cut', kind: 'erspan3', remoteIp: COLLECTOR, session: 9, netns: host }],
      rules: [{ id: 'cut', sourceId: 'vm', sinkId: 'cut', direction: 'OUT' }],
    });
    const big = frames('e3-big', 1, false, 1514);
    const { frames: wire, pcap } = await mirror([], big);
    const [packet] = tunnelPackets(wire);
    // 1500 - 20 (IPv4) - 8 (GRE with S) - 12 (ERSPAN III): the frame's first 1460 bytes.
    expect(packet!.inner.toString('hex')).toBe(big[0]!.subarray(0, 1460).toString('hex'));
    expect(packet!.erspan3!.truncated).toBe(true);
    expect((await tsharkFields(pcap, ['erspan.truncated']))[0]).toEqual({ 'erspan.truncated': '1' });
    expect(engine.stats().sinks[0]).toMatchObject({ packets: 1, truncated: 1, errors: 0 });
  });

  it('VXLAN to 4789 and to another port: tshark reads flag I and the VNI; inner frames equal the originals', async () => {
    await engine.apply({
      sources: [source()],
      sinks: [
        { id: 'in', kind: 'vxlan', remoteIp: COLLECTOR, vni: 0xabcdef, netns: host },
        { id: 'out', kind: 'vxlan', remoteIp: COLLECTOR, vni: 5000, port: 4790, netns: host },
      ],
      rules: [
        { id: 'in', sourceId: 'vm', sinkId: 'in', direction: 'IN' },
        { id: 'out', sourceId: 'vm', sinkId: 'out', direction: 'OUT' },
      ],
    });
    const toVm = frames('vx-i', 3, true);
    const fromVm = frames('vx-o', 2, false, 700);
    const { frames: wire, pcap } = await mirror(toVm, fromVm);
    const standard = vxlanPackets(wire, 4789);
    const other = vxlanPackets(wire, 4790);
    expect(hex(standard.map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(other.map((p) => p.inner))).toEqual(hex(fromVm));
    expect(standard.map((p) => p.vni)).toEqual([0xabcdef, 0xabcdef, 0xabcdef]);
    expect([...standard, ...other].every((p) => p.flags === 0x08)).toBe(true);

    const decoded = await tsharkFields(pcap, ['udp.dstport', 'vxlan.flag_i', 'vxlan.vni', 'ip.dst'], 'vxlan', ['-d', 'udp.port==4790,vxlan']);
    expect(decoded).toEqual([
      ...Array(3).fill({ 'udp.dstport': '4789', 'vxlan.flag_i': '1', 'vxlan.vni': String(0xabcdef), 'ip.dst': COLLECTOR }),
      ...Array(2).fill({ 'udp.dstport': '4790', 'vxlan.flag_i': '1', 'vxlan.vni': '5000', 'ip.dst': COLLECTOR }),
    ]);
  });

  it('VXLAN truncates above the path MTU (no T bit: counted as truncated)', async () => {
    await engine.apply({
      sources: [source()],
      sinks: [{ id: 'cut', kind: 'vxlan', remoteIp: COLLECTOR, vni: 1, netns: host }],
      rules: [{ id: 'cut', sourceId: 'vm', sinkId: 'cut', direction: 'OUT' }],
    });
    const big = frames('vx-big', 1, false, 1514);
    const [packet] = vxlanPackets((await mirror([], big)).frames);
    // 1500 - 20 (IPv4) - 8 (UDP) - 8 (VXLAN).
    expect(packet!.inner.toString('hex')).toBe(big[0]!.subarray(0, 1464).toString('hex'));
    expect(engine.stats().sinks[0]).toMatchObject({ packets: 1, truncated: 1, errors: 0 });
  });

  it('ERSPAN III and VXLAN to an IPv6 collector', async () => {
    await engine.apply({
      sources: [source()],
      sinks: [
        { id: 'in', kind: 'erspan3', remoteIp: COLLECTOR6, session: 600, netns: host },
        { id: 'out', kind: 'vxlan', remoteIp: COLLECTOR6, vni: 600, netns: host },
      ],
      rules: [
        { id: 'in', sourceId: 'vm', sinkId: 'in', direction: 'IN' },
        { id: 'out', sourceId: 'vm', sinkId: 'out', direction: 'OUT' },
      ],
    });
    const toVm = frames('v6-i', 2, true);
    const fromVm = frames('v6-o', 2, false);
    const { frames: wire, pcap } = await mirror(toVm, fromVm);
    expect(hex(tunnelPackets(wire).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(vxlanPackets(wire).map((p) => p.inner))).toEqual(hex(fromVm));
    const erspan = await tsharkFields(pcap, ['ipv6.dst', 'erspan.version', 'erspan.spanid', 'erspan.direction'], 'erspan');
    expect(erspan).toEqual(Array(2).fill({ 'ipv6.dst': COLLECTOR6, 'erspan.version': '2', 'erspan.spanid': '600', 'erspan.direction': '0' }));
    const vxlan = await tsharkFields(pcap, ['ipv6.dst', 'vxlan.vni'], 'vxlan');
    expect(vxlan).toEqual(Array(2).fill({ 'ipv6.dst': COLLECTOR6, 'vxlan.vni': '600' }));

    // And the collector terminates both over IPv6 (its AF_INET6 raw and UDP sockets).
    const collected = join(lab.dir, 'collected6.pcap');
    const collector6 = new Collector({ netns: collector, session: 600, vni: 600, pcapPath: collected });
    const moreToVm = frames('c6-i', 2, true);
    const moreFromVm = frames('c6-o', 3, false);
    try {
      await lab.sendFrames(host, 'vmh', moreToVm);
      await lab.sendFrames(vm, 'vm0', moreFromVm);
      await sleep(300);
    } finally {
      const stats = collector6.close();
      expect(stats).toMatchObject({ received: 5, accepted: 5, malformed: 0, written: 5 });
      expect(stats.acceptedByType).toMatchObject({ erspanIII: 2, vxlan: 3 });
    }
    expect(hex(readPcap(collected)).sort()).toEqual(hex([...moreToVm, ...moreFromVm]).sort());
  });
});
