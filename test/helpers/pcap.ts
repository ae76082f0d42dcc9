import { readFileSync } from 'node:fs';

/** Frames of a classic pcap file (what `tcpdump -w` writes), in capture order. */
export function readPcap(path: string): Buffer[] {
  const data = readFileSync(path);
  if (data.length < 24) return [];
  const magic = data.readUInt32LE(0);
  let littleEndian: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) littleEndian = true;
  else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) littleEndian = false;
  else throw new Error(`${path} is not a pcap file`);
  const u32 = (offset: number) => (littleEndian ? data.readUInt32LE(offset) : data.readUInt32BE(offset));
  const frames: Buffer[] = [];
  let offset = 24;
  while (offset + 16 <= data.length) {
    const captured = u32(offset + 8);
    const start = offset + 16;
    if (start + captured > data.length) break; // a record cut short by the capture being stopped
    frames.push(Buffer.from(data.subarray(start, start + captured)));
    offset = start + captured;
  }
  return frames;
}
