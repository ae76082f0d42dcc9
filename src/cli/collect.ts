/**
 * `tapas collect`: terminates GRE, ERSPAN (type II and III) and VXLAN tunnels in user space, for
 * a host whose kernel cannot (no ip_gre/erspan module). Writes the inner
 * frames to a pcap file or re-injects them into a local interface, and
 * prints received / accepted / filtered / malformed counters at the end.
 */
import { Command, Option } from 'commander';
import { isIP } from 'node:net';

import { Collector, type CollectorOptions, type CollectorStats } from '../engine/collector.js';
import { UsageError } from './errors.js';
import { parseInterfaceRef } from './mirror.js';

interface CollectOptions {
  netns?: string;
  listen?: string;
  key?: number;
  session?: number;
  vni?: number;
  udpPort?: number;
  write?: string;
  to?: string;
  duration?: number;
  format: 'table' | 'json';
}

function integerIn(name: string, max: number) {
  return (text: string) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || value > max) throw new UsageError(`${name} must be an integer from 0 to ${max}, not '${text}'`);
    return value;
  };
}

function portNumber(name: string) {
  return (text: string) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < 1 || value > 65535) throw new UsageError(`${name} must be a port from 1 to 65535, not '${text}'`);
    return value;
  };
}

function summary(stats: CollectorStats, seconds: number): string {
  const reasons = Object.entries(stats.malformedBy).filter(([, n]) => n > 0).map(([reason, n]) => `${reason} ${n}`);
  const types = Object.entries(stats.malformedByType).filter(([, n]) => n > 0).map(([type, n]) => `${type} ${n}`);
  const accepted = Object.entries(stats.acceptedByType).filter(([, n]) => n > 0).map(([type, n]) => `${type} ${n}`);
  return [
    `received ${stats.received} tunnel packets in ${seconds.toFixed(1)} s`,
    `  accepted ${stats.accepted}` + (accepted.length ? ` (${accepted.join(', ')})` : '') +
      `, other tunnels ${stats.filtered}, malformed ${stats.malformed}` +
      (reasons.length ? ` (${reasons.join(', ')}; by type: ${types.join(', ')})` : ''),
    `  written ${stats.written}` + (stats.truncated ? `, ${stats.truncated} truncated by the sender` : '') +
      (stats.outputErrors ? `, ${stats.outputErrors} output errors` : '') +
      (stats.oversize ? `, ${stats.oversize} too large for the interface` : ''),
  ].join('\n');
}

async function runCollect(options: CollectOptions): Promise<void> {
  if ((options.write === undefined) === (options.to === undefined)) {
    throw new UsageError('give exactly one of -w FILE or --to IF');
  }
  if (options.listen !== undefined && isIP(options.listen) === 0) {
    throw new UsageError(`--listen must be an IPv4 or IPv6 address, not '${options.listen}'`);
  }
  const collectorOptions: CollectorOptions = {
    ...(options.netns ? { netns: options.netns } : {}),
    ...(options.listen ? { listenIp: options.listen } : {}),
    ...(options.key !== undefined ? { key: options.key } : {}),
    ...(options.session !== undefined ? { session: options.session } : {}),
    ...(options.vni !== undefined ? { vni: options.vni } : {}),
    ...(options.udpPort !== undefined ? { udpPort: options.udpPort } : {}),
  };
  if (options.write !== undefined) {
    collectorOptions.pcapPath = options.write;
  } else {
    const output = parseInterfaceRef(options.to!);
    collectorOptions.toIfname = output.ifname;
    if (output.netns) collectorOptions.toNetns = output.netns;
  }

  const started = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  const collector = new Collector(collectorOptions);
  const selection = [
    options.key !== undefined ? `GRE key ${options.key}` : '',
    options.session !== undefined ? `ERSPAN session ${options.session}` : '',
    options.vni !== undefined ? `VXLAN VNI ${options.vni} on UDP port ${options.udpPort ?? 4789}` : '',
  ].filter(Boolean).join(' or ') || `every GRE, ERSPAN and VXLAN (UDP port ${options.udpPort ?? 4789}) tunnel`;
  process.stderr.write(`tapas collect: listening for ${selection}` +
    `${options.netns ? ` in network namespace ${options.netns}` : ''}` +
    ` -> ${options.write ?? options.to}\n`);

  await new Promise<void>((resolve) => {
    // The timer also keeps the process alive: the collector's thread does not.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const done = () => {
      clearInterval(keepAlive);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    if (options.duration !== undefined) setTimeout(done, options.duration * 1000);
  });

  const stats = collector.close();
  const cpu = process.cpuUsage(cpuStart);
  const elapsedSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (options.format === 'json') {
    process.stdout.write(`${JSON.stringify({
      elapsedSeconds, cpuSeconds: { user: cpu.user / 1e6, system: cpu.system / 1e6 }, ...stats,
    }, null, 2)}\n`);
  } else {
    process.stdout.write(`${summary(stats, elapsedSeconds)}\n`);
  }
}

export function registerCollect(program: Command): void {
  program
    .command('collect')
    .summary('terminate GRE/ERSPAN/VXLAN tap mirrors in user space: to a pcap file or an interface')
    .description(
      'Receive GRE (TaaS mirror_type gre), ERSPAN type II (erspanv1) and type III (erspanv2) tunnel packets ' +
        'on raw sockets and VXLAN (vxlan) on a UDP socket, keep those of the selected tunnels, and write their ' +
        'inner Ethernet frames to a pcap file (-w) or send them out of a local interface (--to), until ' +
        'interrupted or --duration has passed. Meant for hosts whose kernel has no GRE/ERSPAN/VXLAN devices. ' +
        'Counts received, accepted, other-tunnel and malformed packets (short, wrong version, bad flags, ...), ' +
        'per tunnel type too.',
    )
    .option('-n, --netns <NETNS>', 'network namespace to listen in (a name under /run/netns or a path)')
    .option('--listen <IP>', 'only packets to this local address (default: any, IPv4 and IPv6)')
    .option('--key <K>', 'accept GRE packets with this key (the tunnel id)', integerIn('--key', 0xffffffff))
    .option('--session <S>', 'accept ERSPAN (type II or III) packets of this session id', integerIn('--session', 1023))
    .option('--vni <N>', 'accept VXLAN packets of this VNI', integerIn('--vni', 0xffffff))
    .option('--udp-port <P>', 'VXLAN\'s UDP port (default 4789)', portNumber('--udp-port'))
    .option('-w, --write <FILE>', 'write the inner frames to this pcap file')
    .option('-t, --to <IF[@NETNS]>', 'send the inner frames out of this interface (default namespace: --netns)')
    .option('--duration <SECONDS>', 'stop after this many seconds', integerIn('--duration', 1e6))
    .addOption(new Option('-f, --format <FORMAT>', 'output of the final counters').choices(['table', 'json']).default('table'))
    .addHelpText('after', `
With none of --key, --session and --vni every tunnel is accepted (GRE and ERSPAN on raw sockets,
VXLAN on UDP port 4789 or --udp-port); with several, any of them. Only --vni (or --udp-port with a
selection of GRE/ERSPAN): the UDP socket is opened; only --key/--session: the raw sockets only.
ERSPAN III's optional platform subheader (O=1) is skipped.

Examples:
  tapas collect --netns collector --session 101 -w mirror.pcap
  tapas collect --netns collector --vni 5000 --udp-port 4790 -w vxlan.pcap
  tapas collect --key 102 --to mon0 --duration 60 -f json

Needs CAP_NET_RAW (and CAP_SYS_ADMIN to enter a network namespace): run as root.`)
    .action(runCollect);
}
