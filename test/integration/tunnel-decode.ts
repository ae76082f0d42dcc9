/**
 * A decoder of tunnel packets for tests, written from design.md §4 and
 * docs/tunnels.md and sharing no code with the engine: Ethernet -> IPv4/IPv6
 * (fragments reassembled) -> GRE -> optional ERSPAN II or III -> inner frame,
 * or -> UDP -> VXLAN -> inner frame. tshark checks the header fields; this
 * gives the inner bytes to compare with the originals.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TunnelPacket {
  key?: number;
  sequence?: number;
  erspan?: { version: number; vlan: number; cos: number; en: number; truncated: boolean; session: number; index: number };
  /** ERSPAN type III (protocol 0x22eb): the fields of its words 1 and 2. */
  erspan3?: { version: number; vlan: number; truncated: boolean; session: number; timestamp: number; hwid: number; d: number; gra: number; o: number };
  inner: Buffer;
}

export interface VxlanPacket {
  sourcePort: number;
  destinationPort: number;
  flags: number;
  vni: number;
  inner: Buffer;
}

interface IpDatagram { protocol: number; payload: Buffer }

/** IP datagrams in captured Ethernet frames, IPv4 fragments put back together. */
export function ipDatagrams(frames: Buffer[]): IpDatagram[] {
  const datagrams: IpDatagram[] = [];
  const pending = new Map<string, Array<{ offset: number; more: boolean; data: Buffer }>>();
  for (const frame of frames) {
    const type = frame.readUInt16BE(12);
    if (type === 0x86dd) {
      datagrams.push({ protocol: frame[20]!, payload: frame.subarray(54, 54 + frame.readUInt16BE(18)) });
      continue;
    }
    if (type !== 0x0800) continue;
    const ip = frame.subarray(14);
    const headerLength = (ip[0]! & 0x0f) * 4;
    const payload = ip.subarray(headerLength, ip.readUInt16BE(2));
    const flags = ip.readUInt16BE(6);
    const more = (flags & 0x2000) !== 0;
    const offset = (flags & 0x1fff) * 8;
    if (!more && offset === 0) {
      datagrams.push({ protocol: ip[9]!, payload });
      continue;
    }
    const id = `${ip.readUInt16BE(4)}-${ip.subarray(12, 20).toString('hex')}`;
    const parts = pending.get(id) ?? [];
    parts.push({ offset, more, data: payload });
    pending.set(id, parts);
    parts.sort((a, b) => a.offset - b.offset);
    const last = parts[parts.length - 1]!;
    const contiguous = parts.every((part, i) => i === 0 ? part.offset === 0 : part.offset === parts[i - 1]!.offset + parts[i - 1]!.data.length);
    if (!last.more && contiguous) {
      datagrams.push({ protocol: ip[9]!, payload: Buffer.concat(parts.map((part) => part.data)) });
      pending.delete(id);
    }
  }
  return datagrams;
}

export function decodeGre(packet: Buffer): TunnelPacket {
  const flags = packet.readUInt16BE(0);
  const protocol = packet.readUInt16BE(2);
  let offset = 4;
  const result: Partial<TunnelPacket> = {};
  if (flags & 0x8000) offset += 4;
  if (flags & 0x2000) {
    result.key = packet.readUInt32BE(offset);
    offset += 4;
  }
  if (flags & 0x1000) {
    result.sequence = packet.readUInt32BE(offset);
    offset += 4;
  }
  if (protocol === 0x88be) {
    const w0 = packet.readUInt32BE(offset);
    const w1 = packet.readUInt32BE(offset + 4);
    result.erspan = {
      version: w0 >>> 28, vlan: (w0 >>> 16) & 0xfff, cos: (w0 >>> 13) & 7, en: (w0 >>> 11) & 3,
      truncated: ((w0 >>> 10) & 1) === 1, session: w0 & 0x3ff, index: w1 & 0xfffff,
    };
    offset += 8;
  } else if (protocol === 0x22eb) {
    const w0 = packet.readUInt32BE(offset);
    const w2 = packet.readUInt32BE(offset + 8);
    result.erspan3 = {
      version: w0 >>> 28, vlan: (w0 >>> 16) & 0xfff, truncated: ((w0 >>> 10) & 1) === 1, session: w0 & 0x3ff,
      timestamp: packet.readUInt32BE(offset + 4), hwid: (w2 >>> 4) & 0x3f, d: (w2 >>> 3) & 1, gra: (w2 >>> 1) & 3, o: w2 & 1,
    };
    offset += 12 + (w2 & 1 ? 8 : 0);
  } else if (protocol !== 0x6558) {
    throw new Error(`GRE protocol 0x${protocol.toString(16)} is not a tunnel of ours`);
  }
  return { ...result, inner: Buffer.from(packet.subarray(offset)) };
}

/** Every GRE packet in a capture of the underlay, decoded. */
export function tunnelPackets(frames: Buffer[]): TunnelPacket[] {
  return ipDatagrams(frames).filter((d) => d.protocol === 47).map((d) => decodeGre(d.payload));
}

/** Every UDP datagram in a capture of the underlay read as VXLAN (RFC 7348). */
export function vxlanPackets(frames: Buffer[], port = 4789): VxlanPacket[] {
  return ipDatagrams(frames).filter((d) => d.protocol === 17 && d.payload.readUInt16BE(2) === port).map(({ payload }) => ({
    sourcePort: payload.readUInt16BE(0),
    destinationPort: payload.readUInt16BE(2),
    flags: payload[8]!,
    vni: payload.readUIntBE(12, 3),
    inner: Buffer.from(payload.subarray(16)),
  }));
}

/** tshark's reading of each GRE packet in a pcap: one record of the named fields per packet. */
export async function tsharkFields(pcap: string, fields: string[], filter = 'gre', options: string[] = []): Promise<Array<Record<string, string>>> {
  const args = [...options, '-r', pcap, '-Y', filter, '-T', 'fields', '-E', 'separator=\t', ...fields.flatMap((f) => ['-e', f])];
  const { stdout } = await run('tshark', args, { maxBuffer: 64 << 20 });
  return stdout.split('\n').filter((line) => line !== '').map((line) => {
    const values = line.split('\t');
    return Object.fromEntries(fields.map((field, i) => [field, values[i] ?? '']));
  });
}

/** Writes Ethernet frames as a classic pcap file, for tshark. */
export function writePcap(path: string, frames: Buffer[]): void {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(262144, 16);
  header.writeUInt32LE(1, 20);
  const records = frames.map((frame) => {
    const record = Buffer.alloc(16);
    record.writeUInt32LE(frame.length, 8);
    record.writeUInt32LE(frame.length, 12);
    return Buffer.concat([record, frame]);
  });
  writeFileSync(path, Buffer.concat([header, ...records]));
}
