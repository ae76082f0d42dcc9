import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Collector } from '../../src/engine/collector.js';
import { Engine } from '../../src/engine/engine.js';
import { makeFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';
import { readPcap } from '../helpers/pcap.js';
import { tsharkFields, tunnelPackets, writePcap } from './tunnel-decode.js';

const VM_MAC = '02:00:00:00:0a:01';
const HOST_MAC = '02:00:00:00:0a:02';
const HOST_UNDERLAY = 'fd00:99::1';
const COLLECTOR = 'fd00:99::2';

const hex = (frames: Buffer[]) => frames.map((frame) => frame.toString('hex'));

/** The same tunnels over an IPv6 underlay: a raw AF_INET6 socket, 40-byte outer header. */
describe.skipIf(!netnsAvailable)(`tunnels over IPv6 (${netnsSkipReason})`, () => {
  const lab = new Lab('tun6');
  let host: string, vm: string, collector: string;
  let engine: Engine;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    collector = await lab.namespace('col');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.underlay(host, HOST_UNDERLAY, collector, COLLECTOR);
    engine = new Engine();
    await engine.apply({
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
      sinks: [
        { id: 'gre6', kind: 'gre', remoteIp: COLLECTOR, key: 6, netns: host },
        { id: 'erspan6', kind: 'erspan', remoteIp: COLLECTOR, session: 6, netns: host },
      ],
      rules: [
        { id: 'in', sourceId: 'vm', sinkId: 'gre6', direction: 'IN' },
        { id: 'out', sourceId: 'vm', sinkId: 'erspan6', direction: 'OUT' },
      ],
    });
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  it('GRE and ERSPAN arrive over IPv6, decoded by tshark; ERSPAN truncates to 1500 - 40 - 16 bytes', async () => {
    const capture = await lab.capture(collector, 'ul1');
    const toVm = [1, 2].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'v6-i', sequence: n }));
    const fromVm = [
      makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'v6-o', sequence: 1 }),
      makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'v6-o', sequence: 2, length: 1514 }),
    ];
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    const frames = await capture.stop(500);
    const packets = tunnelPackets(frames);

    expect(hex(packets.filter((p) => p.key === 6).map((p) => p.inner))).toEqual(hex(toVm));
    const erspan = packets.filter((p) => p.erspan?.session === 6);
    expect(hex(erspan.map((p) => p.inner))).toEqual(hex([fromVm[0]!, fromVm[1]!.subarray(0, 1444)]));
    expect(erspan.map((p) => p.erspan!.truncated)).toEqual([false, true]);

    const pcap = join(lab.dir, 'underlay6.pcap');
    writePcap(pcap, frames);
    const decoded = await tsharkFields(pcap, ['ipv6.src', 'ipv6.nxt', 'gre.key', 'erspan.spanid', 'erspan.truncated']);
    expect(decoded).toEqual([
      { 'ipv6.src': HOST_UNDERLAY, 'ipv6.nxt': '47', 'gre.key': '0x00000006', 'erspan.spanid': '', 'erspan.truncated': '' },
      { 'ipv6.src': HOST_UNDERLAY, 'ipv6.nxt': '47', 'gre.key': '0x00000006', 'erspan.spanid': '', 'erspan.truncated': '' },
      { 'ipv6.src': HOST_UNDERLAY, 'ipv6.nxt': '47', 'gre.key': '', 'erspan.spanid': '6', 'erspan.truncated': '0' },
      { 'ipv6.src': HOST_UNDERLAY, 'ipv6.nxt': '47', 'gre.key': '', 'erspan.spanid': '6', 'erspan.truncated': '1' },
    ]);
    expect(engine.stats().sinks.find((s) => s.id === 'erspan6')).toMatchObject({ packets: 2, truncated: 1, errors: 0 });
  });

  it('the collector terminates tunnels arriving over IPv6', async () => {
    const pcap = join(lab.dir, 'collected6.pcap');
    const collector6 = new Collector({ netns: collector, listenIp: COLLECTOR, key: 6, pcapPath: pcap });
    const toVm = [1, 2, 3].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'v6-c', sequence: n }));
    await lab.sendFrames(host, 'vmh', toVm);
    await sleep(300);
    const stats = collector6.close();
    expect(hex(readPcap(pcap))).toEqual(hex(toVm));
    expect(stats).toMatchObject({ received: 3, accepted: 3, malformed: 0, written: 3 });
  });
});
