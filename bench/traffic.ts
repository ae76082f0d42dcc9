/**
 * Load: trafgen (Debian netsniff-ng) out of one generator interface, and a
 * small paced Python sender for many interfaces at once. Every run is bounded
 * in frames (-n / --count) and in time (a kill timer).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { start } from './proc.js';

export const TOOLS = new URL('../../bench/tools/', import.meta.url).pathname;

/** Frame sizes as carried on the veth, without FCS: 60 is the 64-byte minimum frame, 1514 a full 1500-byte MTU. */
export const FRAME_SIZES = [60, 1514] as const;
export type FrameSize = (typeof FRAME_SIZES)[number];

export const sizeLabel = (size: number) => (size === 60 ? '64 B' : size === 1514 ? '1518 B' : `${size + 4} B`);

/**
 * IPv4/UDP in the benchmarking range, unicast to a MAC that nobody has (the
 * host side sees PACKET_OTHERHOST: the workload "sends" it, TaaS direction
 * OUT). The IP id counts up per frame so a copy can be matched to its original.
 */
export function writeTrafgenConfig(dir: string, size: number): string {
  const fill = size - 42;
  const file = join(dir, `trafgen-${size}.cfg`);
  writeFileSync(file, `{
  eth(da=02:00:00:00:00:02, sa=02:00:00:00:00:01, type=0x0800),
  ipv4(saddr=198.18.0.1, daddr=198.19.0.1, ttl=64, id=dinc()),
  udp(sport=1000, dport=2000),
  fill(0x41, ${fill})
}
`);
  return file;
}

export interface Sent {
  /** Seconds trafgen spent sending (its own report), the base of the offered rate. */
  seconds: number;
  /** CPU time of the generator (user + system, including softirq work done in its context). */
  cpuSeconds: number;
}

/**
 * Sends `count` frames out of `ifname` in `ns` as fast as trafgen goes, or
 * with `gapNs` between frames. (Not with trafgen's -b: it sends each second's
 * frames in one burst at full speed and then waits for the next second.)
 * A gap is smooth but costs a system call and a sleep per frame: trafgen then
 * reaches about 140 kpps at most, enough for the latency runs.
 */
export async function trafgen(ns: string, ifname: string, config: string, count: number, gapNs?: number,
  cpu = '0'): Promise<Sent> {
  const pacing = gapNs === undefined ? [] : ['-t', `${Math.round(gapNs)}ns`];
  const expected = gapNs === undefined ? count / 300_000 : (count * gapNs) / 1e9;
  const child = start('ip', ['netns', 'exec', ns, 'taskset', '-c', cpu, 'python3', join(TOOLS, 'rusage.py'),
    'trafgen', '-o', ifname, '-i', config, '-P', '1', '-n', String(count), '-q', ...pacing],
  { timeoutMs: expected * 3000 + 15_000 });
  const result = await child.done;
  const output = result.stdout + result.stderr;
  const usage = /RUSAGE ([\d.]+) ([\d.]+)/.exec(output);
  const timing = /(\d+) sec, (\d+) usec on CPU\d+ \((\d+) packets\)/.exec(output);
  if (result.code !== 0 || !usage || !timing) {
    throw new Error(`trafgen failed (exit ${result.code ?? result.signal}): ${output.trim().split('\n').slice(-3).join(' / ')}`);
  }
  return {
    seconds: Number(timing[1]) + Number(timing[2]) / 1e6,
    cpuSeconds: Number(usage[1]) + Number(usage[2]),
  };
}

/**
 * Sends `count` frames round-robin out of every interface in `ifnames`, paced
 * at `rate` in total: a batch every half millisecond, so the load is even at
 * any time scale a mirror cares about. Reaches about 400 kpps on one core.
 */
export async function multiSend(ns: string, ifnames: string[], size: number, count: number, rate: number,
  cpu = '0'): Promise<Sent> {
  const child = start('ip', ['netns', 'exec', ns, 'taskset', '-c', cpu, 'python3', join(TOOLS, 'rusage.py'),
    'python3', join(TOOLS, 'multi-send.py'), '--rate', String(rate), '--count', String(count), '--size', String(size),
    ...ifnames], { timeoutMs: (count / rate) * 3000 + 15_000 });
  const result = await child.done;
  const usage = /RUSAGE ([\d.]+) ([\d.]+)/.exec(result.stderr);
  const sent = /SENT (\d+) ([\d.]+)/.exec(result.stdout);
  if (result.code !== 0 || !usage || !sent) {
    throw new Error(`multi-send failed (exit ${result.code ?? result.signal}): ${result.stderr.trim().split('\n').slice(-3).join(' / ')}`);
  }
  return { seconds: Number(sent[2]), cpuSeconds: Number(usage[1]) + Number(usage[2]) };
}
