/**
 * The tunnel header builders and parser through the addon's pure helpers (no
 * sockets): exact bytes written out from design.md §4, tshark's reading of
 * what the builder produces, and the parser's verdicts on malformed input.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { loadAddon } from '../../src/engine/native.js';
import { makeFrame } from '../helpers/frames.js';

const addon = loadAddon();
const frame = makeFrame({ dst: '02:00:00:00:09:01', src: '02:00:00:00:09:02', stream: 'unit', sequence: 1 });
const dir = mkdtempSync(join(tmpdir(), 'tapas-encap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** IPv4 packets (linktype RAW) carrying the given GRE payloads, as a pcap tshark can read. */
function tshark(payloads: Buffer[], fields: string[]): string[][] {
  const packets = payloads.map((payload) => {
    const ip = Buffer.alloc(20);
    ip.writeUInt8(0x45, 0);
    ip.writeUInt16BE(20 + payload.length, 2);
    ip.writeUInt8(64, 8);
    ip.writeUInt8(47, 9);
    Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]).copy(ip, 12);
    return Buffer.concat([ip, payload]);
  });
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(101, 20); // LINKTYPE_RAW
  const records = packets.map((packet) => {
    const record = Buffer.alloc(16);
    record.writeUInt32LE(packet.length, 8);
    record.writeUInt32LE(packet.length, 12);
    return Buffer.concat([record, packet]);
  });
  const file = join(dir, `${Math.random().toString(36).slice(2)}.pcap`);
  writeFileSync(file, Buffer.concat([header, ...records]));
  const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=,', ...fields.flatMap((f) => ['-e', f])], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'],
  });
  return out.trim().split('\n').map((line) => line.split(','));
}

describe('GRE with key (mirror_type gre)', () => {
  it('is flags K, protocol 0x6558, the key, then the frame', () => {
    const packet = addon.encapsulate({ kind: 'gre', key: 0x66 }, frame);
    expect(packet.subarray(0, 8).toString('hex')).toBe('2000655800000066');
    expect(packet.subarray(8).equals(frame)).toBe(true);
  });

  it('reads as GRE key and transparent Ethernet bridging in tshark', () => {
    const packet = addon.encapsulate({ kind: 'gre', key: 4000000000 }, frame);
    expect(tshark([packet], ['gre.key', 'gre.proto', 'eth.type'])).toEqual([['0xee6b2800', '0x6558', '0x88b5']]);
  });
});

describe('ERSPAN type II (mirror_type erspanv1)', () => {
  it('is flags S, protocol 0x88BE, the sequence number and two header words', () => {
    const packet = addon.encapsulate({ kind: 'erspan', session: 101, sequence: 5 }, frame);
    // w0 = 1<<28 | vlan 0 | cos 0 | en 0 | T 0 | session 101; w1 = index 0x101
    expect(packet.subarray(0, 16).toString('hex')).toBe('100088be00000005' + '10000065' + '00000101');
    expect(packet.subarray(16).equals(frame)).toBe(true);
  });

  it('takes the index as OpenStack does: the tunnel id read as hex digits, unless given', () => {
    expect(addon.erspanIndexFor(102)).toBe(0x102);
    expect(addon.erspanIndexFor(1023)).toBe(0x1023);
    const explicit = addon.encapsulate({ kind: 'erspan', session: 102, index: 7 }, frame);
    expect(explicit.readUInt32BE(12)).toBe(7);
  });

  it('reads as version 1 with spanid, index, vlan, cos, en and T in tshark', () => {
    const tagged = Buffer.concat([frame.subarray(0, 12), Buffer.from('8100000a0800', 'hex'),
      Buffer.from('45b8002e000000004000fd000a0000010a000002', 'hex'), Buffer.alloc(26)]);
    const packets = [
      addon.encapsulate({ kind: 'erspan', session: 101, sequence: 1 }, frame),
      addon.encapsulate({ kind: 'erspan', session: 1023, sequence: 2, maxInner: 40 }, tagged),
    ];
    expect(tshark(packets, ['gre.sequence_number', 'erspan.version', 'erspan.spanid', 'erspan.index',
      'erspan.vlan', 'erspan.cos', 'erspan.encap', 'erspan.truncated'])).toEqual([
      ['1', '1', '101', '257', '0', '0', '0', '0'],
      ['2', '1', '1023', String(0x1023), '10', '5', '3', '1'],
    ]);
  });
});

describe('ERSPAN type III (mirror_type erspanv2)', () => {
  it('is flags S, protocol 0x22EB, and three header words: version 2, timestamp, hw id and D', () => {
    const packet = addon.encapsulate({ kind: 'erspan3', session: 101, hwid: 7, sequence: 5, direction: 'OUT', timestamp: 0x01020304 }, frame);
    // w0 = 2<<28 | session 101; w1 = timestamp; w2 = P<<15 | hwid 7<<4 | D<<3 (gra 0, O 0)
    expect(packet.subarray(0, 20).toString('hex')).toBe('100022eb00000005' + '20000065' + '01020304' + '00008078');
    expect(packet.subarray(20).equals(frame)).toBe(true);
    const into = addon.encapsulate({ kind: 'erspan3', session: 101, direction: 'IN' }, frame);
    expect(into.readUInt32BE(16) & 0x8).toBe(0);
  });

  it('reads in tshark as version 2 with spanid, hardware id, direction, granularity, T and VLAN', () => {
    const tagged = Buffer.concat([frame.subarray(0, 12), Buffer.from('8100000a0800', 'hex'),
      Buffer.from('45b8002e000000004000fd000a0000010a000002', 'hex'), Buffer.alloc(26)]);
    const packets = [
      addon.encapsulate({ kind: 'erspan3', session: 5, hwid: 63, sequence: 1, direction: 'IN', timestamp: 12345 }, frame),
      addon.encapsulate({ kind: 'erspan3', session: 1023, sequence: 2, direction: 'OUT', maxInner: 40 }, tagged),
    ];
    expect(tshark(packets, ['gre.sequence_number', 'erspan.version', 'erspan.spanid', 'erspan.hw', 'erspan.direction',
      'erspan.gra', 'erspan.timestamp', 'erspan.vlan', 'erspan.cos', 'erspan.truncated'])).toEqual([
      ['1', '2', '5', '63', '0', '0', '12345', '0', '0', '0'],
      ['2', '2', '1023', '0', '1', '0', '0', '10', '5', '1'],
    ]);
  });

  it('parses back, the optional subheader skipped', () => {
    const packet = addon.encapsulate({ kind: 'erspan3', session: 44, hwid: 9, sequence: 3, direction: 'OUT', timestamp: 99 }, frame);
    expect(addon.parseTunnelPacket(packet)).toMatchObject({
      kind: 'erspan3', protocol: 0x22eb, sequence: 3,
      erspan3: { session: 44, hwid: 9, direction: 'OUT', timestamp: 99, gra: 0, p: true, ft: 0, truncated: false, optionalSubheader: false },
    });
    const withSubheader = Buffer.concat([packet.subarray(0, 20), Buffer.from('0400000000000000', 'hex'), frame]);
    withSubheader[19] |= 1;
    const parsed = addon.parseTunnelPacket(withSubheader);
    expect(parsed).toMatchObject({ kind: 'erspan3', erspan3: { optionalSubheader: true, platformId: 1 } });
    expect('frame' in parsed && parsed.frame.equals(frame)).toBe(true);
  });
});

describe('VXLAN (mirror_type vxlan)', () => {
  it('is flag I and the 24-bit VNI in 8 bytes, then the frame; parses back', () => {
    const packet = addon.encapsulate({ kind: 'vxlan', vni: 0x123456 }, frame);
    expect(packet.subarray(0, 8).toString('hex')).toBe('0800000012345600');
    expect(packet.subarray(8).equals(frame)).toBe(true);
    expect(addon.parseTunnelPacket(packet, { vxlan: true })).toMatchObject({ kind: 'vxlan', vni: 0x123456 });
    expect(addon.parseTunnelPacket(Buffer.concat([Buffer.from('0000000000000100', 'hex'), frame]), { vxlan: true })).toEqual({ error: 'vxlanFlags' });
    expect(() => addon.encapsulate({ kind: 'vxlan', vni: 2 ** 24 }, frame)).toThrow(/field 'vni' .* must be an integer from 0 to 16777215/);
  });
});

describe('the parser', () => {
  it('returns what the builder wrote', () => {
    const gre = addon.parseTunnelPacket(addon.encapsulate({ kind: 'gre', key: 9 }, frame));
    expect(gre).toMatchObject({ kind: 'gre', protocol: 0x6558, key: 9 });
    expect('frame' in gre && gre.frame.equals(frame)).toBe(true);
    const erspan = addon.parseTunnelPacket(addon.encapsulate({ kind: 'erspan', session: 33, sequence: 77 }, frame));
    expect(erspan).toMatchObject({
      kind: 'erspan', sequence: 77, erspan: { session: 33, index: 0x33, vlan: 0, cos: 0, encap: 0, truncated: false },
    });
  });

  it('names what is wrong with a malformed packet instead of throwing', () => {
    const good = addon.encapsulate({ kind: 'gre', key: 1 }, frame);
    const variant = (offset: number, byte: number) => {
      const copy = Buffer.from(good);
      copy[offset] = byte;
      return copy;
    };
    expect(addon.parseTunnelPacket(Buffer.alloc(0))).toEqual({ error: 'short' });
    expect(addon.parseTunnelPacket(good.subarray(0, 6))).toEqual({ error: 'short' });
    expect(addon.parseTunnelPacket(variant(1, 0x01))).toEqual({ error: 'greVersion' });
    expect(addon.parseTunnelPacket(variant(0, 0x60))).toEqual({ error: 'greFlags' });
    expect(addon.parseTunnelPacket(variant(3, 0x00))).toEqual({ error: 'unknownProtocol' });
    expect(addon.parseTunnelPacket(good.subarray(0, 20))).toEqual({ error: 'innerShort' });
    const erspan = addon.encapsulate({ kind: 'erspan', session: 1 }, frame);
    erspan[8] = 0x20; // version 2: ERSPAN type III
    expect(addon.parseTunnelPacket(erspan)).toEqual({ error: 'erspanVersion' });
    // An IPv4 header announcing another protocol is not GRE.
    const udp = Buffer.concat([Buffer.from('4500000000000000401100000a0000010a000002', 'hex'), good]);
    udp.writeUInt16BE(udp.length, 2);
    expect(addon.parseTunnelPacket(udp, { ipv4: true })).toEqual({ error: 'notGre' });
  });

  it('survives every truncation and every single-byte corruption of a valid packet', () => {
    const packet = addon.encapsulate({ kind: 'erspan', session: 5, sequence: 1 }, frame);
    for (let length = 0; length <= packet.length; length += 1) {
      const result = addon.parseTunnelPacket(packet.subarray(0, length));
      expect('error' in result || result.frame.length === length - 16).toBe(true);
    }
    for (let offset = 0; offset < 16; offset += 1) {
      for (const byte of [0x00, 0xff, packet[offset]! ^ 0x10]) {
        const copy = Buffer.from(packet);
        copy[offset] = byte;
        const result = addon.parseTunnelPacket(copy);
        if (!('error' in result)) expect(result.frame.length).toBeLessThanOrEqual(frame.length + 8);
      }
    }
  });
});
