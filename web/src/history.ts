/**
 * The last minutes of each tap flow's, tap mirror's and tap service's rates,
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

const KEEP = 120;

export class RateHistory {
  private readonly series = new Map<string, Series & { lastDrops: number | null; lastTime: number | null }>();
  /** Bumped on every report, so that views know to redraw. */
  version = 0;

  add(report: StatsReport): void {
    const time = Date.parse(report.time) / 1000;
    const seen = new Set<string>();
    const record = (key: string, rated: Rated) => {
      seen.add(key);
      let entry = this.series.get(key);
      if (!entry) {
        entry = { time: [], pps: [], bps: [], dps: [], lastDrops: null, lastTime: null };
        this.series.set(key, entry);
      }
      const dropped = rated.packets === null ? null : totalDrops(rated.drops);
      const dps = dropped !== null && entry.lastDrops !== null && entry.lastTime !== null && time > entry.lastTime
        ? Math.max(0, (dropped - entry.lastDrops) / (time - entry.lastTime)) : null;
      entry.time.push(time);
      entry.pps.push(rated.packets_per_second);
      entry.bps.push(rated.bits_per_second);
      entry.dps.push(dps);
      entry.lastDrops = dropped;
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

  /** The latest drop rate of a series. */
  dropRate(key: string): number | null {
    const series = this.series.get(key);
    return series?.dps[series.dps.length - 1] ?? null;
  }
}
