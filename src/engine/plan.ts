/**
 * The plan: a complete, declarative description of what must be mirrored right
 * now. It is the one object that crosses from the control plane to the data
 * path; `Engine.apply` diffs it against what runs.
 */

/** TaaS direction, from the workload's point of view: IN = into it, OUT = from it. */
export type Direction = 'IN' | 'OUT' | 'BOTH';
export const DIRECTIONS: readonly Direction[] = ['IN', 'OUT', 'BOTH'];

export interface RingSettings {
  /**
   * 3 (TPACKET_V3, the default): the kernel hands over whole blocks — few
   * wake-ups, any frame size, but a frame waits for its block to retire (older
   * kernels round that timer up to a jiffy, 4 ms at HZ=250). 2 (TPACKET_V2): every frame
   * at once — lower latency, more wake-ups at low rates, frames longer than a
   * slot truncated and counted.
   */
  version?: 2 | 3;
  /** TPACKET_V2 slot size in bytes, header included (default 2048). */
  frameSize?: number;
  /** Bytes per block: a power of two, at least 64 KiB (a GRO super-packet must fit). */
  blockSize?: number;
  blockCount?: number;
  /**
   * How long a partly filled block waits before the kernel hands it over.
   * Omitted: 1 ms for up to 32 sources in the plan that opens the ring, then
   * 1 ms more per 32 sources, at most 8 ms (each ring's block timer fires
   * every timeout, traffic or not). A ring keeps its timeout while it runs.
   */
  blockTimeoutMs?: number;
}

/** An interface whose traffic is captured once and offered to every rule naming it. */
export interface SourcePlan {
  id: string;
  ifname: string;
  /** Name under /run/netns or a path such as /proc/PID/ns/net; omitted: the engine's own. */
  netns?: string;
  ring?: RingSettings;
}

/** A local interface that receives the copies (a tap service port). */
export interface PortSinkPlan {
  id: string;
  kind: 'port';
  ifname: string;
  netns?: string;
}

/**
 * A GRE tunnel to a remote collector (TaaS mirror_type `gre`): key = the
 * direction's tunnel id, the original Ethernet frame inside (protocol 0x6558).
 * Sent from a raw IP socket in `netns`, routed by that namespace.
 */
export interface GreSinkPlan {
  id: string;
  kind: 'gre';
  /** IPv4 or IPv6 address of the collector. */
  remoteIp: string;
  /** 32-bit GRE key. */
  key: number;
  netns?: string;
  /** Cut frames that exceed the path MTU instead of letting the kernel fragment them (the default). */
  truncate?: boolean;
}

/**
 * An ERSPAN type II tunnel (TaaS mirror_type `erspanv1`): GRE with sequence
 * numbers, protocol 0x88BE, and the 8-byte ERSPAN II header. Frames above the
 * path MTU are truncated with the T bit set.
 */
export interface ErspanSinkPlan {
  id: string;
  kind: 'erspan';
  remoteIp: string;
  /** Session id, 0-1023: the direction's tunnel id. */
  session: number;
  /**
   * 20-bit index. Omitted: the session id read as hexadecimal digits
   * (102 -> 0x102), as OpenStack's OVS and OVN drivers emit it.
   */
  index?: number;
  netns?: string;
}

export type TunnelSinkPlan = GreSinkPlan | ErspanSinkPlan;

/**
 * A tap service whose port is on another host: copies travel there through
 * a tunnel between agents (cluster mode). A data path that cannot reach other
 * hosts reports this sink, and the rules into it, as failed.
 */
export interface HostSinkPlan {
  id: string;
  kind: 'host';
  /** The host of the tap service's port (binding:host_id). */
  host: string;
}

export type SinkPlan = PortSinkPlan | TunnelSinkPlan | HostSinkPlan;

/** Frames of one source, in one direction, optionally of some VLANs, to one sink. */
export interface RulePlan {
  id: string;
  sourceId: string;
  sinkId: string;
  direction: Direction;
  /** Inclusive VLAN id ranges; omitted or empty: every frame. Untagged frames never match a filter. */
  vlans?: Array<[number, number]>;
}

export interface Plan {
  sources: SourcePlan[];
  sinks: SinkPlan[];
  rules: RulePlan[];
}

