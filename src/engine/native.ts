/** Everything the native addon exports, typed in one place. Only this folder loads it. */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Plan } from './plan.js';

export interface EndpointHealth {
  id: string;
  ok: boolean;
  /** Why the source or sink is not working; present only when ok is false. */
  reason?: string;
}

export interface SourceStats extends EndpointHealth {
  packets: number;
  bytes: number;
  /** Frames the kernel could not put in the ring because it was full. */
  ringDrops: number;
  ringFreezes: number;
  /** Frames captured shorter than they were on the wire. */
  truncated: number;
  /** The block timeout of the source's TPACKET_V3 ring (see RingSettings); 0 for TPACKET_V2. */
  blockTimeoutMs: number;
}

export interface SinkStats extends EndpointHealth {
  packets: number;
  bytes: number;
  /** Frames the kernel refused to send. */
  errors: number;
  /** Tunnels: frames cut to fit the path MTU (ERSPAN sets its T bit). */
  truncated: number;
  /** GRE: frames larger than the path MTU, sent as IP fragments. */
  fragmented: number;
}

export interface RuleStats {
  id: string;
  /** Frames matched and handed to the sink. */
  packets: number;
  bytes: number;
  /** Frames larger than the sink's MTU allows: dropped and counted. */
  oversize: number;
  /** Frames matched while the sink was failed. */
  unavailable: number;
}

export interface EngineStats {
  sources: SourceStats[];
  sinks: SinkStats[];
  rules: RuleStats[];
}

export interface InterfaceInfo {
  ifindex: number;
  mtu: number;
  mac: string;
  up: boolean;
}

/**
 * How worker threads compete for the CPU: normal (nice 0), high (nice -10, the
 * default) or realtime (SCHED_FIFO 1). At nice 0 a busy host delays a worker
 * for tens of milliseconds, longer than a ring holds at low rates.
 */
export const WORKER_PRIORITIES = ['normal', 'high', 'realtime'] as const;
export type WorkerPriority = (typeof WORKER_PRIORITIES)[number];

export interface NativeEngine {
  /** Resolves once every worker runs the plan; rejects, changing nothing, if the plan is invalid. */
  apply(plan: Plan): Promise<void>;
  stats(): EngineStats;
  close(): void;
}

/** What identifies a tunnel in its headers; index defaults to the OpenStack rule (see erspanIndexFor). */
export type TunnelHeaderOptions =
  | { kind: 'gre'; key: number }
  | { kind: 'erspan'; session: number; index?: number };

export interface DecodedTunnelPacket {
  kind: 'gre' | 'erspan';
  /** GRE protocol: 0x6558 or 0x88be. */
  protocol: number;
  key?: number;
  sequence?: number;
  erspan?: { vlan: number; cos: number; encap: number; truncated: boolean; session: number; index: number };
  /** The inner Ethernet frame. */
  frame: Buffer;
}

export interface CollectorOptions {
  /** Namespace to listen in; omitted: the current one. */
  netns?: string;
  /** One local address to listen on; omitted: any, IPv4 and IPv6. */
  listenIp?: string;
  /** Accept GRE with this key. */
  key?: number;
  /** Accept ERSPAN with this session id. Neither key nor session: accept every tunnel. */
  session?: number;
  /** Write inner frames to this pcap file ... */
  pcapPath?: string;
  /** ... or send them out of this interface (in toNetns, default netns). */
  toIfname?: string;
  toNetns?: string;
}

export interface CollectorStats {
  /** Every packet the raw sockets delivered. */
  received: number;
  /** Well-formed and of a selected tunnel. */
  accepted: number;
  /** Well-formed, of another tunnel. */
  filtered: number;
  malformed: number;
  /** Malformed packets by the parser's verdict (short, greVersion, greFlags, erspanVersion, ...). */
  malformedBy: Record<string, number>;
  /** Accepted ERSPAN frames marked truncated by the sender. */
  truncated: number;
  /** Frames written to the pcap file or sent out of the interface. */
  written: number;
  outputErrors: number;
  /** Frames too large for the output interface. */
  oversize: number;
}

export interface NativeCollector {
  stats(): CollectorStats;
  /** Stops receiving and flushes the pcap file; stats() stays readable. */
  close(): void;
}

export interface NativeAddon {
  NativeEngine: new (options?: { workers?: number; priority?: WorkerPriority }) => NativeEngine;
  /** Throws with a readable reason (no such interface or netns, no CAP_NET_RAW). */
  probeInterface(ifname: string, netns?: string): InterfaceInfo;
  /** Opens its raw sockets at once (throws a readable reason) and receives on a native thread. */
  NativeCollector: new (options: CollectorOptions) => NativeCollector;
  /** The IP payload a tunnel sink sends for frame; maxInner cuts the frame (and sets ERSPAN's T bit). */
  encapsulate(options: TunnelHeaderOptions & { sequence?: number; maxInner?: number }, frame: Buffer): Buffer;
  /** Decodes a GRE packet (ipv4: an IPv4 packet carrying one); never throws on bad input. */
  parseTunnelPacket(packet: Buffer, options?: { ipv4?: boolean }): DecodedTunnelPacket | { error: string };
  /** OpenStack's ERSPAN index for a tunnel id: its decimal digits read as hex (102 -> 0x102). */
  erspanIndexFor(tunnelId: number): number;
}

function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i += 1) {
    const candidate = join(dir, 'build', 'Release', 'tapas.node');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('the native addon is not built: run `npm run build` (build/Release/tapas.node is missing)');
}

let addon: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  addon ??= createRequire(import.meta.url)(findAddon()) as NativeAddon;
  return addon;
}
