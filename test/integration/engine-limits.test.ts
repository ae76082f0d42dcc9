import { readdirSync, readFileSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type Plan, type WorkerPriority } from '../../src/engine/engine.js';
import { makeFrame, makeUdpFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const VM_MAC = '02:00:00:00:04:01';
const HOST_MAC = '02:00:00:00:04:02';

describe.skipIf(!netnsAvailable)(`oversize frames and several workers (${netnsSkipReason})`, () => {
  const lab = new Lab('lim');
  let host: string, vm: string, monitor: string;
  const plan = (): Plan => ({
    sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
    sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
    rules: [{ id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' }],
  });

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor(1000));
  });

  afterAll(() => lab.cleanup());

  // On both data paths: the kernel's program asks bpf_check_mtu before it clones.
  it.each([{ datapath: 'packet' as const }, { datapath: 'bpf' as const }])('a frame larger than the destination MTU is dropped and counted as oversize, never sent ($datapath)', async ({ datapath }) => {
    const engine = new Engine({ datapath });
    try {
      await engine.apply(plan());
      const capture = await lab.capture(monitor, 'mon0');
      const fits = makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'fits', sequence: 1, length: 1014 });
      const tooBig = makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'big', sequence: 2, length: 1015 });
      const full = makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'big', sequence: 3, length: 1514 });
      await lab.sendFrames(vm, 'vm0', [fits, tooBig, full]);
      const copies = testFramesOf(await capture.stop());
      expect(copies.map((f) => f.toString('hex'))).toEqual([fits.toString('hex')]);
      const stats = engine.stats();
      expect(stats.rules[0]).toMatchObject({ packets: 1, oversize: 2 });
      expect(stats.sinks[0]).toMatchObject({ packets: 1, errors: 0 });
    } finally {
      await engine.close();
    }
  });

  it('with two workers in a fanout group every frame is mirrored exactly once, each flow in order', async () => {
    const engine = new Engine({ workers: 2 });
    try {
      await engine.apply(plan());
      const capture = await lab.capture(monitor, 'mon0');
      const sent = Array.from({ length: 400 }, (_, i) =>
        makeUdpFrame({ dst: HOST_MAC, src: VM_MAC, sourcePort: 1000 + (i % 16), sequence: i }));
      await lab.sendFrames(vm, 'vm0', sent);
      const copies = (await capture.stop()).filter((f) => f.includes('tapas-udp'));
      expect(copies).toHaveLength(sent.length);
      expect(new Set(copies.map((f) => f.toString('hex'))).size).toBe(sent.length);
      for (let port = 1000; port < 1016; port += 1) {
        const flow = (frames: Buffer[]) => frames.filter((f) => f.readUInt16BE(34) === port).map((f) => f.toString('hex'));
        expect(flow(copies)).toEqual(flow(sent));
      }
      expect(engine.stats().rules[0]).toMatchObject({ packets: 400 });
    } finally {
      await engine.close();
    }
  });

  it('the default block timeout grows with the number of sources or watched ports; a set one, or TPACKET_V2, is kept', async () => {
    // 40 sources: 1 ms per started 32, so 2 ms. The engine's ring option wins, and V2 rings have none.
    const links = Array.from({ length: 40 }, (_, i) => `link add name many${i} type veth peer name peer${i}`);
    const ups = Array.from({ length: 40 }, (_, i) => `link set dev many${i} up`);
    await lab.exec(host, 'ip', ['-batch', '-'], `${[...links, ...ups].join('\n')}\n`);
    const many: Plan = {
      sources: Array.from({ length: 40 }, (_, i) => ({ id: `s${i}`, ifname: `many${i}`, netns: host })),
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [{ id: 'flow', sourceId: 's0', sinkId: 'monitor', direction: 'OUT' }],
    };
    const timeouts = async (engine: Engine, plan: Plan) => {
      try {
        const stats = await engine.apply(plan);
        expect(stats.sources.every((source) => source.ok)).toBe(true);
        return new Set(stats.sources.map((source) => source.packet?.blockTimeoutMs));
      } finally {
        await engine.close();
      }
    };
    expect(await timeouts(new Engine(), many)).toEqual(new Set([2]));
    expect(await timeouts(new Engine({ ring: { blockTimeoutMs: 1 } }), many)).toEqual(new Set([1]));
    // One source alone: 1 ms; TPACKET_V2: none.
    expect(await timeouts(new Engine(), plan())).toEqual(new Set([1]));
    // One source on a host with 100 watched ports (their flows come later, into rings already open): 4 ms.
    const watched = Array.from({ length: 100 }, (_, i) => ({ id: `port${i}`, ifname: `many${i % 40}`, netns: host }));
    expect(await timeouts(new Engine(), { ...plan(), interfaces: watched })).toEqual(new Set([4]));
    expect(await timeouts(new Engine({ ring: { version: 2 } }), plan())).toEqual(new Set([0]));
  });

  /** (nice, scheduling policy) of every thread of this process; policy 1 is SCHED_FIFO. */
  function threadScheduling(): Array<{ nice: number; policy: number }> {
    return readdirSync('/proc/self/task').flatMap((tid) => {
      try {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return [{ nice: Number(fields[16]), policy: Number(fields[38]) }];
      } catch {
        return [];
      }
    });
  }

  it.each([
    ['high', { nice: -10, policy: 0 }],
    ['realtime', { nice: 0, policy: 1 }],
  ] as Array<[WorkerPriority, { nice: number; policy: number }]>)('a %s-priority engine runs its workers ahead of ordinary processes', async (priority, expected) => {
    const before = threadScheduling().filter((t) => t.nice === expected.nice && t.policy === expected.policy).length;
    const engine = new Engine({ workers: 2, priority });
    try {
      await engine.apply(plan());
      const after = threadScheduling().filter((t) => t.nice === expected.nice && t.policy === expected.policy).length;
      expect(after - before).toBe(2);
    } finally {
      await engine.close();
    }
  });
});
