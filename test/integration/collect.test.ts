import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type SinkPlan } from '../../src/engine/engine.js';
import { finished, runCli, startCli, stderrContains } from '../helpers/cli.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';
import { readPcap } from '../helpers/pcap.js';

const VM_MAC = '02:00:00:00:08:01';
const HOST_MAC = '02:00:00:00:08:02';
const HOST_UNDERLAY = '10.98.0.1';
const COLLECTOR = '10.98.0.2';

const hex = (frames: Buffer[]) => frames.map((frame) => frame.toString('hex'));

interface CollectReport {
  received: number;
  accepted: number;
  filtered: number;
  malformed: number;
  malformedBy: Record<string, number>;
  written: number;
  truncated: number;
}

/** Sends each hex payload as one IPv4 GRE packet from a raw socket (the kernel adds the IP header). */
const SEND_GRE = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
for line in sys.stdin:
    if line.strip():
        s.sendto(bytes.fromhex(line.strip()), (sys.argv[1], 0))
`;

describe('tapas collect: usage errors', () => {
  it('needs exactly one of -w or --to (exit 2)', async () => {
    const neither = await runCli(['collect']);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('give exactly one of -w FILE or --to IF');
    const session = await runCli(['collect', '-w', '/dev/null', '--session', '1024']);
    expect(session.code).toBe(2);
    expect(session.stderr).toContain('--session must be an integer from 0 to 1023');
  });
});

/**
 * host: the mirroring host (vmh = the source port, ul0 = underlay) and col:
 * the collector (ul1 = underlay, colmon = towards a monitor namespace for
 * re-injected frames). The collector's kernel has no GRE: tapas collect
 * terminates the tunnels.
 */
describe.skipIf(!netnsAvailable)(`tapas collect in namespaces (${netnsSkipReason})`, () => {
  const lab = new Lab('col');
  let host: string, vm: string, collector: string, monitor: string;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    collector = await lab.namespace('col');
    monitor = await lab.namespace('mon');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.veth(host, 'ul0', collector, 'ul1', 1500);
    await lab.veth(collector, 'colmon', monitor, 'mon0');
    await lab.exec(host, 'ip', ['addr', 'add', `${HOST_UNDERLAY}/24`, 'dev', 'ul0']);
    await lab.exec(collector, 'ip', ['addr', 'add', `${COLLECTOR}/24`, 'dev', 'ul1']);
  });

  afterAll(() => lab.cleanup());

  /** Starts tapas collect and resolves once it listens; stop() ends it with SIGINT and returns its JSON report. */
  async function startCollect(args: string[]) {
    const child = lab.track(startCli(['collect', '--netns', collector, '-f', 'json', ...args]));
    const done = finished(child);
    await stderrContains(child, 'listening for');
    return {
      async stop(): Promise<CollectReport> {
        await sleep(300);
        child.kill('SIGINT');
        const result = await done;
        expect(result.code, result.stderr).toBe(0);
        return JSON.parse(result.stdout) as CollectReport;
      },
    };
  }

  it('-w writes a pcap whose frames equal what tcpdump saw at the source (ERSPAN from tapas mirror)', async () => {
    const pcap = join(lab.dir, 'collected.pcap');
    const collect = await startCollect(['--session', '5', '-w', pcap]);
    const atSource = await lab.capture(host, 'vmh', 'vmh-source', 'inout');
    const mirror = lab.track(startCli(['mirror', '-s', `vmh@${host}`, '-d', 'BOTH',
      '--erspan', `${COLLECTOR}@${host}`, '--session', '5', '-f', 'json']));
    const mirrorDone = finished(mirror);
    await stderrContains(mirror, 'tapas: mirroring');

    const toVm = [1, 2, 3].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'col-i', sequence: n, length: 100 * n }));
    const fromVm = [1, 2, 3].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'col-o', sequence: n, length: 1400 }));
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    const source = testFramesOf(await atSource.stop());
    await sleep(300);
    mirror.kill('SIGINT');
    const mirrored = await mirrorDone;
    const report = await collect.stop();

    expect(source).toHaveLength(6);
    expect(hex(testFramesOf(readPcap(pcap)))).toEqual(hex(source));
    expect(report).toMatchObject({ received: 6, accepted: 6, filtered: 0, malformed: 0, written: 6, truncated: 0 });
    const stats = JSON.parse(mirrored.stdout);
    expect(stats.stats.sinks[0]).toMatchObject({ packets: 6, errors: 0, truncated: 0 });
  });

  it('--key keeps one GRE tunnel, counts the other as filtered, and gets fragmented frames whole', async () => {
    const pcap = join(lab.dir, 'key.pcap');
    const collect = await startCollect(['--key', '2', '-w', pcap]);
    const engine = new Engine();
    try {
      const inSink: SinkPlan = { id: 'in', kind: 'gre', remoteIp: COLLECTOR, key: 1, netns: host };
      const outSink: SinkPlan = { id: 'out', kind: 'gre', remoteIp: COLLECTOR, key: 2, netns: host };
      await engine.apply({
        sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
        sinks: [inSink, outSink],
        rules: [
          { id: 'in', sourceId: 'vm', sinkId: 'in', direction: 'IN' },
          { id: 'out', sourceId: 'vm', sinkId: 'out', direction: 'OUT' },
        ],
      });
      const toVm = [1, 2].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'key-i', sequence: n }));
      const fromVm = [
        makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'key-o', sequence: 1 }),
        makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'key-o', sequence: 2, length: 1514 }),
      ];
      await lab.sendFrames(host, 'vmh', toVm);
      await lab.sendFrames(vm, 'vm0', fromVm);
      const report = await collect.stop();
      expect(hex(readPcap(pcap))).toEqual(hex(fromVm));
      expect(report).toMatchObject({ received: 4, accepted: 2, filtered: 2, malformed: 0 });
      expect(engine.stats().sinks.find((s) => s.id === 'out')).toMatchObject({ fragmented: 1, errors: 0 });
    } finally {
      await engine.close();
    }
  });

  it('counts and skips malformed tunnel packets: short, wrong version, bad flags, ERSPAN type III, unknown payload', async () => {
    const pcap = join(lab.dir, 'malformed.pcap');
    const collect = await startCollect(['-w', pcap]);
    const frame = makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'bad', sequence: 1 });
    const gre = (head: string) => head + frame.toString('hex');
    const erspan = (version: number) => gre(`100088be00000001${(version << 28 | 7).toString(16).padStart(8, '0')}00000007`);
    const packets = [
      '2000',                          // shorter than a GRE header
      gre('2001655800000001'),         // version 1 (PPTP's enhanced GRE)
      gre('6000655800000001'),         // routing present: RFC 2784 deprecated it
      gre('2080655800000001'),         // a reserved bit set
      erspan(2),                       // ERSPAN type III: not decapsulated (yet)
      gre('20000800000000010000'),     // IPv4 in GRE, not an Ethernet frame
      '200065580000000102000000',      // inner frame shorter than an Ethernet header
      gre('2000655800000001'),         // the one good packet: GRE key 1
      erspan(1),                       // and a good ERSPAN II packet, session 7
    ];
    await lab.exec(host, 'python3', ['-c', SEND_GRE, COLLECTOR], `${packets.join('\n')}\n`);
    const report = await collect.stop();

    expect(report).toMatchObject({ received: 9, accepted: 2, malformed: 7, written: 2 });
    expect(report.malformedBy).toMatchObject({
      short: 1, greVersion: 1, greFlags: 2, erspanVersion: 1, unknownProtocol: 1, innerShort: 1,
    });
    expect(hex(readPcap(pcap))).toEqual(hex([frame, frame]));
  });

  it('--to re-injects the inner frames into a local interface, byte for byte', async () => {
    const collect = await startCollect(['--session', '12', '--to', 'colmon']);
    const atMonitor = await lab.capture(monitor, 'mon0');
    const engine = new Engine();
    try {
      await engine.apply({
        sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
        sinks: [{ id: 'erspan', kind: 'erspan', remoteIp: COLLECTOR, session: 12, netns: host }],
        rules: [{ id: 'both', sourceId: 'vm', sinkId: 'erspan', direction: 'BOTH' }],
      });
      const toVm = [1, 2].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'inj-i', sequence: n }));
      const fromVm = [1, 2].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'inj-o', sequence: n, vlan: 30 }));
      await lab.sendFrames(host, 'vmh', toVm);
      await lab.sendFrames(vm, 'vm0', fromVm);
      const report = await collect.stop();
      expect(hex(testFramesOf(await atMonitor.stop()))).toEqual(hex([...toVm, ...fromVm]));
      expect(report).toMatchObject({ received: 4, accepted: 4, written: 4, malformed: 0 });
    } finally {
      await engine.close();
    }
  });
});
