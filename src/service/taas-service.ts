/**
 * The service layer: what a request may do and what it means. Semantic
 * validation (the API's schemas have already checked shapes and types),
 * ownership, quotas, conflicts and loops, cascades and the delete half of the
 * status lifecycle. Every change is one store transaction, committed before
 * the method returns; the desired-state feed is then told that it changed.
 * What clients see of a resource joins the record with the status derived
 * from the agents' observations (status.ts).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';

import { canonicalIpAddress, remoteAddressReason } from '../model/ip-address.js';
import { recordFields, VXLAN_DEFAULT_PORT, type CreateInput, type MirrorType, type RecordOf } from '../model/contract.js';
import { isUuid } from '../model/formats.js';
import { canonicalNetns } from '../model/netns.js';
import {
  type MirrorDirections, type Port, type ResourceKind, type ResourceOf, type Shown,
  type TapFlow, type TapMirror, type TapService,
} from '../model/resources.js';
import { timestamp, UniqueViolation, type Snapshot, type Store } from '../store/store.js';
import { canSee, canWrite, isAdmin, type RequestContext } from './context.js';
import type { DesiredStateFeed } from './desired-state.js';
import { BadRequest, Conflict, invalidInput, NotFound, PolicyNotAuthorized } from './errors.js';
import { checkQuotaLimit, isQuotaResource, Quotas, type QuotaLimits } from './quotas.js';
import type { ObservationBook } from './observations.js';
import { StatusView } from './status.js';
import { findOverlappingFlow } from './topology.js';

/** Updatable attributes that change what the data path runs: an update of one is a new desired state. */
const DATA_PATH_ATTRIBUTES = new Set(['packet_filter', 'snaplen', 'sample_rate']);

interface Owned {
  project_id?: string;
  tenant_id?: string;
}

/** An update's attributes as record fields (store columns: a tap flow's `filter` is `packet_filter`). */
export interface AttributeChanges {
  name?: string;
  description?: string;
  [column: string]: unknown;
}

export interface DeleteOutcome {
  /** True when a host may still carry something of it: the rows wait in PENDING_DELETE until released. */
  pending: boolean;
}

// Children before parents, so a purge never takes along a row that some host still carries.
const PURGE_ORDER: readonly ResourceKind[] = ['tap_flow', 'tap_mirror', 'tap_service', 'port'];

const NOT_FOUND: Record<ResourceKind, { type: string; message: (id: string) => string }> = {
  port: { type: 'PortNotFound', message: (id) => `Port ${id} could not be found.` },
  tap_service: { type: 'TapServiceNotFound', message: (id) => `Tap Service ${id} does not exist` },
  tap_flow: { type: 'TapFlowNotFound', message: (id) => `Tap Flow ${id} does not exist` },
  tap_mirror: { type: 'TapMirrorNotFound', message: (id) => `Tap Mirror ${id} does not exist` },
};

export interface ServiceOptions {
  /**
   * The host a port is bound to when its create names none (binding:host_id).
   * None in cluster mode: a port must name its host.
   */
  hostId?: string;
  quotas: QuotaLimits;
  /** Told after every committed change of the desired state. */
  desired: DesiredStateFeed;
  /** What the agents observe: statuses are derived from it, deletes complete by it. */
  observations: ObservationBook;
}

export class TaasService {
  readonly quotas: Quotas;
  private readonly observations: ObservationBook;
  /** The desired-state revision at which each pending delete was accepted, by `kind/id`. */
  private readonly deletedAt = new Map<string, number>();
  private readonly purged = new EventEmitter();
  private lastStatusView: { ports: readonly Port[]; services: readonly TapService[]; view: StatusView } | undefined;
  /** Per kind and project, a member's share of shownAll, and of which. */
  private readonly projectLists = new Map<string, { all: readonly object[]; visible: readonly object[] }>();
  /** Per kind, the resources with their statuses as last derived, and from what. */
  private readonly shown = new Map<ResourceKind, {
    records: ReadonlyArray<ResourceOf[ResourceKind]>; ports: readonly Port[]; services: readonly TapService[]; key: string;
    shown: ReadonlyArray<Shown<ResourceKind>>;
  }>();

  constructor(
    private readonly store: Store,
    private readonly options: ServiceOptions,
  ) {
    this.quotas = new Quotas(store, options.quotas);
    this.observations = options.observations;
    this.purged.setMaxListeners(0);
    options.observations.onChange(() => this.completeDeletes());
  }

  // ---- reads ----

  /** Every resource of a kind the caller may see, oldest first, with its status. Shared and frozen: copy to change. */
  list<K extends ResourceKind>(kind: K, context: RequestContext): Array<Shown<K>> {
    const all = this.shownAll(kind);
    if (isAdmin(context)) return all;
    // A project's share, the same array while the whole is (a reader may key on it).
    const key = `${kind}/${context.projectId}`;
    const known = this.projectLists.get(key);
    if (known?.all === all) return known.visible as Array<Shown<K>>;
    const visible = Object.freeze(all.filter((resource) => resource.project_id === context.projectId)) as Array<Shown<K>>;
    if (this.projectLists.size >= 256) this.projectLists.clear();
    this.projectLists.set(key, { all, visible });
    return visible;
  }

  /**
   * Every resource of a kind with its status, derived again only when the
   * records or what statuses derive from (ObservationBook.statusKey) changed;
   * a resource whose record and status are what they were is the same object
   * as before (so its view is too).
   */
  private shownAll<K extends ResourceKind>(kind: K): Array<Shown<K>> {
    const records = this.store.list(kind);
    const ports = this.store.list('port');
    const services = this.store.list('tap_service');
    const key = this.observations.statusKey();
    const last = this.shown.get(kind);
    if (last && last.records === records && last.ports === ports && last.services === services && last.key === key) {
      return last.shown as unknown as Array<Shown<K>>;
    }
    const view = this.statusView(ports, services);
    const before = new Map(last?.shown.map((shown, index) => [last.records[index]!, shown]));
    const shown = Object.freeze(records.map((record) => {
      const fresh = view.show(kind, record);
      const previous = before.get(record) as (Shown<K> & { mac_address?: string | null }) | undefined;
      return previous && previous.status === fresh.status && previous.status_reason === fresh.status_reason
        && previous.mac_address === (fresh as { mac_address?: string | null }).mac_address ? previous : Object.freeze(fresh);
    })) as Array<Shown<K>>;
    this.shown.set(kind, { records, ports, services, key, shown: shown as unknown as ReadonlyArray<Shown<ResourceKind>> });
    return shown;
  }

  get<K extends ResourceKind>(kind: K, context: RequestContext, id: string): Shown<K> {
    return this.statusView().show(kind, this.visible(kind, context, id));
  }

  /** Every resource with its status, whoever owns it (the operator's metrics and stats). */
  everything(): { ports: Array<Shown<'port'>>; tapServices: Array<Shown<'tap_service'>>; tapFlows: Array<Shown<'tap_flow'>>; tapMirrors: Array<Shown<'tap_mirror'>> } {
    return {
      ports: this.shownAll('port'),
      tapServices: this.shownAll('tap_service'),
      tapFlows: this.shownAll('tap_flow'),
      tapMirrors: this.shownAll('tap_mirror'),
    };
  }

  /** Where the ports are, as of these lists: kept while the store hands out the same (unchanged) lists. */
  private statusView(ports = this.store.list('port'), services = this.store.list('tap_service')): StatusView {
    const last = this.lastStatusView;
    if (last && last.ports === ports && last.services === services) return last.view;
    const view = new StatusView(ports, services, this.observations);
    this.lastStatusView = { ports, services, view };
    return view;
  }

  // ---- creates ----

  createPort(context: RequestContext, input: CreateInput<'port'>): Shown<'port'> {
    // Registering a host interface decides what the daemon (root) may capture:
    // an operator's job, like binding a VM's port. Members use the ports given to them.
    this.requireAdmin(context, 'create_port');
    // The schema checked the formats (interface name, netns); what is left is what they mean here.
    const projectId = this.owningProject(context, input);
    // One spelling per namespace (`/run/netns//NS/` is NS): stored and compared canonical.
    const spelled = input.netns ? { ...input, netns: canonicalNetns(input.netns) } : input;
    const hostId = input.host_id ?? this.options.hostId;
    if (hostId === undefined) {
      throw invalidInput('binding:host_id', 'the daemon runs in cluster mode: a port names the host whose agent captures it');
    }
    const port: Port = { ...this.newRecord('port', projectId, spelled), host_id: hostId };
    return this.insert('port', port, () => {
      const existing = this.store.list('port')
        .find((p) => p.host_id === port.host_id && p.interface === port.interface
          && (p.netns === null ? null : canonicalNetns(p.netns)) === port.netns);
      if (existing) {
        throw new Conflict('PortInterfaceInUse', `Interface ${describeInterface(port)} is already registered as port ${existing.id}.`);
      }
    });
  }

  createTapService(context: RequestContext, input: CreateInput<'tap_service'>): Shown<'tap_service'> {
    this.requireWriter(context, 'create_tap_service');
    const projectId = this.owningProject(context, input);
    const portId = this.reference(input.port_id);
    const service: TapService = { ...this.newRecord('tap_service', projectId, input), port_id: portId };
    return this.insert('tap_service', service, () => {
      const port = this.usablePort(context, portId, 'InvalidDestinationPort', 'Destination Port');
      const existing = this.store.listWhere('tap_service', 'port_id', port.id)[0];
      if (existing) {
        throw new Conflict('TapServicePortInUse',
          `Port ${port.id} is already the destination of ${canSee(context, existing) ? `tap service ${existing.id}` : 'a tap service of another project'}; `
          + 'a port receives one service\'s copies.');
      }
      this.ensureNotMirrored(port.id);
    });
  }

  createTapFlow(context: RequestContext, input: CreateInput<'tap_flow'>): Shown<'tap_flow'> {
    this.requireWriter(context, 'create_tap_flow');
    const projectId = this.owningProject(context, input);
    const serviceId = this.reference(input.tap_service_id);
    const sourcePortId = this.reference(input.source_port);
    const flow: TapFlow = { ...this.newRecord('tap_flow', projectId, input), tap_service_id: serviceId, source_port: sourcePortId };
    return this.insert('tap_flow', flow, () => {
      // Another project's tap service does not exist for a non-admin.
      const service = this.visible('tap_service', context, serviceId);
      if (service.deleting) {
        throw new Conflict('TapServiceBeingDeleted', `Tap Service ${serviceId} is being deleted.`);
      }
      this.usablePort(context, sourcePortId, 'InvalidSourcePort', 'Source Port');
      if (service.port_id === sourcePortId) {
        throw new Conflict('TapFlowLoop',
          `Port ${sourcePortId} is the destination of tap service ${serviceId}: mirroring it into that service would copy the copies.`);
      }
      this.ensureNotDestination(sourcePortId, 'the source of a tap flow');
      const overlapping = findOverlappingFlow(flow, this.store.listWhere('tap_flow', 'source_port', sourcePortId));
      if (overlapping) {
        const which = canSee(context, overlapping) ? `Tap flow ${overlapping.id}` : 'A tap flow of another project';
        throw new Conflict('TapFlowOverlap', `${which} already mirrors port ${sourcePortId} into tap service `
          + `${serviceId} for an overlapping direction and VLAN set: the same frames would arrive twice.`);
      }
    });
  }

  createTapMirror(context: RequestContext, input: CreateInput<'tap_mirror'>): Shown<'tap_mirror'> {
    this.requireWriter(context, 'create_tap_mirror');
    const projectId = this.owningProject(context, input);
    const portId = this.reference(input.port_id);
    // The schema checked that it is an IP address; what is left is whether it can be a collector's.
    const canonical = canonicalIpAddress(input.remote_ip);
    const unusable = remoteAddressReason(canonical);
    if (unusable !== undefined) throw invalidInput('remote_ip', unusable);
    const remoteIp = canonical.address;
    const directions = distinctTunnelIds(input.directions);
    const udpPort = mirrorUdpPort(input.mirror_type, input.udp_port);
    const mirror: TapMirror = {
      ...this.newRecord('tap_mirror', projectId, input), port_id: portId, directions, remote_ip: remoteIp, udp_port: udpPort,
    };
    return this.insert('tap_mirror', mirror, () => {
      this.usablePort(context, portId, 'InvalidSourcePort', 'Source Port');
      this.ensureNotDestination(portId, 'the port of a tap mirror');
      for (const [direction, tunnelId] of Object.entries(directions)) {
        const owner = this.tunnelOwner(remoteIp, tunnelId);
        if (owner) {
          // Name the mirror only to a caller who may see it: another project's resources do not exist for a member.
          const user = canSee(context, owner.mirror)
            ? `tap mirror ${owner.mirror.id} (${owner.direction})` : 'a tap mirror of another project';
          throw new Conflict('TapMirrorTunnelIdInUse', `Tunnel id ${tunnelId} (${direction}) toward ${remoteIp} is already `
            + `used by ${user}: the collector could not tell the sessions apart.`);
        }
      }
    });
  }

  /**
   * The mirror already sending tunnelId to remoteIp, if any. Remotes compare in
   * canonical form, also those stored before it was canonical (an IPv4-mapped
   * IPv6 address is its IPv4 address).
   */
  private tunnelOwner(remoteIp: string, tunnelId: number): { mirror: TapMirror; direction: string } | undefined {
    const exact = this.store.tunnelOwner(remoteIp, tunnelId);
    if (exact) return { mirror: this.store.get('tap_mirror', exact.tap_mirror_id)!, direction: exact.direction };
    for (const mirror of this.store.list('tap_mirror')) {
      const direction = (Object.keys(mirror.directions) as Array<keyof MirrorDirections>)
        .find((key) => mirror.directions[key] === tunnelId);
      if (direction === undefined) continue;
      let stored: string;
      try {
        stored = canonicalIpAddress(mirror.remote_ip).address;
      } catch {
        continue;
      }
      if (stored === remoteIp) return { mirror, direction };
    }
    return undefined;
  }

  // ---- updates and deletes ----

  update<K extends ResourceKind>(kind: K, context: RequestContext, id: string, changes: AttributeChanges): Shown<K> {
    this.requireWriter(context, `update_${kind}`);
    if (kind === 'port') this.requireAdmin(context, 'update_port');
    const updated = this.store.transaction(() => {
      const resource = this.visible(kind, context, id);
      if (Object.keys(changes).length > 0) this.store.updateAttributes(kind, resource.id, changes);
      return this.store.get(kind, resource.id)!;
    });
    // A tap flow's or tap mirror's filter, snaplen and sample_rate change what its agent runs.
    if (Object.keys(changes).some((name) => DATA_PATH_ATTRIBUTES.has(name))) this.options.desired.changed();
    return this.statusView().show(kind, updated);
  }

  /**
   * Marks the resource and what it takes along as being deleted; each row is
   * removed once every host it involves has released it (at once when none
   * carries it). `pending` says whether anything is still waiting.
   */
  delete(kind: ResourceKind, context: RequestContext, id: string): DeleteOutcome {
    this.requireWriter(context, `delete_${kind}`);
    if (kind === 'port') this.requireAdmin(context, 'delete_port');
    const marked = this.store.transaction(() => {
      const resource = this.visible(kind, context, id);
      const affected = this.cascade(kind, resource.id)
        .map(([affectedKind, rows]) => [affectedKind, rows.filter((row) => !row.deleting).map((row) => row.id)] as const);
      for (const [affectedKind, ids] of affected) this.store.markDeleting(affectedKind, ids);
      return { id: resource.id, affected };
    });
    // Nothing counts as released until the revision of this delete is known.
    const keys = marked.affected.flatMap(([affectedKind, ids]) => ids.map((affectedId) => `${affectedKind}/${affectedId}`));
    for (const key of keys) this.deletedAt.set(key, Number.POSITIVE_INFINITY);
    const revision = this.options.desired.changed();
    for (const key of keys) this.deletedAt.set(key, revision);
    this.completeDeletes();
    return { pending: this.store.get(kind, marked.id) !== undefined };
  }

  /** Resolves once the resource is gone, or after timeoutMs, whichever comes first. */
  async waitUntilGone(kind: ResourceKind, id: string, timeoutMs: number): Promise<boolean> {
    const key = `${kind}/${id.toLowerCase()}`;
    if (this.store.get(kind, id.toLowerCase()) === undefined) return true;
    return new Promise<boolean>((resolve) => {
      const done = (gone: boolean) => {
        clearTimeout(timer);
        this.purged.off(key, onPurged);
        resolve(gone);
      };
      const onPurged = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.purged.on(key, onPurged);
    });
  }

  /**
   * Removes every row being deleted that no involved host carries any more.
   * Runs after each delete and whenever an agent reports, registers or leaves.
   */
  completeDeletes(): void {
    if (!this.store.hasDeleting()) return;
    const removed: string[] = [];
    this.store.transaction(() => {
      const snapshot = this.store.snapshot();
      const view = new StatusView(snapshot.ports, snapshot.tapServices, this.observations);
      const remaining = {
        tap_flow: snapshot.tapFlows as Array<ResourceOf[ResourceKind]>,
        tap_mirror: snapshot.tapMirrors as Array<ResourceOf[ResourceKind]>,
        tap_service: snapshot.tapServices as Array<ResourceOf[ResourceKind]>,
        port: snapshot.ports as Array<ResourceOf[ResourceKind]>,
      };
      const gone = new Set<string>();
      for (const kind of PURGE_ORDER) {
        for (const row of remaining[kind]) {
          if (!row.deleting) continue;
          const since = this.deletedAt.get(`${kind}/${row.id}`) ?? 0;
          const released = view.hostsOf(kind, row).every((host) => this.observations.released(host, kind, row.id, since));
          if (!released || this.hasRemainingChildren(kind, row, snapshot, gone)) continue;
          if (this.store.purge(kind, [row.id]) > 0) {
            gone.add(row.id);
            removed.push(`${kind}/${row.id}`);
          }
        }
      }
    });
    for (const key of removed) {
      this.deletedAt.delete(key);
      this.purged.emit(key);
    }
  }

  /** A parent waits for its children: removing it would cascade over rows some host still carries. */
  private hasRemainingChildren(kind: ResourceKind, row: ResourceOf[ResourceKind], snapshot: Snapshot, gone: ReadonlySet<string>): boolean {
    const left = (rows: ReadonlyArray<{ id: string }>) => rows.some((child) => !gone.has(child.id));
    if (kind === 'tap_service') return left(snapshot.tapFlows.filter((flow) => flow.tap_service_id === row.id));
    if (kind !== 'port') return false;
    return left(snapshot.tapFlows.filter((flow) => flow.source_port === row.id))
      || left(snapshot.tapMirrors.filter((mirror) => mirror.port_id === row.id))
      || left(snapshot.tapServices.filter((service) => service.port_id === row.id));
  }

  /** The resource and everything deleting it takes along: service → flows; port → services, their flows, flows from it, mirrors. */
  private cascade(kind: ResourceKind, id: string): Array<[ResourceKind, Array<{ id: string; deleting: boolean }>]> {
    switch (kind) {
      case 'tap_flow':
        return [['tap_flow', [this.store.get('tap_flow', id)!]]];
      case 'tap_mirror':
        return [['tap_mirror', [this.store.get('tap_mirror', id)!]]];
      case 'tap_service':
        return [
          ['tap_flow', this.store.listWhere('tap_flow', 'tap_service_id', id)],
          ['tap_service', [this.store.get('tap_service', id)!]],
        ];
      case 'port': {
        const services = this.store.listWhere('tap_service', 'port_id', id);
        const flows = new Map<string, TapFlow>();
        for (const flow of this.store.listWhere('tap_flow', 'source_port', id)) flows.set(flow.id, flow);
        for (const service of services) {
          for (const flow of this.store.listWhere('tap_flow', 'tap_service_id', service.id)) flows.set(flow.id, flow);
        }
        return [
          ['tap_flow', [...flows.values()]],
          ['tap_mirror', this.store.listWhere('tap_mirror', 'port_id', id)],
          ['tap_service', services],
          ['port', [this.store.get('port', id)!]],
        ];
      }
    }
  }

  // ---- quotas (the Neutron quotas API) ----

  quotaLimits(context: RequestContext, projectId: string): QuotaLimits {
    requireQuotaProject(projectId);
    if (!isAdmin(context) && projectId !== context.projectId) {
      throw new PolicyNotAuthorized(`rule:get_quota is disallowed by policy for project ${projectId}`);
    }
    return this.quotas.limits(projectId);
  }

  quotaProjects(context: RequestContext): Array<{ project_id: string; limits: QuotaLimits }> {
    this.requireAdmin(context, 'get_quota');
    return this.store.quotaProjects().map((projectId) => ({ project_id: projectId, limits: this.quotas.limits(projectId) }));
  }

  setQuotaLimits(context: RequestContext, projectId: string, limits: Record<string, unknown>): QuotaLimits {
    this.requireAdmin(context, 'update_quota');
    requireQuotaProject(projectId);
    const checked = Object.entries(limits).map(([resource, limit]) => {
      if (!isQuotaResource(resource)) throw new BadRequest(`Unrecognized attribute(s) '${resource}'`);
      return [resource, checkQuotaLimit(resource, limit)] as const;
    });
    this.store.transaction(() => {
      for (const [resource, limit] of checked) this.store.setQuotaOverride(projectId, resource, limit);
    });
    return this.quotas.limits(projectId);
  }

  resetQuotaLimits(context: RequestContext, projectId: string): void {
    this.requireAdmin(context, 'delete_quota');
    requireQuotaProject(projectId);
    this.store.clearQuotaOverrides(projectId);
  }

  // ---- helpers ----

  /*
   * The data path's rule (native/plan.h): an interface that receives copies is
   * never also captured, or the copies would be captured again. Checked here
   * with the same rule, so a request the engine would refuse is a 409 for its
   * caller instead of an ERROR on its resources.
   */
  private ensureNotDestination(portId: string, role: string): void {
    const service = this.store.listWhere('tap_service', 'port_id', portId).find((row) => !row.deleting);
    if (service) {
      throw new Conflict('PortIsTapServiceDestination', `Port ${portId} receives the copies of a tap service: it cannot be ${role} `
        + '(its copies would be mirrored again).');
    }
  }

  private ensureNotMirrored(portId: string): void {
    const mirrored = this.store.listWhere('tap_flow', 'source_port', portId).some((row) => !row.deleting)
      || this.store.listWhere('tap_mirror', 'port_id', portId).some((row) => !row.deleting);
    if (mirrored) {
      throw new Conflict('PortIsMirrored', `Port ${portId} is mirrored by a tap flow or tap mirror: it cannot receive a tap `
        + 'service\'s copies (they would be mirrored again).');
    }
  }

  private insert<K extends ResourceKind>(kind: K, resource: ResourceOf[K], checks: () => void): Shown<K> {
    try {
      this.store.transaction(() => {
        this.quotas.ensureRoomFor(kind, resource.project_id);
        checks();
        this.store.insert(kind, resource);
      });
    } catch (error) {
      // Checks above should have caught every conflict; the schema's constraints are the backstop.
      if (error instanceof UniqueViolation) throw new Conflict('Conflict', `The ${kind} conflicts with an existing one (${error.constraint}).`);
      throw error;
    }
    this.options.desired.changed();
    return this.statusView().show(kind, this.store.get(kind, resource.id)!);
  }

  /** A new record: what the create gave (defaults filled in by the contract), a new id, its project, now. */
  private newRecord<K extends ResourceKind>(kind: K, projectId: string, input: CreateInput<K>): RecordOf<K> {
    const now = timestamp();
    return {
      ...recordFields(kind, input),
      id: randomUUID(),
      project_id: projectId,
      deleting: false,
      created_at: now,
      updated_at: now,
    } as RecordOf<K>;
  }

  /** The project a new resource belongs to: the caller's, or (admin only) the one the body names. */
  private owningProject(context: RequestContext, input: Owned): string {
    const { project_id: projectId, tenant_id: tenantId } = input;
    if (projectId !== undefined && tenantId !== undefined && projectId !== tenantId) {
      throw new BadRequest(`project_id '${projectId}' and tenant_id '${tenantId}' differ`);
    }
    const named = projectId ?? tenantId;
    if (named === undefined || named === context.projectId) return context.projectId;
    if (named === '') throw invalidInput('project_id', 'the project id must not be empty');
    if (!isAdmin(context)) {
      throw new PolicyNotAuthorized("Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges");
    }
    return named;
  }

  /** A referenced id as the store keeps it (the schema checked it is a UUID). */
  private reference(id: string): string {
    return id.toLowerCase();
  }

  /** A port the caller may mirror from or to: it exists, is visible, is the caller's own (non-admin) and is not being deleted. */
  private usablePort(context: RequestContext, id: string, notFoundType: string, role: string): Port {
    const port = this.store.get('port', id);
    if (!port || (!isAdmin(context) && port.project_id !== context.projectId)) {
      throw new NotFound(notFoundType, `${role} ${id} does not exist`);
    }
    if (port.deleting) throw new Conflict('PortBeingDeleted', `Port ${id} is being deleted.`);
    return port;
  }

  /** The resource, if the caller may see it; 404 otherwise, whether it exists or not. */
  private visible<K extends ResourceKind>(kind: K, context: RequestContext, id: string): ResourceOf[K] {
    const resource = isUuid(id) ? this.store.get(kind, id.toLowerCase()) : undefined;
    if (!resource || !canSee(context, resource)) throw new NotFound(NOT_FOUND[kind].type, NOT_FOUND[kind].message(id));
    return resource;
  }

  private requireWriter(context: RequestContext, action: string): void {
    if (!canWrite(context)) throw new PolicyNotAuthorized(`rule:${action} is disallowed by policy`);
  }

  private requireAdmin(context: RequestContext, action: string): void {
    if (!isAdmin(context)) throw new PolicyNotAuthorized(`rule:${action} is disallowed by policy`);
  }
}

/** The project of a quota URL: "/v2.0/quotas/" names none. */
function requireQuotaProject(projectId: string): void {
  if (projectId === '') throw invalidInput('project_id', 'the project id must not be empty (/v2.0/quotas/PROJECT)');
}

/**
 * A tap mirror's directions, refused when both use one tunnel id (the schema
 * checked each id's range), or when BOTH comes with IN or OUT: BOTH already
 * sends each of them, so a frame would go out twice.
 */
function distinctTunnelIds(directions: MirrorDirections): MirrorDirections {
  if (directions.BOTH !== undefined && (directions.IN !== undefined || directions.OUT !== undefined)) {
    const with_ = [directions.IN === undefined ? '' : 'IN', directions.OUT === undefined ? '' : 'OUT'].filter(Boolean).join(' and ');
    throw invalidInput('directions', `BOTH sends IN and OUT in one tunnel and cannot be combined with ${with_}: `
      + 'give either BOTH, or IN and/or OUT');
  }
  if (directions.IN !== undefined && directions.IN === directions.OUT) {
    throw invalidInput('directions', `IN and OUT both use tunnel id ${directions.IN}: each direction needs its own`);
  }
  return directions;
}

/** A vxlan mirror's UDP port (4789 when not given); the other types have none, and refuse one. */
function mirrorUdpPort(mirrorType: MirrorType, udpPort: number | null | undefined): number | null {
  if (mirrorType === 'vxlan') return udpPort ?? VXLAN_DEFAULT_PORT;
  if (udpPort !== undefined && udpPort !== null) {
    throw invalidInput('udp_port', `only a vxlan tap mirror has a UDP port, not mirror_type ${mirrorType}`);
  }
  return null;
}

function describeInterface(port: Pick<Port, 'interface' | 'netns'>): string {
  return port.netns ? `${port.interface}@${port.netns}` : port.interface;
}
