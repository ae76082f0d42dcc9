import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, type Plan } from '../../src/engine/engine.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const VM_MAC = '02:00:00:00:00:01';
const HOST_MAC = '02:00:00:00:00:02';
const BROADCAST = 'ff:ff:ff:ff:ff:ff';
const MULTICAST = '01:00:5e:00:00:fb';

/** Every data path runs the same table: AF_PACKET with either ring, and the kernel's tc programs. */
const DATA_PATHS: Array<{ name: string; options: EngineOptions; ringVersion?: 2 | 3 }> = [
  { name: 'AF_PACKET, TPACKET_V3 ring', options: { ring: { version: 3 } }, ringVersion: 3 },
  { name: 'AF_PACKET, TPACKET_V2 ring', options: { ring: { version: 2 } }, ringVersion: 2 },
  { name: 'bpf (tc programs, bpf_clone_redirect), tcx links', options: { datapath: 'bpf' } },
  // The attachment of kernels without tcx (before 6.6): cls_bpf filters on a clsact qdisc.
  { name: 'bpf, cls_bpf filters', options: { datapath: 'bpf', bpfAttach: 'tc' } },
];

/**
 * A "VM" behind a veth whose host side (vmh) is the source port, and a
 * "monitor" behind the tap service port (monh). Both host sides live in a
 * host namespace of the test's own.
 */
describe.skipIf(!netnsAvailable).each(DATA_PATHS)(`TaaS direction semantics, $name (${netnsSkipReason})`, ({ options, ringVersion }) => {
  const lab = new Lab('dir');
  let host: string, vm: string, monitor: string;
  let engine: Engine;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    engine = new Engine(options);
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  function plan(direction: 'IN' | 'OUT' | 'BOTH', vlans?: Array<[number, number]>): Plan {
    return {
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [{ id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction, ...(vlans ? { vlans } : {}) }],
    };
  }

  /** Frames into the VM (the host side transmits them), then frames the VM sends. */
  function traffic(stream: string) {
    const toVm = [
      makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: `${stream}-i`, sequence: 1 }),
      makeFrame({ dst: BROADCAST, src: HOST_MAC, stream: `${stream}-i`, sequence: 2 }),
      makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: `${stream}-i`, sequence: 3, length: 1000 }),
      makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: `${stream}-i`, sequence: 4, length: 1514 }),
      makeFrame({ dst: MULTICAST, src: HOST_MAC, stream: `${stream}-i`, sequence: 5 }),
    ];
    const fromVm = [
      makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: `${stream}-o`, sequence: 1 }),
      makeFrame({ dst: BROADCAST, src: VM_MAC, stream: `${stream}-o`, sequence: 2 }),
      makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: `${stream}-o`, sequence: 3, length: 700 }),
      makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: `${stream}-o`, sequence: 4, length: 1514 }),
      makeFrame({ dst: MULTICAST, src: VM_MAC, stream: `${stream}-o`, sequence: 5 }),
    ];
    return { toVm, fromVm };
  }

  async function mirrorAndCapture(direction: 'IN' | 'OUT' | 'BOTH') {
    await engine.apply(plan(direction));
    const capture = await lab.capture(monitor, 'mon0');
    const { toVm, fromVm } = traffic(direction.toLowerCase());
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    const copies = testFramesOf(await capture.stop());
    return { toVm, fromVm, copies };
  }

  it('IN mirrors exactly the frames sent to the VM, broadcast and multicast included, byte for byte and in order', async () => {
    const { toVm, copies } = await mirrorAndCapture('IN');
    expect(copies.map((f) => f.toString('hex'))).toEqual(toVm.map((f) => f.toString('hex')));
  });

  it('OUT mirrors exactly the frames the VM sends', async () => {
    const { fromVm, copies } = await mirrorAndCapture('OUT');
    expect(copies.map((f) => f.toString('hex'))).toEqual(fromVm.map((f) => f.toString('hex')));
  });

  it('BOTH mirrors the union, in the order the port saw it', async () => {
    const { toVm, fromVm, copies } = await mirrorAndCapture('BOTH');
    expect(copies.map((f) => f.toString('hex'))).toEqual([...toVm, ...fromVm].map((f) => f.toString('hex')));
  });

  it('counts what it mirrored per rule, source and sink', async () => {
    const before = engine.stats();
    const rule = (s: typeof before) => s.rules.find((r) => r.id === 'flow')!;
    const sink = (s: typeof before) => s.sinks.find((r) => r.id === 'monitor')!;
    const { toVm, fromVm } = await mirrorAndCapture('BOTH');
    const after = engine.stats();
    const sent = [...toVm, ...fromVm];
    expect(rule(after).packets - rule(before).packets).toBe(sent.length);
    expect(rule(after).bytes - rule(before).bytes).toBe(sent.reduce((n, f) => n + f.length, 0));
    expect(sink(after).packets - sink(before).packets).toBe(sent.length);
    expect(sink(after).errors).toBe(0);
    if (ringVersion === undefined) {
      // The kernel path: the source's hooks saw exactly these frames, and the rule says it runs there.
      expect(after.sources[0]).toMatchObject({ id: 'vm', ok: true, captureDrops: 0, bpf: { attach: options.bpfAttach ?? 'tcx' } });
      expect(after.sources[0]!.packets - before.sources[0]!.packets).toBe(sent.length);
      expect(rule(after)).toMatchObject({ ok: true, datapath: 'bpf', unavailable: 0 });
    } else {
      expect(after.sources[0]).toMatchObject({ id: 'vm', ok: true, captureDrops: 0, packet: { blockTimeoutMs: ringVersion === 2 ? 0 : 1 } });
    }
  });
});
