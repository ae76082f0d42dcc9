/**
 * Prometheus metrics: the engine's per-flow, per-source and per-sink counters
 * (read at scrape time, labelled with the resources they belong to), resource
 * counts by status, and the HTTP API's own requests.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

import type { EngineStats } from '../engine/engine.js';
import type { Snapshot } from '../store/store.js';

export interface MetricsSources {
  /** The engine's counters right now. */
  stats(): EngineStats;
  /** The state the agent last applied: names the ids in the stats. */
  snapshot(): Snapshot;
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

  constructor(sources: MetricsSources) {
    const { registry } = this;
    collectDefaultMetrics({ register: registry, prefix: 'tapas_process_' });

    this.httpRequests = new Counter({
      name: 'tapas_http_requests_total',
      help: 'HTTP API requests by route and status code',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    });

    const flowLabels = ['tap_flow_id', 'tap_service_id', 'source_port', 'project_id', 'name'] as const;
    const flowsOf = () => new Map(sources.snapshot().tapFlows.map((flow) => [flow.id, flow]));
    const eachFlow = (read: (rule: EngineStats['rules'][number]) => number) =>
      (set: (labels: Record<(typeof flowLabels)[number], string>, value: number) => void) => {
        const flows = flowsOf();
        for (const rule of sources.stats().rules) {
          const flow = flows.get(rule.id);
          if (!flow) continue;
          set({ tap_flow_id: flow.id, tap_service_id: flow.tap_service_id, source_port: flow.source_port,
            project_id: flow.project_id, name: flow.name }, read(rule));
        }
      };
    observedCounter(registry, 'tapas_tap_flow_packets_total', 'Frames a tap flow mirrored to its tap service', flowLabels,
      eachFlow((rule) => rule.packets));
    observedCounter(registry, 'tapas_tap_flow_bytes_total', 'Bytes a tap flow mirrored to its tap service', flowLabels,
      eachFlow((rule) => rule.bytes));
    observedCounter(registry, 'tapas_tap_flow_dropped_total',
      'Frames a tap flow matched but could not deliver (larger than the destination MTU, or destination unavailable)',
      flowLabels, eachFlow((rule) => rule.oversize + rule.unavailable));

    const mirrorLabels = ['tap_mirror_id', 'direction', 'remote_ip', 'mirror_type', 'project_id', 'name'] as const;
    const eachMirror = (read: (rule: EngineStats['rules'][number]) => number) =>
      (set: (labels: Record<(typeof mirrorLabels)[number], string>, value: number) => void) => {
        const mirrors = new Map(sources.snapshot().tapMirrors.map((mirror) => [mirror.id, mirror]));
        for (const rule of sources.stats().rules) {
          // A tap mirror runs one rule per direction, id "MIRROR/IN" or "MIRROR/OUT".
          const [mirrorId, direction] = rule.id.split('/');
          const mirror = direction ? mirrors.get(mirrorId!) : undefined;
          if (!mirror) continue;
          set({ tap_mirror_id: mirror.id, direction: direction!, remote_ip: mirror.remote_ip, mirror_type: mirror.mirror_type,
            project_id: mirror.project_id, name: mirror.name }, read(rule));
        }
      };
    observedCounter(registry, 'tapas_tap_mirror_packets_total', 'Frames a tap mirror sent into its tunnel, per direction',
      mirrorLabels, eachMirror((rule) => rule.packets));
    observedCounter(registry, 'tapas_tap_mirror_bytes_total', 'Bytes of original frames a tap mirror sent into its tunnel, per direction',
      mirrorLabels, eachMirror((rule) => rule.bytes));
    observedCounter(registry, 'tapas_tap_mirror_dropped_total', 'Frames a tap mirror matched but could not send',
      mirrorLabels, eachMirror((rule) => rule.oversize + rule.unavailable));

    const portLabels = ['port_id', 'interface'] as const;
    const eachSource = (read: (source: EngineStats['sources'][number]) => number) =>
      (set: (labels: Record<(typeof portLabels)[number], string>, value: number) => void) => {
        const ports = new Map(sources.snapshot().ports.map((port) => [port.id, port]));
        for (const source of sources.stats().sources) {
          const port = ports.get(source.id);
          set({ port_id: source.id, interface: port?.interface ?? '' }, read(source));
        }
      };
    observedCounter(registry, 'tapas_source_packets_total', 'Frames captured on a source port', portLabels, eachSource((s) => s.packets));
    observedCounter(registry, 'tapas_source_ring_drops_total', 'Frames the kernel dropped because a source ring was full',
      portLabels, eachSource((s) => s.ringDrops));

    const sinkLabels = ['tap_service_id'] as const;
    const eachSink = (read: (sink: EngineStats['sinks'][number]) => number) =>
      (set: (labels: Record<(typeof sinkLabels)[number], string>, value: number) => void) => {
        for (const sink of sources.stats().sinks) set({ tap_service_id: sink.id }, read(sink));
      };
    observedCounter(registry, 'tapas_tap_service_packets_total', 'Frames sent to a tap service port', sinkLabels, eachSink((s) => s.packets));
    observedCounter(registry, 'tapas_tap_service_bytes_total', 'Bytes sent to a tap service port', sinkLabels, eachSink((s) => s.bytes));
    observedCounter(registry, 'tapas_tap_service_errors_total', 'Frames the kernel refused to send to a tap service port',
      sinkLabels, eachSink((s) => s.errors));

    new Gauge({
      name: 'tapas_resources',
      help: 'Resources in the store by kind and status',
      labelNames: ['kind', 'status'],
      registers: [registry],
      collect() {
        this.reset();
        const snapshot = sources.snapshot();
        const kinds = { port: snapshot.ports, tap_service: snapshot.tapServices, tap_flow: snapshot.tapFlows, tap_mirror: snapshot.tapMirrors };
        for (const [kind, rows] of Object.entries(kinds)) {
          for (const row of rows) this.inc({ kind, status: row.status });
        }
      },
    });
  }
}
