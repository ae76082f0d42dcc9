/**
 * `tapas mirror -w`: the engine's file sink. Copies of real frames on a veth
 * go into pcap files, rotated by -C/-W as `tapas collect -w` rotates them
 * (one native implementation), byte for byte as they were on the wire.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../../src/engine/engine.js';
import { finished, runCli, startCli, stderrContains } from '../helpers/cli.js';
import { makeFrame, makeUdpFrame, parseTestFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';
import { readPcap } from '../helpers/pcap.js';

const run = promisify(execFile);
const VM_MAC = '02:00:00:00:0a:01';
const HOST_MAC = '02:00:00:00:0a:02';

function rotationFiles(dir: string, base: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.startsWith(base) && /^\d+$/.test(name.slice(base.length)))
    .sort((a, b) => Number(a.slice(base.length)) - Number(b.slice(base.length)))
    .map((name) => join(dir, name));
}

describe('tapas mirror -w: usage errors (exit 2)', () => {
  it('refuses -w with another destination, -C without -w, -W alone, a missing directory', async () => {
    for (const [args, message] of [
      [['-w', '/tmp/x.pcap', '-t', 'b'], 'give exactly one destination'],
      [['-t', 'b', '-C', '1'], '-C, -G, -W and --pcapng go with -w FILE'],
      [['-w', '/tmp/x.pcap', '-W', '2'], '-W keeps N files of a rotation'],
      [['-w', '/tmp/x.pcap', '-C', '0'], '-C must be an integer from 1 to 1000000'],
      [['-w', '/no-such-tapas-dir/x.pcap'], "no directory '/no-such-tapas-dir'"],
    ] as const) {
      const result = await runCli(['mirror', '-s', 'a', '-d', 'IN', ...args]);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr).toContain(message);
    }
  });

  it('--help explains -w, -C, -G and -W', async () => {
    const help = await runCli(['mirror', '--help']);
    expect(help.code).toBe(0);
    for (const text of ['-w, --write <FILE>', '-C, --file-size <MB>', '-G, --rotate-seconds <S>', '-W, --file-count <N>', 'cap.pcap0, cap.pcap1']) {
      expect(help.stdout).toContain(text);
    }
  });
});

describe('the engine refuses file sinks that cannot run, and runs the rest', () => {
  it('-W without size or seconds; two file sinks on one path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapas-file-sink-'));
    const engine = new Engine({ workers: 1 });
    try {
      const stats = await engine.apply({
        sources: [],
        sinks: [
          { id: 'count-only', kind: 'file', path: join(dir, 'a.pcap'), rotation: { files: 3 } },
          { id: 'first', kind: 'file', path: join(dir, 'b.pcap'), rotation: { size: 1, files: 2 } },
          { id: 'second', kind: 'file', path: join(dir, 'b.pcap') },
        ],
        rules: [],
      });
      const byId = new Map(stats.sinks.map((sink) => [sink.id, sink]));
      expect(byId.get('count-only')).toMatchObject({ ok: false, reason: expect.stringContaining('needs a size (-C) or a time (-G)') });
      expect(byId.get('first')).toMatchObject({ ok: true, filesOpened: 1, filesRemoved: 0 });
      expect(byId.get('second')).toMatchObject({ ok: false, reason: `the same file as sink 'first' ('${join(dir, 'b.pcap')}')` });
      // The first file exists at once: an unwritable path is told when the sink opens.
      expect(readdirSync(dir)).toEqual(['b.pcap0']);
    } finally {
      await engine.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a file that cannot be created: the sink fails with the reason, the engine runs on', async () => {
    const engine = new Engine({ workers: 1 });
    try {
      const stats = await engine.apply({ sources: [], sinks: [{ id: 'f', kind: 'file', path: '/no-such-tapas-dir/x.pcap' }], rules: [] });
      expect(stats.sinks[0]).toMatchObject({ id: 'f', ok: false, reason: "cannot write '/no-such-tapas-dir/x.pcap': No such file or directory" });
    } finally {
      await engine.close();
    }
  });

  it('a rotation that cannot be read is a TypeError', async () => {
    const engine = new Engine({ workers: 1 });
    try {
      await expect(engine.apply({ sources: [], sinks: [{ id: 'f', kind: 'file', path: '/tmp/x', rotation: { size: 0 } }], rules: [] }))
        .rejects.toThrow(/field 'size' of the rotation of sinks\[0\] must be an integer from 1 to 1000000/);
    } finally {
      await engine.close();
    }
  });
});

describe.skipIf(!netnsAvailable)(`tapas mirror -w with real frames (${netnsSkipReason})`, () => {
  const lab = new Lab('mfile');
  let host: string, vm: string;

  beforeAll(async () => {
    ({ host, vm } = await lab.vmAndMonitor());
  });

  afterAll(() => lab.cleanup());

  async function mirrorTo(args: string[], frames: Buffer[]) {
    const child = lab.track(startCli(['mirror', '-s', `vmh@${host}`, '-d', 'BOTH', '-f', 'json', ...args]));
    const done = finished(child);
    await stderrContains(child, 'tapas: mirroring');
    const before = Date.now() / 1000;
    await lab.sendFrames(vm, 'vm0', frames);
    await sleep(500);
    child.kill('SIGINT');
    const result = await done;
    expect(result.code, result.stderr).toBe(0);
    return { report: JSON.parse(result.stdout), before, after: Date.now() / 1000 };
  }

  it('-C 1: 20,000 frames (some VLAN-tagged) in 5 files, byte-identical and in order, each valid for tshark', async () => {
    // 200-byte frames: 216 bytes a record, 4,629 a file. Every 100th tagged
    // VLAN 10: veth's receive path moves the tag into metadata, the sink puts it back.
    const sent = Array.from({ length: 20_000 }, (_, i) => makeFrame({
      dst: HOST_MAC, src: VM_MAC, stream: 'wfile', sequence: i, length: 200, ...(i % 100 === 0 ? { vlan: 10 } : {}),
    }));
    const base = join(lab.dir, 'mirror.pcap');
    const { report, before, after } = await mirrorTo(['-w', base, '-C', '1'], sent);

    expect(report.stats.sources[0]).toMatchObject({ ok: true, captureDrops: 0 });
    expect(report.stats.sinks[0]).toMatchObject({ ok: true, interface: `file ${base} (-C 1)`, errors: 0, filesOpened: 5, filesRemoved: 0 });
    const files = rotationFiles(lab.dir, 'mirror.pcap');
    expect(files.map((file) => file.slice(lab.dir.length + 1))).toEqual(['mirror.pcap0', 'mirror.pcap1', 'mirror.pcap2', 'mirror.pcap3', 'mirror.pcap4']);
    const copies = files.flatMap((file) => readPcap(file)).filter((frame) => parseTestFrame(frame)?.stream === 'wfile');
    expect(copies.length).toBe(20_000);
    // Byte for byte, tags included, in the order sent.
    expect(copies.every((copy, i) => copy.equals(sent[i]!))).toBe(true);
    expect(report.stats.sinks[0].packets).toBe(files.reduce((n, file) => n + readPcap(file).length, 0));
    for (const file of files) {
      expect(statSync(file).size).toBeLessThanOrEqual(1_000_000);
      const tshark = await run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'vlan.id'], { maxBuffer: 64 << 20 });
      expect(tshark.stderr).not.toMatch(/cut short|damaged|error/i);
      const lines = tshark.stdout.split('\n').filter(Boolean);
      expect(lines.length).toBe(readPcap(file).length);
      // The kernel's capture time: within the run.
      for (const line of [lines[0]!, lines[lines.length - 1]!]) {
        const time = Number(line.split('\t')[0]);
        expect(time).toBeGreaterThanOrEqual(before - 1);
        expect(time).toBeLessThanOrEqual(after + 1);
      }
    }
    const vlans = (await run('tshark', ['-r', files[0]!, '-Y', 'vlan.id == 10', '-T', 'fields', '-e', 'frame.number'])).stdout
      .split('\n').filter(Boolean);
    expect(vlans.length).toBeGreaterThan(40);
  }, 180_000);

  it('-C 1 -W 2: two files stay, holding the newest frames', async () => {
    const sent = Array.from({ length: 20_000 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'wring', sequence: i, length: 200 }));
    const base = join(lab.dir, 'ring.pcap');
    const { report } = await mirrorTo(['-w', base, '-C', '1', '-W', '2'], sent);
    expect(report.stats.sources[0]).toMatchObject({ ok: true, captureDrops: 0 });
    expect(report.stats.sinks[0]).toMatchObject({ ok: true, errors: 0, filesOpened: 5, filesRemoved: 3 });
    const files = rotationFiles(lab.dir, 'ring.pcap');
    expect(files.map((file) => file.slice(lab.dir.length + 1))).toEqual(['ring.pcap0', 'ring.pcap1']);
    // Opened 0 1 0 1 0: ring.pcap1 holds the fourth file, ring.pcap0 the fifth.
    const kept = [...readPcap(files[1]!), ...readPcap(files[0]!)].map((frame) => parseTestFrame(frame)?.sequence ?? -1)
      .filter((sequence) => sequence >= 0);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => 20_000 - kept.length + i));
  }, 180_000);

  it('--workers 2: both workers write one rotation, every frame once, each flow in order', async () => {
    // 64 flows (UDP source ports): the fanout hash spreads them over the workers, and keeps each on one.
    const sent = Array.from({ length: 20_000 }, (_, i) => makeUdpFrame({ dst: HOST_MAC, src: VM_MAC, sourcePort: 1000 + (i % 64), sequence: i }));
    const base = join(lab.dir, 'workers.pcap');
    const { report } = await mirrorTo(['--workers', '2', '-w', base, '-C', '1'], sent);
    expect(report.stats.sources[0]).toMatchObject({ ok: true, captureDrops: 0 });
    const files = rotationFiles(lab.dir, 'workers.pcap');
    // 20,000 records of 16 + 60 bytes: 1,520,024 bytes, two files.
    expect(files.length).toBe(2);
    expect(report.stats.sinks[0]).toMatchObject({ ok: true, errors: 0, packets: 20_000, filesOpened: 2, filesRemoved: 0 });
    const copies = files.flatMap((file) => readPcap(file)).filter((frame) => frame.includes('tapas-udp'));
    expect(copies.length).toBe(20_000);
    for (let port = 1000; port < 1064; port += 1) {
      const flow = (frames: Buffer[]) => frames.filter((frame) => frame.readUInt16BE(34) === port).map((frame) => frame.toString('hex'));
      expect(flow(copies)).toEqual(flow(sent));
    }
    for (const file of files) {
      const tshark = await run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.number'], { maxBuffer: 64 << 20 });
      expect(tshark.stderr).not.toMatch(/cut short|damaged|error/i);
      expect(tshark.stdout.split('\n').filter(Boolean).length).toBe(readPcap(file).length);
    }
  }, 180_000);

  it('-G 1: by the kernel\'s capture times, one file per burst 1.5 s apart', async () => {
    const base = join(lab.dir, 'timed.pcap');
    const child = lab.track(startCli(['mirror', '-s', `vmh@${host}`, '-d', 'BOTH', '-f', 'json', '-w', base, '-G', '1']));
    const done = finished(child);
    await stderrContains(child, 'tapas: mirroring');
    const burst = (first: number) => Array.from({ length: 200 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'wtime', sequence: first + i }));
    await lab.sendFrames(vm, 'vm0', burst(0));
    await sleep(1500);
    await lab.sendFrames(vm, 'vm0', burst(200));
    await sleep(500);
    child.kill('SIGINT');
    const result = await done;
    expect(result.code, result.stderr).toBe(0);
    const files = rotationFiles(lab.dir, 'timed.pcap');
    expect(files.length).toBe(2);
    expect(JSON.parse(result.stdout).stats.sinks[0]).toMatchObject({ packets: 400, filesOpened: 2 });
    expect(files.map((file) => readPcap(file).map((frame) => parseTestFrame(frame)?.sequence)))
      .toEqual([Array.from({ length: 200 }, (_, i) => i), Array.from({ length: 200 }, (_, i) => 200 + i)]);
  }, 60_000);

  it('without -C/-G/-W: exactly FILE, one file', async () => {
    const sent = Array.from({ length: 50 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'wone', sequence: i }));
    const file = join(lab.dir, 'one.pcap');
    const { report } = await mirrorTo(['-w', file], sent);
    expect(report.stats.sinks[0]).toMatchObject({ ok: true, packets: 50, filesOpened: 1, filesRemoved: 0 });
    expect(readPcap(file).map((frame) => frame.toString('hex'))).toEqual(sent.map((frame) => frame.toString('hex')));
  });
});

describe.skipIf(!netnsAvailable)(`tapas mirror -w --pcapng: interface and direction per frame (${netnsSkipReason})`, () => {
  const lab = new Lab('mpcapng');
  let host: string, vm: string, monitor: string;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
  });

  afterAll(() => lab.cleanup());

  it('two sources, both directions: tshark shows each frame\'s interface and direction (inbound = IN), rotated by -C', async () => {
    const base = join(lab.dir, 'ng.pcapng');
    const child = lab.track(startCli(['mirror', '-s', `vmh@${host}`, '-s', `monh@${host}`, '-d', 'BOTH', '-w', base, '--pcapng',
      '-C', '1', '-f', 'json']));
    const done = finished(child);
    await stderrContains(child, 'tapas: mirroring');
    const frame = (stream: string, sequence: number) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream, sequence, length: 400 });
    // Into the VM (vmh transmits: IN), out of the VM (vmh receives: OUT), out of the monitor (monh receives: OUT).
    const intoVm = Array.from({ length: 3000 }, (_, i) => frame('in-vm', i));
    const fromVm = Array.from({ length: 3000 }, (_, i) => frame('out-vm', i));
    const fromMon = Array.from({ length: 10 }, (_, i) => frame('out-mon', i));
    await lab.sendFrames(host, 'vmh', intoVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    await lab.sendFrames(monitor, 'mon0', fromMon);
    await sleep(500);
    child.kill('SIGINT');
    const result = await done;
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.stats.sinks[0]).toMatchObject({ ok: true, errors: 0, interface: `pcapng file ${base} (-C 1)` });

    // 6,010 records of ~450 bytes: 3 files under 1,000,000 bytes each.
    const files = rotationFiles(lab.dir, 'ng.pcapng');
    expect(files.length).toBe(report.stats.sinks[0].filesOpened);
    expect(files.length).toBe(3);
    const seen = new Map<string, { interface: string; direction: string; count: number }>();
    let total = 0;
    for (const file of files) {
      expect(statSync(file).size).toBeLessThanOrEqual(1_000_000);
      const tshark = await run('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.interface_name',
        '-e', 'frame.packet_flags_direction', '-e', 'frame.interface_description', '-e', 'data.data', '-e', 'frame.len'],
      { maxBuffer: 64 << 20 });
      expect(tshark.stderr).not.toMatch(/cut short|damaged|error/i);
      for (const line of tshark.stdout.split('\n').filter(Boolean)) {
        const [name, direction, description, , length] = line.split('|');
        total += 1;
        expect(description).toContain('inbound = IN');
        expect(length).toBe('400');
        const key = `${name} ${direction}`;
        const entry = seen.get(key) ?? { interface: name!, direction: direction!, count: 0 };
        entry.count += 1;
        seen.set(key, entry);
      }
    }
    expect(total).toBe(6010);
    expect(report.stats.sinks[0].packets).toBe(6010);
    // 0x1 inbound, 0x2 outbound.
    expect([...seen.values()].sort((a, b) => a.count - b.count || a.interface.localeCompare(b.interface))).toEqual([
      { interface: `monh@${host}`, direction: '0x00000002', count: 10 },
      { interface: `vmh@${host}`, direction: '0x00000001', count: 3000 },
      { interface: `vmh@${host}`, direction: '0x00000002', count: 3000 },
    ].sort((a, b) => a.count - b.count || a.interface.localeCompare(b.interface)));
    // Whole frames, byte for byte, each stream in order across the files: nothing lost at a rotation.
    // (tshark converts each file to classic pcap, which helpers/pcap.ts reads.)
    const copies: Buffer[] = [];
    for (const file of files) {
      await run('tshark', ['-r', file, '-F', 'pcap', '-w', `${file}.pcap`]);
      copies.push(...readPcap(`${file}.pcap`));
    }
    const stream = (name: string) => copies.filter((copy) => parseTestFrame(copy)?.stream === name).map((copy) => copy.toString('hex'));
    expect(stream('in-vm')).toEqual(intoVm.map((f) => f.toString('hex')));
    expect(stream('out-vm')).toEqual(fromVm.map((f) => f.toString('hex')));
    expect(stream('out-mon')).toEqual(fromMon.map((f) => f.toString('hex')));
  }, 180_000);
});
