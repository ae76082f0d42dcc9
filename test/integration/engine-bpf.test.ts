/**
 * What only the bpf data path has to show (the direction table and VLANs run
 * on it in engine-direction and engine-vlan): how it attaches and detaches,
 * that it leaves other tc users' filters alone, that it cleans up what a
 * killed tapas left, which rules fall back to AF_PACKET and why, and that the
 * original traffic flows all along.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, type Plan } from '../../src/engine/engine.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep, waitFor } from '../helpers/netns.js';

const VM_MAC = '02:00:00:00:02:01';
const HOST_MAC = '02:00:00:00:02:02';
const BROADCAST = 'ff:ff:ff:ff:ff:ff';
const ADDON = new URL('../../build/Release/tapas.node', import.meta.url).pathname;
const OBJECT = new URL('../../build/Release/mirror.bpf.o', import.meta.url).pathname;

/** This process's tcx links, from the kernel's own account of each open descriptor. */
function tcxLinks(): number {
  let links = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== 'anon_inode:bpf_link') continue;
      if (/^link_type:\s+tcx$/m.test(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))) links += 1;
    } catch {
      // closed meanwhile
    }
  }
  return links;
}

describe.skipIf(!netnsAvailable)(`the bpf data path (${netnsSkipReason})`, () => {
  const lab = new Lab('bpf');
  let host: string, vm: string, monitor: string, other: string, far: string;
  const engines: Engine[] = [];

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    // A tap service port in another namespace than the source: out of a bpf clone's reach.
    other = await lab.namespace('other');
    far = await lab.namespace('far');
    await lab.veth(other, 'farh', far, 'far0');
    // A second tap service port beside monh, for rules that come and go.
    await lab.veth(host, 'mon2h', monitor, 'mon2');
  });

  afterEach(async () => {
    for (const engine of engines.splice(0)) await engine.close();
  });

  afterAll(async () => {
    for (const engine of engines.splice(0)) await engine.close();
    await lab.cleanup();
  });

  function engine(options: EngineOptions = {}): Engine {
    const made = new Engine({ datapath: 'bpf', ...options });
    engines.push(made);
    return made;
  }

  const plan = (): Plan => ({
    sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
    sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
    rules: [{ id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction: 'BOTH' }],
  });

  function traffic(stream: string) {
    return {
      toVm: [
        makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: `${stream}i`, sequence: 1 }),
        makeFrame({ dst: BROADCAST, src: HOST_MAC, stream: `${stream}i`, sequence: 2, length: 900 }),
      ],
      fromVm: [
        makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: `${stream}o`, sequence: 1 }),
        makeFrame({ dst: BROADCAST, src: VM_MAC, stream: `${stream}o`, sequence: 2, length: 1514 }),
      ],
    };
  }

  /** Sends both ways; returns what the monitor and the VM received. */
  async function exchange(stream: string) {
    const copies = await lab.capture(monitor, 'mon0', `mon-${stream}`);
    const atVm = await lab.capture(vm, 'vm0', `vm-${stream}`);
    const { toVm, fromVm } = traffic(stream);
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    return { toVm, fromVm, copies: testFramesOf(await copies.stop()), delivered: testFramesOf(await atVm.stop()) };
  }

  const hex = (frames: Buffer[]) => frames.map((f) => f.toString('hex'));

  async function tcFilters(ifname: string, hook: 'ingress' | 'egress'): Promise<string> {
    return (await lab.exec(host, 'tc', ['filter', 'show', 'dev', ifname, hook])).stdout;
  }

  it('attaches tcx links, copies in the kernel, and leaves nothing behind on close; the original frames flow throughout', async () => {
    const before = tcxLinks();
    const running = engine();
    await running.apply(plan());
    // One link per hook of the source.
    expect(tcxLinks() - before).toBe(2);
    expect(running.stats().sources[0]).toMatchObject({ ok: true, bpf: { attach: 'tcx' } });
    // tcx is not tc: no filter shows (a cls_bpf one would).
    expect(await tcFilters('vmh', 'ingress')).toBe('');

    const first = await exchange('a');
    expect(hex(first.copies)).toEqual(hex([...first.toVm, ...first.fromVm]));
    expect(hex(first.delivered)).toEqual(hex(first.toVm));

    await running.close();
    expect(tcxLinks()).toBe(before);
    // Detached: nothing is copied any more, and the VM still gets its frames.
    const after = await exchange('b');
    expect(after.copies).toEqual([]);
    expect(hex(after.delivered)).toEqual(hex(after.toVm));
    // The final counters stay readable.
    expect(running.stats().rules[0]).toMatchObject({ id: 'flow', packets: 4, datapath: 'bpf' });
  });

  it('falls back to cls_bpf at handle 0x7470, priority 49152, beside other filters, and removes only its own', async () => {
    // Someone else's filter on the same hook, at another priority.
    await lab.exec(host, 'tc', ['qdisc', 'add', 'dev', 'vmh', 'clsact']);
    await lab.exec(host, 'tc', ['filter', 'add', 'dev', 'vmh', 'ingress', 'pref', '100', 'handle', '0x1', 'bpf', 'da', 'obj', OBJECT, 'sec', 'tc']);
    const running = engine({ bpfAttach: 'tc' });
    await running.apply(plan());
    expect(running.stats().sources[0]).toMatchObject({ ok: true, bpf: { attach: 'tc' } });
    expect(await tcFilters('vmh', 'ingress')).toMatch(/pref 49152 bpf chain 0 handle 0x7470 tapas_out/);
    expect(await tcFilters('vmh', 'egress')).toMatch(/pref 49152 bpf chain 0 handle 0x7470 tapas_in/);

    const { toVm, fromVm, copies, delivered } = await exchange('c');
    expect(hex(copies)).toEqual(hex([...toVm, ...fromVm]));
    expect(hex(delivered)).toEqual(hex(toVm));

    await running.close();
    const left = await tcFilters('vmh', 'ingress');
    expect(left).not.toMatch(/0x7470/);
    expect(left).toMatch(/pref 100 bpf chain 0 handle 0x1/);
    expect(await tcFilters('vmh', 'egress')).toBe('');
    await lab.exec(host, 'tc', ['filter', 'del', 'dev', 'vmh', 'ingress', 'pref', '100']);
  });

  /** Another tapas process whose cls_bpf filters on vmh copy to monh; it runs until killed. */
  async function otherTapasOnVmh(): Promise<ChildProcess> {
    const child = lab.track(spawn(process.execPath, ['-e', `
      const addon = require(${JSON.stringify(ADDON)});
      const bpf = new addon.NativeBpf({ objectPath: ${JSON.stringify(OBJECT)}, attach: 'tc' });
      bpf.apply(${JSON.stringify({ sources: [{ id: 'vm', ifname: 'vmh', netns: host }], rules: [{ id: 'r', sourceId: 'vm', sinkIfname: 'monh', sinkNetns: host, direction: 'BOTH' }] })})
        .then(() => { console.log('attached'); setInterval(() => {}, 1000); });
    `], { stdio: ['ignore', 'pipe', 'inherit'] }));
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => line === 'attached' && resolve());
      child.on('exit', (code) => reject(new Error(`the child exited with ${code}`)));
    });
    return child;
  }

  it('replaces the cls_bpf filters a killed tapas left, so that every frame is copied once', async () => {
    // A tapas process that attaches and is killed: its filters outlive it (tcx links would not).
    const child = await otherTapasOnVmh();
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(await tcFilters('vmh', 'ingress')).toMatch(/handle 0x7470 tapas_out/);
    // Its leftover still copies (its maps live on with its filters): that is what must go.
    const orphaned = await exchange('d');
    expect(hex(orphaned.copies)).toEqual(hex([...orphaned.toVm, ...orphaned.fromVm]));

    const running = engine({ bpfAttach: 'tc' });
    await running.apply(plan());
    const { toVm, fromVm, copies } = await exchange('e');
    expect(hex(copies)).toEqual(hex([...toVm, ...fromVm]));
    expect((await tcFilters('vmh', 'ingress')).match(/0x7470/g)).toHaveLength(1);
    await running.close();
    expect(await tcFilters('vmh', 'ingress')).toBe('');
    expect(await tcFilters('vmh', 'egress')).toBe('');
  });

  it('removes at start the cls_bpf filters a killed tapas left on ports it does not mirror, and never those of a tapas that runs', async () => {
    // A tapas that attaches cls_bpf filters to vmh, then keeps running.
    const child = await otherTapasOnVmh();
    // Another source in the same namespace (mon2h into monh), not vmh.
    const elsewhere: Plan = {
      sources: [{ id: 'other', ifname: 'mon2h', netns: host }],
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [{ id: 'flow', sourceId: 'other', sinkId: 'monitor', direction: 'BOTH' }],
    };
    const first = engine();
    await first.apply(elsewhere);
    expect(await tcFilters('vmh', 'ingress')).toMatch(/handle 0x7470 tapas_out/);  // its owner runs: kept
    await first.close();

    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const orphaned = await exchange('f');
    expect(hex(orphaned.copies)).toEqual(hex([...orphaned.toVm, ...orphaned.fromVm]));  // the leftover copies on

    const second = engine();
    await second.apply(elsewhere);
    expect(await tcFilters('vmh', 'ingress')).toBe('');
    expect(await tcFilters('vmh', 'egress')).toBe('');
    expect((await exchange('g')).copies).toEqual([]);
  });

  it('runs on AF_PACKET, per rule and saying why, what the kernel path cannot serve', async () => {
    const running = engine();
    const stats = await running.apply({
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
      sinks: [
        { id: 'monitor', kind: 'port', ifname: 'monh', netns: host },
        { id: 'far', kind: 'port', ifname: 'farh', netns: other },
        { id: 'tunnel', kind: 'erspan3', remoteIp: '192.0.2.1', session: 7, netns: host },
      ],
      rules: [
        { id: 'local', sourceId: 'vm', sinkId: 'monitor', direction: 'IN' },
        { id: 'elsewhere', sourceId: 'vm', sinkId: 'far', direction: 'IN' },
        { id: 'gre', sourceId: 'vm', sinkId: 'tunnel', direction: 'IN' },
      ],
    });
    const rule = (id: string) => stats.rules.find((r) => r.id === id);
    expect(rule('local')).toMatchObject({ ok: true, datapath: 'bpf' });
    expect(rule('elsewhere')).toMatchObject({ ok: true, datapath: 'packet', datapathReason: expect.stringMatching(/another network namespace/) });
    expect(rule('gre')).toMatchObject({ datapath: 'packet', datapathReason: 'the bpf data path does not send to ERSPAN3 tunnels yet' });
    // The fallback really mirrors: the far port gets its copies from AF_PACKET, the monitor from the kernel.
    const atFar = await lab.capture(far, 'far0', 'far');
    const { toVm, copies } = await exchange('f');
    expect(hex(testFramesOf(await atFar.stop()))).toEqual(hex(toVm));
    expect(hex(copies)).toEqual(hex(toVm));
  });

  it('follows a source port that vanishes and comes back, and a tap service port replaced under it', async () => {
    const running = engine();
    await running.apply(plan());
    await lab.deleteLink(host, 'vmh');
    const gone = await waitFor('the source to fail', () => {
      const source = running.stats().sources[0]!;
      return source.ok ? undefined : source;
    });
    expect(gone.reason).toBe(`'vmh' in network namespace '${host}' does not exist`);
    // The rule stays installed in the plan's sense: its source says what is wrong (as on AF_PACKET).
    expect(running.stats().rules[0]).toMatchObject({ ok: true, datapath: 'bpf' });

    await lab.veth(host, 'vmh', vm, 'vm0');
    await waitFor('the source to be attached again', () => (running.stats().sources[0]!.ok ? true : undefined));
    const back = await exchange('h');
    expect(hex(back.copies)).toEqual(hex([...back.toVm, ...back.fromVm]));

    // A new monitor port (a new ifindex) under the same name: the copies follow it.
    await lab.deleteLink(host, 'monh');
    await lab.veth(host, 'monh', monitor, 'mon0');
    await sleep(1200);
    const moved = await exchange('i');
    expect(hex(moved.copies)).toEqual(hex([...moved.toVm, ...moved.fromVm]));
  });

  it('keeps every frame of a rule that stays while other rules come and go under traffic', async () => {
    const running = engine();
    const keep: Plan = plan();
    const withExtra: Plan = {
      ...keep,
      sinks: [...keep.sinks, { id: 'second', kind: 'port', ifname: 'mon2h', netns: host }],
      rules: [...keep.rules, { id: 'extra', sourceId: 'vm', sinkId: 'second', direction: 'OUT' }],
    };
    await running.apply(keep);
    const capture = await lab.capture(monitor, 'mon0', 'steady');
    const frames = Array.from({ length: 3000 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'steady', sequence: i }));
    const sending = lab.sendFrames(vm, 'vm0', frames, 200);
    // Bounded: at most 40 plan changes while the frames flow.
    let changes = 0;
    let done = false;
    void sending.then(() => { done = true; });
    while (!done && changes < 40) {
      await running.apply(changes % 2 === 0 ? withExtra : keep);
      changes += 1;
      await sleep(20);
    }
    await sending;
    expect(changes).toBeGreaterThan(4);
    const copies = testFramesOf(await capture.stop());
    expect(copies.length).toBe(frames.length);
    expect(hex(copies)).toEqual(hex(frames));
    // Its counters went on through every change: same slot, never reset.
    expect(running.stats().rules.find((r) => r.id === 'flow')).toMatchObject({ packets: frames.length });
  });

  it('hands out the same stats objects while nothing changes, and new ones once counters move', async () => {
    const running = engine();
    await running.apply(plan());
    const first = running.stats();
    expect(running.stats()).toBe(first);
    await lab.sendFrames(vm, 'vm0', [makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'ident', sequence: 1 })]);
    const moved = running.stats();
    expect(moved).not.toBe(first);
    expect(moved.rules[0]).not.toBe(first.rules[0]);
    expect(moved.rules[0]!.packets).toBe(first.rules[0]!.packets + 1);
    // The sink's entry changed (its counters include the kernel's copies); the interfaces list did not.
    expect(moved.interfaces).toBe(first.interfaces);
  });

  it('lets every original frame through when copies fail (the tap service port is down), and counts the failures', async () => {
    const running = engine();
    await running.apply(plan());
    const before = running.stats().rules[0]!;
    await lab.exec(host, 'ip', ['link', 'set', 'monh', 'down']);
    try {
      const { toVm, fromVm, delivered } = await exchange('k');
      expect(hex(delivered)).toEqual(hex(toVm));
      const after = running.stats().rules[0]!;
      expect(after.packets - before.packets).toBe(0);
      expect(after.unavailable - before.unavailable).toBe(toVm.length + fromVm.length);
    } finally {
      await lab.exec(host, 'ip', ['link', 'set', 'monh', 'up']);
    }
  });

  it('refuses a second spelling of a source interface, so that no frame is copied twice', async () => {
    const running = engine();
    const stats = await running.apply({
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }, { id: 'again', ifname: 'vmh', netns: `/run/netns/./${host}` }],
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [{ id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction: 'BOTH' }, { id: 'twice', sourceId: 'again', sinkId: 'monitor', direction: 'BOTH' }],
    });
    const reason = `the same interface as source 'vm' (spelled 'vmh' in network namespace '${host}')`;
    expect(stats.sources[1]).toMatchObject({ id: 'again', ok: false, reason });
    expect(stats.rules[1]).toMatchObject({ id: 'twice', ok: false, reason, datapath: 'bpf' });
    const { toVm, fromVm, copies } = await exchange('j');
    expect(hex(copies)).toEqual(hex([...toVm, ...fromVm]));
  });

  it('refuses a tap service port that is also a mirrored source', async () => {
    const running = engine();
    const stats = await running.apply({
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }, { id: 'mon', ifname: 'monh', netns: host }],
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [{ id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction: 'BOTH' }, { id: 'self', sourceId: 'mon', sinkId: 'monitor', direction: 'IN' }],
    });
    for (const id of ['flow', 'self']) {
      // Refused by the plan check on the AF_PACKET side, as there.
      expect(stats.rules.find((r) => r.id === id)).toMatchObject({ ok: false, reason: `destination port 'monh' in network namespace '${host}' is also a mirrored source` });
    }
    const { copies } = await exchange('g');
    expect(copies).toEqual([]);
  });

  it('keeps no deleted namespace alive: its veth peers go, and the source says why', async () => {
    const gone = await lab.namespace('gone');
    const peer = await lab.namespace('peer');
    await lab.veth(gone, 'src', peer, 'src0');
    await lab.veth(gone, 'dst', peer, 'dst0');
    const running = engine();
    await running.apply({
      sources: [{ id: 's', ifname: 'src', netns: gone }],
      sinks: [{ id: 'd', kind: 'port', ifname: 'dst', netns: gone }],
      rules: [{ id: 'r', sourceId: 's', sinkId: 'd', direction: 'BOTH' }],
    });
    expect(running.stats().sources[0]).toMatchObject({ ok: true, bpf: { attach: 'tcx' } });
    execFileSync('ip', ['netns', 'del', gone]);
    // Nothing of tapas holds the namespace: the kernel tears it down, and the peers in the other namespace go with it.
    await waitFor('the veth peers to go', () => {
      const links = execFileSync('ip', ['-n', peer, '-o', 'link', 'show'], { encoding: 'utf8' });
      return /src0|dst0/.test(links) ? undefined : true;
    }, 5000);
    const source = await waitFor('the source to fail', () => {
      const stats = running.stats().sources[0]!;
      return stats.ok ? undefined : stats;
    });
    expect(source.reason).toContain(`'${gone}'`);
  });

  it('without privileges, says so at once', async () => {
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', `
      const addon = require(${JSON.stringify(ADDON)});
      try { new addon.NativeBpf({ objectPath: ${JSON.stringify(OBJECT)} }); console.log('loaded'); } catch (error) { console.log(error.message); }
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    await new Promise((resolve) => child.once('exit', resolve));
    expect(output).toMatch(/cannot load the bpf program into the kernel: Operation not permitted \(the bpf data path needs root/);
  });
});
