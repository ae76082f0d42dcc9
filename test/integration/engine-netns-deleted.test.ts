import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type Plan } from '../../src/engine/engine.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, waitFor } from '../helpers/netns.js';

const run = promisify(execFile);

const HOST_MAC = '02:00:00:00:07:00';
const VM_MAC = '02:00:00:00:07:01';

const byId = <T extends { id: string }>(list: T[], id: string): T => {
  const found = list.find((item) => item.id === id);
  if (!found) throw new Error(`no stats for ${id}`);
  return found;
};

async function linkExists(ns: string, ifname: string): Promise<boolean> {
  return run('ip', ['-n', ns, 'link', 'show', 'dev', ifname]).then(() => true, () => false);
}

/**
 * `ip netns del` while the engine captures in that namespace: every socket
 * the engine holds there (capture ring, port sink, tunnel, the interface
 * watch) keeps the namespace, and its veth pairs, alive. The engine notices
 * the namespace file is gone, lets go, reports why, and opens again by
 * itself once a namespace of that name exists again.
 */
describe.skipIf(!netnsAvailable)(`a deleted network namespace (${netnsSkipReason})`, () => {
  const lab = new Lab('nsdel');
  let doomed: string, other: string;
  let engine: Engine;

  async function build(): Promise<void> {
    await lab.veth(doomed, 'vmh', other, 'vm0');
    await lab.veth(doomed, 'monh', other, 'mon0');
    // An underlay for a tunnel that leaves from the doomed namespace.
    await run('ip', ['-n', doomed, 'addr', 'add', '192.0.2.1/24', 'dev', 'monh']);
  }

  beforeAll(async () => {
    doomed = await lab.namespace('doomed');
    other = await lab.namespace('other');
    await build();
    engine = new Engine();
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  const plan = (): Plan => ({
    sources: [{ id: 'vm', ifname: 'vmh', netns: doomed }],
    sinks: [
      { id: 'monitor', kind: 'port', ifname: 'monh', netns: doomed },
      { id: 'tunnel', kind: 'gre', remoteIp: '192.0.2.2', key: 7, netns: doomed },
    ],
    rules: [
      { id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' },
      { id: 'mirror', sourceId: 'vm', sinkId: 'tunnel', direction: 'OUT' },
    ],
    interfaces: [{ id: 'port', ifname: 'vmh', netns: doomed }],
  });

  it('lets go of every socket in it, so the kernel frees it and its veth pairs, and reports it deleted', async () => {
    const stats = await engine.apply(plan());
    expect(stats.sources[0]).toMatchObject({ ok: true });
    expect(stats.sinks.map((sink) => sink.ok)).toEqual([true, true]);

    const started = Date.now();
    await run('ip', ['netns', 'del', doomed]);
    const reason = `network namespace '${doomed}' was deleted`;
    await waitFor('the source and sinks to fail', () => {
      const now = engine.stats();
      return now.sources[0]!.reason === reason && now.sinks.every((sink) => sink.reason === reason) ? true : undefined;
    }, 2000);
    const noticedMs = Date.now() - started;
    const after = engine.stats();
    expect(byId(after.sources, 'vm')).toMatchObject({ ok: false, reason });
    expect(byId(after.sinks, 'monitor')).toMatchObject({ ok: false, reason });
    expect(byId(after.sinks, 'tunnel')).toMatchObject({ ok: false, reason });
    await waitFor('the watch to let go', () => (engine.stats().interfaces[0]!.present ? undefined : true), 2000);
    expect(engine.stats().interfaces[0]).toMatchObject({ present: false, reason });

    // Nothing holds the namespace any more: the kernel dismantles it, veth peers included.
    const deadline = Date.now() + 3000;
    while ((await linkExists(other, 'vm0') || await linkExists(other, 'mon0')) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const goneMs = Date.now() - started;
    expect(await linkExists(other, 'vm0')).toBe(false);
    expect(await linkExists(other, 'mon0')).toBe(false);
    expect(goneMs).toBeLessThan(3000);
    console.log(`namespace deleted: noticed after ${noticedMs} ms, veth peers gone after ${goneMs} ms`);

    // Still gone a while later: the reason stays, nothing is re-opened.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(byId(engine.stats().sources, 'vm')).toMatchObject({ ok: false, reason });
  });

  it('opens again by itself once a namespace of that name exists again, and mirrors', async () => {
    await run('ip', ['netns', 'add', doomed]);
    await lab.exec(doomed, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    await build();
    await waitFor('the source and sinks to run again', () => {
      const now = engine.stats();
      return now.sources[0]!.ok && now.sinks.every((sink) => sink.ok) && now.interfaces[0]!.present ? true : undefined;
    }, 3000);
    const counted = byId(engine.stats().rules, 'flow').packets;
    const capture = await lab.capture(other, 'mon0', 'back');
    const sent = Array.from({ length: 5 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'back', sequence: i }));
    await lab.sendFrames(other, 'vm0', sent);
    expect(testFramesOf(await capture.stop())).toHaveLength(5);
    expect(byId(engine.stats().rules, 'flow').packets).toBe(counted + 5);
  });
});
