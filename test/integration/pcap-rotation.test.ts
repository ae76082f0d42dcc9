/**
 * pcap files that rotate (-w with -C, -G, -W), with real packets: VXLAN
 * datagrams from one namespace to `tapas collect` in another, whose inner
 * frames carry a sequence number. Whatever the rotation, every frame sent is
 * in exactly one file, in order, and every file reads on its own.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { finished, runCli, startCli, stderrContains } from '../helpers/cli.js';
import { loadAddon } from '../../src/engine/native.js';
import { makeFrame, parseTestFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';
import { readPcap } from '../helpers/pcap.js';

const run = promisify(execFile);
const SENDER = '10.97.0.1';
const COLLECTOR = '10.97.0.2';
const VNI = 7;

interface CollectReport {
  received: number;
  accepted: number;
  written: number;
  outputErrors: number;
  filesOpened: number;
  filesRemoved: number;
}

/**
 * Sends COUNT VXLAN datagrams (VNI argv[3]) whose inner frames are test
 * frames (helpers/frames.ts layout) of stream argv[4], sequence FIRST..,
 * LENGTH bytes; a 1 ms pause every 200 so that the collector's socket buffer
 * never overflows (what is tested is the files, not the socket).
 */
const SEND_VXLAN = `
import socket, struct, sys, time
ip, port, vni, stream, first, count, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
header = struct.pack('!II', 0x08000000, vni << 8)
macs = bytes.fromhex('020000000901' '020000000902')
for seq in range(first, first + count):
    body = macs + struct.pack('!H', 0x88b5) + b'tapas-test' + stream.encode().ljust(8)[:8] + struct.pack('!I', seq)
    s.sendto(header + body + b'\\xab' * (length - len(body)), (ip, port))
    if seq % 200 == 199:
        time.sleep(0.001)
`;

/** Sends each hex payload as one IPv4 GRE packet from a raw socket (the kernel adds the IP header). */
const SEND_GRE = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
for line in sys.stdin:
    if line.strip():
        s.sendto(bytes.fromhex(line.strip()), (sys.argv[1], 0))
`;

const sequences = (frames: Buffer[]) => frames.map((frame) => parseTestFrame(frame)?.sequence ?? -1);
const range = (first: number, count: number) => Array.from({ length: count }, (_, i) => first + i);

/** The files of a rotation in dir whose names start with base, in the order their numbers say. */
function rotationFiles(dir: string, base: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.startsWith(base) && /^\d+$/.test(name.slice(base.length)))
    .sort((a, b) => Number(a.slice(base.length)) - Number(b.slice(base.length)))
    .map((name) => join(dir, name));
}

/** Frames as tcpdump and tshark count them: each file must read on its own, without a complaint. */
async function readersCount(file: string): Promise<{ tcpdump: number; tshark: number }> {
  const tcpdump = await run('tcpdump', ['-r', file, '-n', '-q'], { maxBuffer: 64 << 20 });
  expect(tcpdump.stderr).not.toMatch(/truncated|bogus|error/i);
  const tshark = await run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.number'], { maxBuffer: 64 << 20 });
  expect(tshark.stderr).not.toMatch(/cut short|appears to be damaged|error/i);
  return { tcpdump: tcpdump.stdout.split('\n').filter(Boolean).length, tshark: tshark.stdout.split('\n').filter(Boolean).length };
}

describe('tapas collect -w with -C/-G/-W: usage errors (exit 2, before capturing)', () => {
  it('refuses -C 0, -W alone, rotation without -w, an unwritable directory', async () => {
    for (const [args, message] of [
      [['-w', '/tmp/x.pcap', '-C', '0'], '-C must be an integer from 1 to 1000000'],
      [['-w', '/tmp/x.pcap', '-G', '-1'], '-G must be an integer from 1'],
      [['-w', '/tmp/x.pcap', '-W', '3'], '-W keeps N files of a rotation: give -C MB or -G SECONDS too'],
      [['--to', 'lo', '-C', '1'], '-C, -G, -W and --pcapng go with -w FILE'],
      [['-w', '/nonexistent-tapas-dir/x.pcap', '-C', '1'], "no directory '/nonexistent-tapas-dir'"],
    ] as const) {
      const result = await runCli(['collect', '--vni', '1', ...args]);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toContain(message);
    }
  });

  it('a file that cannot be created (root passes access(2) on /proc) is exit 1 with the reason, nothing captured', async () => {
    const result = await runCli(['collect', '--vni', '1', '-w', '/proc/tapas-x.pcap', '-C', '1', '--duration', '1']);
    expect(result.code, result.stderr).not.toBe(0);
    expect(result.stderr).toContain("cannot write '/proc/tapas-x.pcap0'");
    expect(result.stdout).toBe('');
  });

  it('--help explains -w, -C, -G and -W', async () => {
    const help = await runCli(['collect', '--help']);
    expect(help.code).toBe(0);
    for (const text of ['-C, --file-size <MB>', '-G, --rotate-seconds <S>', '-W, --file-count <N>', 'cap.pcap0, cap.pcap1', 'round a ring']) {
      expect(help.stdout).toContain(text);
    }
  });
});

describe.skipIf(!netnsAvailable)(`tapas collect -w rotation with real packets (${netnsSkipReason})`, () => {
  const lab = new Lab('rot');
  let sender: string, collector: string;

  beforeAll(async () => {
    sender = await lab.namespace('snd');
    collector = await lab.namespace('col');
    await lab.underlay(sender, SENDER, collector, COLLECTOR);
  });

  afterAll(() => lab.cleanup());

  async function startCollect(args: string[], select = ['--vni', String(VNI)]) {
    const child = lab.track(startCli(['collect', '--netns', collector, ...select, '-f', 'json', ...args]));
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

  const send = (stream: string, first: number, count: number, length = 200) =>
    lab.exec(sender, 'python3', ['-c', SEND_VXLAN, COLLECTOR, '4789', String(VNI), stream, String(first), String(count), String(length)]);

  it('-C 1: 20,000 frames across 5 files, none lost, each file valid, none past 1,000,000 bytes', async () => {
    const base = join(lab.dir, 'size.pcap');
    const collect = await startCollect(['-w', base, '-C', '1']);
    await send('size', 0, 20_000);
    const report = await collect.stop();

    expect(report.received).toBe(20_000);
    expect(report.written).toBe(20_000);
    expect(report.outputErrors).toBe(0);
    const files = rotationFiles(lab.dir, 'size.pcap');
    // 20,000 records of 16 + 200 bytes: 4,320,000 bytes, 4,629 records a file.
    expect(files.map((file) => file.slice(lab.dir.length + 1))).toEqual(['size.pcap0', 'size.pcap1', 'size.pcap2', 'size.pcap3', 'size.pcap4']);
    expect(existsSync(base)).toBe(false);
    expect(report.filesOpened).toBe(5);
    expect(report.filesRemoved).toBe(0);
    const all: number[] = [];
    for (const file of files) {
      expect(statSync(file).size).toBeLessThanOrEqual(1_000_000);
      const frames = readPcap(file);
      all.push(...sequences(frames));
      const counted = await readersCount(file);
      expect(counted).toEqual({ tcpdump: frames.length, tshark: frames.length });
    }
    // Every frame once, in the order sent: nothing lost or doubled at a rotation.
    expect(all).toEqual(range(0, 20_000));
    // Full files: the next record would not have fit.
    for (const file of files.slice(0, -1)) expect(statSync(file).size + 216).toBeGreaterThan(1_000_000);
  }, 120_000);

  it('-C 1 -W 3: the ring keeps the 3 newest files, FILE0..FILE2, and removes the rest', async () => {
    const base = join(lab.dir, 'ring.pcap');
    const collect = await startCollect(['-w', base, '-C', '1', '-W', '3']);
    await send('ring', 0, 20_000);
    const report = await collect.stop();

    expect(report.received).toBe(20_000);
    expect(report.written).toBe(20_000);
    expect(report.filesOpened).toBe(5);
    expect(report.filesRemoved).toBe(2);
    const files = rotationFiles(lab.dir, 'ring.pcap');
    expect(files.map((file) => file.slice(lab.dir.length + 1))).toEqual(['ring.pcap0', 'ring.pcap1', 'ring.pcap2']);
    // Opened in the order 0 1 2 0 1: ring.pcap2 is the oldest that stays, then 0, then 1.
    const [zero, one, two] = files.map((file) => sequences(readPcap(file)));
    const kept = [...two!, ...zero!, ...one!];
    expect(kept).toEqual(range(20_000 - kept.length, kept.length));
    expect(kept.length).toBeGreaterThan(2 * 4_600);
  }, 120_000);

  it('-G 1: a new file for the first frame a second after the current file\'s first; quiet time makes no files', async () => {
    const base = join(lab.dir, 'time.pcap');
    const collect = await startCollect(['-w', base, '-G', '1']);
    // Three bursts 1.5 s apart, then 2.5 s of nothing before the end.
    await send('time', 0, 500);
    await sleep(1500);
    await send('time', 500, 500);
    await sleep(1500);
    await send('time', 1000, 500);
    await sleep(2500);
    const report = await collect.stop();

    expect(report.written).toBe(1500);
    const files = rotationFiles(lab.dir, 'time.pcap');
    expect(files.map((file) => file.slice(lab.dir.length + 1))).toEqual(['time.pcap0', 'time.pcap1', 'time.pcap2']);
    expect(report.filesOpened).toBe(3);
    expect(files.map((file) => sequences(readPcap(file)))).toEqual([range(0, 500), range(500, 500), range(1000, 500)]);
    for (const file of files) expect((await readersCount(file)).tshark).toBe(500);
  }, 120_000);

  it('--pcapng: the tunnel is the interface, ERSPAN III\'s D bit the direction (D=0 inbound = IN), for tshark', async () => {
    const base = join(lab.dir, 'col.pcapng');
    const collect = await startCollect(['-w', base, '--pcapng'], []);
    const { encapsulate } = loadAddon();
    const frame = (stream: string, sequence: number) => makeFrame({ dst: '02:00:00:00:09:02', src: '02:00:00:00:09:01', stream, sequence });
    const erspan = [
      ...Array.from({ length: 5 }, (_, i) => encapsulate({ kind: 'erspan3', session: 9, sequence: i, direction: 'IN' }, frame('e-in', i))),
      ...Array.from({ length: 4 }, (_, i) => encapsulate({ kind: 'erspan3', session: 9, sequence: 5 + i, direction: 'OUT' }, frame('e-out', i))),
      ...Array.from({ length: 3 }, (_, i) => encapsulate({ kind: 'gre', key: 77 }, frame('gre', i))),
    ];
    await lab.exec(sender, 'python3', ['-c', SEND_GRE, COLLECTOR], `${erspan.map((packet) => packet.toString('hex')).join('\n')}\n`);
    await send('vx', 0, 2, 80);
    const report = await collect.stop();
    expect(report.written).toBe(14);
    expect(report.filesOpened).toBe(1);

    const tshark = await run('tshark', ['-r', base, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.interface_name',
      '-e', 'frame.packet_flags_direction']);
    expect(tshark.stderr).not.toMatch(/cut short|damaged|error/i);
    const counts = new Map<string, number>();
    for (const line of tshark.stdout.split('\n').filter(Boolean)) counts.set(line, (counts.get(line) ?? 0) + 1);
    expect(Object.fromEntries(counts)).toEqual({
      'erspan3 session 9|0x00000001': 5,
      'erspan3 session 9|0x00000002': 4,
      'gre key 77|': 3,
      [`vxlan vni ${VNI}|`]: 2,
    });
  }, 60_000);
});
