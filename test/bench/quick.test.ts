import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

import { netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;

interface QuickResults {
  durationSeconds: number;
  contenders: Array<{
    id: string;
    skipped?: string;
    sizes: Array<{ size: number; failed?: string; sweep: Array<{ trials: Array<{ offered: number; mirrored: number; hostBusyNs?: number }> }> }>;
  }>;
  scale: Array<{ sources: number; failed?: string; applySeconds: number[]; baseline?: unknown[]; bpf?: { failed?: string; trials: Array<{ mirrored: number }> } }>;
}

describe.skipIf(!netnsAvailable)(`npm run bench -- --quick (${netnsSkipReason})`, () => {
  const out = mkdtempSync(join(tmpdir(), 'tapas-bench-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('writes a report and a chart with tapas mirroring packets, in under two minutes', async () => {
    await run('bash', [join(ROOT, 'scripts/bench.sh'), '--quick', '--out', out], { cwd: ROOT, maxBuffer: 16 << 20 });

    const report = readFileSync(join(out, 'report.md'), 'utf8');
    expect(report).toMatch(/^\| tapas \|/m);
    expect(report).toContain('## Targets');
    const svg = readFileSync(join(out, 'offered-vs-mirrored.svg'), 'utf8');
    expect(svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect(svg).toContain('>tapas<');
    expect(existsSync(join(out, 'results.json'))).toBe(true);

    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as QuickResults;
    // The harness's own time: a first run on a fresh host also installs the contenders' packages.
    expect(results.durationSeconds).toBeLessThan(120);
    const tapas = results.contenders.find((c) => c.id === 'tapas');
    expect(tapas?.skipped).toBeUndefined();
    const size = tapas?.sizes[0];
    expect(size?.failed).toBeUndefined();
    const trials = size?.sweep.flatMap((point) => point.trials) ?? [];
    expect(trials.length).toBeGreaterThan(0);
    for (const trial of trials) {
      expect(trial.offered).toBeGreaterThan(0);
      expect(trial.mirrored).toBeGreaterThan(0);
    }
    // The kernel's own mirror is the yardstick: it must have run too.
    const tc = results.contenders.find((c) => c.id === 'tc');
    expect(tc?.sizes[0]?.sweep.flatMap((p) => p.trials).every((t) => t.mirrored > 0)).toBe(true);
    expect(results.scale.length).toBeGreaterThan(0);
    expect(results.scale.every((s) => !s.failed && s.applySeconds.length > 0)).toBe(true);
    // The kernel data path ran too, and every trial has the host's busy time (the issue-12 figures).
    const bpf = results.contenders.find((c) => c.id === 'tapas-bpf');
    expect(bpf?.skipped).toBeUndefined();
    expect(bpf?.sizes[0]?.sweep.flatMap((p) => p.trials).every((t) => t.mirrored > 0 && (t.hostBusyNs ?? 0) > 0)).toBe(true);
    const largest = results.scale[results.scale.length - 1]!;
    expect(largest.baseline?.length).toBeGreaterThan(0);
    expect(largest.bpf?.failed).toBeUndefined();
    expect(largest.bpf?.trials.every((t) => t.mirrored > 0)).toBe(true);
    expect(report).toContain('tapas --datapath bpf ÷ tc mirred');
  }, 240_000);
});
