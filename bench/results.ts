/** What a benchmark run measured: written as results.json and rendered by report.ts and chart.ts. */
import type { ContenderId } from './contenders.js';

export interface Settings {
  quick: boolean;
  sizes: number[];
  /** Offered rates of the sweep per frame size, frames/s; null is trafgen unpaced (as fast as it goes). */
  rates: Record<number, Array<number | null>>;
  /** Frames of an unpaced trial, per frame size. */
  unpacedCount: Record<number, number>;
  repeats: number;
  trialSeconds: number;
  searchSteps: number;
  lossFree: number;
  latencyRate: number;
  latencyFrames: number;
  latencyRepeats: number;
  scaleCounts: number[];
  scaleRate: number;
  scaleSeconds: number;
  scaleRepeats: number;
}

export interface Trial {
  /** Requested rate, frames/s; null: unpaced. */
  target: number | null;
  offered: number;
  mirrored: number;
  seconds: number;
  offeredRate: number;
  mirroredRate: number;
  /** 1 - mirrored/offered, never below 0. */
  loss: number;
  /** On-CPU time of the mirroring process (all threads), ns; NaN for the kernel's mirrors. */
  mirrorCpuNs: number;
  generatorCpuNs: number;
  ksoftirqdNs: number;
  /** The whole host's CPU time not idle during the trial (all cores, softirq included; proc.ts hostBusyNs); absent in older results. */
  hostBusyNs?: number;
}

export interface RatePoint {
  target: number | null;
  trials: Trial[];
}

export interface SearchResult {
  /** Highest loss-free offered rate found by each repetition of the search, frames/s. */
  rates: number[];
  /** 'generator' when even the unpaced generator saw no loss: the rate is a lower bound. */
  bound: 'search' | 'generator' | 'none';
  bracket: [number, number];
}

export interface LatencyRun {
  paired: number;
  originals: number;
  copies: number;
  p50: number;
  p99: number;
  max: number;
}

export interface SizeResult {
  size: number;
  failed?: string;
  sweep: RatePoint[];
  search?: SearchResult;
  latency?: LatencyRun[];
  tapas?: { ringDrops: number; sinkErrors: number; eventLoopLagP99Ms: number; rssKiB: number };
}

export interface ContenderResult {
  id: ContenderId;
  label: string;
  kind: 'baseline' | 'tapas' | 'kernel' | 'userspace';
  sink: 'port' | 'collector' | 'none';
  skipped?: string;
  sizes: SizeResult[];
}

export interface ScaleRun {
  sources: number;
  applySeconds: number[];
  closeSeconds: number[];
  applyRssDeltaKiB: number[];
  ringBytesPerSource: number;
  /** Seconds from launching `tapas mirror` until a probe through every source came out mirrored. */
  launchToMirroringSeconds: number;
  rssKiB: number;
  trials: Trial[];
  ringDrops: number;
  failed?: string;
  /** The same load with no mirror (hostBusyNs per offered frame is the baseline) and under `tapas mirror --datapath bpf`. */
  baseline?: Trial[];
  bpf?: { trials: Trial[]; failed?: string };
}

export interface Results {
  generatedAt: string;
  durationSeconds: number;
  machine: Record<string, string>;
  versions: Record<string, string>;
  settings: Settings;
  contenders: ContenderResult[];
  scale: ScaleRun[];
  notes: string[];
}
