/** Rate charts with uPlot: a sparkline per row of the live table, and a larger chart of the selected resource. */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

import { bitRate, compact, packetRate } from './format.js';
import type { Series } from './history.js';

const PACKETS = '#4cc9f0';
const BITS = '#b388ff';
const DROPS = '#ff5d5d';

function usePlot(options: () => uPlot.Options, data: uPlot.AlignedData, version: number) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    plot.current = new uPlot(options(), data, box.current!);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    plot.current?.setData(data);
  }, [version]);
  return box;
}

/** How much the charts show: the last minute, however few reports there are yet. */
export const WINDOW_S = 60;

const lastMinute = (u: uPlot): uPlot.Range.MinMax => {
  const times = u.data[0];
  const end = times.length > 0 ? times[times.length - 1]! : Date.now() / 1000;
  return [end - WINDOW_S, end];
};

/** Time ticks every quarter of the window, counted back from the latest report. */
const quarters = (u: uPlot) => {
  const end = u.scales.x!.max ?? 0;
  return [4, 3, 2, 1, 0].map((k) => end - (k * WINDOW_S) / 4);
};

/** Time ticks as seconds before the latest report: "-45 s", …, "now". */
const ago = (u: uPlot, ticks: number[]) => {
  const end = u.scales.x!.max ?? 0;
  return ticks.map((tick) => (end - tick < 0.5 ? 'now' : `-${Math.round(end - tick)} s`));
};

const EMPTY: Series = { time: [], pps: [], bps: [], dps: [] };

/** Packets per second over the last minute, with drops in red when there are any. */
export function Sparkline({ series, version, label }: { series: Series | undefined; version: number; label: string }) {
  const { time, pps, dps } = series ?? EMPTY;
  const box = usePlot(() => ({
    width: 90,
    height: 30,
    pxAlign: false,
    legend: { show: false },
    cursor: { show: false },
    select: { show: false, left: 0, top: 0, width: 0, height: 0 },
    axes: [{ show: false }, { show: false }],
    scales: { x: { time: true, range: lastMinute }, y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] } },
    series: [{}, { stroke: PACKETS, fill: 'rgba(76,201,240,0.18)', width: 1.5, points: { show: false } }, { stroke: DROPS, width: 1, points: { show: false } }],
  }), [time, pps, dps], version);
  return <div class="sparkline" ref={box} role="img" aria-label={label} />;
}

/** Packets/s and drops/s (left axis), bits/s (right axis), with a legend. */
export function RateChart({ series, version }: { series: Series | undefined; version: number }) {
  const { time, pps, bps, dps } = series ?? EMPTY;
  const box = usePlot(() => ({
    width: 330,
    height: 150,
    legend: { show: true, live: false },
    cursor: { show: true, drag: { x: false, y: false } },
    scales: { x: { time: true, range: lastMinute }, pkts: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] }, bits: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] } },
    axes: [
      { stroke: '#9aa7b8', grid: { stroke: 'rgba(255,255,255,0.06)' }, ticks: { show: false }, splits: quarters, values: ago },
      { scale: 'pkts', stroke: '#9aa7b8', size: 44, grid: { stroke: 'rgba(255,255,255,0.06)' }, values: (_u, ticks) => ticks.map(compact) },
      { scale: 'bits', side: 1, stroke: '#9aa7b8', size: 44, grid: { show: false }, values: (_u, ticks) => ticks.map(compact) },
    ],
    series: [
      {},
      // Bits first, so that the packets' line, of the same shape, is drawn over it.
      { label: 'bits/s', scale: 'bits', stroke: BITS, width: 1.5, value: (_u, v) => bitRate(v) },
      { label: 'packets/s', scale: 'pkts', stroke: PACKETS, width: 2, value: (_u, v) => packetRate(v) },
      { label: 'drops/s', scale: 'pkts', stroke: DROPS, width: 1.5, value: (_u, v) => packetRate(v) },
    ],
  }), [time, bps, pps, dps], version);
  return <div class="rate-chart" ref={box} />;
}
