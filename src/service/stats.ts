/**
 * What the data paths counted, per tap flow, tap mirror and tap service, per
 * host and in total, with rates: read from the agents' observations (never
 * from an engine), shown only for what the caller may see.
 */
import { addSelection, datapathOf, type Counters, type RuleDatapath, type Selection } from '../model/observation.js';
import type { ResourceKind, Shown } from '../model/resources.js';
import type { RequestContext } from './context.js';
import type { ObservationBook, StoredObservation } from './observations.js';
import type { TaasService } from './taas-service.js';

/**
 * Tap flows and tap mirrors also say which data path counted them
 * (`datapath`, bpf or packet) and why not the kernel's (`datapath_reason`).
 */
export interface Rated extends RuleDatapath {
  /** null while no host counts anything for it (not running, or not reported yet). */
  packets: number | null;
  bytes: number | null;
  drops: Record<string, number>;
  /**
   * Tap flows and tap mirrors with a filter, sample_rate or snaplen: frames
   * the filter took out, frames sampling skipped, copies cut to the snaplen
   * (none of them drops); absent while nothing was.
   */
  selection?: Selection;
  /** Over the reporting host's last interval; null until two reports. */
  packets_per_second: number | null;
  bits_per_second: number | null;
}

export interface HostStats extends Rated {
  host: string;
  status: string;
  reason: string | null;
  observed_at: string;
}

export interface ResourceStats extends Rated {
  id: string;
  name: string;
  project_id: string;
  status: string;
  status_reason: string | null;
  hosts: HostStats[];
}

export interface TapFlowStats extends ResourceStats {
  tap_service_id: string;
  source_port: string;
  direction: string;
}

export interface TapMirrorStats extends ResourceStats {
  port_id: string;
  remote_ip: string;
  mirror_type: string;
  /** Per direction: its tunnel id and what it carried. */
  directions: Record<string, Rated & { tunnel_id: number }>;
}

export interface TapServiceStats extends ResourceStats {
  port_id: string;
}

export interface StatsReport {
  time: string;
  tap_flows: TapFlowStats[];
  tap_mirrors: TapMirrorStats[];
  tap_services: TapServiceStats[];
}

const NOTHING: Rated = { packets: null, bytes: null, drops: {}, packets_per_second: null, bits_per_second: null };

function rated(counters: Counters | undefined, rates?: { packets_per_second: number; bits_per_second: number }): Rated {
  if (!counters) return NOTHING;
  return {
    packets: counters.packets,
    bytes: counters.bytes,
    drops: { ...counters.drops },
    ...(counters.selection ? { selection: { ...counters.selection } } : {}),
    ...datapathOf([counters]),
    packets_per_second: rates?.packets_per_second ?? null,
    bits_per_second: rates?.bits_per_second ?? null,
  };
}

/** The sum over hosts; a rate is known when every counting host gave one. */
function total(parts: readonly Rated[]): Rated {
  const counting = parts.filter((part) => part.packets !== null);
  if (counting.length === 0) return NOTHING;
  const sum: Rated = { packets: 0, bytes: 0, drops: {}, packets_per_second: 0, bits_per_second: 0 };
  for (const part of counting) {
    sum.packets! += part.packets!;
    sum.bytes! += part.bytes!;
    for (const [cause, count] of Object.entries(part.drops)) sum.drops[cause] = (sum.drops[cause] ?? 0) + count;
    if (part.selection) sum.selection = addSelection(sum.selection, part.selection);
    sum.packets_per_second = part.packets_per_second === null || sum.packets_per_second === null ? null : sum.packets_per_second + part.packets_per_second;
    sum.bits_per_second = part.bits_per_second === null || sum.bits_per_second === null ? null : sum.bits_per_second + part.bits_per_second;
  }
  return { ...sum, ...datapathOf(counting) };
}

export class TaasStats {
  constructor(
    private readonly service: TaasService,
    private readonly observations: ObservationBook,
  ) {}

  report(context: RequestContext): StatsReport {
    return {
      time: new Date().toISOString(),
      tap_flows: this.service.list('tap_flow', context).map((flow) => ({
        ...this.common('tap_flow', flow),
        tap_service_id: flow.tap_service_id, source_port: flow.source_port, direction: flow.direction,
      })),
      tap_mirrors: this.service.list('tap_mirror', context).map((mirror) => {
        const seen = this.observations.observationsOf('tap_mirror', mirror.id);
        const directions: TapMirrorStats['directions'] = {};
        for (const [direction, tunnelId] of Object.entries(mirror.directions)) {
          directions[direction] = { tunnel_id: tunnelId, ...total(seen.map((observation) => rated(observation.parts?.[direction]))) };
        }
        return {
          ...this.common('tap_mirror', mirror, seen),
          port_id: mirror.port_id, remote_ip: mirror.remote_ip, mirror_type: mirror.mirror_type, directions,
        };
      }),
      tap_services: this.service.list('tap_service', context).map((service) => ({
        ...this.common('tap_service', service), port_id: service.port_id,
      })),
    };
  }

  private common<K extends ResourceKind>(kind: K, resource: Shown<K>, seen = this.observations.observationsOf(kind, resource.id)): ResourceStats {
    const hosts = seen.map((observation: StoredObservation): HostStats => ({
      host: observation.host,
      status: observation.status,
      reason: observation.reason,
      observed_at: observation.observed_at,
      ...rated(observation.counters, observation.rates),
    }));
    return {
      id: resource.id,
      name: resource.name,
      project_id: resource.project_id,
      status: resource.status,
      status_reason: resource.status_reason,
      ...total(hosts),
      hosts,
    };
  }
}
