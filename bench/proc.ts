/**
 * Processes and the /proc facts the benchmark reads: commands run inside a
 * namespace, children tracked so teardown can kill them, and CPU time from
 * the scheduler (nanoseconds on CPU, all threads of a process).
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const children = new Set<ChildProcess>();

export async function run(command: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const { stdout } = await execFileAsync(command, args, { maxBuffer: 64 << 20, timeout: timeoutMs });
  return stdout;
}

/** Runs a command inside a network namespace and returns its stdout. */
export function nsRun(ns: string, command: string, args: string[], timeoutMs?: number): Promise<string> {
  return run('ip', ['netns', 'exec', ns, command, ...args], timeoutMs);
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A child that teardown kills if it is still running; `done` settles when it exits. */
export interface Child {
  process: ChildProcess;
  pid: number;
  done: Promise<Finished>;
  stderrSoFar(): string;
}

export function start(command: string, args: string[], options: SpawnOptions & { timeoutMs: number }): Child {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`cannot start ${command}`);
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  // Every process the benchmark starts is bounded in time as well as in work.
  const killer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
  const done = new Promise<Finished>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { process: child, pid: child.pid, done, stderrSoFar: () => stderr };
}

/** Kills every child still running (teardown, also on Ctrl-C). */
export function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
}

/** Nanoseconds on CPU of every thread of a process (sum_exec_runtime, /proc/PID/task/TID/schedstat). */
export function cpuNs(pid: number): number {
  let total = 0;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return NaN;
  }
  for (const tid of tasks) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return total;
}

/**
 * The whole host's CPU time not idle so far, in ns, on a clock of its own:
 * wall time × CPUs − (idle + iowait + steal) from /proc/stat. The idle
 * figures come from the kernel's tickless idle accounting, exact to the
 * microsecond; user/system/softirq are tick samples, and a tick restarted
 * after idle misses the short bursts of packet work completely on this
 * kernel (no IRQ time accounting): summing those would read ~0 for work
 * that keeps a core a third busy. Subtract two readings for a window.
 */
export function hostBusyNs(): number {
  const { ticks, cpus } = hostTicks();
  const tickNs = 1e9 / 100;  // USER_HZ
  return Number(process.hrtime.bigint()) * cpus - (ticks.idle! + ticks.iowait! + ticks.steal!) * tickNs;
}

const CPU_TIME_KINDS = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'];

/** The whole host's CPU time by kind from /proc/stat, in USER_HZ ticks summed over cores, and the number of cores. */
export function hostTicks(): { ticks: Record<string, number>; cpus: number } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const fields = lines[0]!.trim().split(/\s+/).slice(1).map(Number);
  return {
    ticks: Object.fromEntries(CPU_TIME_KINDS.map((kind, i) => [kind, fields[i] ?? 0])),
    cpus: lines.filter((line) => /^cpu\d+ /.test(line)).length,
  };
}

/** Resident memory of a process in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** The pids of the ksoftirqd threads: softirq work the kernel defers under load runs there. */
export function ksoftirqdPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').startsWith('ksoftirqd/')) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
