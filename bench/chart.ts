/** The SVG chart: offered vs mirrored rate per contender, one panel per frame size, drawn by hand. */
import { writeFileSync } from 'node:fs';

import { over, sizeOf } from './derive.js';
import type { Results } from './results.js';
import { sizeLabel } from './traffic.js';

const COLORS: Record<string, string> = {
  tapas: '#d62728', 'tapas-low-latency': '#8c564b', tc: '#1f77b4', nft: '#17becf', daemonlogger: '#ff7f0e', 'netsniff-ng': '#2ca02c',
  'tapas-gre': '#9467bd', 'tapas-erspan': '#e377c2', 'tapas-filter': '#bcbd22', 'tapas-sample100': '#7f7f7f',
  'tapas-bpf-gre': '#393b79', 'tapas-bpf-erspan': '#637939',
};

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** A round step for about `count` ticks up to `max`. */
function tickStep(max: number, count: number): number {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((step) => step >= raw) ?? raw;
}

export function writeChart(results: Results, file: string): void {
  const sizes = results.settings.sizes;
  const panel = { width: 460, height: 340, left: 64, top: 40, right: 16, bottom: 48 };
  const width = panel.width * sizes.length;
  const legendHeight = 28;
  const height = panel.height + legendHeight;
  const contenders = results.contenders.filter((c) => !c.skipped && c.kind !== 'baseline');
  const parts: string[] = [];
  sizes.forEach((size, index) => {
    const x0 = index * panel.width;
    const series = contenders.map((c) => ({
      id: c.id,
      points: (sizeOf(c, size)?.sweep ?? []).map((p) => ({
        x: over(p, (t) => t.offeredRate).median / 1000,
        y: over(p, (t) => t.mirroredRate).median / 1000,
      })).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x),
    }));
    const max = Math.max(10, ...series.flatMap((s) => s.points.flatMap((p) => [p.x, p.y])));
    const step = tickStep(max, 5);
    const top = Math.ceil(max / step) * step;
    const plotW = panel.width - panel.left - panel.right;
    const plotH = panel.height - panel.top - panel.bottom;
    const sx = (v: number) => x0 + panel.left + (v / top) * plotW;
    const sy = (v: number) => panel.top + plotH - (v / top) * plotH;
    parts.push(`<text x="${x0 + panel.width / 2}" y="22" text-anchor="middle" font-weight="bold">${escape(sizeLabel(size))} frames: mirrored vs offered</text>`);
    for (let v = 0; v <= top + 1e-9; v += step) {
      parts.push(`<line x1="${sx(0)}" y1="${sy(v)}" x2="${sx(top)}" y2="${sy(v)}" stroke="#e5e5e5"/>`,
        `<text x="${sx(0) - 6}" y="${sy(v) + 4}" text-anchor="end">${v}</text>`,
        `<line x1="${sx(v)}" y1="${sy(0)}" x2="${sx(v)}" y2="${sy(0) + 4}" stroke="#666"/>`,
        `<text x="${sx(v)}" y="${sy(0) + 18}" text-anchor="middle">${v}</text>`);
    }
    parts.push(`<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(top)}" y2="${sy(0)}" stroke="#666"/>`,
      `<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(0)}" y2="${sy(top)}" stroke="#666"/>`,
      `<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(top)}" y2="${sy(top)}" stroke="#999" stroke-dasharray="4 4"/>`,
      `<text x="${x0 + panel.left + plotW / 2}" y="${panel.height - 10}" text-anchor="middle">offered (kpps)</text>`,
      `<text transform="translate(${x0 + 16} ${panel.top + plotH / 2}) rotate(-90)" text-anchor="middle">mirrored (kpps)</text>`);
    for (const s of series) {
      const color = COLORS[s.id] ?? '#333';
      if (s.points.length > 1) {
        parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${s.points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`);
      }
      for (const p of s.points) parts.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3" fill="${color}"/>`);
    }
  });
  let lx = 16;
  for (const c of contenders) {
    parts.push(`<rect x="${lx}" y="${panel.height + 8}" width="12" height="12" fill="${COLORS[c.id] ?? '#333'}"/>`,
      `<text x="${lx + 16}" y="${panel.height + 18}">${escape(c.label)}</text>`);
    lx += 28 + c.label.length * 7;
  }
  parts.push(`<text x="${width - 8}" y="${panel.height + 18}" text-anchor="end" fill="#666">dashed: no loss · median of ${results.settings.repeats}</text>`);
  writeFileSync(file, `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`);
}
