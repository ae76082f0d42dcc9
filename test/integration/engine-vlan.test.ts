import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, type Plan } from '../../src/engine/engine.js';
import { makeFrame, parseTestFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const VM_MAC = '02:00:00:00:01:01';
const HOST_MAC = '02:00:00:00:01:02';

/**
 * Every data path: AF_PACKET with either ring, and the kernel's tc programs
 * (which read the tag from skb metadata on the source's ingress and from the
 * frame on its egress, and whose clones keep it).
 */
const DATA_PATHS: Array<{ name: string; options: EngineOptions }> = [
  { name: 'AF_PACKET, TPACKET_V3 ring', options: { ring: { version: 3 } } },
  { name: 'AF_PACKET, TPACKET_V2 ring', options: { ring: { version: 2 } } },
  { name: 'bpf (tc programs)', options: { datapath: 'bpf' } },
];

describe.skipIf(!netnsAvailable).each(DATA_PATHS)(`VLAN-tagged frames, $name (${netnsSkipReason})`, ({ options }) => {
  const lab = new Lab('vlan');
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

  function plan(vlans?: Array<[number, number]>): Plan {
    return {
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [{ id: 'flow', sourceId: 'vm', sinkId: 'monitor', direction: 'BOTH', ...(vlans ? { vlans } : {}) }],
    };
  }

  /** Tagged and untagged frames both ways; the receiving side moves tags into ring metadata. */
  function traffic(stream: string) {
    const vlans = [undefined, 1, 5, 9, 10, 100, 4094];
    const fromVm = vlans.map((vlan, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: `${stream}o`, sequence: i, vlan }));
    const toVm = vlans.map((vlan, i) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: `${stream}i`, sequence: i, vlan }));
    return { fromVm, toVm };
  }

  async function run(vlans?: Array<[number, number]>) {
    await engine.apply(plan(vlans));
    const capture = await lab.capture(monitor, 'mon0');
    const { fromVm, toVm } = traffic(vlans ? 'f' : 'a');
    await lab.sendFrames(vm, 'vm0', fromVm);
    await lab.sendFrames(host, 'vmh', toVm);
    return { sent: [...fromVm, ...toVm], copies: testFramesOf(await capture.stop()) };
  }

  it('copies carry their original tag, byte for byte, in both directions', async () => {
    const { sent, copies } = await run();
    expect(copies.map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));
    expect(copies.filter((f) => parseTestFrame(f)?.vlan !== undefined)).toHaveLength(12);
    // The bytes counted are the bytes on the wire, tags included, on every data path.
    const rule = engine.stats().rules.find((r) => r.id === 'flow')!;
    expect(rule.bytes).toBe(sent.reduce((n, f) => n + f.length, 0));
  });

  it('a vlan_filter selects exactly the listed VLANs; untagged frames do not match', async () => {
    const { sent, copies } = await run([[1, 5], [100, 100]]);
    const wanted = sent.filter((f) => [1, 5, 100].includes(parseTestFrame(f)?.vlan ?? -1));
    expect(wanted).toHaveLength(6);
    expect(copies.map((f) => f.toString('hex'))).toEqual(wanted.map((f) => f.toString('hex')));
  });
});
