/**
 * Times `Engine.apply` for a plan of N sources into one local port, the way
 * `tapas mirror` builds it, and the resident memory it adds. Run inside the
 * scale topology's mirror namespace:
 *   node dist/bench/apply-probe.js TAPAS_ROOT DESTINATION SOURCE...
 * Prints one JSON object.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The part of the engine the probe uses (src/engine/engine.ts). */
interface EngineLike {
  apply(plan: unknown): Promise<{ sources: Array<{ ok: boolean; reason?: string }>; sinks: Array<{ ok: boolean; reason?: string }> }>;
  close(): Promise<unknown>;
}

/** `tapas mirror`'s default ring: 16 blocks of 128 KiB, 1 ms block timeout. */
const RING = { blockSize: 131072, blockCount: 16, blockTimeoutMs: 1 };

const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);

const [root, destination, ...sources] = process.argv.slice(2);
if (!root || !destination || sources.length === 0) {
  console.error('usage: apply-probe.js TAPAS_ROOT DESTINATION SOURCE...');
  process.exit(2);
}
const { Engine } = (await import(pathToFileURL(join(root, 'dist/engine/engine.js')).href)) as {
  Engine: new (options: { workers: number; ring?: typeof RING }) => EngineLike;
};
// The ring is an engine option; builds from before that read it from each source (and ignore the option).
const plan = {
  sources: sources.map((ifname, index) => ({ id: `source-${index}`, ifname, ring: RING })),
  sinks: [{ id: 'destination', kind: 'port', ifname: destination }],
  rules: sources.map((_, index) => ({ id: `rule-${index}`, sourceId: `source-${index}`, sinkId: 'destination', direction: 'OUT' })),
};
const engine = new Engine({ workers: 1, ring: RING });
const rssBefore = rss();
const applyStart = process.hrtime.bigint();
const stats = await engine.apply(plan);
const applySeconds = Number(process.hrtime.bigint() - applyStart) / 1e9;
const rssAfter = rss();
const closeStart = process.hrtime.bigint();
await engine.close();
const closeSeconds = Number(process.hrtime.bigint() - closeStart) / 1e9;
const failed = [...stats.sources, ...stats.sinks].filter((endpoint) => !endpoint.ok).map((endpoint) => endpoint.reason);
process.stdout.write(`${JSON.stringify({
  sources: sources.length, applySeconds, closeSeconds, rssBeforeKiB: rssBefore, rssAfterKiB: rssAfter,
  ringBytesPerSource: RING.blockSize * RING.blockCount, failed,
})}\n`);
