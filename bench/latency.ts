/**
 * Added latency: two tcpdump processes, one on the source port (the original
 * as it arrives) and one where the copies arrive (the monitor port or the
 * tunnel collector), each writing kernel receive timestamps in nanoseconds.
 * Both timestamps come from the same clock at the same point of the receive
 * path (netif_rx on the veth, in two namespaces of one kernel), so their
 * difference is the time the mirror added. Originals and copies are paired by
 * their IPv4 id, which trafgen counts up per frame.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { start, type Child } from './proc.js';

export interface Delays {
  /** Copy minus original, in microseconds, one per paired frame. */
  micros: number[];
  originals: number;
  copies: number;
}

export class TimestampCapture {
  private constructor(private readonly child: Child, readonly file: string) {}

  static async start(ns: string, ifname: string, dir: string, name: string, maxSeconds: number): Promise<TimestampCapture> {
    const file = join(dir, `${name}-${Date.now()}.pcap`);
    const child = start('ip', ['netns', 'exec', ns, 'tcpdump', '-i', ifname, '-Q', 'in', '-n', '-s', '128', '-B', '16384',
      '--immediate-mode', '-U', '--time-stamp-precision=nano', '-w', file], { timeoutMs: (maxSeconds + 20) * 1000 });
    const deadline = Date.now() + 10_000;
    while (!child.stderrSoFar().includes('listening on')) {
      if (Date.now() > deadline || child.process.exitCode !== null) {
        child.process.kill('SIGKILL');
        throw new Error(`tcpdump on ${ifname} did not start: ${child.stderrSoFar().trim()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return new TimestampCapture(child, file);
  }

  async stop(): Promise<Array<{ ns: bigint; frame: Buffer }>> {
    this.child.process.kill('SIGINT');
    await this.child.done;
    return readPcap(this.file);
  }
}

/** Reads a classic pcap file (micro- or nanosecond timestamps, host byte order). */
export function readPcap(file: string): Array<{ ns: bigint; frame: Buffer }> {
  const data = readFileSync(file);
  if (data.length < 24) return [];
  const magic = data.readUInt32LE(0);
  const nano = magic === 0xa1b23c4d;
  if (!nano && magic !== 0xa1b2c3d4) throw new Error(`${file}: not a little-endian pcap file`);
  const records: Array<{ ns: bigint; frame: Buffer }> = [];
  for (let offset = 24; offset + 16 <= data.length;) {
    const seconds = BigInt(data.readUInt32LE(offset));
    const fraction = BigInt(data.readUInt32LE(offset + 4));
    const captured = data.readUInt32LE(offset + 8);
    const frame = data.subarray(offset + 16, offset + 16 + captured);
    records.push({ ns: seconds * 1_000_000_000n + (nano ? fraction : fraction * 1000n), frame });
    offset += 16 + captured;
  }
  return records;
}

/**
 * The original frame inside a copy: the copy itself on a local port, or the
 * payload of a GRE (key, proto 0x6558) or ERSPAN type II (sequence, proto
 * 0x88BE, 8-byte ERSPAN header) packet.
 */
export function innerFrame(frame: Buffer): Buffer | undefined {
  if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 47) return frame;
  const gre = 14 + ((frame[14] ?? 0) & 0x0f) * 4;
  if (frame.length < gre + 4) return undefined;
  const flags = frame.readUInt16BE(gre);
  const protocol = frame.readUInt16BE(gre + 2);
  let offset = gre + 4 + (flags & 0x8000 ? 4 : 0) + (flags & 0x2000 ? 4 : 0) + (flags & 0x1000 ? 4 : 0);
  if (protocol === 0x88be) offset += 8;
  else if (protocol !== 0x6558) return undefined;
  return frame.subarray(offset);
}

/** The IPv4 id of an Ethernet frame carrying IPv4 (behind one VLAN tag at most). */
export function ipv4Id(frame: Buffer): number | undefined {
  let offset = 12;
  if (frame.length >= 16 && frame.readUInt16BE(offset) === 0x8100) offset += 4;
  if (frame.length < offset + 8 || frame.readUInt16BE(offset) !== 0x0800) return undefined;
  return frame.readUInt16BE(offset + 2 + 4);
}

export function pairDelays(originals: Array<{ ns: bigint; frame: Buffer }>, copies: Array<{ ns: bigint; frame: Buffer }>): Delays {
  const sent = new Map<number, bigint>();
  for (const record of originals) {
    const id = ipv4Id(record.frame);
    if (id !== undefined) sent.set(id, record.ns);
  }
  const micros: number[] = [];
  for (const record of copies) {
    const inner = innerFrame(record.frame);
    const id = inner && ipv4Id(inner);
    const at = id === undefined ? undefined : sent.get(id);
    if (at !== undefined) micros.push(Number(record.ns - at) / 1000);
  }
  return { micros, originals: originals.length, copies: copies.length };
}
