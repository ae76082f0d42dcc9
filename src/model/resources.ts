/**
 * The resources of the TaaS API as the control plane stores them. Field names
 * are the API's own (snake_case), so a row, a service object and a response
 * body need no renaming between layers.
 */
import type { Direction } from '../engine/plan.js';

export type { Direction };

/**
 * The TaaS status lifecycle: created DOWN, ACTIVE once the data path runs it,
 * ERROR when it cannot (status_reason says why), PENDING_DELETE between an
 * accepted delete and the data path letting go of it.
 */
export type Status = 'DOWN' | 'ACTIVE' | 'ERROR' | 'PENDING_DELETE';

export type MirrorType = 'gre' | 'erspanv1';
export const MIRROR_TYPES: readonly MirrorType[] = ['erspanv1', 'gre'];

/** Tunnel id per direction of a tap mirror (a GRE key or an ERSPAN session id). */
export interface MirrorDirections {
  IN?: number;
  OUT?: number;
}

/**
 * What every resource records of what a user asked for. Nothing here is
 * observed: statuses, reasons and MAC addresses come from the agents'
 * observations (see model/observation.ts) and are joined in for the API.
 */
interface Owned {
  id: string;
  project_id: string;
  name: string;
  description: string;
  created_at: string;
  updated_at: string;
  /** A delete was accepted: the resource waits for every involved host to let go of it (PENDING_DELETE). */
  deleting: boolean;
}

export interface Port extends Owned {
  /** The host-side interface facing the workload. */
  interface: string;
  /** Network namespace of the interface (name under /run/netns or a path); null: the daemon's own. */
  netns: string | null;
  /** binding:host_id: the host whose agent captures this interface. */
  host_id: string;
}

export interface TapService extends Owned {
  port_id: string;
}

export interface TapFlow extends Owned {
  tap_service_id: string;
  source_port: string;
  direction: Direction;
  vlan_filter: string | null;
}

export interface TapMirror extends Owned {
  port_id: string;
  directions: MirrorDirections;
  remote_ip: string;
  mirror_type: MirrorType;
}

export type ResourceKind = 'port' | 'tap_service' | 'tap_flow' | 'tap_mirror';
export const RESOURCE_KINDS: readonly ResourceKind[] = ['port', 'tap_service', 'tap_flow', 'tap_mirror'];

export interface ResourceOf {
  port: Port;
  tap_service: TapService;
  tap_flow: TapFlow;
  tap_mirror: TapMirror;
}

/** The status a client sees, derived from the observations of every host a resource involves. */
export interface Lifecycle {
  status: Status;
  /** Why the resource is in ERROR (or DOWN for a known cause); null when nothing is wrong. */
  status_reason: string | null;
}

/** Ports also show what their interface looks like. */
export interface PortObservedAttributes {
  mac_address: string | null;
}

/** A resource as clients see it: what was asked for, with its derived status. */
export type Shown<K extends ResourceKind> = ResourceOf[K] & Lifecycle & (K extends 'port' ? PortObservedAttributes : unknown);

/** ERSPAN type II carries a 10-bit session id. */
export const ERSPAN_MAX_SESSION_ID = 1023;
/** A GRE key is 32 bits. */
export const GRE_MAX_KEY = 0xffff_ffff;
