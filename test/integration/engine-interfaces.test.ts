import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type InterfaceStats, type Plan } from '../../src/engine/engine.js';
import { Lab, netnsAvailable, netnsSkipReason, waitFor } from '../helpers/netns.js';

const run = promisify(execFile);

/** What `ip` says of an interface: the reference the engine's observation is compared with. */
async function ipLink(ns: string, ifname: string): Promise<{ ifindex: number; address: string; mtu: number }> {
  const { stdout } = await run('ip', ['-n', ns, '-j', 'link', 'show', 'dev', ifname]);
  return (JSON.parse(stdout) as Array<{ ifindex: number; address: string; mtu: number }>)[0]!;
}

/**
 * The plan's `interfaces`: observed by the engine's own threads, in apply and
 * then about every 500 ms, without packet sockets.
 */
describe.skipIf(!netnsAvailable)(`interface observations (${netnsSkipReason})`, () => {
  const lab = new Lab('ifw');
  let host: string, vm: string;
  let engine: Engine;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.veth(host, 'other', vm, 'other0');
    engine = new Engine();
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  const observed = (id: string): InterfaceStats => {
    const found = engine.stats().interfaces.find((entry) => entry.id === id);
    if (!found) throw new Error(`no observation of ${id}`);
    return found;
  };

  it('reports an interface of a namespace as soon as apply resolves: present, up, carrier, MAC, MTU, ifindex', async () => {
    const plan: Plan = {
      sources: [], sinks: [], rules: [],
      interfaces: [{ id: 'port-1', ifname: 'vmh', netns: host }, { id: 'port-2', ifname: 'nosuch', netns: host }],
    };
    const stats = await engine.apply(plan);
    const reference = await ipLink(host, 'vmh');
    expect(stats.interfaces).toEqual([
      { id: 'port-1', present: true, up: true, running: true, mac: reference.address, mtu: reference.mtu, ifindex: reference.ifindex },
      {
        id: 'port-2', present: false, up: false, running: false, mac: '', mtu: 0, ifindex: 0,
        reason: `interface 'nosuch' does not exist in network namespace '${host}'`,
      },
    ]);
  });

  it('hands out the same stats objects while nothing changes, and a new object only for what changed', async () => {
    await engine.apply({
      sources: [], sinks: [], rules: [],
      interfaces: [{ id: 'a', ifname: 'vmh', netns: host }, { id: 'b', ifname: 'other', netns: host }],
    });
    const before = engine.stats();
    expect(engine.stats()).toBe(before);
    await run('ip', ['-n', host, 'link', 'set', 'other', 'mtu', '1400']);
    const after = await waitFor('the new MTU', () => {
      const stats = engine.stats();
      return stats.interfaces[1]!.mtu === 1400 ? stats : undefined;
    }, 2000);
    expect(after).not.toBe(before);
    expect(after.interfaces[0]).toBe(before.interfaces[0]);
    expect(after.sources).toBe(before.sources);
    expect(after.interfaces[1]).toMatchObject({ id: 'b', present: true, mtu: 1400 });
    await run('ip', ['-n', host, 'link', 'set', 'other', 'mtu', '1500']);
  });

  it('follows a link going down, losing its carrier, and being deleted, each within about a second', async () => {
    await engine.apply({ sources: [], sinks: [], rules: [], interfaces: [{ id: 'port', ifname: 'other', netns: host }] });
    expect(observed('port')).toMatchObject({ present: true, up: true, running: true });

    let started = Date.now();
    await run('ip', ['-n', host, 'link', 'set', 'other', 'down']);
    await waitFor('up = false', () => (observed('port').up ? undefined : true), 2000);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(observed('port')).toMatchObject({ present: true, up: false, running: false });

    // The peer going down takes the carrier away; the port itself stays up.
    await run('ip', ['-n', host, 'link', 'set', 'other', 'up']);
    await run('ip', ['-n', vm, 'link', 'set', 'other0', 'down']);
    await waitFor('up without carrier', () => {
      const state = observed('port');
      return state.up && !state.running ? true : undefined;
    }, 2000);

    started = Date.now();
    await lab.deleteLink(host, 'other');
    const gone = await waitFor('present = false', () => {
      const state = observed('port');
      return state.present ? undefined : state;
    }, 2000);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(gone).toMatchObject({ present: false, up: false, reason: `interface 'other' does not exist in network namespace '${host}'` });

    // And back: the same id reports the new interface.
    await lab.veth(host, 'other', vm, 'other0');
    await waitFor('present again', () => (observed('port').present ? true : undefined), 2000);
    expect(observed('port').ifindex).toBe((await ipLink(host, 'other')).ifindex);
  });

  it('follows a rename away and back, an alternative name added later, and a MAC change (link events, not polling)', async () => {
    await lab.veth(host, 'ren', vm, 'ren0');
    await engine.apply({
      sources: [], sinks: [], rules: [],
      interfaces: [{ id: 'by-name', ifname: 'ren', netns: host }, { id: 'by-alt', ifname: 'renalt', netns: host }],
    });
    expect(observed('by-name')).toMatchObject({ present: true });
    expect(observed('by-alt')).toMatchObject({ present: false });
    const { ifindex } = await ipLink(host, 'ren');

    await run('ip', ['-n', host, 'link', 'set', 'ren', 'name', 'ren9']);
    await waitFor('renamed away', () => (observed('by-name').present ? undefined : true), 2000);
    await run('ip', ['-n', host, 'link', 'property', 'add', 'dev', 'ren9', 'altname', 'renalt']);
    await waitFor('found by its alternative name', () => (observed('by-alt').present ? true : undefined), 2000);
    expect(observed('by-alt').ifindex).toBe(ifindex);
    await run('ip', ['-n', host, 'link', 'set', 'ren9', 'name', 'ren']);
    await waitFor('renamed back', () => (observed('by-name').present ? true : undefined), 2000);
    expect(observed('by-name')).toMatchObject({ ifindex });
    expect(observed('by-name').sameAs).toBeUndefined();
    expect(observed('by-alt').sameAs).toBe('by-name');

    await run('ip', ['-n', host, 'link', 'set', 'ren', 'address', '02:00:00:00:00:42']);
    await waitFor('the new MAC', () => (observed('by-name').mac === '02:00:00:00:00:42' ? true : undefined), 2000);
    await run('ip', ['-n', host, 'link', 'property', 'del', 'dev', 'ren', 'altname', 'renalt']);
    await waitFor('the alternative name gone', () => (observed('by-alt').present ? undefined : true), 2000);
    await lab.deleteLink(host, 'ren');
  });

  it('reports a namespace that goes away, and one that comes back under the same name', async () => {
    const gone = await lab.namespace('gone');
    await engine.apply({ sources: [], sinks: [], rules: [], interfaces: [{ id: 'lo', ifname: 'lo', netns: gone }] });
    expect(observed('lo')).toMatchObject({ present: true, up: true });
    await run('ip', ['netns', 'del', gone]);
    await waitFor('the namespace to be gone', () => (observed('lo').present ? undefined : true), 2000);
    // It had been there: the watch says what became of it (and holds nothing in it).
    expect(observed('lo').reason).toBe(`network namespace '${gone}' was deleted`);
    // Re-created: a new namespace, whose lo is down until set up.
    await run('ip', ['netns', 'add', gone]);
    try {
      await waitFor('the new namespace', () => (observed('lo').present ? true : undefined), 2000);
      expect(observed('lo').up).toBe(false);
    } finally {
      await run('ip', ['netns', 'del', gone]);
    }
  });

  it('fails fast, with a reason, on a FIFO or a regular file given as netns: apply does not block', async () => {
    const fifo = join(lab.dir, 'fifo');
    const file = join(lab.dir, 'file');
    await run('mkfifo', [fifo]);
    writeFileSync(file, '');
    const plan: Plan = {
      sources: [{ id: 'src', ifname: 'eth0', netns: fifo }],
      sinks: [{ id: 'dst', kind: 'port', ifname: 'eth1', netns: file }],
      rules: [{ id: 'flow', sourceId: 'src', sinkId: 'dst', direction: 'BOTH' }],
      interfaces: [
        { id: 'fifo', ifname: 'eth0', netns: fifo },
        { id: 'file', ifname: 'eth0', netns: file },
        { id: 'mnt', ifname: 'eth0', netns: '/proc/self/ns/mnt' },
      ],
    };
    const started = Date.now();
    const stats = await engine.apply(plan);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(stats.sources[0]).toMatchObject({ ok: false, reason: `'${fifo}' is not a network namespace` });
    expect(stats.sinks[0]).toMatchObject({ ok: false, reason: `'${file}' is not a network namespace` });
    expect(stats.interfaces.map((entry) => entry.reason)).toEqual([
      `'${fifo}' is not a network namespace`,
      `'${file}' is not a network namespace`,
      "'/proc/self/ns/mnt' is not a network namespace",
    ]);
    // Retries (every 500 ms) and refreshes do not block either: stats() and apply stay prompt.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const again = Date.now();
    await engine.apply({ sources: [], sinks: [], rules: [] });
    expect(Date.now() - again).toBeLessThan(2000);
  });
});
