/**
 * Scale: N source ports (veth pairs) into one tap service. For each N, the
 * time `Engine.apply` takes and the memory it adds (apply-probe.js), then a
 * `tapas mirror` with N sources under a fixed total load spread round-robin
 * over all of them: CPU per mirrored packet, resident memory, ring drops.
 */
import { join } from 'node:path';

import { MIRROR_CPU, captureDrops, stopProcess, type TapasInstall, type TapasReport } from './contenders.js';
import type { Progress } from './progress.js';
import { cpuNs, hostBusyNs, nsRun, rssKiB, sleep, start } from './proc.js';
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
  // apply probes, the AF_PACKET run (+1 for its stop), the no-mirror baseline, the bpf run (+1)
  return settings.scaleCounts.length * (4 * settings.scaleRepeats + 2);
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
      await mirrorRun(topology, tapas, settings, sources, generators, run.trials, run, progress);
      // CI's quick run checks the harness within its two minutes: the host baseline and the bpf series for the largest N only.
      if (settings.quick && n !== Math.max(...settings.scaleCounts)) {
        progress.step(2 * settings.scaleRepeats + 1);
        continue;
      }
      progress.phase(`scale: the same load with no mirror, ${n} source${n > 1 ? 's' : ''}`);
      // Not while the kernel still frees the stopped mirror's rings: that work would land in the baseline.
      await sleep(3000);
      run.baseline = [];
      for (let repeat = 0; repeat < settings.scaleRepeats; repeat += 1) {
        run.baseline.push(await loadTrial(topology, settings, generators));
        progress.step();
      }
      if (tapas.options.bpf) {
        progress.phase(`scale: tapas mirror --datapath bpf with ${n} source${n > 1 ? 's' : ''}`);
        run.bpf = { trials: [] };
        try {
          await mirrorRun(topology, tapas, settings, sources, generators, run.bpf.trials, undefined, progress, ['--datapath', 'bpf']);
        } catch (error) {
          run.bpf.failed = (error as Error).message;
          progress.note(`scale ${n}, bpf: ${run.bpf.failed}`);
        }
      } else {
        progress.step(settings.scaleRepeats + 1);
      }
    } catch (error) {
      run.failed = (error as Error).message;
      progress.note(`scale ${n}: ${run.failed}`);
    }
  }
  return runs;
}

/** One timed load over all generators: offered and mirrored counts, the host's busy time. */
async function loadTrial(topology: ScaleTopology, settings: Settings, generators: string[], pid?: number): Promise<Trial> {
  const n = generators.length;
  const count = Math.round(settings.scaleRate * settings.scaleSeconds);
  const before = { ...(await sums(topology, n)), cpu: pid === undefined ? NaN : cpuNs(pid), host: hostBusyNs() };
  const sent = await multiSend(topology.gen, generators, 60, count, settings.scaleRate);
  await sleep(300);
  const after = { ...(await sums(topology, n)), cpu: pid === undefined ? NaN : cpuNs(pid), host: hostBusyNs() };
  const offered = after.offered - before.offered;
  const mirrored = after.mirrored - before.mirrored;
  return {
    target: settings.scaleRate, offered, mirrored, seconds: sent.seconds,
    offeredRate: offered / sent.seconds, mirroredRate: mirrored / sent.seconds,
    loss: offered > 0 ? Math.max(0, 1 - mirrored / offered) : NaN,
    mirrorCpuNs: after.cpu - before.cpu, generatorCpuNs: sent.cpuSeconds * 1e9, ksoftirqdNs: NaN, hostBusyNs: after.host - before.host,
  };
}

async function mirrorRun(topology: ScaleTopology, tapas: TapasInstall, settings: Settings, sources: string[],
  generators: string[], trials: Trial[], run: ScaleRun | undefined, progress: Progress, extra: string[] = []): Promise<void> {
  const n = sources.length;
  const maxSeconds = 120 + settings.scaleRepeats * (settings.scaleSeconds + 5);
  const launched = Date.now();
  const child = start('ip', ['netns', 'exec', topology.mir, 'taskset', '-c', MIRROR_CPU, join(tapas.root, 'bin/tapas'), 'mirror',
    ...sources.flatMap((source) => ['--source', source]), '--direction', 'OUT', '--to', 'd0', ...extra,
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
    if (run) run.launchToMirroringSeconds = (Date.now() - launched) / 1000;
    for (let repeat = 0; repeat < settings.scaleRepeats; repeat += 1) {
      trials.push(await loadTrial(topology, settings, generators, child.pid));
      if (run) run.rssKiB = rssKiB(child.pid);
      progress.step();
    }
  } finally {
    const stdout = await stopProcess(child, 'SIGINT', 'tapas mirror').catch(() => '');
    try {
      const report = JSON.parse(stdout) as TapasReport;
      if (run) run.ringDrops = report.stats.sources.reduce((sum, source) => sum + captureDrops(source), 0);
    } catch {
      // the error that brought us here says more than a missing report
    }
    progress.step();
  }
}
