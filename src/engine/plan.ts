/**
 * The plan: a complete, declarative description of what must be mirrored right
 * now, and of the interfaces whose state the control plane wants to know. It
 * is the one object that crosses from the control plane to the data path;
 * `Engine.apply` diffs it against what runs. It says nothing about how a
 * backend captures (AF_PACKET rings are engine options: EngineOptions.ring).
 */

import type { PcapRotation } from './native.js';

/** TaaS direction, from the workload's point of view: IN = into it, OUT = from it. */
export type Direction = 'IN' | 'OUT' | 'BOTH';
export const DIRECTIONS: readonly Direction[] = ['IN', 'OUT', 'BOTH'];

/** An interface whose traffic is captured once and offered to every rule naming it. */
export interface SourcePlan {
  id: string;
  ifname: string;
  /** Name under /run/netns or a path such as /proc/PID/ns/net; omitted: the engine's own. */
  netns?: string;
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
  /**
   * Number the packets too (GRE flags K and S, RFC 2890): the tunnels between
   * tapas agents do, and every capture ring drops packets of that signature
   * (see docs/tunnels.md), so that they are never mirrored again.
   */
  sequence?: boolean;
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

/**
 * An ERSPAN type III tunnel (TaaS mirror_type `erspanv2`): GRE with sequence
 * numbers, protocol 0x22EB, and the 12-byte type III header with a timestamp
 * (100 us units), the hardware id and, per frame, the direction bit D
 * (0 = ingress = TaaS IN, 1 = egress = OUT), so that one session can carry
 * both directions. Frames above the path MTU are truncated with T set.
 */
export interface Erspan3SinkPlan {
  id: string;
  kind: 'erspan3';
  remoteIp: string;
  /** Session id, 0-1023: the direction's tunnel id. */
  session: number;
  /** Hardware id, 0-63 (default 0). */
  hwid?: number;
  netns?: string;
}

/**
 * A VXLAN tunnel (TaaS mirror_type `vxlan`, the AWS/Azure collectors'
 * format): the frame behind an 8-byte VXLAN header (flag I, VNI), in UDP to
 * `port` (default 4789), sent from a UDP socket in `netns`. VXLAN has no T
 * bit: frames above the path MTU are cut and counted as truncated.
 */
export interface VxlanSinkPlan {
  id: string;
  kind: 'vxlan';
  remoteIp: string;
  /** 24-bit VNI: the direction's tunnel id. */
  vni: number;
  /** The collector's UDP port, 1-65535 (default 4789). */
  port?: number;
  netns?: string;
}

export type TunnelSinkPlan = GreSinkPlan | ErspanSinkPlan | Erspan3SinkPlan | VxlanSinkPlan;

/**
 * A tap service whose port is on another host: copies travel there through
 * a tunnel between agents (cluster mode): GRE with flags K and S, the key of
 * the tap service, to the peer agent's underlay address, sent from the
 * engine's own namespace. Without an address and a key (the embedded daemon
 * has neither) the sink, and the rules into it, are reported failed.
 */
export interface HostSinkPlan {
  id: string;
  kind: 'host';
  /** The host of the tap service's port (binding:host_id). */
  host: string;
  /** Where the peer agent terminates its tunnels (its --underlay-ip). */
  remoteIp?: string;
  /** The GRE key of the tap service. */
  key?: number;
}

/**
 * Where tunnels from peer agents end on this host: GRE packets with this key
 * (from any address of the engine's namespace) are decapsulated and their
 * inner frames sent, unchanged and in order, out of the port sink `sinkId`.
 */
export interface TerminationPlan {
  /** The tap service's id. */
  id: string;
  key: number;
  sinkId: string;
}

/**
 * pcap files that rotate as tcpdump's -C, -G and -W say (`rotation`; see
 * docs/engine.md, "File sinks"): what `tapas mirror -w` writes. Each record
 * is the frame as it was on the wire (a VLAN tag the kernel moved into
 * metadata put back), with the kernel's capture time. Only the CLI makes
 * one: the agent's plans never name a file.
 */
export interface FileSinkPlan {
  id: string;
  kind: 'file';
  /** The file, or with a rotation the base of the numbered files (PATH0, PATH1, ...). */
  path: string;
  rotation?: PcapRotation;
  /**
   * pcapng instead of classic pcap: one interface block per source (IF or
   * IF@NETNS) and each frame's direction in epb_flags, the workload's:
   * inbound = IN, outbound = OUT.
   */
  pcapng?: boolean;
}

export type SinkPlan = PortSinkPlan | TunnelSinkPlan | HostSinkPlan | FileSinkPlan;

/** Frames of one source, in one direction (BOTH: either), optionally of some VLANs, to one sink. */
export interface RulePlan {
  id: string;
  sourceId: string;
  sinkId: string;
  direction: Direction;
  /** Inclusive VLAN id ranges; omitted or empty: every frame. Untagged frames never match a filter. */
  vlans?: Array<[number, number]>;
  /**
   * Then, in this order (docs/engine.md): a pcap-filter expression (tcpdump
   * syntax) the frame as it was on the wire, VLAN tag included, must match
   * (a rule whose filter libpcap does not compile is refused, with its
   * message); one frame in `sampleRate` (deterministic: the first of every
   * N, per rule); and only the first `snaplen` bytes (64-262144) are sent.
   */
  filter?: string;
  sampleRate?: number;
  snaplen?: number;
}

/** A port whose state the control plane wants to know, mirrored or not (see InterfaceStats). */
export interface InterfacePlan {
  id: string;
  ifname: string;
  netns?: string;
}

/**
 * A plan the engine cannot run in full is run in part: every entry the plan
 * check accepts runs, and each refused source, sink, rule or interface is
 * reported in the stats with ok false (interfaces: present false) and the
 * reason. Refused are:
 * - an entry with an empty id, or whose id another entry of its list has too
 *   (all of them);
 * - a sink of unknown kind, a tunnel without a remote IP literal, a file
 *   sink whose rotation cannot run (files without size or seconds) or with
 *   the same path as an earlier file sink ("the same file as sink 'ID'");
 * - a rule naming a source or sink that is missing or refused, or with a VLAN
 *   range whose low end is above its high end;
 * - a source that is the same interface as an earlier source, or a port
 *   sink the same interface as an earlier port sink (it would capture, or
 *   send, everything twice), and every rule from or into it, with the reason
 *   "the same interface as source 'ID' (spelled 'IF' in network namespace
 *   'NS')" ("sink 'ID'" for sinks);
 * - a port sink that is the same interface as a source (the source would
 *   capture the copies and send them again), and every rule into it, with
 *   the reason "destination port 'IF' is also a mirrored source" (" in
 *   network namespace 'NS'" before "is" when the sink names one). The source
 *   and its other rules run. (native/plan.h states the rule for the API layer.)
 *
 * An interface is what it is, not how it is spelled: its namespace (omitted =
 * the engine's own, a name N = /run/netns/N, a path = that file) compared as
 * the namespace itself (so /run/netns//N, /run/netns/./N, a symlink to it and
 * /proc/self/root/run/netns/N are N), or as a normalized path while it cannot
 * be looked up; the interface by its ifindex there (an altname is the
 * interface it names), or by name while it is not found. The engine looks
 * again as interfaces and namespaces come and go, and runs the plan anew when
 * that changes what is refused (docs/engine.md). A watched interface spelled
 * twice is reported present, with InterfaceStats.sameAs.
 *
 * Only a plan that cannot be read is refused as a whole, with a TypeError:
 * wrong types, numbers that are not integers in their range (keys 0 to
 * 2^32-1, ERSPAN session 0-1023, index 0 to 2^20-1 and hwid 0-63, VXLAN vni
 * 0 to 2^24-1 and port 1-65535, VLAN ids 1-4094), or
 * interface names the kernel would not accept (1-15 bytes, no NUL, '/', ':'
 * or whitespace).
 */
export interface Plan {
  sources: SourcePlan[];
  sinks: SinkPlan[];
  rules: RulePlan[];
  /** Interfaces to observe; stats().interfaces reports them in this order. */
  interfaces?: InterfacePlan[];
  /** Tunnels from peer agents into local tap services (cluster mode). */
  terminations?: TerminationPlan[];
}

