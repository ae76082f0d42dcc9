/**
 * Scale: N source ports (veth pairs) into one tap service. For each N, the
 * time `Engine.apply` takes and the memory it adds (apply-probe.js), then a
 * `tapas mirror` with N sources under a fixed total load spread round-robin
 * over all of them: CPU per mirrored packet, resident memory, ring drops.
 */
import { join } from 'node:path';

import { MIRROR_CPU, captureDrops, stopProcess, type TapasInstall, type TapasReport } from './contenders.js';
import type { Progress } from './progress.js';
import { cpuNs, nsRun, rssKiB, sleep, start } from './proc.js';
import type { ScaleRun, Settings, Trial } from './results.js';
import { multiSend } from './traffic.js';
import { buildScale, counters, type Namespaces, type ScaleTopology } from './topology.js';

const APPLY_PROBE = new URL('./apply-probe.js', import.meta.url).pathname;

async function sums(topology: ScaleTopology, sources: number): Promise<{ offered: number; mirrored: number }> {
  const mirror = await counters(topology.mir);
  let offered = 0;
  for (let i = 0; i < sources; i += 1) offered += mirror.get(`s${i}`)?.rxPackets ?? NaN;
  const mirrored = (await counters(topology.mon)).get('m0')?.rxPackets ?? NaN;
  return { offered, mirrored };
}

async function applyProbe(topology: ScaleTopology, tapas: TapasInstall, sources: string[]) {
  const output = await nsRun(topology.mir, 'node', [APPLY_PROBE, tapas.root, 'd0', ...sources], 120_000);
  const probe = JSON.parse(output) as {
    applySeconds: number; closeSeconds: number; rssBeforeKiB: number; rssAfterKiB: number; ringBytesPerSource: number;
    failed: string[];
  };
  if (probe.failed.length) throw new Error(`apply of ${sources.length} sources failed: ${probe.failed[0]}`);
  return probe;
}

export function scaleUnits(settings: Settings): number {
  return settings.scaleCounts.length * (2 * settings.scaleRepeats + 1);
}

export async function runScale(spaces: Namespaces, settings: Settings, tapas: TapasInstall, progress: Progress): Promise<ScaleRun[]> {
  progress.phase(`scale: creating ${Math.max(...settings.scaleCounts)} veth pairs`);
  const topology = await buildScale(spaces, Math.max(...settings.scaleCounts));
  progress.step();
  const runs: ScaleRun[] = [];
  for (const n of settings.scaleCounts) {
    const sources = Array.from({ length: n }, (_, i) => `s${i}`);
    const generators = Array.from({ length: n }, (_, i) => `g${i}`);
    const run: ScaleRun = {
      sources: n, applySeconds: [], closeSeconds: [], applyRssDeltaKiB: [], ringBytesPerSource: NaN,
      launchToMirroringSeconds: NaN, rssKiB: NaN, trials: [], ringDrops: NaN,
    };
    runs.push(run);
    try {
      for (let repeat = 0; repeat < settings.scaleRepeats; repeat += 1) {
        progress.phase(`scale: apply of ${n} source${n > 1 ? 's' : ''}`);
        const probe = await applyProbe(topology, tapas, sources);
        run.applySeconds.push(probe.applySeconds);
        run.closeSeconds.push(probe.closeSeconds);
        run.applyRssDeltaKiB.push(probe.rssAfterKiB - probe.rssBeforeKiB);
        run.ringBytesPerSource = probe.ringBytesPerSource;
        progress.step();
      }
      progress.phase(`scale: tapas mirror with ${n} source${n > 1 ? 's' : ''}`);
      await mirrorRun(topology, tapas, settings, sources, generators, run, progress);
    } catch (error) {
      run.failed = (error as Error).message;
      progress.note(`scale ${n}: ${run.failed}`);
    }
  }
  return runs;
}

async function mirrorRun(topology: ScaleTopology, tapas: TapasInstall, settings: Settings, sources: string[],
  generators: string[], run: ScaleRun, progress: Progress): Promise<void> {
  const n = sources.length;
  const maxSeconds = 120 + settings.scaleRepeats * (settings.scaleSeconds + 5);
  const launched = Date.now();
  const child = start('ip', ['netns', 'exec', topology.mir, 'taskset', '-c', MIRROR_CPU, join(tapas.root, 'bin/tapas'), 'mirror',
    ...sources.flatMap((source) => ['--source', source]), '--direction', 'OUT', '--to', 'd0',
    '-f', 'json'], { timeoutMs: (maxSeconds + 30) * 1000 });
  try {
    // Ready when one frame through every source comes out: n copies at the monitor.
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.process.exitCode !== null) throw new Error(`tapas mirror exited: ${child.stderrSoFar().trim().slice(-300)}`);
      const before = await sums(topology, n);
      await multiSend(topology.gen, generators, 60, n, Math.max(1000, n * 10));
      await sleep(50);
      const after = await sums(topology, n);
      if (after.mirrored - before.mirrored >= after.offered - before.offered && after.offered > before.offered) break;
      if (Date.now() > deadline) throw new Error(`${n} sources were not all mirrored within 30 s of launch`);
    }
    run.launchToMirroringSeconds = (Date.now() - launched) / 1000;
    for (let repeat = 0; repeat < settings.scaleRepeats; repeat += 1) {
      const count = Math.round(settings.scaleRate * settings.scaleSeconds);
      const before = { ...(await sums(topology, n)), cpu: cpuNs(child.pid) };
      const sent = await multiSend(topology.gen, generators, 60, count, settings.scaleRate);
      await sleep(300);
      const after = { ...(await sums(topology, n)), cpu: cpuNs(child.pid) };
      run.rssKiB = rssKiB(child.pid);
      const offered = after.offered - before.offered;
      const mirrored = after.mirrored - before.mirrored;
      const trial: Trial = {
        target: settings.scaleRate, offered, mirrored, seconds: sent.seconds,
        offeredRate: offered / sent.seconds, mirroredRate: mirrored / sent.seconds,
        loss: offered > 0 ? Math.max(0, 1 - mirrored / offered) : NaN,
        mirrorCpuNs: after.cpu - before.cpu, generatorCpuNs: sent.cpuSeconds * 1e9, ksoftirqdNs: NaN,
      };
      run.trials.push(trial);
      progress.step();
    }
  } finally {
    const stdout = await stopProcess(child, 'SIGINT', 'tapas mirror').catch(() => '');
    try {
      const report = JSON.parse(stdout) as TapasReport;
      run.ringDrops = report.stats.sources.reduce((sum, source) => sum + captureDrops(source), 0);
    } catch {
      // the error that brought us here says more than a missing report
    }
    progress.step();
  }
}
