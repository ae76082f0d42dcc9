/**
 * The benchmark's hosts: network namespaces joined by veth pairs, named with a
 * per-run prefix and deleted at the end, also on error or Ctrl-C. Nothing is
 * routed to or from the root namespace: every interface lives in one of the
 * run's own namespaces, IPv6 is off (no router solicitations as noise) and the
 * only addresses are in the benchmarking range 198.18.0.0/15 (RFC 2544).
 *
 *   gen ──g0═s0── mir ──d0═m0── mon        local port: copies counted at m0
 *                  └───t0═c0── col         tunnels: GRE/ERSPAN counted at c0
 */
import { execFileSync, spawn } from 'node:child_process';

import { nsRun, run } from './proc.js';

const PREFIX = 'tpb';

export const COLLECTOR_IP = '198.18.100.2';
const TUNNEL_LOCAL = '198.18.100.1/24';
/** Jumbo MTU on the collector link, so a 1514-byte frame plus GRE/ERSPAN headers is one packet. */
const TUNNEL_MTU = 9000;

/** Deletes namespaces left by earlier runs whose process is gone. */
export function removeStaleNamespaces(): void {
  let lines: string[];
  try {
    lines = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n');
  } catch {
    return;
  }
  for (const line of lines) {
    const name = line.split(' ')[0] ?? '';
    const pid = Number(new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    }
  }
}

export interface LinkCounters {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txDropped: number;
}

export class Namespaces {
  readonly prefix = `${PREFIX}${process.pid}`;
  private readonly created: string[] = [];

  async add(short: string): Promise<string> {
    const name = `${this.prefix}-${short}`;
    await run('ip', ['netns', 'add', name]);
    this.created.push(name);
    await nsRun(name, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1',
      'net.ipv4.ip_forward=0']);
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** Adds veth pairs in one `ip -batch` per namespace: a is in nsA, b in nsB, all up. */
  async veths(nsA: string, nsB: string, pairs: Array<[string, string]>, mtu?: number): Promise<void> {
    const mtuArgs = mtu ? ` mtu ${mtu}` : '';
    await batch(nsA, pairs.map(([a, b]) => `link add ${a}${mtuArgs} type veth peer name ${b}${mtuArgs} netns ${nsB}`));
    await batch(nsA, pairs.map(([a]) => `link set ${a} up`));
    await batch(nsB, pairs.map(([, b]) => `link set ${b} up`));
  }

  async deleteAll(): Promise<void> {
    for (const name of this.created.splice(0).reverse()) {
      await run('ip', ['netns', 'del', name]).catch(() => undefined);
    }
  }

  /** Synchronous teardown for signal and exit handlers. */
  deleteAllSync(): void {
    for (const name of this.created.splice(0).reverse()) {
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  }
}

async function batch(ns: string, commands: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn('ip', ['-n', ns, '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ip -batch in ${ns}: ${stderr.trim()}`))));
    child.stdin.end(`${commands.join('\n')}\n`);
  });
}

/** Counters of every interface of a namespace, by name, from one `ip -s -j link`. */
export async function counters(ns: string): Promise<Map<string, LinkCounters>> {
  const links = JSON.parse(await run('ip', ['-n', ns, '-s', '-j', 'link', 'show'])) as Array<{
    ifname: string;
    stats64?: { rx: { packets: number; bytes: number }; tx: { packets: number; dropped: number } };
  }>;
  const result = new Map<string, LinkCounters>();
  for (const link of links) {
    const stats = link.stats64;
    if (!stats) continue;
    result.set(link.ifname, {
      rxPackets: stats.rx.packets, rxBytes: stats.rx.bytes, txPackets: stats.tx.packets, txDropped: stats.tx.dropped,
    });
  }
  return result;
}

export async function macOf(ns: string, ifname: string): Promise<string> {
  const [link] = JSON.parse(await run('ip', ['-n', ns, '-j', 'link', 'show', 'dev', ifname])) as Array<{ address: string }>;
  if (!link) throw new Error(`no ${ifname} in ${ns}`);
  return link.address;
}

/** The main topology: one source port, one local destination port, one tunnel collector. */
export interface MainTopology {
  gen: string;
  mir: string;
  mon: string;
  col: string;
}

export async function buildMain(spaces: Namespaces): Promise<MainTopology> {
  const gen = await spaces.add('gen');
  const mir = await spaces.add('mir');
  const mon = await spaces.add('mon');
  const col = await spaces.add('col');
  await spaces.veths(gen, mir, [['g0', 's0']]);
  await spaces.veths(mir, mon, [['d0', 'm0']]);
  await spaces.veths(mir, col, [['t0', 'c0']], TUNNEL_MTU);
  // The collector has no address; the mirror host reaches it through a static
  // neighbour entry.
  await run('ip', ['-n', mir, 'addr', 'add', TUNNEL_LOCAL, 'dev', 't0']);
  await run('ip', ['-n', mir, 'neigh', 'replace', COLLECTOR_IP, 'lladdr', await macOf(col, 'c0'), 'dev', 't0', 'nud', 'permanent']);
  // Dropped on arrival: c0 counts them first (veth counts in the sender's
  // transmit), and the collector's IP stack does not route each packet and
  // fail (ip_route_input_slow, ip_error: 10% of tapas's profile once, run in
  // tapas's softirq) — work a real collector does on its own host. The
  // monitor needs no such rule: IP drops frames for a foreign MAC at once.
  await nsRun(col, 'nft', ['add table netdev sink; add chain netdev sink arrivals { type filter hook ingress device c0 priority 0; policy drop; }']);
  return { gen, mir, mon, col };
}

/** The scale topology: `count` source ports (g<i>═s<i>) into one destination port (d0═m0). */
export interface ScaleTopology {
  gen: string;
  mir: string;
  mon: string;
  count: number;
}

export async function buildScale(spaces: Namespaces, count: number): Promise<ScaleTopology> {
  const gen = await spaces.add('sgen');
  const mir = await spaces.add('smir');
  const mon = await spaces.add('smon');
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < count; i += 1) pairs.push([`g${i}`, `s${i}`]);
  await spaces.veths(gen, mir, pairs);
  await spaces.veths(mir, mon, [['d0', 'm0']]);
  return { gen, mir, mon, count };
}
