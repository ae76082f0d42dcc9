/** Figures derived from raw trials, shared by the report and the chart. */
import type { ContenderResult, RatePoint, Results, SizeResult, Trial } from './results.js';
import { spread, type Spread } from './stats.js';

export const perPacketNs = (trial: Trial) => (trial.mirrored > 0 ? trial.mirrorCpuNs / trial.mirrored : NaN);

export function sizeOf(contender: ContenderResult | undefined, size: number): SizeResult | undefined {
  return contender?.sizes.find((s) => s.size === size && !s.failed);
}

export function byId(results: Results, id: string): ContenderResult | undefined {
  return results.contenders.find((c) => c.id === id);
}

export function point(result: SizeResult | undefined, target: number | null): RatePoint | undefined {
  return result?.sweep.find((p) => p.target === target);
}

export function over(point: RatePoint | undefined, f: (trial: Trial) => number): Spread {
  return spread(point?.trials.map(f) ?? []);
}

export function lossFreeRate(results: Results, id: string, size: number): Spread {
  return spread(sizeOf(byId(results, id), size)?.search?.rates ?? []);
}

/**
 * CPU of everything on the path (generator, mirroring process, ksoftirqd)
 * above what the same offered load costs with no mirror, per mirrored packet.
 * The kernel's mirrors do their work in softirq, mostly in the generator's
 * context; this is the one figure that shows it.
 */
export function pathAboveBaselineNs(results: Results, size: number, trial: Trial): number {
  const baseline = point(sizeOf(byId(results, 'none'), size), trial.target);
  const perOffered = over(baseline, (t) => (t.generatorCpuNs + t.ksoftirqdNs) / t.offered).median;
  if (!Number.isFinite(perOffered) || trial.mirrored <= 0) return NaN;
  const path = trial.generatorCpuNs + trial.ksoftirqdNs + (Number.isFinite(trial.mirrorCpuNs) ? trial.mirrorCpuNs : 0);
  return (path - perOffered * trial.offered) / trial.mirrored;
}

/**
 * The whole host's CPU (all cores, softirq included: wall × CPUs − idle)
 * above what the same offered load costs with no mirror, per mirrored
 * packet: the "marginal CPU of the whole host". The baseline is the
 * median per offered frame of the no-mirror trials at the same requested
 * rate (`baseline`, for the scale runs, given directly).
 */
export function hostAboveBaselineNs(results: Results, size: number, trial: Trial, baseline?: Trial[]): number {
  const trials = baseline ?? point(sizeOf(byId(results, 'none'), size), trial.target)?.trials ?? [];
  const perOffered = spread(trials.map((t) => (t.hostBusyNs ?? NaN) / t.offered)).median;
  if (!Number.isFinite(perOffered) || trial.mirrored <= 0 || trial.hostBusyNs === undefined) return NaN;
  return (trial.hostBusyNs - perOffered * trial.offered) / trial.mirrored;
}
