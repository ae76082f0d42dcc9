/**
 * Test hosts as network namespaces, named with a per-run prefix and always
 * deleted in teardown. Nothing is routed to or from the root namespace: every
 * interface a lab creates lives in one of its own namespaces.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { readPcap } from './pcap.js';

const run = promisify(execFile);
const SEND_FRAMES = new URL('../tools/send-frames.py', import.meta.url).pathname;
const PREFIX = 'tps';

/** Whether namespace tests can run here; in CI they always run (and fail loudly if they cannot). */
export const netnsAvailable = process.getuid?.() === 0 || process.env.CI === 'true';
export const netnsSkipReason = 'network namespace tests need root (they run, and must pass, in CI)';

let labCounter = 0;

function removeStaleNamespaces(): void {
  let names: string[];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter((name) => name.startsWith(`${PREFIX}`));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(/^tps(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    }
  }
}

export class Capture {
  private stopped?: Promise<Buffer[]>;

  constructor(
    private readonly child: ChildProcess,
    private readonly file: string,
    private readonly exited: Promise<void>,
  ) {}

  /** Stops tcpdump after letting the last frames arrive, and returns what it wrote. */
  stop(settleMs = 300): Promise<Buffer[]> {
    this.stopped ??= (async () => {
      await new Promise((resolve) => setTimeout(resolve, settleMs));
      this.child.kill('SIGINT');
      await this.exited;
      return readPcap(this.file);
    })();
    return this.stopped;
  }
}

export class Lab {
  readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  readonly dir: string;

  constructor(label: string) {
    removeStaleNamespaces();
    labCounter += 1;
    this.prefix = `${PREFIX}${process.pid}-${label}${labCounter}`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.prefix}-`));
  }

  /** A new namespace with loopback up and IPv6 off (no router solicitations as noise). */
  async namespace(short: string): Promise<string> {
    const name = `${this.prefix}-${short}`;
    await run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await this.exec(name, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** A veth pair between two of this lab's namespaces, both ends up. */
  async veth(nsA: string, ifA: string, nsB: string, ifB: string, mtu?: number): Promise<void> {
    await run('ip', ['-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    if (mtu !== undefined) {
      await run('ip', ['-n', nsA, 'link', 'set', ifA, 'mtu', String(mtu)]);
      await run('ip', ['-n', nsB, 'link', 'set', ifB, 'mtu', String(mtu)]);
    }
    await run('ip', ['-n', nsA, 'link', 'set', ifA, 'up']);
    await run('ip', ['-n', nsB, 'link', 'set', ifB, 'up']);
  }

  /**
   * A tunnel's underlay: veth ul0 (in `from`) | ul1 (in `to`), MTU 1500 unless
   * given, each end addressed: IPv4 in a /24, IPv6 in a /64 (lab namespaces
   * start with IPv6 off: only this link gets it back, without DAD delay).
   */
  async underlay(from: string, fromAddress: string, to: string, toAddress: string, mtu = 1500): Promise<void> {
    await this.veth(from, 'ul0', to, 'ul1', mtu);
    for (const [ns, ifname, address] of [[from, 'ul0', fromAddress], [to, 'ul1', toAddress]] as const) {
      if (address.includes(':')) {
        await run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${ifname}.disable_ipv6=0`]);
        await run('ip', ['-n', ns, 'addr', 'add', `${address}/64`, 'dev', ifname, 'nodad']);
      } else {
        await run('ip', ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', ifname]);
      }
    }
  }

  /**
   * The usual test host: a "VM" namespace behind veth vmh|vm0 and a "monitor"
   * namespace behind monh|mon0, both host sides in a host namespace.
   */
  async vmAndMonitor(monitorMtu?: number): Promise<{ host: string; vm: string; monitor: string }> {
    const host = await this.namespace('host');
    const vm = await this.namespace('vm');
    const monitor = await this.namespace('mon');
    await this.veth(host, 'vmh', vm, 'vm0');
    await this.veth(host, 'monh', monitor, 'mon0', monitorMtu);
    return { host, vm, monitor };
  }

  async deleteLink(ns: string, ifname: string): Promise<void> {
    await run('ip', ['-n', ns, 'link', 'del', ifname]);
  }

  exec(ns: string, command: string, args: string[], input?: string): Promise<{ stdout: string; stderr: string }> {
    const child = run('ip', ['netns', 'exec', ns, command, ...args], { maxBuffer: 64 << 20 });
    if (input !== undefined) {
      child.child.stdin?.end(input);
    }
    return child;
  }

  /** Sends frames out of ifname in ns with a generator that shares no code with tapas. */
  async sendFrames(ns: string, ifname: string, frames: Buffer[], gapUs = 0): Promise<void> {
    const input = frames.map((frame) => frame.toString('hex')).join('\n') + '\n';
    const args = [SEND_FRAMES, ifname, ...(gapUs > 0 ? ['--gap-us', String(gapUs)] : [])];
    await this.exec(ns, 'python3', args, input);
  }

  /**
   * Starts tcpdump on ifname (frames it receives only) and waits until it listens.
   * A 32 MiB buffer: with the default, libpcap's ring holds only a few blocks
   * and tcpdump itself drops a fast burst of small frames.
   */
  async capture(ns: string, ifname: string, name = ifname, direction: 'in' | 'out' | 'inout' = 'in'): Promise<Capture> {
    const file = join(this.dir, `${name}-${Date.now()}.pcap`);
    const child = spawn(
      'ip',
      ['netns', 'exec', ns, 'tcpdump', '-i', ifname, '-Q', direction, '-U', '--immediate-mode', '-B', '32768', '-s', '65535', '-n', '-w', file],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.children.add(child);
    const exited = new Promise<void>((resolve) => child.on('exit', () => {
      this.children.delete(child);
      resolve();
    }));
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${stderr}`)), 10_000);
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes('listening on')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`tcpdump exited with ${code}: ${stderr}`));
      });
    });
    return new Capture(child, file, exited);
  }

  /** Registers a process to be killed in teardown. */
  track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  async cleanup(): Promise<void> {
    for (const child of this.children) child.kill('SIGKILL');
    for (const name of this.namespaces.splice(0)) {
      await run('ip', ['netns', 'del', name]).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until check() returns a value other than undefined, or fails after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
