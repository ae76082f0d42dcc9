/**
 * Prometheus metrics: what the agents counted per tap flow, tap mirror
 * direction, source port and tap service (their observations, read at scrape
 * time and labelled with the resources and hosts they belong to), resource
 * counts by status, and the HTTP API's own requests.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

import type { Counters } from '../model/observation.js';
import type { Shown } from '../model/resources.js';
import type { StoredObservation } from '../service/observations.js';

export interface MetricsSources {
  /** Every resource with its status (admin's view). */
  resources(): { ports: Array<Shown<'port'>>; tapServices: Array<Shown<'tap_service'>>; tapFlows: Array<Shown<'tap_flow'>>; tapMirrors: Array<Shown<'tap_mirror'>> };
  /** The observations of a resource, one per host that reported it. */
  observationsOf(kind: 'port' | 'tap_service' | 'tap_flow' | 'tap_mirror', id: string): StoredObservation[];
}

const dropped = (counters: Counters) => Object.values(counters.drops).reduce((total, count) => total + count, 0);

/**
 * An info gauge read at scrape time: 1 for each series of a tap flow or tap
 * mirror direction, labelled with the data path that runs it (bpf, packet).
 */
function observedDatapath<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[],
  series: () => Iterable<[Record<L, string>, Counters]>): void {
  new Gauge({
    name, help, labelNames: [...labelNames, 'datapath'], registers: [registry],
    collect() {
      this.reset();
      for (const [labels, counters] of series()) {
        if (counters.datapath !== undefined) this.set({ ...labels, datapath: counters.datapath }, 1);
      }
    },
  });
}

/** A counter whose value is read from elsewhere at scrape time. */
function observedCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[],
  read: (set: (labels: Record<L, string>, value: number) => void) => void): void {
  new Counter({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      read((labels, value) => this.inc(labels, value));
    },
  });
}

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;

  /** The resources of the scrape in progress: read once per scrape, not once per metric family. */
  private scraped: ReturnType<MetricsSources['resources']> | undefined;

  constructor(sources: MetricsSources) {
    const resources = () => {
      this.scraped ??= sources.resources();
      return this.scraped;
    };
    const { registry } = this;
    // The event loop lag is sampled every 100 ms, not prom-client's 10 ms: a timer every 10 ms
    // woke the idle daemon 100 times a second (measured: 2 % of a core on a VM, 0.26 % at 100 ms).
    collectDefaultMetrics({ register: registry, prefix: 'tapas_process_', eventLoopMonitoringPrecision: 100 });

    this.httpRequests = new Counter({
      name: 'tapas_http_requests_total',
      help: 'HTTP API requests by route and status code',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    });

    const flowLabels = ['tap_flow_id', 'tap_service_id', 'source_port', 'project_id', 'name', 'host'] as const;
    function* flowSeries(): Iterable<[Record<(typeof flowLabels)[number], string>, Counters]> {
      for (const flow of resources().tapFlows) {
        for (const seen of sources.observationsOf('tap_flow', flow.id)) {
          if (!seen.counters) continue;
          yield [{ tap_flow_id: flow.id, tap_service_id: flow.tap_service_id, source_port: flow.source_port,
            project_id: flow.project_id, name: flow.name, host: seen.host }, seen.counters];
        }
      }
    }
    const eachFlow = (read: (counters: Counters) => number) =>
      (set: (labels: Record<(typeof flowLabels)[number], string>, value: number) => void) => {
        for (const [labels, counters] of flowSeries()) set(labels, read(counters));
      };
    observedCounter(registry, 'tapas_tap_flow_packets_total', 'Frames a tap flow mirrored to its tap service', flowLabels,
      eachFlow((counters) => counters.packets));
    observedCounter(registry, 'tapas_tap_flow_bytes_total', 'Bytes a tap flow mirrored to its tap service', flowLabels,
      eachFlow((counters) => counters.bytes));
    observedCounter(registry, 'tapas_tap_flow_dropped_total',
      'Frames a tap flow matched but could not deliver (larger than the destination MTU, or destination unavailable)',
      flowLabels, eachFlow(dropped));

    // What a tap flow's filter, sample_rate and snaplen took out or cut: not drops.
    observedCounter(registry, 'tapas_tap_flow_filtered_total', 'Frames of a tap flow\'s port and direction its filter expression took out',
      flowLabels, eachFlow((counters) => counters.selection?.filtered ?? 0));
    observedCounter(registry, 'tapas_tap_flow_sampled_out_total', 'Frames a tap flow\'s sample_rate left out (one in N is sent)',
      flowLabels, eachFlow((counters) => counters.selection?.sampled_out ?? 0));
    observedCounter(registry, 'tapas_tap_flow_truncated_total', 'Frames a tap flow sent cut to its snaplen',
      flowLabels, eachFlow((counters) => counters.selection?.truncated ?? 0));
    observedDatapath(registry, 'tapas_tap_flow_datapath', 'The data path that runs a tap flow on a host (label datapath: bpf or packet), always 1',
      flowLabels, flowSeries);

    const mirrorLabels = ['tap_mirror_id', 'direction', 'remote_ip', 'mirror_type', 'project_id', 'name', 'host'] as const;
    function* mirrorSeries(): Iterable<[Record<(typeof mirrorLabels)[number], string>, Counters]> {
      for (const mirror of resources().tapMirrors) {
        for (const seen of sources.observationsOf('tap_mirror', mirror.id)) {
          for (const [direction, counters] of Object.entries(seen.parts ?? {})) {
            yield [{ tap_mirror_id: mirror.id, direction, remote_ip: mirror.remote_ip, mirror_type: mirror.mirror_type,
              project_id: mirror.project_id, name: mirror.name, host: seen.host }, counters];
          }
        }
      }
    }
    const eachMirror = (read: (counters: Counters) => number) =>
      (set: (labels: Record<(typeof mirrorLabels)[number], string>, value: number) => void) => {
        for (const [labels, counters] of mirrorSeries()) set(labels, read(counters));
      };
    observedCounter(registry, 'tapas_tap_mirror_packets_total', 'Frames a tap mirror sent into its tunnel, per direction',
      mirrorLabels, eachMirror((counters) => counters.packets));
    observedCounter(registry, 'tapas_tap_mirror_bytes_total', 'Bytes of original frames a tap mirror sent into its tunnel, per direction',
      mirrorLabels, eachMirror((counters) => counters.bytes));
    observedCounter(registry, 'tapas_tap_mirror_dropped_total', 'Frames a tap mirror matched but could not send',
      mirrorLabels, eachMirror(dropped));

    observedCounter(registry, 'tapas_tap_mirror_filtered_total', 'Frames of a tap mirror direction its filter expression took out',
      mirrorLabels, eachMirror((counters) => counters.selection?.filtered ?? 0));
    observedCounter(registry, 'tapas_tap_mirror_sampled_out_total', 'Frames a tap mirror\'s sample_rate left out, per direction',
      mirrorLabels, eachMirror((counters) => counters.selection?.sampled_out ?? 0));
    observedCounter(registry, 'tapas_tap_mirror_truncated_total', 'Frames a tap mirror sent cut to its snaplen, per direction',
      mirrorLabels, eachMirror((counters) => counters.selection?.truncated ?? 0));
    observedDatapath(registry, 'tapas_tap_mirror_datapath', 'The data path that runs a tap mirror direction on a host (label datapath: bpf or packet), always 1',
      mirrorLabels, mirrorSeries);

    const portLabels = ['port_id', 'interface', 'host'] as const;
    const eachSource = (read: (counters: Counters) => number) =>
      (set: (labels: Record<(typeof portLabels)[number], string>, value: number) => void) => {
        for (const port of resources().ports) {
          for (const seen of sources.observationsOf('port', port.id)) {
            if (seen.counters) set({ port_id: port.id, interface: port.interface, host: seen.host }, read(seen.counters));
          }
        }
      };
    observedCounter(registry, 'tapas_source_packets_total', 'Frames captured on a source port', portLabels, eachSource((c) => c.packets));
    observedCounter(registry, 'tapas_source_ring_drops_total', 'Frames the kernel dropped because a source\'s capture buffer was full',
      portLabels, eachSource((c) => c.drops.capture ?? 0));

    const sinkLabels = ['tap_service_id', 'host'] as const;
    const eachSink = (read: (counters: Counters) => number) =>
      (set: (labels: Record<(typeof sinkLabels)[number], string>, value: number) => void) => {
        for (const service of resources().tapServices) {
          for (const seen of sources.observationsOf('tap_service', service.id)) {
            if (seen.counters) set({ tap_service_id: service.id, host: seen.host }, read(seen.counters));
          }
        }
      };
    observedCounter(registry, 'tapas_tap_service_packets_total', 'Frames sent to a tap service port', sinkLabels, eachSink((c) => c.packets));
    observedCounter(registry, 'tapas_tap_service_bytes_total', 'Bytes sent to a tap service port', sinkLabels, eachSink((c) => c.bytes));
    observedCounter(registry, 'tapas_tap_service_errors_total', 'Frames the kernel refused to send to a tap service port',
      sinkLabels, eachSink((c) => c.drops.send_errors ?? 0));

    new Gauge({
      name: 'tapas_resources',
      help: 'Resources by kind and status',
      labelNames: ['kind', 'status'],
      registers: [registry],
      collect() {
        this.reset();
        const snapshot = resources();
        const kinds = { port: snapshot.ports, tap_service: snapshot.tapServices, tap_flow: snapshot.tapFlows, tap_mirror: snapshot.tapMirrors };
        for (const [kind, rows] of Object.entries(kinds)) {
          for (const row of rows) this.inc({ kind, status: row.status });
        }
      },
    });
  }

  /** The exposition text: one read of the resources for every metric family. */
  async render(): Promise<string> {
    try {
      return await this.registry.metrics();
    } finally {
      this.scraped = undefined;
    }
  }
}
