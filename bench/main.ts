/**
 * `npm run bench [-- --quick] [--out DIR] [--tapas DIR] [--only a,b] [--no-scale]`
 *
 * Builds the namespace topology, runs every contender in turn on it (tapas,
 * tc mirred, nftables dup, daemonlogger, netsniff-ng, tapas GRE/ERSPAN),
 * then the scale runs, and writes report.md, offered-vs-mirrored.svg and
 * results.json. Namespaces are deleted at the end, also on error or Ctrl-C.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { writeChart } from './chart.js';
import { CONTENDERS, captureDrops, inspectTapas, type Contender, type ContenderId, type TapasInstall } from './contenders.js';
import { killAll, ksoftirqdPids, rssKiB, run } from './proc.js';
import { Progress } from './progress.js';
import { writeReport } from './report.js';
import type { ContenderResult, Results, Settings, SizeResult } from './results.js';
import { runScale, scaleUnits } from './scale.js';
import { Session } from './session.js';
import { buildMain, Namespaces, removeStaleNamespaces, type MainTopology } from './topology.js';
import { writeTrafgenConfig } from './traffic.js';

const ROOT = new URL('../../', import.meta.url).pathname;

const FULL: Settings = {
  quick: false,
  sizes: [60, 1514],
  rates: {
    60: [50_000, 100_000, 200_000, 300_000, 400_000, null],
    1514: [25_000, 50_000, 100_000, 200_000, 400_000, null],
  },
  unpacedCount: { 60: 1_000_000, 1514: 800_000 },
  repeats: 3,
  trialSeconds: 1,
  searchSteps: 3,
  lossFree: 0.001,
  latencyRate: 10_000,
  latencyFrames: 10_000,
  latencyRepeats: 3,
  scaleCounts: [1, 16, 64, 256],
  scaleRate: 100_000,
  scaleSeconds: 2,
  scaleRepeats: 3,
};

/** CI's smoke run: every contender and phase once, small; checks the harness, not the speed. */
const QUICK: Settings = {
  ...FULL,
  quick: true,
  sizes: [60],
  rates: { 60: [20_000, 100_000] },
  repeats: 1,
  searchSteps: 1,
  latencyRepeats: 1,
  scaleCounts: [1, 4],
  scaleRate: 20_000,
  scaleSeconds: 1,
  scaleRepeats: 1,
};

interface Options {
  settings: Settings;
  out: string;
  tapasRoot: string;
  only?: Set<string>;
  scale: boolean;
  /** Only render report.md and the chart again from the results.json in `out`. */
  render: boolean;
}

function usage(message?: string): never {
  if (message) process.stderr.write(`bench: ${message}\n`);
  process.stderr.write(`usage: npm run bench -- [--quick] [--out DIR] [--tapas DIR] [--only ID,ID] [--no-scale]
  --quick        CI's smoke run (< 2 min): one size, two rates, one repetition
  --out DIR      where report.md, offered-vs-mirrored.svg and results.json go
                 (default bench/results, or bench/results/quick with --quick)
  --tapas DIR    the tapas checkout to measure (built; default this one)
  --only IDS     contenders: ${CONTENDERS.map((c) => c.id).join(', ')}
  --no-scale     skip the 1..256 sources runs
  --sizes LIST   frame sizes on the veth, e.g. 60 (default 60,1514)
  --rates LIST   paced rates in frames/s, and/or "unpaced", e.g. 100000,unpaced
                 (default: a sweep per size)
  --seconds S    seconds per trial and per scale trial (default 1 and 2); the
                 host's CPU figures are differences of whole-host totals, so
                 longer trials make them steadier
  --render       measure nothing: write report.md and the chart again from
                 the results.json in --out (after a change to the report)
`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  let quick = false;
  let out: string | undefined;
  let tapasRoot = ROOT;
  let only: Set<string> | undefined;
  let scale = true;
  let render = false;
  let sizes: number[] | undefined;
  let rates: Array<number | null> | undefined;
  let seconds: number | undefined;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const value = () => argv[++i] ?? usage(`${arg} needs a value`);
    if (arg === '--quick') quick = true;
    else if (arg === '--out') out = resolve(value());
    else if (arg === '--tapas') tapasRoot = resolve(value());
    else if (arg === '--only') only = new Set(value().split(','));
    else if (arg === '--no-scale') scale = false;
    else if (arg === '--render') render = true;
    else if (arg === '--sizes') {
      sizes = value().split(',').map(Number);
      if (sizes.some((size) => !Number.isInteger(size) || size < 60 || size > 1514)) usage('--sizes takes frame sizes from 60 to 1514');
    } else if (arg === '--rates') {
      rates = value().split(',').map((rate) => (rate === 'unpaced' ? null : Number(rate)));
      if (rates.some((rate) => rate !== null && !(rate > 0 && rate <= 1_000_000))) usage('--rates takes frames/s up to 1,000,000, or unpaced');
    } else if (arg === '--seconds') {
      seconds = Number(value());
      if (!(seconds > 0 && seconds <= 60)) usage('--seconds takes 0 to 60');
    }
    else if (arg === '--help' || arg === '-h') usage();
    else usage(`unknown argument ${arg}`);
  }
  for (const id of only ?? []) if (!CONTENDERS.some((c) => c.id === id)) usage(`unknown contender ${id}`);
  let settings = quick ? QUICK : FULL;
  if (sizes) settings = { ...settings, sizes };
  if (rates) settings = { ...settings, rates: Object.fromEntries(settings.sizes.map((size) => [size, rates])) };
  if (seconds !== undefined) {
    const scaled = (count: number) => Math.round(count * seconds! / settings.trialSeconds);
    settings = {
      ...settings, trialSeconds: seconds, scaleSeconds: seconds,
      unpacedCount: Object.fromEntries(Object.entries(settings.unpacedCount).map(([size, count]) => [size, scaled(count)])),
    };
  }
  return {
    settings,
    out: out ?? join(ROOT, 'bench/results', quick ? 'quick' : ''),
    tapasRoot,
    only,
    scale,
    render,
  };
}

async function version(command: string, args: string[], pattern: RegExp): Promise<string> {
  const output = await new Promise<string>((done) => {
    execFile(command, args, (_error, stdout, stderr) => done(`${stdout}${stderr}`));
  });
  return pattern.exec(output)?.[1] ?? 'not installed';
}

async function describeMachine(tapas: TapasInstall): Promise<{ machine: Record<string, string>; versions: Record<string, string> }> {
  const os = readFileSync('/etc/os-release', 'utf8');
  const commit = await run('git', ['-C', tapas.root, 'rev-parse', '--short', 'HEAD']).catch(() => 'unknown');
  const dirty = await run('git', ['-C', tapas.root, 'status', '--porcelain', '--', 'native', 'src', 'binding.gyp'])
    .then((s) => (s.trim() ? ' (with uncommitted changes in native/ or src/)' : ''), () => '');
  return {
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: String(cpus().length),
      memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
      kernel: (await run('uname', ['-r'])).trim(),
      os: /PRETTY_NAME="([^"]+)"/.exec(os)?.[1] ?? 'unknown',
      load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    },
    versions: {
      tapas: `${commit.trim()}${dirty}`,
      node: process.version,
      trafgen: await version('trafgen', ['-v'], /trafgen (\S+)/),
      'netsniff-ng': await version('netsniff-ng', ['-v'], /netsniff-ng (\S+)/),
      daemonlogger: await version('dpkg-query', ['-W', '-f=${Version}', 'daemonlogger'], /(\S+)/),
      nftables: await version('nft', ['-v'], /nftables (v\S+)/),
      iproute2: await version('tc', ['-V'], /(iproute2-[\d.]+)/),
      tcpdump: await version('tcpdump', ['--version'], /tcpdump version (\S+)/),
    },
  };
}

function sessionUnits(settings: Settings, contender: Contender, size: number): number {
  const sweep = (settings.rates[size]?.length ?? 0) * settings.repeats;
  if (contender.kind === 'baseline') return sweep;
  const search = settings.searchSteps * settings.repeats;
  const latency = size === settings.sizes[0] ? settings.latencyRepeats : 0;
  return sweep + search + latency;
}

/**
 * One repetition of one contender with one frame size: start it, show it
 * delivers, warm up, sweep the rates once, search once, measure latency once,
 * stop. Repetitions of all contenders take turns, so that a noisy minute on
 * the shared machine falls on several contenders rather than on one.
 */
async function runRepetition(contender: Contender, size: number, repeat: number, into: SizeResult, topology: MainTopology,
  tapas: TapasInstall, settings: Settings, dir: string, ksoftirqd: number[], progress: Progress): Promise<void> {
  const once: Settings = { ...settings, repeats: 1, latencyRepeats: repeat < settings.latencyRepeats ? 1 : 0 };
  const units = sessionUnits(once, contender, size);
  let used = 0;
  const what = `${contender.label}, ${size + 4}-byte frames, repetition ${repeat + 1}/${settings.repeats}`;
  progress.phase(`${what}: starting`);
  const running = await contender.start(topology, tapas, dir, Math.ceil(units * 6 + 120));
  const session = new Session(topology, contender, running, size, join(dir, `trafgen-${size}.cfg`), once, ksoftirqd, dir,
    () => { used += 1; progress.step(); });
  try {
    await session.ready();
    if (!settings.quick) await session.trial(settings.rates[size]?.[0] ?? 50_000, false); // warm-up, not recorded
    progress.phase(`${what}: rate sweep`);
    const sweep = await session.sweep();
    for (const point of sweep) {
      const existing = into.sweep.find((p) => p.target === point.target);
      if (existing) existing.trials.push(...point.trials);
      else into.sweep.push(point);
    }
    if (contender.kind !== 'baseline') {
      progress.phase(`${what}: loss-free search`);
      const search = await session.search(sweep);
      const previous = into.search;
      into.search = previous
        ? { rates: [...previous.rates, ...search.rates], bound: previous.bound === search.bound ? search.bound : 'search', bracket: search.bracket }
        : search;
      if (size === settings.sizes[0] && once.latencyRepeats > 0) {
        progress.phase(`${what}: latency at ${settings.latencyRate / 1000} kpps`);
        into.latency = [...(into.latency ?? []), ...(await session.latency())];
      }
    }
    const rss = running.pid === undefined ? NaN : rssKiB(running.pid);
    const report = await running.stop();
    if (report) {
      const previous = into.tapas ?? { ringDrops: 0, sinkErrors: 0, eventLoopLagP99Ms: 0, rssKiB: 0 };
      into.tapas = {
        ringDrops: previous.ringDrops + report.stats.sources.reduce((sum, s) => sum + captureDrops(s), 0),
        sinkErrors: previous.sinkErrors + report.stats.sinks.reduce((sum, s) => sum + s.errors, 0),
        eventLoopLagP99Ms: Math.max(previous.eventLoopLagP99Ms, report.eventLoopLagMs.p99),
        rssKiB: Math.max(previous.rssKiB, rss),
      };
    }
  } catch (error) {
    into.failed = `${what}: ${(error as Error).message}`;
    progress.note(into.failed);
    await running.stop().catch(() => undefined);
  }
  progress.grow(used - units);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const { settings } = options;
  if (options.render) {
    const results = JSON.parse(readFileSync(join(options.out, 'results.json'), 'utf8')) as Results;
    writeChart(results, join(options.out, 'offered-vs-mirrored.svg'));
    writeReport(results, join(options.out, 'report.md'), 'offered-vs-mirrored.svg');
    return;
  }
  if (process.getuid?.() !== 0) usage('the benchmark builds network namespaces: run it as root');
  const began = Date.now();
  removeStaleNamespaces();
  const spaces = new Namespaces();
  const dir = mkdtempSync(join(tmpdir(), `${spaces.prefix}-`));
  const teardown = () => {
    killAll();
    spaces.deleteAllSync();
    rmSync(dir, { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\n[bench] ${signal}: tearing down\n`);
      teardown();
      process.exit(130);
    });
  }
  process.on('exit', teardown);

  try {
    const tapas = await inspectTapas(options.tapasRoot);
    const { machine, versions } = await describeMachine(tapas);
    const notes: string[] = [];
    const contenders = CONTENDERS.filter((c) => !options.only || options.only.has(c.id) || c.id === 'none');
    const results: ContenderResult[] = [];
    const runnable: Contender[] = [];
    for (const contender of contenders) {
      const reason = await contender.unavailable(tapas);
      results.push({ id: contender.id, label: contender.label, kind: contender.kind, sink: contender.sink, sizes: [],
        ...(reason ? { skipped: reason } : {}) });
      if (reason) notes.push(`${contender.label} skipped: ${reason}.`);
      else runnable.push(contender);
    }
    const total = settings.sizes.reduce((sum, size) => sum + runnable.reduce((n, c) => n + sessionUnits(settings, c, size), 0), 0) +
      (options.scale ? scaleUnits(settings) : 0);
    const progress = new Progress(total);
    progress.phase('building the topology');
    const topology = await buildMain(spaces);
    for (const size of settings.sizes) writeTrafgenConfig(dir, size);
    const ksoftirqd = ksoftirqdPids();

    for (const size of settings.sizes) {
      const bySize = new Map(runnable.map((c) => [c, { size, sweep: [] } as SizeResult]));
      for (const [contender, result] of bySize) results.find((r) => r.id === contender.id)!.sizes.push(result);
      for (let repeat = 0; repeat < settings.repeats; repeat += 1) {
        for (const [contender, result] of bySize) {
          if (result.failed) continue;
          await runRepetition(contender, size, repeat, result, topology, tapas, settings, dir, ksoftirqd, progress);
        }
      }
    }
    const scale = options.scale ? await runScale(spaces, settings, tapas, progress) : [];
    progress.finish();
    await spaces.deleteAll();

    const all: Results = {
      generatedAt: new Date().toISOString(),
      durationSeconds: (Date.now() - began) / 1000,
      machine,
      versions,
      settings,
      contenders: results,
      scale,
      notes,
    };
    mkdirSync(options.out, { recursive: true });
    writeFileSync(join(options.out, 'results.json'), `${JSON.stringify(all, null, 1)}\n`);
    writeChart(all, join(options.out, 'offered-vs-mirrored.svg'));
    writeReport(all, join(options.out, 'report.md'), 'offered-vs-mirrored.svg');
    process.stderr.write(`[bench] done in ${Math.round(all.durationSeconds)} s: ${join(options.out, 'report.md')}\n`);
  } finally {
    teardown();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`\nbench: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 1;
});
