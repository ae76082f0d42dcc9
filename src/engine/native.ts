/**
 * Everything the native addon exports, typed in one place. Only this folder loads it.
 * No C++ exception crosses into JavaScript: every entry point throws a JavaScript
 * Error (a TypeError for input it cannot read) instead.
 */
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

/** What only the AF_PACKET capture backend has to say about a source: its ring. */
export interface PacketSourceStats {
  /** Times the kernel froze the ring's queue (PACKET_STATISTICS tp_freeze_q_cnt). */
  ringFreezes: number;
  /** The block timeout of the source's TPACKET_V3 ring (see RingSettings); 0 for TPACKET_V2. */
  blockTimeoutMs: number;
}

/**
 * A source's counters, the same for every capture backend. ok is false with a
 * reason while the source does not capture: its interface is gone or down, or
 * the plan check refused it (see Plan).
 */
export interface SourceStats extends EndpointHealth {
  packets: number;
  bytes: number;
  /** Frames the kernel captured but had no room for (a full ring): lost. */
  captureDrops: number;
  /** Frames captured shorter than they were on the wire. */
  truncated: number;
  /** AF_PACKET only; absent for a source the plan check refused. */
  packet?: PacketSourceStats;
  /** The bpf data path only (EngineOptions.datapath 'bpf'): how its tc programs are attached. */
  bpf?: BpfSourceStats;
}

/** A source whose rules all run on the bpf data path: packets and bytes are what its hooks saw. */
export interface BpfSourceStats {
  /** 'tcx': tcx links; 'tc': cls_bpf filters on a clsact qdisc; '' while not attached. */
  attach: '' | 'tcx' | 'tc';
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
  /** File sinks only: pcap files opened, and removed to keep rotation.files of them. */
  filesOpened?: number;
  filesRemoved?: number;
}

/**
 * ok: the rule is installed. false, with a reason, when the plan check
 * refused it (a missing or refused source or sink, a duplicate id, a bad VLAN
 * range, a sink that is also a source). A rule whose source or sink fails
 * while running stays ok: their own stats say why, and what the rule could
 * not send is counted as unavailable.
 */
export interface RuleStats extends EndpointHealth {
  /** Frames matched and handed to the sink. */
  packets: number;
  bytes: number;
  /** Frames larger than the sink's MTU allows: dropped and counted. */
  oversize: number;
  /** Frames matched while the sink was failed; on the bpf data path, copies the kernel could not make or send. */
  unavailable: number;
  /** Frames of the rule's direction and VLANs its filter expression took out. */
  filtered: number;
  /** Frames that passed the filter and were not the 1 in sampleRate. */
  sampledOut: number;
  /** Copies sent cut to snaplen (counted in packets too). */
  truncated: number;
  /**
   * With EngineOptions.datapath 'bpf' only: which data path runs the rule,
   * and, for 'packet', why not the kernel's (a tunnel sink, a sink in another
   * network namespace, more VLAN ranges than the program holds).
   */
  datapath?: 'bpf' | 'packet';
  datapathReason?: string;
}

/**
 * What the engine last saw of an interface of `Plan.interfaces`: observed
 * during apply, then about every 500 ms, off the JavaScript thread.
 */
export interface InterfaceStats {
  id: string;
  /** The interface exists in its namespace. */
  present: boolean;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier (IFF_RUNNING). */
  running: boolean;
  /** aa:bb:cc:dd:ee:ff; '' when absent or not an Ethernet interface. */
  mac: string;
  /** 0 when absent. */
  mtu: number;
  /** 0 when absent. */
  ifindex: number;
  /** Why it is not present (no such interface or namespace, not a namespace, refused by the plan check). */
  reason?: string;
  /**
   * Present, and the same interface as this earlier entry of `interfaces`
   * (its id) under another spelling: the same network namespace (by what it
   * is: `/run/netns//N`, a symlink, `/proc/self/root/run/netns/N` are all N)
   * and the same ifindex (an altname is the interface it names). One port
   * registered twice.
   */
  sameAs?: string;
}

export interface EngineStats {
  sources: SourceStats[];
  sinks: SinkStats[];
  rules: RuleStats[];
  interfaces: InterfaceStats[];
}

/**
 * What changed since the previous statsChanges() (the first one: everything).
 * Not full: each list holds [position, stats] of the entries that changed,
 * in lists whose ids are what they were; full: every list, whole (the ids changed).
 */
export type EngineStatsChanges = ({ full: true } & EngineStats) | {
  full: false;
  sources: Array<[number, SourceStats]>;
  sinks: Array<[number, SinkStats]>;
  rules: Array<[number, RuleStats]>;
  interfaces: Array<[number, InterfaceStats]>;
};

/**
 * The AF_PACKET ring every source is captured with: an engine option, the
 * same for every source (the plan says only what to mirror).
 */
export interface RingSettings {
  /**
   * 3 (TPACKET_V3, the default): the kernel hands over whole blocks — few
   * wake-ups, any frame size, but a frame waits for its block to retire (older
   * kernels round that timer up to a jiffy, 4 ms at HZ=250). 2 (TPACKET_V2): every frame
   * at once — lower latency, more wake-ups at low rates, frames longer than a
   * slot truncated and counted.
   */
  version?: 2 | 3;
  /** TPACKET_V2 slot size in bytes, header included: a power of two, 256 up to blockSize (default 2048). */
  frameSize?: number;
  /** Bytes per block: a power of two, 4096 to 1 GiB, at least 64 KiB for V3 (a GRO super-packet must fit). Default 128 KiB. */
  blockSize?: number;
  /** Blocks per source, 2 to 65536 (default 16). */
  blockCount?: number;
  /**
   * How long a partly filled block waits before the kernel hands it over,
   * 0 to 1000 ms. Omitted or 0: 1 ms for up to 32 sources in the plan that
   * opens the ring, then 1 ms more per 32 sources, at most 8 ms (each ring's
   * block timer fires every timeout, traffic or not). A ring keeps its
   * timeout while it runs.
   */
  blockTimeoutMs?: number;
}

export interface NativeEngineOptions {
  /** 1 to 1024 (default 1). */
  workers?: number;
  priority?: WorkerPriority;
  ring?: RingSettings;
}

/**
 * How worker threads compete for the CPU: normal (nice 0), high (nice -10, the
 * default) or realtime (SCHED_FIFO 1). At nice 0 a busy host delays a worker
 * for tens of milliseconds, longer than a ring holds at low rates.
 */
export const WORKER_PRIORITIES = ['normal', 'high', 'realtime'] as const;
export type WorkerPriority = (typeof WORKER_PRIORITIES)[number];

export interface NativeEngine {
  /**
   * Resolves once every worker runs what the plan check accepts and every
   * interface of plan.interfaces has been observed once; refused entries are
   * reported, with their reason, in stats(). Throws (a TypeError), changing
   * nothing, only for a plan it cannot read: wrong types, numbers out of
   * range, invalid interface names.
   */
  apply(plan: Plan): Promise<void>;
  stats(): EngineStats;
  /** For one reader that keeps what it read: converts only what changed since its previous call. */
  statsChanges(): EngineStatsChanges;
  close(): void;
}

/** What identifies a tunnel in its headers; index defaults to the OpenStack rule (see erspanIndexFor). */
export type TunnelHeaderOptions =
  | { kind: 'gre'; key: number }
  | { kind: 'erspan'; session: number; index?: number }
  | { kind: 'erspan3'; session: number; hwid?: number }
  | { kind: 'vxlan'; vni: number };

/** ERSPAN type III's header as decoded (docs/tunnels.md). */
export interface DecodedErspanIII {
  vlan: number; cos: number; bso: number; truncated: boolean; session: number;
  /** 32 bits; units of 100 us when gra is 0. */
  timestamp: number;
  sgt: number; p: boolean; ft: number; hwid: number;
  /** The D bit: 0 (ingress) is TaaS IN, 1 (egress) OUT. */
  direction: 'IN' | 'OUT';
  gra: number; optionalSubheader: boolean; platformId?: number;
}

export interface DecodedTunnelPacket {
  kind: 'gre' | 'erspan' | 'erspan3' | 'vxlan';
  /** GRE protocol: 0x6558, 0x88be or 0x22eb (absent for VXLAN). */
  protocol?: number;
  key?: number;
  sequence?: number;
  erspan?: { vlan: number; cos: number; encap: number; truncated: boolean; session: number; index: number };
  erspan3?: DecodedErspanIII;
  /** VXLAN's 24-bit VNI. */
  vni?: number;
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
  /** Accept ERSPAN (II or III) with this session id. */
  session?: number;
  /** Accept VXLAN with this VNI. None of key, session, vni: accept every tunnel. */
  vni?: number;
  /** VXLAN's UDP port (default 4789); the UDP socket is opened with vni, udpPort, or no selection. */
  udpPort?: number;
  /** Write inner frames to this pcap file (rotated as `rotation` says) ... */
  pcapPath?: string;
  rotation?: PcapRotation;
  /** pcapng: the tunnel as the interface ("vxlan vni 5000"), ERSPAN III's D bit as the direction (D=0 inbound = IN). */
  pcapng?: boolean;
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
  /** Malformed packets by tunnel type, as far as the parser got (gre, erspanII, erspanIII, vxlan). */
  malformedByType: Record<'gre' | 'erspanII' | 'erspanIII' | 'vxlan', number>;
  acceptedByType: Record<'gre' | 'erspanII' | 'erspanIII' | 'vxlan', number>;
  /** Accepted ERSPAN frames marked truncated by the sender. */
  truncated: number;
  /** Frames written to the pcap file or sent out of the interface. */
  written: number;
  /** Their bytes (the inner frames'). */
  writtenBytes: number;
  outputErrors: number;
  /** Frames too large for the output interface. */
  oversize: number;
  /** With pcapPath: pcap files opened, and removed to keep rotation.files of them. */
  filesOpened?: number;
  filesRemoved?: number;
}

/**
 * How a pcap output rotates, as tcpdump's -C, -G and -W (docs/engine.md,
 * "File sinks and rotation"): with size or seconds every file is numbered,
 * FILE0, FILE1, ...; with files COUNT the numbers go round 0..COUNT-1.
 */
export interface PcapRotation {
  /** A new file when the next frame would take this one past size millions of bytes (1-1000000). */
  size?: number;
  /** A new file for the first frame this many seconds after the current one was opened (1-31622400). */
  seconds?: number;
  /** Keep at most this many files (1-1000000); needs size or seconds. */
  files?: number;
}

export interface NativeCollector {
  stats(): CollectorStats;
  /** Stops receiving and flushes the pcap file; stats() stays readable. */
  close(): void;
}

/** The bpf data path's loader (native/bpf_loader.h): the plan's part it runs, already resolved. */
export interface NativeBpfPlan {
  sources: Array<{ id: string; ifname: string; netns?: string }>;
  rules: Array<{
    id: string; sourceId: string; sinkNetns?: string; direction: 'IN' | 'OUT' | 'BOTH'; vlans?: Array<[number, number]>;
    /** A tap service port in the source's namespace, or: */
    sinkIfname?: string;
    /** a tunnel to this IPv4 collector, routed by sinkNetns (the source's namespace): GRE with greKey, or ERSPAN II (session, index). */
    tunnelRemote?: string; greKey?: number; erspanSession?: number; erspanIndex?: number;
  }>;
}

export interface NativeBpfStats {
  sources: Array<{ id: string; ok: boolean; reason?: string; attach?: 'tcx' | 'tc'; packets: number; bytes: number }>;
  rules: Array<{ id: string; ok: boolean; reason?: string; packets: number; bytes: number; errors: number; oversize: number; truncated: number; fragmented: number }>;
}

export interface NativeBpf {
  /** Attaches, detaches and fills the rules map off the JavaScript thread. */
  apply(plan: NativeBpfPlan): Promise<void>;
  /** Per-CPU counters summed; after close, the final ones. */
  stats(): NativeBpfStats;
  /** Detaches every program (tcx links closed, cls_bpf filters deleted) and unloads them. */
  close(): void;
}

export interface NativeAddon {
  /** Loads the tc programs at once; throws why BPF cannot be used (no privileges, no BPF in the kernel). */
  NativeBpf: new (options: { objectPath: string; attach?: 'auto' | 'tcx' | 'tc' }) => NativeBpf;
  /**
   * Throws a TypeError for invalid options, and an Error when the engine
   * cannot start ("cannot start the engine: epoll_create1: Too many open files").
   */
  NativeEngine: new (options?: NativeEngineOptions) => NativeEngine;
  /**
   * One look through a packet socket (whose close waits ~12 ms for an RCU grace
   * period): throws with a readable reason (no such interface or netns, no
   * CAP_NET_RAW). To follow interfaces, put them in Plan.interfaces instead.
  /** Opens its raw sockets at once (throws a readable reason) and receives on a native thread. */
  NativeCollector: new (options: CollectorOptions) => NativeCollector;
  /** The IP payload a tunnel sink sends for frame; maxInner cuts the frame (and sets ERSPAN's T bit). */
  encapsulate(options: TunnelHeaderOptions & { sequence?: number; maxInner?: number; direction?: 'IN' | 'OUT'; timestamp?: number },
    frame: Buffer): Buffer;
  /** Decodes a GRE packet (ipv4: an IPv4 packet carrying one; vxlan: a UDP payload); never throws on bad input. */
  parseTunnelPacket(packet: Buffer, options?: { ipv4?: boolean; vxlan?: boolean }): DecodedTunnelPacket | { error: string };
  /** OpenStack's ERSPAN index for a tunnel id: its decimal digits read as hex (102 -> 0x102). */
  erspanIndexFor(tunnelId: number): number;
  /** Compiles a pcap-filter expression as the engine will (libpcap, Ethernet): null, or libpcap's message. */
  compileFilter(expression: string): string | null;
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

/** The tc programs, compiled by clang next to the addon (binding.gyp's mirror_bpf action). */
export function bpfObjectPath(): string {
  return join(dirname(findAddon()), 'mirror.bpf.o');
}

export function loadAddon(): NativeAddon {
  addon ??= createRequire(import.meta.url)(findAddon()) as NativeAddon;
  return addon;
}
