import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type Plan } from '../../src/engine/engine.js';
import { loadAddon } from '../../src/engine/native.js';
import { makeFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const MACS = Buffer.from('020000000c01020000000c02', 'hex');

function ipv4(payload: Buffer, options: { fragmentOffset?: number; optionWords?: number } = {}): Buffer {
  const words = 5 + (options.optionWords ?? 0);
  const header = Buffer.alloc(words * 4);
  header.writeUInt8(0x40 | words, 0);
  header.writeUInt16BE(header.length + payload.length, 2);
  header.writeUInt16BE((options.fragmentOffset ?? 0) & 0x1fff, 6);
  header.writeUInt8(64, 8);
  header.writeUInt8(47, 9);
  Buffer.from([198, 18, 7, 1]).copy(header, 12);
  Buffer.from([198, 18, 7, 2]).copy(header, 16);
  for (let i = 20; i < header.length; i += 1) header[i] = 1; // NOP options
  return Buffer.concat([MACS, Buffer.from([0x08, 0x00]), header, payload]);
}

function ipv6(payload: Buffer): Buffer {
  const header = Buffer.alloc(40);
  header.writeUInt32BE(0x60000000, 0);
  header.writeUInt16BE(payload.length, 4);
  header.writeUInt8(47, 6);
  header.writeUInt8(64, 7);
  header.writeUInt16BE(0x2001, 8);
  header.writeUInt16BE(0x0db8, 10);
  header.writeUInt16BE(0x2001, 24);
  header.writeUInt16BE(0x0db8, 26);
  header[39] = 2;
  return Buffer.concat([MACS, Buffer.from([0x86, 0xdd]), header, payload]);
}

const inner = (stream: string) => makeFrame({ dst: '02:00:00:00:0d:01', src: '02:00:00:00:0d:02', stream, sequence: 1 });

/**
 * The capture filter of every source drops the tunnels between cluster-mode
 * agents, also when they arrive from another host (unmarked): GRE with flags
 * K and S, protocol 0x6558, over IPv4 (with or without options) or IPv6, and
 * every later IPv4 fragment of GRE. Tap mirrors' own GRE (K) and ERSPAN (S),
 * and everything else, are still mirrored.
 */
describe.skipIf(!netnsAvailable)(`capture never takes agent tunnels (${netnsSkipReason})`, () => {
  const lab = new Lab('agtun');
  let host: string, vm: string, monitor: string;
  let engine: Engine;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    engine = new Engine();
  });

  afterAll(async () => {
    await engine?.close();
    await lab.cleanup();
  });

  it('drops agent tunnel packets and later GRE fragments from a capture ring, and mirrors the rest byte for byte', async () => {
    const { encapsulate } = loadAddon();
    const agentTunnel = encapsulate({ kind: 'gre', key: 7, sequence: 3 }, inner('ks'));
    expect(agentTunnel.readUInt16BE(0)).toBe(0x3000);
    const mirrorGre = encapsulate({ kind: 'gre', key: 7 }, inner('k'));
    const erspan = encapsulate({ kind: 'erspan', session: 7 }, inner('s'));
    const otherProtocol = Buffer.from(agentTunnel);
    otherProtocol.writeUInt16BE(0x0800, 2);

    const dropped = [
      ipv4(agentTunnel),
      ipv4(agentTunnel, { optionWords: 2 }),
      ipv6(agentTunnel),
      ipv4(Buffer.alloc(200, 0x5a), { fragmentOffset: 185 }),
    ];
    const kept = [
      ipv4(mirrorGre),
      ipv4(erspan),
      ipv4(otherProtocol),
      ipv6(mirrorGre),
      inner('plain'),
      // Too short to hold a GRE header after its IPv4 header: not read past its end, mirrored.
      ipv4(Buffer.from([0x30, 0x00])),
    ];
    const plan: Plan = {
      sources: [{ id: 'vm', ifname: 'vmh', netns: host }],
      sinks: [{ id: 'monitor', kind: 'port', ifname: 'monh', netns: host }],
      rules: [{ id: 'rule', sourceId: 'vm', sinkId: 'monitor', direction: 'OUT' }],
    };
    await engine.apply(plan);
    const capture = await lab.capture(monitor, 'mon0');
    // Interleaved: what must go and what must stay, in one burst.
    const sent = dropped.flatMap((frame, i) => [frame, kept[i]!]).concat(kept.slice(dropped.length));
    await lab.sendFrames(vm, 'vm0', sent, 200);
    const received = (await capture.stop(500)).filter((frame) => frame.subarray(0, 12).equals(MACS) || frame.readUInt16BE(12) === 0x88b5);
    expect(received.map((frame) => frame.toString('hex'))).toEqual(kept.map((frame) => frame.toString('hex')));
    const rule = engine.stats().rules.find((candidate) => candidate.id === 'rule')!;
    expect(rule.packets).toBe(kept.length);
  });
});
