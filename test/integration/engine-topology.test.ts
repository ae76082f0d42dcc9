import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, type Plan } from '../../src/engine/engine.js';
import { makeFrame, parseTestFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep, waitFor } from '../helpers/netns.js';

const HOST_MAC = '02:00:00:00:02:00';
const vmMac = (n: number) => `02:00:00:00:02:0${n}`;

const byId = <T extends { id: string }>(list: T[], id: string): T => {
  const found = list.find((item) => item.id === id);
  if (!found) throw new Error(`no stats for ${id}`);
  return found;
};

/**
 * Two VMs (vm1h, vm2h) and two monitors (mon1h, mon2h) on one host namespace.
 */
const DATA_PATHS: Array<{ name: string; lab: string; options: EngineOptions }> = [
  { name: 'AF_PACKET', lab: 'topo', options: {} },
  { name: 'bpf', lab: 'topob', options: { datapath: 'bpf' } },
];

describe.skipIf(!netnsAvailable).each(DATA_PATHS)(`sources, sinks and plan changes, $name (${netnsSkipReason})`, ({ lab: labName, options }) => {
  const lab = new Lab(labName);
  let host: string, vm1: string, vm2: string, mon1: string, mon2: string;
  let engine: Engine;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm1 = await lab.namespace('vm1');
    vm2 = await lab.namespace('vm2');
    mon1 = await lab.namespace('mon1');
    mon2 = await lab.namespace('mon2');
    await lab.veth(host, 'vm1h', vm1, 'eth0');
    await lab.veth(host, 'vm2h', vm2, 'eth0');
    await lab.veth(host, 'mon1h', mon1, 'eth0');
    await lab.veth(host, 'mon2h', mon2, 'eth0');
    engine = new Engine(options);
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  const frames = (vm: number, stream: string, count: number) =>
    Array.from({ length: count }, (_, i) => makeFrame({ dst: HOST_MAC, src: vmMac(vm), stream, sequence: i }));

  it('two sources feed one sink and one source feeds two sinks, with correct counters', async () => {
    const plan: Plan = {
      sources: [
        { id: 'vm1', ifname: 'vm1h', netns: host },
        { id: 'vm2', ifname: 'vm2h', netns: host },
      ],
      sinks: [
        { id: 'mon1', kind: 'port', ifname: 'mon1h', netns: host },
        { id: 'mon2', kind: 'port', ifname: 'mon2h', netns: host },
      ],
      rules: [
        { id: 'vm1-to-mon1', sourceId: 'vm1', sinkId: 'mon1', direction: 'OUT' },
        { id: 'vm2-to-mon1', sourceId: 'vm2', sinkId: 'mon1', direction: 'OUT' },
        { id: 'vm1-to-mon2', sourceId: 'vm1', sinkId: 'mon2', direction: 'OUT' },
      ],
    };
    const applied = await engine.apply(plan);
    expect(applied.sources.every((s) => s.ok) && applied.sinks.every((s) => s.ok)).toBe(true);

    const capture1 = await lab.capture(mon1, 'eth0', 'mon1');
    const capture2 = await lab.capture(mon2, 'eth0', 'mon2');
    const fromVm1 = frames(1, 'vm1', 20);
    const fromVm2 = frames(2, 'vm2', 30);
    await lab.sendFrames(vm1, 'eth0', fromVm1);
    await lab.sendFrames(vm2, 'eth0', fromVm2);
    const atMon1 = testFramesOf(await capture1.stop());
    const atMon2 = testFramesOf(await capture2.stop());

    expect(atMon1.map((f) => f.toString('hex'))).toEqual([...fromVm1, ...fromVm2].map((f) => f.toString('hex')));
    expect(atMon2.map((f) => f.toString('hex'))).toEqual(fromVm1.map((f) => f.toString('hex')));

    const stats = engine.stats();
    expect(byId(stats.rules, 'vm1-to-mon1')).toMatchObject({ packets: 20, bytes: 20 * 60 });
    expect(byId(stats.rules, 'vm2-to-mon1')).toMatchObject({ packets: 30, bytes: 30 * 60 });
    expect(byId(stats.rules, 'vm1-to-mon2')).toMatchObject({ packets: 20, bytes: 20 * 60 });
    expect(byId(stats.sinks, 'mon1')).toMatchObject({ ok: true, packets: 50, errors: 0 });
    expect(byId(stats.sinks, 'mon2')).toMatchObject({ ok: true, packets: 20, errors: 0 });
    expect(byId(stats.sources, 'vm1')).toMatchObject({ ok: true, packets: 20, captureDrops: 0 });
    expect(byId(stats.sources, 'vm2')).toMatchObject({ ok: true, packets: 30, captureDrops: 0 });
  });

  it('re-applying the same plan, and adding a rule, loses no packets of a steady stream', async () => {
    const plan: Plan = {
      sources: [{ id: 'vm1', ifname: 'vm1h', netns: host }],
      sinks: [{ id: 'mon1', kind: 'port', ifname: 'mon1h', netns: host }],
      rules: [{ id: 'steady', sourceId: 'vm1', sinkId: 'mon1', direction: 'OUT' }],
    };
    const before = await engine.apply(plan);
    const capture = await lab.capture(mon1, 'eth0', 'steady');
    const stream = frames(1, 'steady', 2000);
    // 2000 frames 500 µs apart: about a second of traffic while the plan is re-applied.
    const sending = lab.sendFrames(vm1, 'eth0', stream, 500);
    let applies = 0;
    let done = false;
    void sending.then(() => { done = true; });
    while (!done) {
      await engine.apply(applies % 2 === 0 ? plan : {
        ...plan,
        sinks: [...plan.sinks, { id: 'mon2', kind: 'port', ifname: 'mon2h', netns: host }],
        rules: [...plan.rules, { id: 'extra', sourceId: 'vm1', sinkId: 'mon2', direction: 'IN' }],
      });
      applies += 1;
      await sleep(20);
    }
    const copies = testFramesOf(await capture.stop());
    const stats = engine.stats();
    expect(applies).toBeGreaterThan(5);
    const missing = stream.map((_, i) => i).filter((i) => !copies.some((f) => parseTestFrame(f)?.sequence === i));
    expect({
      missing,
      source: byId(stats.sources, 'vm1').packets - byId(before.sources, 'vm1').packets,
      rule: byId(stats.rules, 'steady').packets,
      sinkErrors: byId(stats.sinks, 'mon1').errors,
      captureDrops: byId(stats.sources, 'vm1').captureDrops,
    }).toEqual({ missing: [], source: stream.length, rule: stream.length, sinkErrors: 0, captureDrops: 0 });
    expect(copies.map((f) => parseTestFrame(f)?.sequence)).toEqual(stream.map((_, i) => i));
  });

  it('a sink that is also visible to another source: nothing the engine sends is captured again', async () => {
    // Within one plan the loop is refused: the sink and its rules fail, the source runs.
    const looped = await engine.apply({
      sources: [{ id: 'vm1', ifname: 'vm1h', netns: host }, { id: 'mon1-port', ifname: 'mon1h', netns: host }],
      sinks: [{ id: 'mon1', kind: 'port', ifname: 'mon1h', netns: host }],
      rules: [{ id: 'vm1-to-mon1', sourceId: 'vm1', sinkId: 'mon1', direction: 'BOTH' }],
    });
    const loopReason = `destination port 'mon1h' in network namespace '${host}' is also a mirrored source`;
    expect(byId(looped.sinks, 'mon1')).toMatchObject({ ok: false, reason: loopReason });
    expect(byId(looped.rules, 'vm1-to-mon1')).toMatchObject({ ok: false, reason: loopReason });
    expect(byId(looped.sources, 'mon1-port')).toMatchObject({ ok: true });

    // A second engine (another tap session) captures the sink's interface and
    // mirrors it on to mon2: the copies sent into mon1h must not reach it.
    await engine.apply({
      sources: [{ id: 'vm1', ifname: 'vm1h', netns: host }],
      sinks: [{ id: 'mon1', kind: 'port', ifname: 'mon1h', netns: host }],
      rules: [{ id: 'vm1-to-mon1', sourceId: 'vm1', sinkId: 'mon1', direction: 'OUT' }],
    });
    const watcher = new Engine(options);
    try {
      await watcher.apply({
        sources: [{ id: 'mon1-port', ifname: 'mon1h', netns: host }],
        sinks: [{ id: 'mon2', kind: 'port', ifname: 'mon2h', netns: host }],
        rules: [{ id: 'mon1-to-mon2', sourceId: 'mon1-port', sinkId: 'mon2', direction: 'BOTH' }],
      });
      const atMon1 = await lab.capture(mon1, 'eth0', 'loop1');
      const atMon2 = await lab.capture(mon2, 'eth0', 'loop2');
      await lab.sendFrames(vm1, 'eth0', frames(1, 'loop', 10));
      expect(testFramesOf(await atMon1.stop())).toHaveLength(10);
      expect(testFramesOf(await atMon2.stop())).toHaveLength(0);
      expect(byId(watcher.stats().sources, 'mon1-port')).toMatchObject({ ok: true, packets: 0 });

      // The watcher does see what the monitor itself sends back: it is a working source.
      const reply = makeFrame({ dst: HOST_MAC, src: vmMac(9), stream: 'reply', sequence: 1 });
      await lab.sendFrames(mon1, 'eth0', [reply]);
      await waitFor('the reply to be mirrored', () => (byId(watcher.stats().rules, 'mon1-to-mon2').packets === 1 ? true : undefined));
    } finally {
      await watcher.close();
    }
  });

  it('a deleted source interface fails with a reason, and mirroring resumes when it comes back', async () => {
    const plan: Plan = {
      sources: [{ id: 'vm2', ifname: 'vm2h', netns: host }],
      sinks: [{ id: 'mon1', kind: 'port', ifname: 'mon1h', netns: host }],
      rules: [{ id: 'vm2-out', sourceId: 'vm2', sinkId: 'mon1', direction: 'OUT' }],
    };
    await engine.apply(plan);
    await lab.deleteLink(host, 'vm2h');
    const failed = await waitFor('the source to fail', () => {
      const source = byId(engine.stats().sources, 'vm2');
      return source.ok ? undefined : source;
    });
    expect(failed.reason).toMatch(/'vm2h' in network namespace '.*-host\d*'? ?.*(was removed|does not exist)/);

    await lab.veth(host, 'vm2h', vm2, 'eth0');
    await waitFor('the source to recover', () => (byId(engine.stats().sources, 'vm2').ok ? true : undefined));
    const capture = await lab.capture(mon1, 'eth0', 'back');
    const sent = frames(2, 'back', 5);
    await lab.sendFrames(vm2, 'eth0', sent);
    expect(testFramesOf(await capture.stop()).map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));
  });

  it('a deleted sink interface fails with a reason and recovers by itself', async () => {
    const plan: Plan = {
      sources: [{ id: 'vm1', ifname: 'vm1h', netns: host }],
      sinks: [{ id: 'mon2', kind: 'port', ifname: 'mon2h', netns: host }],
      rules: [{ id: 'vm1-out', sourceId: 'vm1', sinkId: 'mon2', direction: 'OUT' }],
    };
    await engine.apply(plan);
    await lab.deleteLink(host, 'mon2h');
    const failed = await waitFor('the sink to fail', () => {
      const sink = byId(engine.stats().sinks, 'mon2');
      return sink.ok ? undefined : sink;
    });
    expect(failed.reason).toMatch(/mon2h/);
    await lab.sendFrames(vm1, 'eth0', frames(1, 'lost', 3));
    await waitFor('frames counted as unavailable', () => (byId(engine.stats().rules, 'vm1-out').unavailable >= 3 ? true : undefined));

    await lab.veth(host, 'mon2h', mon2, 'eth0');
    await waitFor('the sink to recover', () => (byId(engine.stats().sinks, 'mon2').ok ? true : undefined));
    const capture = await lab.capture(mon2, 'eth0', 'sinkback');
    const sent = frames(1, 'sinkback', 5);
    await lab.sendFrames(vm1, 'eth0', sent);
    expect(testFramesOf(await capture.stop()).map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));
  });
});

