import { execFile } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type Plan } from '../../src/engine/engine.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, waitFor } from '../helpers/netns.js';

const run = promisify(execFile);

const HOST_MAC = '02:00:00:00:06:00';
const VM_MAC = '02:00:00:00:06:01';

const byId = <T extends { id: string }>(list: T[], id: string): T => {
  const found = list.find((item) => item.id === id);
  if (!found) throw new Error(`no stats for ${id}`);
  return found;
};

/**
 * One interface under many spellings: a namespace named by name, by a path
 * with "//" or "/./", by a symlink to its file, through /proc/self/root; an
 * interface by its name or an altname. The engine identifies an interface by
 * what it is (the namespace's own inode, the ifindex), so each interface runs
 * as one source and one sink at most, and the loop check cannot be dodged.
 */
describe.skipIf(!netnsAvailable)(`one interface, one entry, however it is spelled (${netnsSkipReason})`, () => {
  const lab = new Lab('ident');
  let host: string, vm: string, monitor: string;
  let link: string;
  let engine: Engine;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    await run('ip', ['-n', host, 'link', 'property', 'add', 'dev', 'vmh', 'altname', 'vmalt']);
    link = join(lab.dir, 'host-link');
    symlinkSync(`/run/netns/${host}`, link);
    engine = new Engine();
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  // (A trailing '/' makes the path one the kernel opens only for a directory: refused all the same.)
  const spellings = (trailingSlash = true) => [
    `/run/netns//${host}${trailingSlash ? '/' : ''}`,
    `/run/netns/./${host}`,
    link,
    `/proc/self/root/run/netns/${host}`,
  ];

  it('runs one source per interface: every other spelling is refused, naming the first, and each frame is mirrored once', async () => {
    const others = spellings().map((netns, i) => ({ id: `again-${i}`, ifname: 'vmh', netns }));
    const plan: Plan = {
      sources: [
        { id: 'vm', ifname: 'vmh', netns: host },
        ...others,
        { id: 'alt', ifname: 'vmalt', netns: host },
      ],
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [
        { id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' },
        ...others.map((source) => ({ id: `flow-${source.id}`, sourceId: source.id, sinkId: 'monitor', direction: 'OUT' as const })),
        { id: 'flow-alt', sourceId: 'alt', sinkId: 'monitor', direction: 'OUT' },
      ],
    };
    const stats = await engine.apply(plan);
    const reason = `the same interface as source 'vm' (spelled 'vmh' in network namespace '${host}')`;
    expect(byId(stats.sources, 'vm')).toMatchObject({ ok: true });
    expect(byId(stats.rules, 'flow')).toMatchObject({ ok: true });
    for (const id of [...others.map((source) => source.id), 'alt']) {
      expect(byId(stats.sources, id)).toMatchObject({ ok: false, reason });
      expect(byId(stats.sources, id).packet).toBeUndefined();
      expect(byId(stats.rules, `flow-${id}`)).toMatchObject({ ok: false, reason });
    }

    const capture = await lab.capture(monitor, 'mon0', 'once');
    const sent = Array.from({ length: 10 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'once', sequence: i }));
    await lab.sendFrames(vm, 'vm0', sent);
    expect(testFramesOf(await capture.stop()).map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));
    expect(byId(engine.stats().rules, 'flow')).toMatchObject({ packets: 10 });
  });

  it('runs one port sink per interface, and refuses a sink that is a source under another spelling (no loop)', async () => {
    const plan: Plan = {
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
      sinks: [
        { id: 'monitor', kind: 'port', ifname: 'monh', netns: host },
        { id: 'monitor-again', kind: 'port', ifname: 'monh', netns: link },
        { id: 'loop-link', kind: 'port', ifname: 'vmh', netns: link },
        { id: 'loop-alt', kind: 'port', ifname: 'vmalt', netns: host },
      ],
      rules: [
        { id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' },
        { id: 'flow-again', sourceId: 'vm', sinkId: 'monitor-again', direction: 'OUT' },
        { id: 'flow-loop-link', sourceId: 'vm', sinkId: 'loop-link', direction: 'OUT' },
        { id: 'flow-loop-alt', sourceId: 'vm', sinkId: 'loop-alt', direction: 'OUT' },
      ],
    };
    const stats = await engine.apply(plan);
    const again = `the same interface as sink 'monitor' (spelled 'monh' in network namespace '${host}')`;
    expect(byId(stats.sinks, 'monitor')).toMatchObject({ ok: true });
    expect(byId(stats.sinks, 'monitor-again')).toMatchObject({ ok: false, reason: again });
    expect(byId(stats.rules, 'flow-again')).toMatchObject({ ok: false, reason: again });
    const loopLink = `destination port 'vmh' in network namespace '${link}' is also a mirrored source`;
    expect(byId(stats.sinks, 'loop-link')).toMatchObject({ ok: false, reason: loopLink });
    expect(byId(stats.rules, 'flow-loop-link')).toMatchObject({ ok: false, reason: loopLink });
    const loopAlt = `destination port 'vmalt' in network namespace '${host}' is also a mirrored source`;
    expect(byId(stats.sinks, 'loop-alt')).toMatchObject({ ok: false, reason: loopAlt });
    expect(byId(stats.rules, 'flow-loop-alt')).toMatchObject({ ok: false, reason: loopAlt });

    const counted = byId(stats.rules, 'flow').packets;
    const capture = await lab.capture(monitor, 'mon0', 'sinks');
    const sent = Array.from({ length: 10 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'sinks', sequence: i }));
    await lab.sendFrames(vm, 'vm0', sent);
    expect(testFramesOf(await capture.stop())).toHaveLength(10);
    expect(byId(engine.stats().rules, 'flow')).toMatchObject({ ok: true, packets: counted + 10 });
  });

  it('reports a watched interface registered again under another spelling as present, the same as the earlier entry', async () => {
    const stats = await engine.apply({
      sources: [], sinks: [], rules: [],
      interfaces: [
        { id: 'port-vm', ifname: 'vmh', netns: host },
        { id: 'port-mon', ifname: 'monh', netns: host },
        ...spellings(false).map((netns, i) => ({ id: `port-vm-${i}`, ifname: 'vmh', netns })),
        { id: 'port-vm-alt', ifname: 'vmalt', netns: host },
      ],
    });
    const [first, mon, ...rest] = stats.interfaces;
    expect(first).toMatchObject({ id: 'port-vm', present: true });
    expect(first!.sameAs).toBeUndefined();
    expect(mon).toMatchObject({ id: 'port-mon', present: true });
    expect(mon!.sameAs).toBeUndefined();
    for (const entry of rest) expect(entry).toMatchObject({ present: true, ifindex: first!.ifindex, sameAs: 'port-vm' });
  });

  it('looks again when a namespace and its interface appear, and when a spelling comes to name another interface', async () => {
    const late = `${lab.prefix}-late`;
    const viaRoot = `/proc/self/root/run/netns/${late}`;
    const moving = join(lab.dir, 'moving');
    symlinkSync(`/run/netns/${late}`, moving);
    const plan: Plan = {
      sources: [
        { id: 'first', ifname: 'x0', netns: late },
        { id: 'second', ifname: 'x0', netns: viaRoot },
        { id: 'third', ifname: 'x0', netns: moving },
      ],
      sinks: [],
      rules: [],
      interfaces: [{ id: 'port-first', ifname: 'x0', netns: late }, { id: 'port-second', ifname: 'x0', netns: viaRoot }],
    };
    // No namespace can be looked up yet: the spellings differ, so all are accepted (and fail).
    const before = await engine.apply(plan);
    expect(byId(before.sources, 'first')).toMatchObject({ ok: false, reason: `network namespace '${late}' does not exist` });
    expect(byId(before.sources, 'second')).toMatchObject({ ok: false, reason: `network namespace '${viaRoot}' does not exist` });
    expect(byId(before.sources, 'third')).toMatchObject({ ok: false, reason: `network namespace '${moving}' does not exist` });

    await run('ip', ['netns', 'add', late]);
    try {
      await run('ip', ['-n', late, 'link', 'add', 'x0', 'type', 'veth', 'peer', 'name', 'x1']);
      await run('ip', ['-n', late, 'link', 'set', 'x0', 'up']);
      const refused = `the same interface as source 'first' (spelled 'x0' in network namespace '${late}')`;
      // The first spelling's open may have failed while the namespace was half made (ip netns add, then
      // the link): it is tried again on its own retry tick, so wait for that too.
      await waitFor('the first spelling to run and the other spellings to be refused', () => {
        const { sources } = engine.stats();
        return byId(sources, 'first').ok && byId(sources, 'second').reason === refused && byId(sources, 'third').reason === refused
          ? true
          : undefined;
      }, 3000);
      await waitFor('the watched duplicate', () => (byId(engine.stats().interfaces, 'port-second').sameAs === 'port-first' ? true : undefined), 3000);

      // The symlink now names another namespace, with an x0 of its own: a source of its own.
      await run('ip', ['-n', vm, 'link', 'add', 'x0', 'type', 'veth', 'peer', 'name', 'x1']);
      await run('ip', ['-n', vm, 'link', 'set', 'x0', 'up']);
      await run('ln', ['-sfn', `/run/netns/${vm}`, moving]);
      await waitFor('the refusal to lift', () => (byId(engine.stats().sources, 'third').ok ? true : undefined), 3000);
      expect(byId(engine.stats().sources, 'second')).toMatchObject({ ok: false, reason: refused });
    } finally {
      await run('ip', ['netns', 'del', late]);
    }
  });
});
