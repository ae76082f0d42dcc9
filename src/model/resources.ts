/**
 * The resources of the TaaS API as the control plane stores them. Field names
 * are the API's own (snake_case), so a row, a service object and a response
 * body need no renaming between layers.
 */
import type { Direction } from '../engine/plan.js';
import type { RecordOf, ResourceKind, STATUSES } from './contract.js';

export type { Direction };
export { MIRROR_TYPES, RESOURCE_KINDS, type MirrorType, type ResourceKind } from './contract.js';
export { ERSPAN_MAX_SESSION_ID, GRE_MAX_KEY, VXLAN_MAX_VNI } from './formats.js';

/**
 * The TaaS status lifecycle: created DOWN, ACTIVE once the data path runs it,
 * ERROR when it cannot (status_reason says why), PENDING_DELETE between an
 * accepted delete and the data path letting go of it.
 */
export type Status = (typeof STATUSES)[number];

/** Tunnel id per direction of a tap mirror (a GRE key, an ERSPAN session id or a VXLAN VNI); BOTH excludes IN and OUT. */
export interface MirrorDirections {
  IN?: number;
  OUT?: number;
  BOTH?: number;
}

/**
 * What every resource records of what a user asked for, read off the resource
 * contract (model/contract.ts). Nothing here is observed: statuses, reasons
 * and MAC addresses come from the agents' observations (see
 * model/observation.ts) and are joined in for the API.
 */
export type Port = RecordOf<'port'>;
export type TapService = RecordOf<'tap_service'>;
export type TapFlow = RecordOf<'tap_flow'>;
export type TapMirror = RecordOf<'tap_mirror'>;

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
