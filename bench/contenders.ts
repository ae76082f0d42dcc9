/**
 * The mirrors under test, each started inside the mirror host namespace on
 * the same topology: tapas (local port, GRE, ERSPAN), the kernel (tc mirred,
 * nftables dup) and the userspace soft taps (daemonlogger, netsniff-ng).
 * The generator is pinned to CPU 0; mirrors are left to the scheduler (the
 * machine is shared: a pin to a core someone else is busy on costs more than
 * it saves).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { nsRun, run, start, type Child } from './proc.js';
import { COLLECTOR_IP, type MainTopology } from './topology.js';

/** Where mirroring processes may run: any core. */
export const MIRROR_CPU = '0-1023';

/** What `tapas mirror -f json` prints when it stops (the fields the benchmark reads). */
export interface TapasReport {
  elapsedSeconds: number;
  cpuSeconds: { user: number; system: number };
  eventLoopLagMs: { p50: number; p99: number; max: number };
  mirrored: { packets: number; bytes: number };
  stats: {
    /** captureDrops since the stats became backend-neutral; ringDrops in older builds. */
    sources: Array<{ packets: number; captureDrops?: number; ringDrops?: number; ok: boolean; reason?: string }>;
    sinks: Array<{ packets: number; errors: number; ok: boolean; reason?: string }>;
  };
  applySeconds?: number;
}

/** A tapas build to benchmark: a checkout with dist/ and build/ made. */
export interface TapasInstall {
  root: string;
  /** Options `tapas mirror --help` offers beyond --to (they land separately). */
  options: { gre: boolean; erspan: boolean; lowLatency: boolean; filter: boolean; sampleRate: boolean; bpf: boolean };
}

export async function inspectTapas(root: string): Promise<TapasInstall> {
  const help = await run(join(root, 'bin/tapas'), ['mirror', '--help']);
  return {
    root,
    options: {
      gre: /--gre\b/.test(help), erspan: /--erspan\b/.test(help), lowLatency: /--low-latency\b/.test(help),
      filter: /--filter\b/.test(help), sampleRate: /--sample-rate\b/.test(help), bpf: /--datapath\b/.test(help),
    },
  };
}

/** Frames a source's capture lost, from a report of this or an older build. */
export function captureDrops(source: TapasReport['stats']['sources'][number]): number {
  return source.captureDrops ?? source.ringDrops ?? 0;
}

export interface Running {
  /** The mirroring process, when the mirror is one (the kernel's are not). */
  pid?: number;
  /** Stops the mirror; tapas returns its final JSON report. */
  stop(): Promise<TapasReport | undefined>;
}

export type ContenderId = 'none' | 'tapas' | 'tapas-low-latency' | 'tapas-bpf' | 'tc' | 'nft' | 'daemonlogger' | 'netsniff-ng' | 'tapas-gre'
  | 'tapas-erspan' | 'tapas-filter' | 'tapas-sample100' | 'tapas-bpf-gre' | 'tapas-bpf-erspan';

export interface Contender {
  id: ContenderId;
  label: string;
  kind: 'baseline' | 'tapas' | 'kernel' | 'userspace';
  /** Where the copies are counted: the monitor port, or the tunnel collector. */
  sink: 'port' | 'collector' | 'none';
  /**
   * Offered frames each copy stands for (sampling 1 in N: N; default 1). The
   * session counts copies × this as mirrored, so that loss and CPU per frame
   * read per offered frame, comparable with the contenders that copy all.
   */
  represents?: number;
  /** Why it cannot run here, or undefined when it can. */
  unavailable(tapas: TapasInstall): Promise<string | undefined>;
  start(topology: MainTopology, tapas: TapasInstall, dir: string, maxSeconds: number): Promise<Running>;
}

async function hasCommand(name: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${name}`]).then(() => true, () => false);
}

/**
 * Starts a long-running mirror process, killed after maxSeconds at the latest.
 * tapas runs without --duration and is stopped with SIGINT: with --duration
 * it stays alive until the duration is over even after SIGINT.
 */
function startProcess(ns: string, command: string[], maxSeconds: number): Child {
  return start('ip', ['netns', 'exec', ns, 'taskset', '-c', MIRROR_CPU, ...command], { timeoutMs: (maxSeconds + 30) * 1000 });
}

export async function stopProcess(child: Child, signal: NodeJS.Signals, what: string): Promise<string> {
  child.process.kill(signal);
  const timer = setTimeout(() => child.process.kill('SIGKILL'), 15_000);
  const result = await child.done;
  clearTimeout(timer);
  if (result.signal === 'SIGKILL') throw new Error(`${what} did not stop on ${signal}: ${result.stderr.trim().slice(-300)}`);
  return result.stdout;
}

function tapasContender(id: ContenderId, label: string, sinkArgs: string[], needs?: 'gre' | 'erspan' | 'lowLatency' | 'filter' | 'sampleRate' | 'bpf',
  represents?: number, sink?: 'collector'): Contender {
  return {
    id,
    label,
    kind: 'tapas',
    ...(represents === undefined ? {} : { represents }),
    sink: sink ?? (needs === 'gre' || needs === 'erspan' ? 'collector' : 'port'),
    async unavailable(tapas) {
      if (needs && !tapas.options[needs]) return `\`tapas mirror --help\` offers no ${sinkArgs.find((a) => a.startsWith('--') && a !== '--to' && a !== '-d')} in this build`;
      return undefined;
    },
    async start(topology, tapas, _dir, maxSeconds) {
      const child = startProcess(topology.mir, [join(tapas.root, 'bin/tapas'), 'mirror',
        '--source', 's0', '--direction', 'OUT', ...sinkArgs, '-f', 'json'], maxSeconds);
      return {
        pid: child.pid,
        async stop() {
          const stdout = await stopProcess(child, 'SIGINT', 'tapas mirror');
          try {
            return JSON.parse(stdout) as TapasReport;
          } catch {
            throw new Error(`tapas mirror printed no JSON report: ${child.stderrSoFar().trim().slice(-400)}`);
          }
        },
      };
    },
  };
}

export const CONTENDERS: Contender[] = [
  {
    id: 'none',
    label: 'no mirror (baseline)',
    kind: 'baseline',
    sink: 'none',
    async unavailable() { return undefined; },
    async start() { return { async stop() { return undefined; } }; },
  },
  tapasContender('tapas', 'tapas', ['--to', 'd0']),
  tapasContender('tapas-low-latency', 'tapas --low-latency', ['--to', 'd0', '--low-latency'], 'lowLatency'),
  // The AF_PACKET path with a rule's stages: a 3-term filter every generated
  // frame passes (so the copies are those of `tapas`, and the difference is
  // the filter's cost), and sampling 1 in 100 (each copy stands for 100 frames).
  tapasContender('tapas-filter', 'tapas, 3-term filter', ['--to', 'd0', '--filter', 'udp and dst port 2000 and not vlan'], 'filter'),
  tapasContender('tapas-sample100', 'tapas, sampling 1:100', ['--to', 'd0', '--sample-rate', '100'], 'sampleRate', 100),
  // The kernel data path: tc programs clone each frame (bpf_clone_redirect); the process only loads them and reads counters.
  tapasContender('tapas-bpf', 'tapas --datapath bpf', ['--to', 'd0', '--datapath', 'bpf'], 'bpf'),
  {
    id: 'tc',
    label: 'tc mirred',
    kind: 'kernel',
    sink: 'port',
    async unavailable() { return (await hasCommand('tc')) ? undefined : 'tc (iproute2) is not installed'; },
    async start(topology) {
      await nsRun(topology.mir, 'tc', ['qdisc', 'add', 'dev', 's0', 'clsact']);
      await nsRun(topology.mir, 'tc', ['filter', 'add', 'dev', 's0', 'ingress', 'u32', 'match', 'u32', '0', '0',
        'action', 'mirred', 'egress', 'mirror', 'dev', 'd0']);
      return {
        async stop() {
          await nsRun(topology.mir, 'tc', ['qdisc', 'del', 'dev', 's0', 'clsact']);
          return undefined;
        },
      };
    },
  },
  {
    id: 'nft',
    label: 'nftables dup',
    kind: 'kernel',
    sink: 'port',
    async unavailable() { return (await hasCommand('nft')) ? undefined : 'nft (nftables) is not installed'; },
    async start(topology, _tapas, dir) {
      const file = join(dir, 'mirror.nft');
      writeFileSync(file, `table netdev tapas_bench {
  chain mirror {
    type filter hook ingress device "s0" priority 0;
    dup to "d0"
  }
}
`);
      await nsRun(topology.mir, 'nft', ['-f', file]);
      return {
        async stop() {
          await nsRun(topology.mir, 'nft', ['delete', 'table', 'netdev', 'tapas_bench']);
          return undefined;
        },
      };
    },
  },
  {
    id: 'daemonlogger',
    label: 'daemonlogger',
    kind: 'userspace',
    sink: 'port',
    async unavailable() { return (await hasCommand('daemonlogger')) ? undefined : 'daemonlogger is not installed'; },
    async start(topology, _tapas, _dir, maxSeconds) {
      const child = startProcess(topology.mir, ['daemonlogger', '-i', 's0', '-o', 'd0'], maxSeconds);
      return {
        pid: child.pid,
        async stop() {
          await stopProcess(child, 'SIGTERM', 'daemonlogger');
          return undefined;
        },
      };
    },
  },
  {
    id: 'netsniff-ng',
    label: 'netsniff-ng',
    kind: 'userspace',
    sink: 'port',
    async unavailable() { return (await hasCommand('netsniff-ng')) ? undefined : 'netsniff-ng is not installed'; },
    async start(topology, _tapas, _dir, maxSeconds) {
      // Its default ring size is derived from the link speed and cannot be
      // allocated inside a namespace (it fails to raise rmem_max there): give
      // it tapas's ring size, 16 × 128 KiB.
      const child = startProcess(topology.mir, ['netsniff-ng', '--in', 's0', '--out', 'd0', '--silent', '--ring-size', '2MiB'],
        maxSeconds);
      return {
        pid: child.pid,
        async stop() {
          await stopProcess(child, 'SIGINT', 'netsniff-ng');
          return undefined;
        },
      };
    },
  },
  tapasContender('tapas-gre', 'tapas GRE', ['--gre', COLLECTOR_IP, '--key', '1'], 'gre'),
  tapasContender('tapas-erspan', 'tapas ERSPAN', ['--erspan', COLLECTOR_IP, '--session', '1'], 'erspan'),
  // The kernel data path into tunnels: headers written by tc programs on a veth pair tapas owns (docs/engine.md).
  tapasContender('tapas-bpf-gre', 'tapas --datapath bpf GRE', ['--gre', COLLECTOR_IP, '--key', '1', '--datapath', 'bpf'], 'bpf', undefined, 'collector'),
  tapasContender('tapas-bpf-erspan', 'tapas --datapath bpf ERSPAN', ['--erspan', COLLECTOR_IP, '--session', '1', '--datapath', 'bpf'], 'bpf', undefined, 'collector'),
];
