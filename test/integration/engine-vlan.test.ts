import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type Plan } from '../../src/engine/engine.js';
import { makeFrame, parseTestFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const VM_MAC = '02:00:00:00:01:01';
const HOST_MAC = '02:00:00:00:01:02';

describe.skipIf(!netnsAvailable).each([3, 2] as const)(`VLAN-tagged frames, TPACKET_V%i ring (${netnsSkipReason})`, (ringVersion) => {
  const lab = new Lab('vlan');
  let host: string, vm: string, monitor: string;
  let engine: Engine;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    engine = new Engine({ ring: { version: ringVersion } });
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
  });

  it('a vlan_filter selects exactly the listed VLANs; untagged frames do not match', async () => {
    const { sent, copies } = await run([[1, 5], [100, 100]]);
    const wanted = sent.filter((f) => [1, 5, 100].includes(parseTestFrame(f)?.vlan ?? -1));
    expect(wanted).toHaveLength(6);
    expect(copies.map((f) => f.toString('hex'))).toEqual(wanted.map((f) => f.toString('hex')));
  });
});
