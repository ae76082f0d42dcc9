/** Frames of known origin: each carries a marker and a sequence number in its payload. */

export const TEST_ETHERTYPE = 0x88b5; // IEEE local experimental
const MARKER = Buffer.from('tapas-test');

export interface FrameOptions {
  dst: string;
  src: string;
  /** A label written into the payload, to tell streams apart in a capture. */
  stream: string;
  sequence: number;
  vlan?: number;
  /** Total frame length without FCS; at least 60. */
  length?: number;
}

function mac(text: string): Buffer {
  return Buffer.from(text.split(':').map((part) => parseInt(part, 16)));
}

export function makeFrame(options: FrameOptions): Buffer {
  const header = [mac(options.dst), mac(options.src)];
  if (options.vlan !== undefined) {
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(0x8100, 0);
    tag.writeUInt16BE(options.vlan & 0x0fff, 2);
    header.push(tag);
  }
  const type = Buffer.alloc(2);
  type.writeUInt16BE(TEST_ETHERTYPE, 0);
  const sequence = Buffer.alloc(4);
  sequence.writeUInt32BE(options.sequence, 0);
  const label = Buffer.from(options.stream.padEnd(8, ' ').slice(0, 8));
  const body = Buffer.concat([...header, type, MARKER, label, sequence]);
  const length = Math.max(options.length ?? 60, body.length);
  return Buffer.concat([body, Buffer.alloc(length - body.length, 0xab)]);
}

/** The stream label and sequence number of a test frame, or undefined for any other frame. */
export function parseTestFrame(frame: Buffer): { stream: string; sequence: number; vlan?: number } | undefined {
  let offset = 12;
  let vlan: number | undefined;
  if (frame.length >= 16 && frame.readUInt16BE(12) === 0x8100) {
    vlan = frame.readUInt16BE(14) & 0x0fff;
    offset = 16;
  }
  if (frame.length < offset + 2 + MARKER.length + 12) return undefined;
  if (frame.readUInt16BE(offset) !== TEST_ETHERTYPE) return undefined;
  const at = offset + 2;
  if (!frame.subarray(at, at + MARKER.length).equals(MARKER)) return undefined;
  const stream = frame.subarray(at + MARKER.length, at + MARKER.length + 8).toString().trimEnd();
  const sequence = frame.readUInt32BE(at + MARKER.length + 8);
  return vlan === undefined ? { stream, sequence } : { stream, sequence, vlan };
}

export function testFramesOf(frames: Buffer[]): Buffer[] {
  return frames.filter((frame) => parseTestFrame(frame) !== undefined);
}

/**
 * An IPv4/UDP frame (checksums zero: nothing here routes it): `marker` at the
 * start of the payload and the sequence number 12 bytes in, an 802.1Q tag when
 * `vlan` is given, the payload padded so that the frame is `length` bytes.
 * Source ports spread flows over a fanout group; destination ports are what
 * pcap filters select on.
 */
export function makeUdpFrame(options: {
  dst: string; src: string; sequence: number; sourcePort?: number; dstPort?: number; vlan?: number; length?: number; marker?: string;
}): Buffer {
  const tagLength = options.vlan === undefined ? 0 : 4;
  const payload = Buffer.alloc(Math.max(18, (options.length ?? 0) - 14 - tagLength - 20 - 8));
  payload.write(options.marker ?? 'tapas-udp', 0);
  payload.writeUInt32BE(options.sequence, 12);
  const ip = Buffer.alloc(20);
  ip.writeUInt8(0x45, 0);
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip.writeUInt8(64, 8);
  ip.writeUInt8(17, 9);
  Buffer.from([198, 18, 1, 1]).copy(ip, 12);
  Buffer.from([198, 18, 1, 2]).copy(ip, 16);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(options.sourcePort ?? 40000, 0);
  udp.writeUInt16BE(options.dstPort ?? 9, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  const tag = options.vlan === undefined ? [] : [Buffer.from([0x81, 0x00, (options.vlan >> 8) & 0x0f, options.vlan & 0xff])];
  return Buffer.concat([mac(options.dst), mac(options.src), ...tag, Buffer.from([0x08, 0x00]), ip, udp, payload]);
}
