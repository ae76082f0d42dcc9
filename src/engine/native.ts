/** Everything the native addon exports, typed in one place. Only this folder loads it. */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Plan } from './plan.js';

export interface EndpointHealth {
  id: string;
  ok: boolean;
  /** Why the source or sink is not working; present only when ok is false. */
  reason?: string;
}

export interface SourceStats extends EndpointHealth {
  packets: number;
  bytes: number;
  /** Frames the kernel could not put in the ring because it was full. */
  ringDrops: number;
  ringFreezes: number;
  /** Frames captured shorter than they were on the wire. */
  truncated: number;
}

export interface SinkStats extends EndpointHealth {
  packets: number;
  bytes: number;
  /** Frames the kernel refused to send. */
  errors: number;
}

export interface RuleStats {
  id: string;
  /** Frames matched and handed to the sink. */
  packets: number;
  bytes: number;
  /** Frames larger than the sink's MTU allows: dropped and counted. */
  oversize: number;
  /** Frames matched while the sink was failed. */
  unavailable: number;
}

export interface EngineStats {
  sources: SourceStats[];
  sinks: SinkStats[];
  rules: RuleStats[];
}

export interface InterfaceInfo {
  ifindex: number;
  mtu: number;
  mac: string;
  up: boolean;
}

export interface NativeEngine {
  /** Resolves once every worker runs the plan; rejects, changing nothing, if the plan is invalid. */
  apply(plan: Plan): Promise<void>;
  stats(): EngineStats;
  close(): void;
}

export interface NativeAddon {
  NativeEngine: new (options?: { workers?: number }) => NativeEngine;
  /** Throws with a readable reason (no such interface or netns, no CAP_NET_RAW). */
  probeInterface(ifname: string, netns?: string): InterfaceInfo;
}

function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i += 1) {
    const candidate = join(dir, 'build', 'Release', 'tapas.node');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('the native addon is not built: run `npm run build` (build/Release/tapas.node is missing)');
}

let addon: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  addon ??= createRequire(import.meta.url)(findAddon()) as NativeAddon;
  return addon;
}
