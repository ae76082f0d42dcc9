/**
 * GRE written by the bpf data path (issue 12): the clone goes into a veth
 * pair tapas owns in the source's namespace, whose programs prepend outer
 * Ethernet/IPv4/GRE (key) and redirect it to the underlay. Read on the
 * collector's wire with tshark and the test's decoder, as tunnel-wire does
 * for the AF_PACKET path.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type Plan } from '../../src/engine/engine.js';
import { makeFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep, waitFor } from '../helpers/netns.js';
import { tsharkFields, tunnelPackets, writePcap, type TunnelPacket } from './tunnel-decode.js';

const VM_MAC = '02:00:00:00:0b:01';
const HOST_MAC = '02:00:00:00:0b:02';
const HOST_UNDERLAY = '10.98.0.1';
const COLLECTOR = '10.98.0.2';

const hex = (frames: Buffer[]) => frames.map((frame) => frame.toString('hex'));

describe.skipIf(!netnsAvailable)(`GRE written by the bpf data path (${netnsSkipReason})`, () => {
  const lab = new Lab('bgre');
  let host: string, vm: string, collector: string;
  const engines: Engine[] = [];

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    collector = await lab.namespace('col');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.underlay(host, HOST_UNDERLAY, collector, COLLECTOR);
  });

  afterEach(async () => {
    for (const engine of engines.splice(0)) await engine.close();
  });

  afterAll(async () => {
    for (const engine of engines.splice(0)) await engine.close();
    await lab.cleanup();
  });

  function engine(): Engine {
    const made = new Engine({ datapath: 'bpf' });
    engines.push(made);
    return made;
  }

  const gre = (): Plan['sinks'] => [
    { id: 'gre-in', kind: 'gre', remoteIp: COLLECTOR, key: 201, netns: host },
    { id: 'gre-out', kind: 'gre', remoteIp: COLLECTOR, key: 202, netns: host },
  ];
  const erspan = (): Plan['sinks'] => [
    { id: 'gre-in', kind: 'erspan', remoteIp: COLLECTOR, session: 101, netns: host },
    { id: 'gre-out', kind: 'erspan', remoteIp: COLLECTOR, session: 102, netns: host },
  ];
  const plan = (sinks = gre()): Plan => ({
    sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
    sinks,
    rules: [
      { id: 'in', sourceId: 'vm', sinkId: 'gre-in', direction: 'IN' },
      { id: 'out', sourceId: 'vm', sinkId: 'gre-out', direction: 'OUT' },
    ],
  });

  /** An IPv4 frame whose TOS carries DSCP EF (46): ERSPAN must report cos 5. */
  function ipv4FrameWithDscpEf(vlan?: number): Buffer {
    const tag = vlan === undefined ? [] : [0x81, 0x00, 0x00, vlan];
    const ip = Buffer.from([0x45, 0xb8, 0x00, 46, 0, 1, 0, 0, 64, 253, 0, 0, 10, 1, 1, 1, 10, 1, 1, 2, ...Array(26).fill(0x5a)]);
    return Buffer.concat([Buffer.from([2, 0, 0, 0, 0x0b, 2, 2, 0, 0, 0, 0x0b, 1, ...tag, 0x08, 0x00]), ip]);
  }

  async function mirror(toVm: Buffer[], fromVm: Buffer[]): Promise<{ packets: TunnelPacket[]; pcap: string }> {
    const capture = await lab.capture(collector, 'ul1');
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    const frames = await capture.stop(500);
    const pcap = join(lab.dir, `bpf-underlay-${Date.now()}.pcap`);
    writePcap(pcap, frames);
    return { packets: tunnelPackets(frames), pcap };
  }

  const links = async () => (await lab.exec(host, 'ip', ['-o', 'link', 'show'])).stdout;
  /** Frames the kernel dropped between tapas's tunnel veth ends and on the underlay (a full backlog). */
  async function tunnelVethDrops(): Promise<number> {
    const all = JSON.parse((await lab.exec(host, 'ip', ['-s', '-j', 'link', 'show'])).stdout) as Array<{
      ifname: string; stats64: { rx: { dropped: number }; tx: { dropped: number } };
    }>;
    return all.filter((link) => /^(tpg\d+[ab]\d+|ul0)$/.test(link.ifname)).reduce((sum, link) => sum + link.stats64.rx.dropped + link.stats64.tx.dropped, 0);
  }

  it('IN and OUT arrive under their own keys from the kernel, inner frames byte-identical, stats say bpf', async () => {
    const running = engine();
    const applied = await running.apply(plan());
    for (const id of ['in', 'out']) {
      expect(applied.rules.find((r) => r.id === id)).toMatchObject({ ok: true, datapath: 'bpf' });
    }
    expect(await links()).toMatch(/tpg\d+a\d+/);
    const toVm = [1, 2, 3].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'bg-i', sequence: n, length: 60 + n * 100 }));
    // A full-size frame does not fit a 1500-byte underlay with 42 bytes of headers: the IP stack fragments it, as on AF_PACKET.
    const fromVm = [1, 2].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'bg-o', sequence: n }));
    const big = makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'bg-o', sequence: 3, length: 1514 });
    const { packets, pcap } = await mirror(toVm, [...fromVm, big]);

    expect(hex(packets.filter((p) => p.key === 201).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(packets.filter((p) => p.key === 202).map((p) => p.inner))).toEqual(hex([...fromVm, big]));  // reassembled
    expect(packets).toHaveLength(toVm.length + fromVm.length + 1);

    const decoded = await tsharkFields(pcap, ['gre.key', 'gre.proto', 'ip.src', 'ip.dst', 'ip.checksum.status'], 'gre', ['-o', 'ip.check_checksum:TRUE']);
    expect(decoded.map((d) => d['gre.key'])).toEqual(['0x000000c9', '0x000000c9', '0x000000c9', '0x000000ca', '0x000000ca', '0x000000ca']);
    for (const packet of decoded) {
      expect(packet).toMatchObject({ 'gre.proto': '0x6558', 'ip.src': HOST_UNDERLAY, 'ip.dst': COLLECTOR, 'ip.checksum.status': '1' }); // 1: good
    }
    const stats = await waitFor('the kernel counters', () => {
      const s = running.stats();
      const out = s.rules.find((r) => r.id === 'out');
      return out && out.packets >= 3 ? s : undefined;
    });
    expect(stats.rules.find((r) => r.id === 'in')).toMatchObject({ datapath: 'bpf', packets: 3, oversize: 0, unavailable: 0 });
    expect(stats.rules.find((r) => r.id === 'out')).toMatchObject({ datapath: 'bpf', packets: 3, oversize: 0, unavailable: 0 });
    expect(stats.sinks.find((s) => s.id === 'gre-out')).toMatchObject({ packets: 3, fragmented: 1, errors: 0 });
    expect(stats.sinks.find((s) => s.id === 'gre-in')).toMatchObject({ packets: 3, fragmented: 0, errors: 0 });
  });

  it('puts an offloaded VLAN tag back into the inner frame', async () => {
    const running = engine();
    await running.apply(plan());
    const base = makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'bg-v', sequence: 1 });
    const tagged = Buffer.concat([base.subarray(0, 12), Buffer.from([0x81, 0x00, 0x00, 42]), base.subarray(12)]);
    const { packets } = await mirror([], [tagged]);
    expect(hex(packets.filter((p) => p.key === 202).map((p) => p.inner))).toEqual(hex([tagged]));
  });

  it('ERSPAN II from the kernel: version 1, spanid, OpenStack index, consecutive sequence numbers per tunnel, inner frames byte-identical', async () => {
    const running = engine();
    const applied = await running.apply(plan(erspan()));
    for (const id of ['in', 'out']) expect(applied.rules.find((r) => r.id === id)).toMatchObject({ ok: true, datapath: 'bpf' });
    const toVm = [1, 2, 3, 4].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'be-i', sequence: n }));
    const fromVm = [1, 2, 3].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'be-o', sequence: n, length: 400 }));
    const { packets, pcap } = await mirror(toVm, fromVm);
    expect(hex(packets.filter((p) => p.erspan?.session === 101).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(packets.filter((p) => p.erspan?.session === 102).map((p) => p.inner))).toEqual(hex(fromVm));
    const decoded = await tsharkFields(pcap, ['gre.proto', 'erspan.version', 'erspan.spanid', 'erspan.index',
      'gre.sequence_number', 'erspan.truncated', 'erspan.vlan', 'erspan.encap', 'ip.src', 'ip.dst']);
    expect(decoded).toHaveLength(toVm.length + fromVm.length);
    for (const [session, count] of [[101, toVm.length], [102, fromVm.length]] as const) {
      const tunnel = decoded.filter((d) => d['erspan.spanid'] === String(session));
      expect(tunnel).toHaveLength(count);
      for (const packet of tunnel) {
        expect(packet).toMatchObject({ 'gre.proto': '0x88be', 'erspan.version': '1', 'erspan.truncated': '0', 'erspan.vlan': '0', 'erspan.encap': '0',
          'ip.src': HOST_UNDERLAY, 'ip.dst': COLLECTOR });
        expect(Number(packet['erspan.index'])).toBe(parseInt(String(session), 16));
      }
      // Each tunnel counts from 0.
      expect(tunnel.map((packet) => Number(packet['gre.sequence_number']))).toEqual(tunnel.map((_, i) => i));
    }
  });

  it('ERSPAN II from the kernel: the VLAN with en=3 (tag offloaded or in the frame), cos from the inner DSCP', async () => {
    const running = engine();
    await running.apply(plan(erspan()));
    const tagged = ipv4FrameWithDscpEf(42);
    const untagged = ipv4FrameWithDscpEf();
    const { packets, pcap } = await mirror([tagged], [tagged, untagged]);
    expect(hex(packets.map((p) => p.inner))).toEqual(hex([tagged, tagged, untagged]));
    const decoded = await tsharkFields(pcap, ['erspan.spanid', 'erspan.vlan', 'erspan.encap', 'erspan.cos']);
    expect(decoded).toEqual([
      { 'erspan.spanid': '101', 'erspan.vlan': '42', 'erspan.encap': '3', 'erspan.cos': '5' },
      { 'erspan.spanid': '102', 'erspan.vlan': '42', 'erspan.encap': '3', 'erspan.cos': '5' },
      { 'erspan.spanid': '102', 'erspan.vlan': '0', 'erspan.encap': '0', 'erspan.cos': '5' },
    ]);
  });

  it('ERSPAN II from the kernel cuts a frame to the 1500-byte underlay and sets T', async () => {
    const running = engine();
    await running.apply(plan(erspan()));
    const big = makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'be-big', sequence: 1, length: 1514 });
    const small = makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'be-big', sequence: 2, length: 1464 });
    const { packets, pcap } = await mirror([big, small], []);
    // 1500 - 20 (IPv4) - 8 (GRE with sequence) - 8 (ERSPAN II) = 1464 bytes of the frame fit, as on AF_PACKET.
    expect(packets.map((p) => p.inner.length)).toEqual([1464, 1464]);
    expect(packets[0]!.inner.equals(big.subarray(0, 1464))).toBe(true);
    expect(packets[1]!.inner.equals(small)).toBe(true);
    expect(packets.map((p) => p.erspan?.truncated)).toEqual([true, false]);
    const decoded = await tsharkFields(pcap, ['erspan.truncated', 'ip.len', 'ip.flags.df', 'ip.checksum.status'], 'gre', ['-o', 'ip.check_checksum:TRUE']);
    expect(decoded).toEqual([
      { 'erspan.truncated': '1', 'ip.len': '1500', 'ip.flags.df': '1', 'ip.checksum.status': '1' },
      { 'erspan.truncated': '0', 'ip.len': '1500', 'ip.flags.df': '1', 'ip.checksum.status': '1' },
    ]);
    expect(running.stats().rules.find((r) => r.id === 'in')).toMatchObject({ datapath: 'bpf', packets: 2, oversize: 0, unavailable: 0 });
  });

  it('sends a GSO frame (one skb for many segments) as wire-sized segments, in order, each with a valid TCP checksum', async () => {
    // Five or so 64 KB GSO skbs: enough to see segmentation, few enough that tcpdump keeps every copy on a busy host.
    const STREAM = 300_000;
    await lab.exec(host, 'ip', ['addr', 'add', '10.97.0.1/24', 'dev', 'vmh']);
    await lab.exec(vm, 'ip', ['addr', 'add', '10.97.0.2/24', 'dev', 'vm0']);
    // An underlay with room for a 1514-byte segment and 42 bytes of headers.
    await lab.exec(host, 'ip', ['link', 'set', 'ul0', 'mtu', '9000']);
    await lab.exec(collector, 'ip', ['link', 'set', 'ul1', 'mtu', '9000']);
    try {
      const running = engine();
      await running.apply(plan());
      // The collector's neighbour entry first: until it resolves, the kernel queues only ~200 KB of tunnel packets (unres_qlen_bytes).
      await lab.sendFrames(host, 'vmh', [makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'warm', sequence: 1 })]);
      await waitFor('the first copy', () => (running.stats().rules.find((r) => r.id === 'in')!.packets > 0 ? true : undefined));
      for (let tries = 0; !(await lab.exec(host, 'ip', ['neigh', 'show', COLLECTOR])).stdout.includes('lladdr'); tries += 1) {
        if (tries > 100) throw new Error('the collector\'s neighbour entry did not resolve');
        await sleep(50);
      }
      const capture = await lab.capture(collector, 'ul1');
      const originals = await lab.capture(host, 'vmh', 'vmh-out', 'out');
      // A TCP stream from the host to the VM: with TSO on the veth (its default) the host sends GSO skbs out of vmh (IN).
      const server = 'import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(("10.97.0.2",5001));s.listen(1)\n'
        + 'c,_=s.accept();n=0\nwhile True:\n  b=c.recv(65536)\n  if not b: break\n  n+=len(b)\nprint(n)';
      const client = 'import socket,time\nfor i in range(50):\n  try:\n    c=socket.create_connection(("10.97.0.2",5001));break\n  except OSError: time.sleep(0.05)\n'
        + `c.sendall(b"x"*${STREAM});c.close()`;
      const received = lab.exec(vm, 'python3', ['-c', server]);
      await lab.exec(host, 'python3', ['-c', client]);
      expect(Number((await received).stdout.trim())).toBe(STREAM);
      // tcpdump writes a burst of 700 full-size frames (and the originals' capture its own) behind the kernel: give it time.
      const frames = await capture.stop(2000);
      // The originals really were GSO skbs: the capture on vmh sees frames above the MTU.
      expect(Math.max(...(await originals.stop(0)).map((frame) => frame.length))).toBeGreaterThan(1514);
      const copies = tunnelPackets(frames).filter((p) => p.key === 201);
      const data = copies.map((p) => p.inner)
        .filter((inner) => inner.readUInt16BE(12) === 0x0800 && inner[23] === 6);
      const segments = data.map((inner) => {
        const ipLength = inner.readUInt16BE(16);
        const tcp = 14 + (inner[14]! & 0x0f) * 4;
        return { length: inner.length, seq: inner.readUInt32BE(tcp + 4), payload: ipLength - (tcp - 14) - (inner[tcp + 12]! >> 4) * 4 };
      });
      // Wire-sized: no inner frame above the source's MTU; together they carry the stream, in the order sent.
      for (const segment of segments) expect(segment.length).toBeLessThanOrEqual(1514);
      const withData = segments.filter((s) => s.payload > 0);
      // Segments a busy CPU's backlog drops (netdev_max_backlog) on the tunnel's veth or the underlay are counted there, nowhere else.
      const dropped = await tunnelVethDrops();
      const copied = withData.reduce((sum, s) => sum + s.payload, 0);
      if (dropped === 0) expect(copied).toBe(STREAM);
      else expect(copied).toBeGreaterThan(STREAM / 2);
      for (let i = 1; i < withData.length; i += 1) {
        // In order: each segment follows the one before, or the gap of dropped ones.
        const next = (withData[i - 1]!.seq + withData[i - 1]!.payload) >>> 0;
        if (dropped === 0) expect(withData[i]!.seq).toBe(next);
        else expect(((withData[i]!.seq - next) >>> 0) < STREAM).toBe(true);
      }
      // The kernel filled in each segment's checksum (the original left it to the hardware).
      const pcap = join(lab.dir, `bpf-gso-${Date.now()}.pcap`);
      writePcap(pcap, frames);
      const checks = await tsharkFields(pcap, ['tcp.checksum.status'], 'gre.key == 201 && tcp.len > 0', ['-o', 'tcp.check_checksum:TRUE']);
      expect(checks.length).toBe(withData.length);
      expect(checks.every((c) => c['tcp.checksum.status'] === '1')).toBe(true);  // 1: good
      const stats = running.stats().rules.find((r) => r.id === 'in')!;
      expect(stats).toMatchObject({ datapath: 'bpf', oversize: 0, unavailable: 0 });
      expect(stats.packets).toBe(copies.length + 1);  // the segments, the host's ARP and the first frame
    } finally {
      await lab.exec(host, 'ip', ['link', 'set', 'ul0', 'mtu', '1500']);
      await lab.exec(collector, 'ip', ['link', 'set', 'ul1', 'mtu', '1500']);
      await lab.exec(host, 'ip', ['addr', 'del', '10.97.0.1/24', 'dev', 'vmh']);
    }
  });

  it('never copies its own tunnel packets when the underlay itself is a mirrored source', async () => {
    const running = engine();
    const base = plan();
    const applied = await running.apply({
      ...base,
      sources: [...base.sources, { id: 'ul', ifname: 'ul0', netns: host }],
      rules: [
        { id: 'in', sourceId: 'vm', sinkId: 'gre-in', direction: 'IN' },
        { id: 'underlay', sourceId: 'ul', sinkId: 'gre-out', direction: 'BOTH' },
      ],
    });
    expect(applied.rules.find((r) => r.id === 'underlay')).toMatchObject({ ok: true, datapath: 'bpf' });
    const toVm = [1, 2, 3].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'bg-l', sequence: n }));
    const { packets } = await mirror(toVm, []);
    expect(hex(packets.filter((p) => p.key === 201).map((p) => p.inner))).toEqual(hex(toVm));
    // What the underlay carried besides tapas's tunnel packets (ARP at most) is mirrored; no GRE packet is.
    for (const copy of packets.filter((p) => p.key === 202)) expect(tunnelPackets([copy.inner])).toEqual([]);
    expect(packets.filter((p) => p.key === 202).length).toBeLessThan(5);
  });

  it('removes its veth pairs on close, and those a killed tapas left at the next start', async () => {
    const running = engine();
    await running.apply(plan());
    expect((await links()).match(/^\d+: tpg\d+a\d+/gm)).toHaveLength(2);
    await running.close();
    expect(await links()).not.toMatch(/tpg/);

    // What a killed tapas leaves: a pair named after a pid that no longer runs.
    const dead = Number(execFileSync('sh', ['-c', 'sh -c "echo \\$\\$"']).toString().trim());
    await lab.exec(host, 'ip', ['link', 'add', `tpg${dead}a7`, 'type', 'veth', 'peer', 'name', `tpg${dead}b7`]);
    const next = engine();
    await next.apply(plan());
    const now = await links();
    expect(now).not.toMatch(new RegExp(`tpg${dead}a7`));
    expect(now.match(/^\d+: tpg\d+a\d+/gm)).toHaveLength(2);
  });
});
