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
  malformedByType: Record<string, number>;
  acceptedByType: Record<string, number>;
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

/** Sends each hex payload as one UDP datagram to IP:PORT (VXLAN as a collector receives it). */
const SEND_UDP = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for line in sys.stdin:
    if line.strip():
        s.sendto(bytes.fromhex(line.strip()), (sys.argv[1], int(sys.argv[2])))
`;

const sorted = (frames: Buffer[]) => hex(frames).sort();

describe('tapas collect: usage errors', () => {
  it('needs exactly one of -w or --to (exit 2)', async () => {
    const neither = await runCli(['collect']);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('give exactly one of -w FILE or --to IF');
    const session = await runCli(['collect', '-w', '/dev/null', '--session', '1024']);
    expect(session.code).toBe(2);
    expect(session.stderr).toContain('--session must be an integer from 0 to 1023');
    const vni = await runCli(['collect', '-w', '/dev/null', '--vni', '16777216']);
    expect(vni.code).toBe(2);
    expect(vni.stderr).toContain('--vni must be an integer from 0 to 16777215');
    const port = await runCli(['collect', '-w', '/dev/null', '--udp-port', '0']);
    expect(port.code).toBe(2);
    expect(port.stderr).toContain('--udp-port must be a port from 1 to 65535');
  });

  it('tapas mirror: --vni, --udp-port and --hw-id go with their tunnel (exit 2)', async () => {
    for (const [args, message] of [
      [['--gre', '192.0.2.1', '--key', '1', '--vni', '5'], '--vni and --udp-port go with --vxlan'],
      [['--vxlan', '192.0.2.1'], '--vxlan needs --vni N'],
      [['--erspan', '192.0.2.1', '--session', '1', '--hw-id', '2'], '--hw-id goes with --erspan3'],
      [['--erspan3', '192.0.2.1', '--session', '1', '--index', '2'], '--index goes with --erspan (type III has none)'],
      [['--vxlan', '192.0.2.1', '--vni', '16777216'], '--vni must be an integer from 0 to 16777215'],
      [['--erspan3', '192.0.2.1', '--session', '1', '--vxlan', '192.0.2.1'], 'give exactly one destination'],
    ] as const) {
      const result = await runCli(['mirror', '-s', 'lo', '-d', 'BOTH', ...args]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(message);
    }
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
    await lab.underlay(host, HOST_UNDERLAY, collector, COLLECTOR);
    await lab.veth(collector, 'colmon', monitor, 'mon0');
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

  for (const [what, args, collectArgs] of [
    ['--erspan3 with -d BOTH', (ip: string) => ['--erspan3', ip, '--session', '33', '--hw-id', '5'], ['--session', '33']],
    ['--vxlan with --udp-port', (ip: string) => ['--vxlan', ip, '--vni', '123456', '--udp-port', '4791'], ['--vni', '123456', '--udp-port', '4791']],
  ] as const) {
    it(`tapas mirror ${what} into tapas collect: frames equal what tcpdump saw at the source`, async () => {
      const pcap = join(lab.dir, `cli-${collectArgs[1]}.pcap`);
      const collect = await startCollect([...collectArgs, '-w', pcap]);
      const atSource = await lab.capture(host, 'vmh', `vmh-${collectArgs[1]}`, 'inout');
      const mirror = lab.track(startCli(['mirror', '-s', `vmh@${host}`, '-d', 'BOTH', ...args(`${COLLECTOR}@${host}`), '-f', 'json']));
      const mirrorDone = finished(mirror);
      await stderrContains(mirror, 'tapas: mirroring');
      const toVm = [1, 2].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'cli-i', sequence: n, length: 300 }));
      const fromVm = [1, 2].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'cli-o', sequence: n }));
      await lab.sendFrames(host, 'vmh', toVm);
      await lab.sendFrames(vm, 'vm0', fromVm);
      const source = testFramesOf(await atSource.stop());
      await sleep(300);
      mirror.kill('SIGINT');
      const mirrored = await mirrorDone;
      const report = await collect.stop();
      expect(source).toHaveLength(4);
      expect(hex(testFramesOf(readPcap(pcap)))).toEqual(hex(source));
      expect(report).toMatchObject({ accepted: 4, malformed: 0, written: 4 });
      expect(JSON.parse(mirrored.stdout).stats.sinks[0]).toMatchObject({ packets: 4, errors: 0 });
    });
  }

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

  it('counts and skips malformed tunnel packets: short, wrong version, bad flags, unknown payload', async () => {
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
      erspan(2),                       // version 2 (type III's) under type II's protocol 0x88BE
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

  it('terminates all four tunnel types at once; inner frames byte-identical to what was sent, counted per type', async () => {
    const pcap = join(lab.dir, 'four.pcap');
    const collect = await startCollect(['-w', pcap]);
    const engine = new Engine();
    try {
      const sinks: SinkPlan[] = [
        { id: 'gre', kind: 'gre', remoteIp: COLLECTOR, key: 1, netns: host },
        { id: 'erspan2', kind: 'erspan', remoteIp: COLLECTOR, session: 2, netns: host },
        { id: 'erspan3', kind: 'erspan3', remoteIp: COLLECTOR, session: 3, netns: host },
        { id: 'vxlan', kind: 'vxlan', remoteIp: COLLECTOR, vni: 4, netns: host },
      ];
      const applied = await engine.apply({
        sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
        sinks,
        rules: sinks.map((sink) => ({ id: sink.id, sourceId: 'vm', sinkId: sink.id, direction: 'BOTH' as const })),
      });
      expect(applied.sinks.every((sink) => sink.ok), JSON.stringify(applied.sinks)).toBe(true);
      const toVm = [1, 2].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'four-i', sequence: n, length: 100 * n }));
      const fromVm = [1, 2, 3].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'four-o', sequence: n, vlan: n === 2 ? 12 : undefined }));
      await lab.sendFrames(host, 'vmh', toVm);
      await lab.sendFrames(vm, 'vm0', fromVm);
      const report = await collect.stop();
      const sent = [...toVm, ...fromVm];
      // Each frame once per tunnel type, whole and unchanged.
      expect(sorted(readPcap(pcap))).toEqual(sorted([...sent, ...sent, ...sent, ...sent]));
      expect(report).toMatchObject({ received: 20, accepted: 20, filtered: 0, malformed: 0, written: 20 });
      expect(report.acceptedByType).toEqual({ gre: 5, erspanII: 5, erspanIII: 5, vxlan: 5 });
    } finally {
      await engine.close();
    }
  });

  it('--session selects ERSPAN II and III alike; --vni with --udp-port selects one VXLAN tunnel on that port', async () => {
    const engine = new Engine();
    try {
      const sinks: SinkPlan[] = [
        { id: 'erspan2', kind: 'erspan', remoteIp: COLLECTOR, session: 8, netns: host },
        { id: 'erspan3', kind: 'erspan3', remoteIp: COLLECTOR, session: 9, netns: host },
        { id: 'vx-a', kind: 'vxlan', remoteIp: COLLECTOR, vni: 70000, port: 4790, netns: host },
        { id: 'vx-b', kind: 'vxlan', remoteIp: COLLECTOR, vni: 70001, port: 4790, netns: host },
      ];
      const rules = (directions: Record<string, 'IN' | 'OUT'>) => Object.entries(directions)
        .map(([sink, direction]) => ({ id: sink, sourceId: 'vm', sinkId: sink, direction }));
      await engine.apply({
        sources: [{ id: 'vm', ifname: 'vmh', netns: host }], sinks,
        rules: rules({ erspan2: 'IN', erspan3: 'OUT', 'vx-a': 'OUT', 'vx-b': 'IN' }),
      });
      const sessionPcap = join(lab.dir, 'session9.pcap');
      const vniPcap = join(lab.dir, 'vni70000.pcap');
      const bySession = await startCollect(['--session', '9', '-w', sessionPcap]);
      const byVni = await startCollect(['--vni', '70000', '--udp-port', '4790', '-w', vniPcap]);
      const toVm = [1, 2].map((n) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'sel-i', sequence: n }));
      const fromVm = [1, 2, 3].map((n) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'sel-o', sequence: n, length: 200 }));
      await lab.sendFrames(host, 'vmh', toVm);
      await lab.sendFrames(vm, 'vm0', fromVm);
      const session = await bySession.stop();
      const vni = await byVni.stop();
      expect(hex(readPcap(sessionPcap))).toEqual(hex(fromVm));
      expect(session).toMatchObject({ accepted: 3, filtered: 2, malformed: 0 });
      expect(session.acceptedByType).toMatchObject({ erspanIII: 3, erspanII: 0, vxlan: 0 });
      expect(hex(readPcap(vniPcap))).toEqual(hex(fromVm));
      // Only the UDP socket on 4790: the other VNI is filtered, GRE never reaches it.
      expect(vni).toMatchObject({ received: 5, accepted: 3, filtered: 2, malformed: 0 });
    } finally {
      await engine.close();
    }
  });

  it('ERSPAN III and VXLAN: malformed packets counted by reason and by type; the optional subheader (O=1) skipped', async () => {
    const pcap = join(lab.dir, 'malformed3.pcap');
    const collect = await startCollect(['-w', pcap]);
    const frame = makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'bad3', sequence: 1 });
    const f = frame.toString('hex');
    // GRE with S, protocol 0x22EB; word 0: version, session 5; word 2: hw id 3, D, O as given.
    const erspan3 = (version: number, word2: number, rest: string) =>
      `100022eb00000001${((version << 28) | 5).toString(16).padStart(8, '0')}00000000${word2.toString(16).padStart(8, '0')}${rest}`;
    const gre = [
      erspan3(2, (3 << 4) | (1 << 3), f),                         // good: D=1
      erspan3(2, (3 << 4) | 1, `fc00000000000000${f}`),           // good, with the 8-byte platform subheader (id 63)
      erspan3(1, 0, f),                                           // version 1 under protocol 0x22EB
      erspan3(2, 1, 'fc000000'),                                  // O=1 but the subheader cut short
      '100022eb0000000120000005',                                 // header shorter than 12 bytes
      erspan3(2, 0, '0200'),                                      // inner frame shorter than an Ethernet header
    ];
    const vxlan = [
      `0800000000000700${f}`,                                     // good: VNI 7
      `0000000000000700${f}`,                                     // I flag clear
      '08000000',                                                 // shorter than the VXLAN header
      '080000000000070002000000',                                 // inner frame too short
    ];
    await lab.exec(host, 'python3', ['-c', SEND_GRE, COLLECTOR], `${gre.join('\n')}\n`);
    await lab.exec(host, 'python3', ['-c', SEND_UDP, COLLECTOR, '4789'], `${vxlan.join('\n')}\n`);
    const report = await collect.stop();

    expect(report).toMatchObject({ received: 10, accepted: 3, malformed: 7, written: 3 });
    expect(report.malformedBy).toMatchObject({ short: 3, erspanVersion: 1, innerShort: 2, vxlanFlags: 1 });
    expect(report.malformedByType).toEqual({ gre: 0, erspanII: 0, erspanIII: 4, vxlan: 3 });
    expect(report.acceptedByType).toEqual({ gre: 0, erspanII: 0, erspanIII: 2, vxlan: 1 });
    expect(hex(readPcap(pcap))).toEqual(hex([frame, frame, frame]));
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
