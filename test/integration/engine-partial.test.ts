import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type Plan } from '../../src/engine/engine.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const HOST_MAC = '02:00:00:00:05:00';
const VM_MAC = '02:00:00:00:05:01';

const byId = <T extends { id: string }>(list: T[], id: string): T => {
  const found = list.find((item) => item.id === id);
  if (!found) throw new Error(`no stats for ${id}`);
  return found;
};

/**
 * A plan the engine cannot run in full is run in part: one bad rule (here a
 * tap service port that is also a mirrored source) must not stop every other
 * flow. A VM (vmh), a monitor (monh), and a second VM (vm2h) whose port is
 * both a source and, wrongly, a destination.
 */
describe.skipIf(!netnsAvailable)(`plans run in part (${netnsSkipReason})`, () => {
  const lab = new Lab('part');
  let host: string, vm: string, vm2: string, monitor: string;
  let engine: Engine;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    vm2 = await lab.namespace('vm2');
    await lab.veth(host, 'vm2h', vm2, 'eth0');
    engine = new Engine();
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  it('mirrors the valid flow while the flow into a port that is also a source is refused with the reason', async () => {
    const plan: Plan = {
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }, { id: 'vm2', ifname: 'vm2h', netns: host }],
      sinks: [
        { id: 'monitor', kind: 'port', ifname: 'monh', netns: host },
        // The same interface as source vm2, named by path instead of by name.
        { id: 'loop', kind: 'port', ifname: 'vm2h', netns: `/run/netns/${host}` },
      ],
      rules: [
        { id: 'good', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' },
        { id: 'bad', sourceId: 'vm', sinkId: 'loop', direction: 'OUT' },
        { id: 'vm2-good', sourceId: 'vm2', sinkId: 'monitor', direction: 'OUT' },
      ],
    };
    const stats = await engine.apply(plan);
    const reason = `destination port 'vm2h' in network namespace '/run/netns/${host}' is also a mirrored source`;
    expect(byId(stats.rules, 'bad')).toMatchObject({ ok: false, reason, packets: 0 });
    expect(byId(stats.sinks, 'loop')).toMatchObject({ ok: false, reason });
    expect(byId(stats.rules, 'good')).toMatchObject({ ok: true });
    expect(byId(stats.rules, 'vm2-good')).toMatchObject({ ok: true });
    expect(byId(stats.rules, 'good').reason).toBeUndefined();
    // The source the sink collides with runs, and so do its other rules.
    expect(byId(stats.sources, 'vm2')).toMatchObject({ ok: true });
    expect(byId(stats.sinks, 'monitor')).toMatchObject({ ok: true });

    const atMonitor = await lab.capture(monitor, 'mon0', 'monitor');
    const atVm2 = await lab.capture(vm2, 'eth0', 'vm2');
    const sent = Array.from({ length: 10 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'part', sequence: i }));
    await lab.sendFrames(vm, 'vm0', sent);
    expect(testFramesOf(await atMonitor.stop()).map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));
    expect(testFramesOf(await atVm2.stop())).toHaveLength(0);
    const after = engine.stats();
    expect(byId(after.rules, 'good')).toMatchObject({ ok: true, packets: 10 });
    expect(byId(after.rules, 'bad')).toMatchObject({ ok: false, packets: 0, unavailable: 0 });
  });

  it('reports every unrunnable entry with its reason and runs the rest; a refused rule runs once the plan is fixed', async () => {
    const plan = {
      sources: [
        { id: 'vm', ifname: 'vmh', netns: host },
        { id: 'twice', ifname: 'vm2h', netns: host },
        { id: 'twice', ifname: 'monh', netns: host },
      ],
      sinks: [
        { id: 'monitor', kind: 'port', ifname: 'monh', netns: host },
        { id: 'future', kind: 'geneve', remoteIp: '192.0.2.1' },
        { id: 'nowhere', kind: 'gre', remoteIp: '', key: 1 },
      ],
      rules: [
        { id: 'good', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' },
        { id: 'to-future', sourceId: 'vm', sinkId: 'future', direction: 'OUT' },
        { id: 'from-nothing', sourceId: 'ghost', sinkId: 'monitor', direction: 'OUT' },
        { id: 'to-nothing', sourceId: 'vm', sinkId: 'ghost', direction: 'OUT' },
        { id: 'from-twice', sourceId: 'twice', sinkId: 'monitor', direction: 'OUT' },
        { id: 'backwards', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT', vlans: [[20, 10]] },
        { id: 'dup', sourceId: 'vm', sinkId: 'monitor', direction: 'IN' },
        { id: 'dup', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' },
      ],
      interfaces: [{ id: 'port', ifname: 'vmh', netns: host }, { id: 'port', ifname: 'monh', netns: host }],
    } as unknown as Plan;
    const stats = await engine.apply(plan);
    expect(byId(stats.sources, 'twice')).toMatchObject({ ok: false, reason: "duplicate source id 'twice'" });
    expect(byId(stats.sources, 'twice').packet).toBeUndefined();
    expect(byId(stats.sinks, 'future')).toMatchObject({ ok: false, reason: "unknown sink kind 'geneve'" });
    expect(byId(stats.sinks, 'nowhere')).toMatchObject({ ok: false, reason: "tunnel sink 'nowhere' names no remote IP" });
    expect(Object.fromEntries(stats.rules.map((rule) => [rule.id, rule.reason ?? 'ok']))).toEqual({
      good: 'ok',
      'to-future': "unknown sink kind 'geneve'",
      'from-nothing': "rule 'from-nothing' names unknown source 'ghost'",
      'to-nothing': "rule 'to-nothing' names unknown sink 'ghost'",
      'from-twice': "duplicate source id 'twice'",
      backwards: "rule 'backwards' has an invalid VLAN range 20-10 (VLAN ids are 1-4094, low to high)",
      dup: "duplicate rule id 'dup'",
    });
    expect(stats.interfaces.map((entry) => entry.reason)).toEqual(["duplicate interface id 'port'", "duplicate interface id 'port'"]);

    const capture = await lab.capture(monitor, 'mon0', 'rest');
    const sent = Array.from({ length: 5 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'rest', sequence: i }));
    await lab.sendFrames(vm, 'vm0', sent);
    expect(testFramesOf(await capture.stop()).map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));

    // Fixed: the rule that was refused is installed and counts.
    const fixed = await engine.apply({
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [{ id: 'backwards', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' }],
    });
    expect(fixed.rules).toMatchObject([{ id: 'backwards', ok: true }]);
    const again = await lab.capture(monitor, 'mon0', 'fixed');
    await lab.sendFrames(vm, 'vm0', sent);
    expect(testFramesOf(await again.stop())).toHaveLength(5);
    expect(byId(engine.stats().rules, 'backwards')).toMatchObject({ ok: true, packets: 5 });
  });
});
