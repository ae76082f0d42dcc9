/**
 * `npm run bench:idle -- [--ports N] [--seconds S] [--dist DIR] [--out FILE] [...]` (--help lists all)
 *
 * The daemon at rest with many resources. Builds one network namespace
 * holding N source and M = max(1, N/20) tap service veth pairs (no addresses,
 * IPv6 off: no traffic at all), starts `tapas serve` from DIST (default this
 * checkout's dist/, or an older build's) with a fresh state dir, registers
 * N+M ports, M tap services and N tap flows (BOTH, round-robin over the
 * services; --concurrency POSTs in flight) and waits until the flows are
 * ACTIVE. Then two windows of S seconds each:
 *   1. idle: nothing asks the daemon anything; its CPU (utime+stime of all
 *      its threads from /proc/PID/stat, as % of one core; the event loop's
 *      share apart), its RSS, and the host's CPU and softirqs (compared with
 *      a window after the daemon has stopped);
 *   2. requests: R sequential GETs per endpoint (tap flows, ports, and the
 *      tiny GET /v2.0 as a control for event-loop stalls), spread evenly
 *      over the window and bounded in time: p50/p99/max latency, and the CPU.
 * Prints a table and writes JSON to --out. The namespace, the daemon and its
 * state dir are removed at the end, also on error or Ctrl-C. Every wait is
 * bounded: registration plus activation give up after --timeout seconds.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, Agent as HttpAgent } from 'node:http';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

import { cpuNs, hostTicks, rssKiB, run, sleep } from './proc.js';
import { quantile } from './stats.js';
import { Namespaces, removeStaleNamespaces } from './topology.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const MAX_PORTS = 4000;

interface Options {
  ports: number;
  services: number;
  seconds: number;
  /** Wait this long after the flows are ACTIVE before the idle window. */
  settleSeconds: number;
  requests: number;
  dist: string;
  out?: string;
  log?: string;
  timeoutSeconds: number;
  concurrency: number;
  interfacesLate: boolean;
  /** Extra node flags for the daemon (--cpu-prof, --cpu-prof-dir=DIR, ...). */
  nodeFlags: string[];
}

function usage(message?: string): never {
  if (message) process.stderr.write(`idle-daemon: ${message}\n`);
  process.stderr.write(`usage: npm run bench:idle -- [options]
  --ports N       tap flow sources (default 200, at most ${MAX_PORTS}); N tap flows
  --services M    tap service ports (default max(1, N/20)); flows are spread over them
  --seconds S     length of each measurement window, idle and requests (default 20)
  --settle S      wait S seconds once the flows are ACTIVE before the idle window (default 3;
                  some 30 s let V8 finish the collections that follow registering everything)
  --requests R    sequential GETs per endpoint in the requests window (default 200)
  --dist DIR      the build to run: DIR/cli/main.js serve (default ${join(ROOT, 'dist')})
  --out FILE      write the results as JSON there
  --timeout S     give up registering and waiting for ACTIVE after S seconds (default 600)
  --concurrency C POSTs in flight while registering (default 32; 1 = one after the other)
  --log FILE      keep the daemon's log there (default: deleted with its state dir)
  --interfaces-late  register everything first, then create the namespace and its veths:
                  a daemon whose agent probes every port on each change then sees a missing
                  namespace (a failed open) instead of N probes per POST; what is measured
                  once the flows are ACTIVE is the same
  --node-flag F   pass F to the daemon's node (repeatable; e.g. --node-flag=--cpu-prof
                  --node-flag=--cpu-prof-dir=/tmp/prof); also TAPAS_BENCH_NODE_FLAGS
                  (space-separated). Each window's CLOCK_MONOTONIC span is in the JSON
                  (monotonicUs), to cut a profile to it
`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  let ports = 200;
  let services: number | undefined;
  let seconds = 20;
  let settleSeconds = 3;
  let requests = 200;
  let dist = join(ROOT, 'dist');
  let out: string | undefined;
  let timeoutSeconds = 600;
  let concurrency = 32;
  let log: string | undefined;
  let interfacesLate = false;
  const nodeFlags = (process.env.TAPAS_BENCH_NODE_FLAGS ?? '').split(/\s+/).filter((flag) => flag !== '');
  const int = (arg: string, text: string, min: number, max: number) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) usage(`${arg} must be an integer from ${min} to ${max}`);
    return value;
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const value = () => argv[++i] ?? usage(`${arg} needs a value`);
    if (arg === '--ports') ports = int(arg, value(), 1, MAX_PORTS);
    else if (arg === '--services') services = int(arg, value(), 1, MAX_PORTS);
    else if (arg === '--seconds') seconds = int(arg, value(), 1, 3600);
    else if (arg === '--settle') settleSeconds = int(arg, value(), 0, 3600);
    else if (arg === '--requests') requests = int(arg, value(), 1, 100_000);
    else if (arg === '--dist') dist = resolve(value());
    else if (arg === '--out') out = resolve(value());
    else if (arg === '--timeout') timeoutSeconds = int(arg, value(), 10, 24 * 3600);
    else if (arg === '--concurrency') concurrency = int(arg, value(), 1, 256);
    else if (arg === '--log') log = resolve(value());
    else if (arg === '--interfaces-late') interfacesLate = true;
    else if (arg === '--node-flag') nodeFlags.push(value());
    else if (arg.startsWith('--node-flag=')) nodeFlags.push(arg.slice('--node-flag='.length));
    else if (arg === '--help' || arg === '-h') usage();
    else usage(`unknown argument ${arg}`);
  }
  services ??= Math.max(1, Math.floor(ports / 20));
  if (services > ports) usage('--services cannot exceed --ports');
  if (!existsSync(join(dist, 'cli', 'main.js'))) usage(`${dist}/cli/main.js does not exist: build it (npm run build) or pass --dist`);
  return { ports, services, seconds, settleSeconds, requests, dist, ...(out ? { out } : {}), ...(log ? { log } : {}), timeoutSeconds, concurrency, interfacesLate, nodeFlags };
}

// ---------------------------------------------------------------- HTTP

const agent = new HttpAgent({ keepAlive: true, maxSockets: 256 });

interface Answer {
  status: number;
  body: string;
  ms: number;
}

function call(base: string, method: string, path: string, body?: unknown, timeoutMs = 30_000): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const url = new URL(path, base);
  return new Promise((resolvePromise, reject) => {
    const began = performance.now();
    const req = httpRequest(url, {
      method,
      agent,
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), ms: performance.now() - began }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs / 1000} s`)));
    req.on('error', reject);
    req.end(payload);
  });
}

async function create(base: string, path: string, kind: string, attributes: Record<string, unknown>, timeoutMs: number): Promise<string> {
  const answer = await call(base, 'POST', path, { [kind]: attributes }, timeoutMs);
  if (answer.status !== 201 && answer.status !== 200) {
    throw new Error(`POST ${path} ${JSON.stringify(attributes.name)}: HTTP ${answer.status}: ${answer.body.slice(0, 300)}`);
  }
  return (JSON.parse(answer.body) as Record<string, { id: string }>)[kind]!.id;
}

function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePromise(port));
    });
  });
}

// ---------------------------------------------------------------- /proc

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime+stime in seconds from a /proc/.../stat line (fields 14 and 15, after the command in parentheses). */
function statCpuSeconds(path: string): number {
  const text = readFileSync(path, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** The process's CPU (all its threads, those already ended included) and each live thread's, by thread name. */
function cpuSample(pid: number): { seconds: number; schedNs: number; threads: Map<string, { seconds: number; count: number }> } {
  const threads = new Map<string, { seconds: number; count: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      // The event loop is the thread whose id is the pid; the engine names its own (tapas-worker, tapas-health).
      const name = Number(tid) === pid ? 'event loop' : `${readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()} (other)`;
      const entry = threads.get(name) ?? { seconds: 0, count: 0 };
      entry.seconds += statCpuSeconds(`/proc/${pid}/task/${tid}/stat`);
      entry.count += 1;
      threads.set(name, entry);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return { seconds: statCpuSeconds(`/proc/${pid}/stat`), schedNs: cpuNs(pid), threads };
}

interface CpuWindow {
  seconds: number;
  /** utime+stime of all threads over the window, as % of one core. */
  cpuPercent: number;
  /** The same from the scheduler's nanosecond counters (live threads only): a finer cross-check. */
  cpuPercentSchedstat: number;
  byThread: Array<{ name: string; threads: number; cpuPercent: number }>;
}

function cpuWindow(before: ReturnType<typeof cpuSample>, after: ReturnType<typeof cpuSample>, seconds: number): CpuWindow {
  const byThread = [...after.threads].map(([name, entry]) => ({
    name,
    threads: entry.count,
    cpuPercent: round(100 * (entry.seconds - (before.threads.get(name)?.seconds ?? 0)) / seconds, 2),
  })).sort((a, b) => b.cpuPercent - a.cpuPercent);
  return {
    seconds: round(seconds, 3),
    cpuPercent: round(100 * (after.seconds - before.seconds) / seconds, 2),
    cpuPercentSchedstat: round(100 * (after.schedNs - before.schedNs) / 1e9 / seconds, 2),
    byThread,
  };
}

/** The whole host's CPU by kind (/proc/stat) and softirq counts (/proc/softirqs), summed over cores. */
function hostSample(): { ticks: Record<string, number>; softirqs: Record<string, number> } {
  const { ticks } = hostTicks();
  const softirqs: Record<string, number> = {};
  for (const line of readFileSync('/proc/softirqs', 'utf8').split('\n').slice(1)) {
    const [name, ...counts] = line.trim().split(/\s+/);
    if (name) softirqs[name.replace(':', '')] = counts.reduce((sum, count) => sum + Number(count), 0);
  }
  return { ticks, softirqs };
}

interface HostWindow {
  /**
   * Busy time of the whole host by kind, as % of one core (all processes, the daemon's included; the machine may be
   * shared). Without CONFIG_IRQ_TIME_ACCOUNTING, irq and softirq are sampled by the tick: a rough figure.
   */
  cpuPercent: Record<string, number>;
  /** Softirqs per second over the window: HRTIMER counts the rx rings' block-retire timers, among others. */
  softirqsPerSecond: Record<string, number>;
}

function hostWindow(before: ReturnType<typeof hostSample>, after: ReturnType<typeof hostSample>, seconds: number): HostWindow {
  const cpuPercent: Record<string, number> = {};
  for (const name of ['user', 'nice', 'system', 'irq', 'softirq', 'steal']) {
    cpuPercent[name] = round(100 * ((after.ticks[name] ?? 0) - (before.ticks[name] ?? 0)) / CLK_TCK / seconds, 2);
  }
  const softirqsPerSecond: Record<string, number> = {};
  for (const name of ['TIMER', 'HRTIMER', 'NET_RX', 'NET_TX', 'RCU', 'SCHED']) {
    softirqsPerSecond[name] = Math.round(((after.softirqs[name] ?? 0) - (before.softirqs[name] ?? 0)) / seconds);
  }
  return { cpuPercent, softirqsPerSecond };
}

/** CLOCK_MONOTONIC in µs: the clock of a V8 CPU profile's timestamps, to cut one to a window. */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

// ---------------------------------------------------------------- the run

interface Endpoint {
  path: string;
  count: number;
  errors: number;
  responseBytes: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

interface Results {
  generatedAt: string;
  tapas: { dist: string; commit: string };
  machine: { cpu: string; cores: number; kernel: string; loadBefore: string; loadAfter?: string };
  settings: {
    ports: number; services: number; flows: number; seconds: number; settleSeconds: number; requestsPerEndpoint: number; timeoutSeconds: number;
    registerConcurrency: number; interfacesLate: boolean; nodeFlags: string[];
  };
  setup: {
    vethSeconds: number;
    daemonStartSeconds: number;
    registerSeconds: number;
    /** Seconds from the first POST until each tenth of the ports, and of the tap flows, was created. */
    registerTimeline: Array<{ what: string; done: number; seconds: number }>;
    registered: { ports: number; tapServices: number; tapFlows: number };
    activeSeconds: number;
    allActive: boolean;
    flowStatuses: Record<string, number>;
    portStatuses: Record<string, number>;
    serviceStatuses: Record<string, number>;
  };
  idle?: CpuWindow & { rssKiB: number; threads: number; fds: number; host: HostWindow; monotonicUs: [number, number] };
  requests?: CpuWindow & { endpoints: Endpoint[]; rssKiB: number; monotonicUs: [number, number] };
  stopSeconds?: number;
  /** The host for up to 10 s after the daemon exited and the namespace was deleted (a reference for idle.host). */
  hostAfterStop?: HostWindow;
  failed?: string;
  notes: string[];
}

function countBy(rows: Array<{ status?: string }>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const row of rows) counts[row.status ?? '?'] = (counts[row.status ?? '?'] ?? 0) + 1;
  return counts;
}

async function list(base: string, path: string, key: string, timeoutMs = 120_000): Promise<Array<{ status?: string }>> {
  const answer = await call(base, 'GET', path, undefined, timeoutMs);
  if (answer.status !== 200) throw new Error(`GET ${path}: HTTP ${answer.status}: ${answer.body.slice(0, 300)}`);
  return (JSON.parse(answer.body) as Record<string, Array<{ status?: string }>>)[key] ?? [];
}

function say(text: string): void {
  process.stderr.write(`[idle] ${text}\n`);
}

class Deadline {
  private readonly at: number;
  constructor(private readonly seconds: number, private readonly what: string) {
    this.at = Date.now() + seconds * 1000;
  }
  get passed(): boolean {
    return Date.now() > this.at;
  }
  /** What is left, at least 1 s: a request's timeout (a slow daemon answers a POST only after many reconciles). */
  get remainingMs(): number {
    return Math.max(1000, this.at - Date.now());
  }
  check(progress: string): void {
    if (this.passed) throw new Error(`gave up after ${this.seconds} s (${this.what}): ${progress}`);
  }
}

/**
 * Runs work(0..count-1) with at most `concurrency` in flight and returns the
 * results in order; stops starting new work once the deadline has passed.
 */
async function pool<T>(count: number, concurrency: number, deadline: Deadline, work: (index: number) => Promise<T>,
  describe: () => string): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const lane = async () => {
    while (next < count) {
      deadline.check(describe());
      const index = next;
      next += 1;
      try {
        results[index] = await work(index);
      } catch (error) {
        next = count; // the other lanes start nothing more
        deadline.check(describe()); // a request cut short by the deadline: say so
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return results;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (process.getuid?.() !== 0) usage('the benchmark builds a network namespace: run it as root');
  const { ports: n, services: m } = options;

  removeStaleNamespaces();
  const spaces = new Namespaces();
  const dir = mkdtempSync(join(tmpdir(), `${spaces.prefix}-idle-`));
  const log = options.log ?? join(dir, 'daemon.log');
  if (options.log) {
    mkdirSync(dirname(options.log), { recursive: true });
    writeFileSync(options.log, '');
  }
  let daemon: ChildProcess | undefined;
  let torn = false;
  const teardown = () => {
    if (torn) return;
    torn = true;
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    spaces.deleteAllSync();
    rmSync(dir, { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      say(`${signal}: tearing down`);
      teardown();
      process.exit(130);
    });
  }
  process.on('exit', teardown);

  const commit = await run('git', ['-C', dirname(options.dist), 'rev-parse', '--short', 'HEAD'])
    .then((text) => text.trim(), () => 'unknown');
  const dirty = await run('git', ['-C', dirname(options.dist), 'status', '--porcelain', '--', 'native', 'src', 'binding.gyp'])
    .then((text) => (text.trim() ? ' (with uncommitted changes in native/ or src/)' : ''), () => '');
  const results: Results = {
    generatedAt: new Date().toISOString(),
    tapas: { dist: options.dist, commit: `${commit}${dirty}` },
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      kernel: (await run('uname', ['-r'])).trim(),
      loadBefore: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    },
    settings: {
      ports: n, services: m, flows: n, seconds: options.seconds, settleSeconds: options.settleSeconds, requestsPerEndpoint: options.requests, timeoutSeconds: options.timeoutSeconds,
      registerConcurrency: options.concurrency, interfacesLate: options.interfacesLate, nodeFlags: options.nodeFlags,
    },
    setup: {
      vethSeconds: NaN, daemonStartSeconds: NaN, registerSeconds: NaN, registerTimeline: [],
      registered: { ports: 0, tapServices: 0, tapFlows: 0 }, activeSeconds: NaN, allActive: false,
      flowStatuses: {}, portStatuses: {}, serviceStatuses: {},
    },
    notes: [],
  };

  try {
    // The namespace: s<i>|ps<i> for the sources, d<j>|pd<j> for the tap services; both ends in it, no addresses.
    const ns = `${spaces.prefix}-idle`;
    const buildNamespace = async () => {
      const t = performance.now();
      say(`creating ${n + m} veth pairs in namespace ${ns}`);
      if ((await spaces.add('idle')) !== ns) throw new Error(`unexpected namespace name (not ${ns})`);
      const pairs: Array<[string, string]> = [];
      for (let i = 0; i < n; i += 1) pairs.push([`s${i}`, `ps${i}`]);
      for (let j = 0; j < m; j += 1) pairs.push([`d${j}`, `pd${j}`]);
      await spaces.veths(ns, ns, pairs);
      results.setup.vethSeconds = round((performance.now() - t) / 1000, 3);
    };
    if (!options.interfacesLate) await buildNamespace();
    let began = performance.now();

    // The daemon, with its log in a file (its output is not piped through this process).
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const fd = openSync(log, 'a');
    const quotas = ['port', 'tap_service', 'tap_flow', 'tap_mirror'].flatMap((kind) => ['--quota', `${kind}=-1`]);
    daemon = spawn(process.execPath, [...options.nodeFlags, join(options.dist, 'cli', 'main.js'), 'serve', '--listen', `127.0.0.1:${port}`,
      '--state-dir', join(dir, 'state'), ...quotas], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const pid = daemon.pid;
    if (pid === undefined) throw new Error('cannot start the daemon');
    const exited = new Promise<void>((resolvePromise) => daemon!.on('exit', () => resolvePromise()));
    const startDeadline = new Deadline(60, 'starting the daemon');
    for (;;) {
      if (daemon.exitCode !== null || daemon.signalCode !== null) throw new Error(`the daemon exited: ${tail(log)}`);
      const answer = await call(base, 'GET', '/v2.0', undefined, 5000).catch(() => undefined);
      if (answer?.status === 200) break;
      startDeadline.check(`no answer on ${base}; log: ${tail(log)}`);
      await sleep(100);
    }
    results.setup.daemonStartSeconds = round((performance.now() - began) / 1000, 3);
    say(`daemon ${pid} (${options.dist}, ${results.tapas.commit}) on ${base}`);

    // Registration: ports, tap services, tap flows (BOTH, round-robin over the services).
    began = performance.now();
    const deadline = new Deadline(options.timeoutSeconds, 'registering and waiting for ACTIVE');
    const registered = results.setup.registered;
    const timeline = results.setup.registerTimeline;
    const every = Math.max(1, Math.floor(n / 10));
    const progress = (what: string, done: number) => {
      if (done % every !== 0 && done !== n) return;
      const seconds = round((performance.now() - began) / 1000, 1);
      timeline.push({ what, done, seconds });
      say(`${done}/${n} ${what} (${seconds} s)`);
    };
    const sourceIds = await pool(n, options.concurrency, deadline, async (i) => {
      const id = await create(base, '/v2.0/ports', 'port', { name: `src-${i}`, 'binding:profile': { interface: `s${i}`, netns: ns } },
        deadline.remainingMs);
      registered.ports += 1;
      progress('source ports', registered.ports);
      return id;
    }, () => `${registered.ports} of ${n + m} ports registered`);
    const servicePortIds = await pool(m, options.concurrency, deadline, async (j) => {
      const id = await create(base, '/v2.0/ports', 'port', { name: `svc-${j}`, 'binding:profile': { interface: `d${j}`, netns: ns } },
        deadline.remainingMs);
      registered.ports += 1;
      return id;
    }, () => `${registered.ports} of ${n + m} ports registered`);
    const serviceIds = await pool(m, options.concurrency, deadline, async (j) => {
      const id = await create(base, '/v2.0/taas/tap_services', 'tap_service', { name: `ts-${j}`, port_id: servicePortIds[j] },
        deadline.remainingMs);
      registered.tapServices += 1;
      return id;
    }, () => `${registered.tapServices} of ${m} tap services created`);
    await pool(n, options.concurrency, deadline, async (i) => {
      const id = await create(base, '/v2.0/taas/tap_flows', 'tap_flow', {
        name: `tf-${i}`, source_port: sourceIds[i], tap_service_id: serviceIds[i % m], direction: 'BOTH',
      }, deadline.remainingMs);
      registered.tapFlows += 1;
      progress('tap flows', registered.tapFlows);
      return id;
    }, () => `${registered.tapFlows} of ${n} tap flows created`);
    results.setup.registerSeconds = round((performance.now() - began) / 1000, 3);
    say(`registered ${n + m} ports, ${m} tap services, ${n} tap flows in ${results.setup.registerSeconds} s`);
    if (options.interfacesLate) await buildNamespace();
    say('waiting for the tap flows to be ACTIVE');

    // Activation: poll the flows until all are ACTIVE, or the deadline.
    let flows = await list(base, '/v2.0/taas/tap_flows', 'tap_flows', deadline.remainingMs + 60_000);
    let lastSay = Date.now();
    for (;;) {
      const active = flows.filter((flow) => flow.status === 'ACTIVE').length;
      if (active === n) break;
      if (deadline.passed) {
        const message = `gave up waiting after ${options.timeoutSeconds} s: ${active} of ${n} tap flows ACTIVE (${JSON.stringify(countBy(flows))}); measuring anyway`;
        say(message);
        results.notes.push(message);
        break;
      }
      if (Date.now() - lastSay > 10_000) {
        say(`${active}/${n} tap flows ACTIVE`);
        lastSay = Date.now();
      }
      await sleep(1000);
      flows = await list(base, '/v2.0/taas/tap_flows', 'tap_flows', deadline.remainingMs + 60_000);
    }
    results.setup.activeSeconds = round((performance.now() - began) / 1000, 3);
    results.setup.flowStatuses = countBy(flows);
    results.setup.allActive = (results.setup.flowStatuses.ACTIVE ?? 0) === n;
    results.setup.portStatuses = countBy(await list(base, '/v2.0/ports', 'ports'));
    results.setup.serviceStatuses = countBy(await list(base, '/v2.0/taas/tap_services', 'tap_services'));
    say(`flows ${JSON.stringify(results.setup.flowStatuses)} after ${results.setup.activeSeconds} s from the first POST`);

    // Let the last reconciles and the status writes finish, then the idle window: nobody asks anything.
    await sleep(options.settleSeconds * 1000);
    say(`idle window: ${options.seconds} s`);
    const hostBefore = hostSample();
    let before = cpuSample(pid);
    let t0 = performance.now();
    let from = monotonicUs();
    await sleep(options.seconds * 1000);
    let after = cpuSample(pid);
    const idleSeconds = (performance.now() - t0) / 1000;
    results.idle = {
      ...cpuWindow(before, after, idleSeconds),
      host: hostWindow(hostBefore, hostSample(), idleSeconds),
      rssKiB: rssKiB(pid),
      threads: readdirSync(`/proc/${pid}/task`).length,
      fds: readdirSync(`/proc/${pid}/fd`).length,
      monotonicUs: [from, monotonicUs()],
    };

    // The requests window: R sequential GETs per endpoint, interleaved, on an even schedule over the window.
    const paths = ['/v2.0/taas/tap_flows', '/v2.0/ports', '/v2.0'];
    const samples = new Map(paths.map((path) => [path, { ms: [] as number[], errors: 0, bytes: 0 }]));
    const total = options.requests * paths.length;
    const gapMs = (options.seconds * 1000) / total;
    const hardStop = performance.now() + Math.max(3 * options.seconds, options.seconds + 60) * 1000;
    say(`requests window: ${options.requests} sequential GETs of each of ${paths.join(', ')} over ${options.seconds} s`);
    before = cpuSample(pid);
    t0 = performance.now();
    from = monotonicUs();
    let sent = 0;
    for (; sent < total; sent += 1) {
      const due = t0 + sent * gapMs;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (performance.now() > hardStop) break;
      const path = paths[sent % paths.length]!;
      const sample = samples.get(path)!;
      try {
        const answer = await call(base, 'GET', path, undefined, 120_000);
        if (answer.status !== 200) sample.errors += 1;
        else {
          sample.ms.push(answer.ms);
          sample.bytes = Buffer.byteLength(answer.body);
        }
      } catch {
        sample.errors += 1;
      }
    }
    const windowSeconds = (performance.now() - t0) / 1000;
    after = cpuSample(pid);
    if (sent < total) results.notes.push(`requests window stopped at its bound after ${sent} of ${total} requests`);
    results.requests = {
      ...cpuWindow(before, after, windowSeconds),
      rssKiB: rssKiB(pid),
      monotonicUs: [from, monotonicUs()],
      endpoints: paths.map((path) => {
        const sample = samples.get(path)!;
        const sorted = sample.ms.sort((a, b) => a - b);
        return {
          path,
          count: sorted.length,
          errors: sample.errors,
          responseBytes: sample.bytes,
          p50Ms: round(quantile(sorted, 0.5), 3),
          p99Ms: round(quantile(sorted, 0.99), 3),
          maxMs: round(sorted[sorted.length - 1] ?? NaN, 3),
          meanMs: round(sorted.reduce((sum, v) => sum + v, 0) / (sorted.length || NaN), 3),
        };
      }),
    };

    // Stop the daemon the way an operator would, bounded.
    began = performance.now();
    daemon.kill('SIGTERM');
    const stopped = await Promise.race([exited.then(() => true), sleep(60_000).then(() => false)]);
    if (stopped) results.stopSeconds = round((performance.now() - began) / 1000, 3);
    else {
      results.notes.push('the daemon did not stop within 60 s of SIGTERM (killed)');
      daemon.kill('SIGKILL');
      await Promise.race([exited, sleep(10_000)]);
    }

    // The same host figures without the daemon and its namespace, right after: what the idle window's are relative to.
    await spaces.deleteAll();
    await sleep(1000);
    const quietSeconds = Math.min(options.seconds, 10);
    const quietBefore = hostSample();
    t0 = performance.now();
    await sleep(quietSeconds * 1000);
    results.hostAfterStop = hostWindow(quietBefore, hostSample(), (performance.now() - t0) / 1000);
  } catch (error) {
    results.failed = (error as Error).message;
    say(`failed: ${results.failed}`);
  } finally {
    teardown();
  }

  results.machine.loadAfter = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  printTable(results);
  if (options.out) {
    mkdirSync(dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify(results, null, 1)}\n`);
    say(`wrote ${options.out}`);
  }
  if (results.failed) process.exitCode = 1;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}

function printTable(results: Results): void {
  const { settings, setup, idle, requests } = results;
  const rows: Array<[string, string]> = [
    ['tapas', `${results.tapas.commit} (${results.tapas.dist})`],
    ['host load', `${results.machine.loadBefore} before, ${results.machine.loadAfter ?? '?'} after (${results.machine.cores} cores)`],
    ['resources', `${settings.ports + settings.services} ports, ${settings.services} tap services, ${settings.flows} tap flows (BOTH)`],
    ['registration', `${setup.registerSeconds} s (${settings.registerConcurrency} in flight); `
      + `ACTIVE ${setup.flowStatuses.ACTIVE ?? 0}/${settings.flows} after ${setup.activeSeconds} s`],
  ];
  if (idle) {
    rows.push(['idle CPU', `${idle.cpuPercent} % of one core over ${idle.seconds} s (schedstat ${idle.cpuPercentSchedstat} %)`]);
    rows.push(['  by thread', idle.byThread.filter((t) => t.cpuPercent > 0).slice(0, 4).map((t) => `${t.name}${t.threads > 1 ? ` ×${t.threads}` : ''} ${t.cpuPercent} %`).join(', ') || '-']);
    rows.push(['idle RSS', `${round(idle.rssKiB / 1024, 1)} MiB, ${idle.threads} threads, ${idle.fds} fds`]);
    const host = idle.host.cpuPercent;
    rows.push(['host while idle', `user ${host.user} %, system ${host.system} %, softirq ${host.softirq} % (tick-sampled), steal ${host.steal} % `
      + `(all processes); HRTIMER softirqs ${idle.host.softirqsPerSecond.HRTIMER}/s`]);
  }
  if (requests) {
    rows.push(['CPU with GETs', `${requests.cpuPercent} % of one core over ${requests.seconds} s`]);
    for (const endpoint of requests.endpoints) {
      rows.push([`GET ${endpoint.path}`, `p50 ${endpoint.p50Ms} ms, p99 ${endpoint.p99Ms} ms, max ${endpoint.maxMs} ms `
        + `(${endpoint.count} ok, ${endpoint.errors} errors, ${endpoint.responseBytes} B)`]);
    }
  }
  if (results.stopSeconds !== undefined) rows.push(['SIGTERM to exit', `${results.stopSeconds} s`]);
  if (results.hostAfterStop) {
    const host = results.hostAfterStop.cpuPercent;
    rows.push(['host after stop', `user ${host.user} %, system ${host.system} %, softirq ${host.softirq} % (tick-sampled), steal ${host.steal} % `
      + `(all processes); HRTIMER softirqs ${results.hostAfterStop.softirqsPerSecond.HRTIMER}/s`]);
  }
  for (const note of results.notes) rows.push(['note', note]);
  if (results.failed) rows.push(['FAILED', results.failed]);
  const width = Math.max(...rows.map(([key]) => key.length));
  process.stdout.write(`${rows.map(([key, value]) => `${key.padEnd(width)}  ${value}`).join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`\nidle-daemon: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 1;
});
