/**
 * The last minute and a half of each tap flow's, tap mirror's and tap service's rates,
 * from the stats stream's reports, for the charts. Drop rates are computed
 * here from the counters of successive reports.
 */
import { totalDrops } from './format.js';
import type { Rated, StatsReport } from './types.js';

export interface Series {
  /** Seconds since the epoch. */
  time: number[];
  pps: Array<number | null>;
  bps: Array<number | null>;
  /** Drops per second (all causes), null until two reports. */
  dps: Array<number | null>;
}

/** Reports kept per resource (one a second): a little more than the charts' minute. */
const KEEP = 90;

export class RateHistory {
  private readonly series = new Map<string, Series & { lastDrops: number | null; lastPackets: number | null; lastBytes: number | null; lastTime: number | null }>();
  /** Bumped on every report, so that views know to redraw. */
  version = 0;

  add(report: StatsReport): void {
    const time = Date.parse(report.time) / 1000;
    const seen = new Set<string>();
    const record = (key: string, rated: Rated) => {
      seen.add(key);
      let entry = this.series.get(key);
      if (!entry) {
        entry = { time: [], pps: [], bps: [], dps: [], lastDrops: null, lastPackets: null, lastBytes: null, lastTime: null };
        this.series.set(key, entry);
      }
      const seconds = entry.lastTime === null ? 0 : time - entry.lastTime;
      /** A counter's rate since the previous report, when both counted (a counter that went back restarted: none). */
      const since = (now: number | null, before: number | null) =>
        (now === null || before === null || seconds <= 0 || now < before ? null : (now - before) / seconds);
      const dropped = rated.packets === null ? null : totalDrops(rated.drops);
      entry.time.push(time);
      // The host's own rates where it gives them (a tap mirror's directions have counters only).
      entry.pps.push(rated.packets_per_second ?? since(rated.packets, entry.lastPackets));
      entry.bps.push(rated.bits_per_second ?? mapNull(since(rated.bytes, entry.lastBytes), (bytes) => bytes * 8));
      entry.dps.push(since(dropped, entry.lastDrops));
      entry.lastDrops = dropped;
      entry.lastPackets = rated.packets;
      entry.lastBytes = rated.bytes;
      entry.lastTime = time;
      if (entry.time.length > KEEP) {
        entry.time.shift();
        entry.pps.shift();
        entry.bps.shift();
        entry.dps.shift();
      }
    };
    for (const flow of report.tap_flows) record(`tap_flow:${flow.id}`, flow);
    for (const mirror of report.tap_mirrors) {
      record(`tap_mirror:${mirror.id}`, mirror);
      for (const [direction, rated] of Object.entries(mirror.directions)) record(`tap_mirror:${mirror.id}:${direction}`, rated);
    }
    for (const service of report.tap_services) record(`tap_service:${service.id}`, service);
    for (const key of this.series.keys()) if (!seen.has(key)) this.series.delete(key);
    this.version += 1;
  }

  get(key: string): Series | undefined {
    return this.series.get(key);
  }

  /** The latest rates of a series. */
  latest(key: string): { pps: number | null; bps: number | null; dps: number | null } {
    const series = this.series.get(key);
    const last = (values: Array<number | null> | undefined) => values?.[values.length - 1] ?? null;
    return { pps: last(series?.pps), bps: last(series?.bps), dps: last(series?.dps) };
  }
}

const mapNull = (value: number | null, f: (value: number) => number) => (value === null ? null : f(value));
