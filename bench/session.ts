/**
 * One contender running on the main topology with one frame size: trials at
 * an offered rate (counters before and after, CPU of everything on the
 * path), the loss-free search, and the latency runs.
 */
import type { Contender, Running } from './contenders.js';
import { TimestampCapture, pairDelays } from './latency.js';
import { cpuNs, hostBusyNs, sleep } from './proc.js';
import type { LatencyRun, RatePoint, SearchResult, Settings, Trial } from './results.js';
import { quantile, spread } from './stats.js';
import { counters, type MainTopology } from './topology.js';
import { multiSend, trafgen } from './traffic.js';

/** What trafgen adds to each requested gap (a sendto and a wake-up), measured on the benchmark machine. */
const TRAFGEN_GAP_OVERHEAD_NS = 6500;

interface Snapshot {
  offered: number;
  mirrored: number;
  mirrorCpuNs: number;
  ksoftirqdNs: number;
  hostBusyNs: number;
}

export class Session {
  constructor(
    private readonly topology: MainTopology,
    private readonly contender: Contender,
    private readonly running: Running,
    private readonly size: number,
    private readonly config: string,
    private readonly settings: Settings,
    private readonly ksoftirqd: number[],
    private readonly dir: string,
    private readonly onTrial: () => void,
  ) {}

  private get sinkAt(): [string, string] {
    return this.contender.sink === 'collector' ? [this.topology.col, 'c0'] : [this.topology.mon, 'm0'];
  }

  private async sinkCount(): Promise<number> {
    const [ns, ifname] = this.sinkAt;
    return (await counters(ns)).get(ifname)?.rxPackets ?? NaN;
  }

  private async snapshot(): Promise<Snapshot> {
    const source = (await counters(this.topology.mir)).get('s0')?.rxPackets ?? NaN;
    return {
      offered: source,
      mirrored: await this.sinkCount(),
      mirrorCpuNs: this.running.pid === undefined ? NaN : cpuNs(this.running.pid),
      ksoftirqdNs: this.ksoftirqd.reduce((sum, pid) => sum + (cpuNs(pid) || 0), 0),
      hostBusyNs: hostBusyNs(),
    };
  }

  /** Waits until the copies stop arriving (a soft tap may still hold some in a buffer). */
  private async settle(): Promise<void> {
    await sleep(100);
    if (this.contender.sink === 'none') return;
    let last = await this.sinkCount();
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      await sleep(150);
      const now = await this.sinkCount();
      if (now === last) return;
      last = now;
    }
  }

  /** Sends frames until copies come out, so the mirror is known to run before anything is measured. */
  async ready(timeoutMs = 20_000): Promise<void> {
    if (this.contender.sink === 'none') return;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const before = await this.sinkCount();
      await trafgen(this.topology.gen, 'g0', this.config, 20, undefined);
      await sleep(100);
      if ((await this.sinkCount()) > before) return;
      if (Date.now() > deadline) throw new Error(`no copies came out within ${timeoutMs / 1000} s of starting`);
      await sleep(200);
    }
  }

  async trial(target: number | null, record = true): Promise<Trial> {
    const before = await this.snapshot();
    // Paced rates from the paced sender; "unpaced" is trafgen flat out.
    const sent = target === null
      ? await trafgen(this.topology.gen, 'g0', this.config, this.settings.unpacedCount[this.size] ?? 500_000)
      : await multiSend(this.topology.gen, ['g0'], this.size, Math.ceil(target * this.settings.trialSeconds), target);
    await this.settle();
    const after = await this.snapshot();
    if (record) this.onTrial();
    const offered = after.offered - before.offered;
    // A sampling contender's copies each stand for `represents` offered frames.
    const mirrored = this.contender.sink === 'none' ? 0 : (after.mirrored - before.mirrored) * (this.contender.represents ?? 1);
    return {
      target,
      offered,
      mirrored,
      seconds: sent.seconds,
      offeredRate: offered / sent.seconds,
      mirroredRate: mirrored / sent.seconds,
      loss: offered > 0 ? Math.max(0, 1 - mirrored / offered) : NaN,
      mirrorCpuNs: after.mirrorCpuNs - before.mirrorCpuNs,
      generatorCpuNs: sent.cpuSeconds * 1e9,
      ksoftirqdNs: after.ksoftirqdNs - before.ksoftirqdNs,
      hostBusyNs: after.hostBusyNs - before.hostBusyNs,
    };
  }

  async sweep(): Promise<RatePoint[]> {
    const rates = this.settings.rates[this.size] ?? [];
    const points: RatePoint[] = rates.map((target) => ({ target, trials: [] }));
    for (let repeat = 0; repeat < this.settings.repeats; repeat += 1) {
      for (const point of points) point.trials.push(await this.trial(point.target));
    }
    return points;
  }

  private lossFree(trial: Trial, target: number): boolean {
    return trial.loss < this.settings.lossFree && trial.offeredRate >= 0.9 * target;
  }

  /**
   * The highest loss-free rate: bracketed by the sweep (the highest rate whose
   * median trial was loss-free, and the next one), then bisected; each
   * repetition of the search gives one figure.
   */
  async search(sweep: RatePoint[]): Promise<SearchResult> {
    const rateOf = (point: RatePoint) => point.target ?? spread(point.trials.map((t) => t.offeredRate)).median;
    const medianLossFree = (point: RatePoint) =>
      spread(point.trials.map((t) => t.loss)).median < this.settings.lossFree &&
      spread(point.trials.map((t) => t.offeredRate)).median >= 0.9 * rateOf(point);
    let highest = -1;
    while (highest + 1 < sweep.length && medianLossFree(sweep[highest + 1]!)) highest += 1;
    const floor = highest >= 0 ? spread(sweep[highest]!.trials.map((t) => t.offeredRate)).median : 0;
    if (highest === sweep.length - 1 && sweep[highest]!.target === null) {
      return { rates: [floor], bound: 'generator', bracket: [floor, floor] };
    }
    const low = highest >= 0 ? rateOf(sweep[highest]!) : 0;
    const next = sweep[highest + 1];
    const high = next ? rateOf(next) : 2 * low; // every paced rate was loss-free: look above the sweep
    const rates: number[] = [];
    for (let repeat = 0; repeat < this.settings.repeats; repeat += 1) {
      let [lo, hi, best] = [low, high, floor];
      for (let step = 0; step < this.settings.searchSteps; step += 1) {
        const mid = (lo + hi) / 2;
        if (mid < 1000) break;
        const trial = await this.trial(mid);
        if (this.lossFree(trial, mid)) {
          lo = mid;
          best = Math.max(best, trial.offeredRate);
        } else {
          hi = mid;
        }
      }
      rates.push(best);
    }
    return { rates, bound: highest >= 0 || rates.some((r) => r > 0) ? 'search' : 'none', bracket: [low, high] };
  }

  async latency(): Promise<LatencyRun[]> {
    const runs: LatencyRun[] = [];
    const [ns, ifname] = this.sinkAt;
    const seconds = this.settings.latencyFrames / this.settings.latencyRate;
    for (let repeat = 0; repeat < this.settings.latencyRepeats; repeat += 1) {
      const original = await TimestampCapture.start(this.topology.mir, 's0', this.dir, 'original', seconds);
      const copy = await TimestampCapture.start(ns, ifname, this.dir, 'copy', seconds).catch(async (error: unknown) => {
        await original.stop();
        throw error;
      });
      // trafgen with a gap: smooth, and its IPv4 ids count up for the pairing.
      await trafgen(this.topology.gen, 'g0', this.config, this.settings.latencyFrames, 1e9 / this.settings.latencyRate - TRAFGEN_GAP_OVERHEAD_NS);
      await this.settle();
      await sleep(200);
      const delays = pairDelays(await original.stop(), await copy.stop());
      this.onTrial();
      const sorted = delays.micros.sort((a, b) => a - b);
      runs.push({
        paired: sorted.length,
        originals: delays.originals,
        copies: delays.copies,
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        max: sorted[sorted.length - 1] ?? NaN,
      });
    }
    return runs;
  }
}
