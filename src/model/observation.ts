/**
 * The two narrow interfaces between the control plane and an agent, and what
 * crosses them. An agent hears of its host's desired state through a
 * DesiredStateSource and reports what its data path does through an
 * ObservationSink; nothing else connects them. The embedded daemon implements
 * both in-process (service/desired-state.ts, service/observations.ts); cluster
 * mode carries them over etcd (src/cluster).
 */
import type { Port, ResourceKind, TapFlow, TapMirror, TapService } from './resources.js';

/**
 * What users asked for that concerns one host: its ports, and every tap
 * service, tap flow and tap mirror with a port on it, plus the ports on
 * other hosts those refer to (so the agent knows where the far end lives).
 * Resources being deleted are left out: the agent lets go of them.
 */
export interface DesiredState {
  /** Grows with every change of the desired state; an agent reports the revision it applied. */
  revision: number;
  ports: Port[];
  tapServices: TapService[];
  tapFlows: TapFlow[];
  tapMirrors: TapMirror[];
  /** Cluster mode: how this host's tunnels to and from other hosts' agents are addressed. */
  tunnels?: TunnelDirectory;
}

/**
 * What an agent needs to reach tap services on other hosts and to terminate
 * the tunnels into its own (cluster mode; the embedded daemon has none).
 */
export interface TunnelDirectory {
  /** The GRE key of each tap service of this desired state: the tunnel into it carries that key. */
  keys: Record<string, number>;
  /** The underlay address of each other host this host sends to (its agent's --underlay-ip). */
  underlay: Record<string, string>;
}

export interface DesiredStateSource {
  /** The desired state of a host right now. */
  snapshot(host: string): DesiredState;
  /** Calls listener after every change that may concern the host; returns the unsubscribe. */
  subscribe(host: string, listener: () => void): () => void;
}

/** What a data path counted for one resource on one host (and, for a tap flow's or tap mirror's rules, which path counted it). */
export interface Counters extends RuleDatapath {
  packets: number;
  bytes: number;
  /** Frames lost or refused, by cause (oversize, unavailable, capture, send_errors, ...). */
  drops: Record<string, number>;
  /**
   * Tap flows and tap mirrors with a filter, sample_rate or snaplen: what
   * those stages took out or cut (never drops); absent while all are 0.
   */
  selection?: Selection;
}

/** What a rule's own stages did: frames its filter took out, frames sampling skipped, copies cut to the snaplen. */
export interface Selection {
  filtered: number;
  sampled_out: number;
  truncated: number;
}

/** Two counts of what the rules' stages took out, added up. */
export function addSelection(a: Selection | undefined, b: Selection): Selection {
  return {
    filtered: (a?.filtered ?? 0) + b.filtered,
    sampled_out: (a?.sampled_out ?? 0) + b.sampled_out,
    truncated: (a?.truncated ?? 0) + b.truncated,
  };
}

/**
 * Which data path runs a tap flow's or tap mirror's rules: the kernel's (tc
 * eBPF, agents started with --datapath bpf) or AF_PACKET's.
 */
export interface RuleDatapath {
  /** Absent from a part whose data path did not say, or from a sum of parts that run on different paths. */
  datapath?: 'bpf' | 'packet';
  /** With datapath 'packet' on an agent that runs bpf: why the kernel path cannot serve the rule (a filter, a file sink, ...). */
  datapath_reason?: string;
}

/** Parts' data paths as one: the path they all run on and their reasons; nothing where they differ (each part says). */
export function datapathOf(parts: readonly RuleDatapath[]): RuleDatapath {
  const paths = new Set(parts.map((part) => part.datapath));
  const [datapath] = paths;
  if (paths.size !== 1 || datapath === undefined) return {};
  const reasons = [...new Set(parts.flatMap((part) => (part.datapath_reason === undefined ? [] : [part.datapath_reason])))];
  return { datapath, ...(reasons.length === 0 ? {} : { datapath_reason: reasons.join('; ') }) };
}

/** What the data path sees of a port's interface. */
export interface InterfaceState {
  present: boolean;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier (IFF_RUNNING). */
  running: boolean;
  mac: string | null;
  mtu: number | null;
}

/** The state a host reports for one resource. */
export type ObservedStatus = 'ACTIVE' | 'DOWN' | 'ERROR';

export interface Observation {
  kind: ResourceKind;
  id: string;
  status: ObservedStatus;
  /** Why it is ERROR or DOWN; null when nothing is wrong. */
  reason: string | null;
  counters?: Counters;
  /** Tap mirrors: counters per direction (IN, OUT). */
  parts?: Record<string, Counters>;
  /** Ports: their interface. */
  interface?: InterfaceState;
}

/**
 * One host's complete account of what its data path runs, after applying
 * `revision` of its desired state. A resource the host reported before and
 * leaves out now has been released by it.
 */
export interface HostReport {
  host: string;
  revision: number;
  observations: Observation[];
}

/** What an agent says about itself (Neutron's agent `configurations`). */
export interface AgentInfo {
  host: string;
  /** The data path it drives: packet or bpf. */
  datapath: string;
  /** Where other hosts reach its tunnels, in cluster mode. */
  underlay_ip?: string;
}

/**
 * What changed since the host's previous report or update, at the same
 * revision: the observations that differ (new ones too), everything else as
 * it was. It releases nothing: a release is a complete report's.
 */
export interface HostUpdate {
  host: string;
  revision: number;
  changed: Observation[];
}

export interface ObservationSink {
  /** The agent is up and serves host; its reports follow. */
  register(agent: AgentInfo): void;
  report(report: HostReport): void;
  /**
   * Optional: a report of only what changed, which an agent sends instead of
   * a complete report when its desired state did not change since its last
   * complete report (every agent interval, changed or not: a heartbeat).
   */
  update?(update: HostUpdate): void;
  /** The agent stops: its observations are gone with it. */
  unregister(host: string): void;
}
