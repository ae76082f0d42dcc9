/**
 * `tapas mirror`: a one-shot soft tap that needs no daemon. Builds a plan from
 * the command line, runs the engine until SIGINT/SIGTERM or --duration, and
 * prints the counters.
 */
import { isIP } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Command, Option } from 'commander';

import {
  Engine, WORKER_PRIORITIES, type EngineStats, type Plan, type Direction, type GreSinkPlan, type ErspanSinkPlan, type Erspan3SinkPlan,
  type VxlanSinkPlan, type RingSettings, type WorkerPriority,
} from '../engine/engine.js';
import type { FileSinkPlan } from '../engine/plan.js';
import { DIRECTIONS } from '../engine/plan.js';
import { formatReason, invalidInputMessage, type FormatName } from '../model/formats.js';
import { parseVlanFilter, VlanFilterError } from '../model/vlan-filter.js';
import { UsageError } from './errors.js';
import { addPcapOptions, filesSummary, PCAP_HELP, pcapRotation, type PcapCliOptions } from './pcap-options.js';

interface InterfaceRef {
  ifname: string;
  netns?: string;
}

interface MirrorOptions extends PcapCliOptions {
  source: string[];
  direction: Direction;
  vlanFilter?: string;
  filter?: string;
  snaplen?: number;
  sampleRate?: number;
  to?: string;
  gre?: string;
  key?: number;
  erspan?: string;
  erspan3?: string;
  session?: number;
  index?: number;
  hwId?: number;
  vxlan?: string;
  vni?: number;
  udpPort?: number;
  truncate?: boolean;
  duration?: number;
  format: 'table' | 'json';
  workers: number;
  ringBlockSize: number;
  ringBlocks: number;
  ringTimeoutMs?: number;
  lowLatency?: boolean;
  priority: WorkerPriority;
  datapath: 'packet' | 'bpf' | 'auto';
}

export function parseInterfaceRef(text: string): InterfaceRef {
  const at = text.indexOf('@');
  const ifname = at < 0 ? text : text.slice(0, at);
  const netns = at < 0 ? undefined : text.slice(at + 1);
  // The engine's rule (and the kernel's): 1-15 bytes, no NUL, '/', ':' or whitespace.
  if (ifname === '' || Buffer.byteLength(ifname) > 15 || /[\s/:\0]/.test(ifname)) {
    throw new UsageError(`invalid interface '${text}': expected IF or IF@NETNS ` +
      "(interface names have at most 15 characters, and no '/', ':' or whitespace)");
  }
  if (netns === '') throw new UsageError(`invalid interface '${text}': the network namespace after '@' is empty`);
  return netns === undefined ? { ifname } : { ifname, netns };
}

const label = (ref: InterfaceRef) => (ref.netns ? `${ref.ifname}@${ref.netns}` : ref.ifname);

/** A tunnel toward a remote collector, sent from NETNS's routing (--gre/--erspan/--erspan3/--vxlan IP[@NETNS]). */
export type TunnelDestination = Omit<GreSinkPlan, 'id'> | Omit<ErspanSinkPlan, 'id'> | Omit<Erspan3SinkPlan, 'id'> | Omit<VxlanSinkPlan, 'id'>;

function parseRemote(text: string, option: string): { remoteIp: string; netns?: string } {
  const at = text.lastIndexOf('@');
  const remoteIp = at < 0 ? text : text.slice(0, at);
  const netns = at < 0 ? undefined : text.slice(at + 1);
  if (isIP(remoteIp) === 0) throw new UsageError(`${option} needs IP or IP@NETNS with an IPv4 or IPv6 address, not '${text}'`);
  if (netns === '') throw new UsageError(`${option} '${text}': the network namespace after '@' is empty`);
  return netns === undefined ? { remoteIp } : { remoteIp, netns };
}

function integerIn(name: string, max: number) {
  return (text: string) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || value > max) throw new UsageError(`${name} must be an integer from 0 to ${max}, not '${text}'`);
    return value;
  };
}

/** pcap files (-w FILE, rotated by -C/-G/-W). */
export type FileDestination = Omit<FileSinkPlan, 'id'>;
type Destination = InterfaceRef | TunnelDestination | FileDestination;

/** Exactly one of --to, --gre (with --key), --erspan or --erspan3 (with --session), --vxlan (with --vni), or -w. */
function parseDestination(options: MirrorOptions): Destination {
  const given = [options.to, options.gre, options.erspan, options.erspan3, options.vxlan, options.write]
    .filter((value) => value !== undefined).length;
  if (given !== 1) {
    throw new UsageError('give exactly one destination: --to IF, --gre IP --key K, --erspan IP --session S, '
      + '--erspan3 IP --session S, --vxlan IP --vni N or -w FILE');
  }
  // Also refuses -C/-G/-W without -w, before anything is captured.
  const rotation = pcapRotation(options);
  if (options.key !== undefined && options.gre === undefined) throw new UsageError('--key goes with --gre');
  if (options.truncate && options.gre === undefined) throw new UsageError('--truncate goes with --gre (ERSPAN and VXLAN always truncate)');
  if (options.session !== undefined && options.erspan === undefined && options.erspan3 === undefined) {
    throw new UsageError('--session goes with --erspan or --erspan3');
  }
  if (options.index !== undefined && options.erspan === undefined) throw new UsageError('--index goes with --erspan (type III has none)');
  if (options.hwId !== undefined && options.erspan3 === undefined) throw new UsageError('--hw-id goes with --erspan3');
  if ((options.vni !== undefined || options.udpPort !== undefined) && options.vxlan === undefined) {
    throw new UsageError('--vni and --udp-port go with --vxlan');
  }
  if (options.gre !== undefined) {
    if (options.key === undefined) throw new UsageError('--gre needs --key K (the tunnel id)');
    return { kind: 'gre', ...parseRemote(options.gre, '--gre'), key: options.key, ...(options.truncate ? { truncate: true } : {}) };
  }
  if (options.erspan !== undefined) {
    if (options.session === undefined) throw new UsageError('--erspan needs --session S (the tunnel id, 0-1023)');
    return {
      kind: 'erspan', ...parseRemote(options.erspan, '--erspan'), session: options.session,
      ...(options.index !== undefined ? { index: options.index } : {}),
    };
  }
  if (options.erspan3 !== undefined) {
    if (options.session === undefined) throw new UsageError('--erspan3 needs --session S (the tunnel id, 0-1023)');
    return {
      kind: 'erspan3', ...parseRemote(options.erspan3, '--erspan3'), session: options.session,
      ...(options.hwId !== undefined ? { hwid: options.hwId } : {}),
    };
  }
  if (options.vxlan !== undefined) {
    if (options.vni === undefined) throw new UsageError('--vxlan needs --vni N (the tunnel id, 0-16777215)');
    return {
      kind: 'vxlan', ...parseRemote(options.vxlan, '--vxlan'), vni: options.vni,
      ...(options.udpPort !== undefined ? { port: options.udpPort } : {}),
    };
  }
  if (options.write !== undefined) {
    return {
      kind: 'file', path: options.write, ...(rotation && Object.keys(rotation).length > 0 ? { rotation } : {}),
      ...(options.pcapng ? { pcapng: true } : {}),
    };
  }
  return parseInterfaceRef(options.to!);
}

function destinationLabel(destination: Destination): string {
  if (!('kind' in destination)) return label(destination);
  if (destination.kind === 'file') {
    const { rotation } = destination;
    const rotated = [rotation?.size ? `-C ${rotation.size}` : '', rotation?.seconds ? `-G ${rotation.seconds}` : '',
      rotation?.files ? `-W ${rotation.files}` : ''].filter(Boolean).join(' ');
    return `${destination.pcapng ? 'pcapng ' : ''}file ${destination.path}${rotated ? ` (${rotated})` : ''}`;
  }
  const to = `to ${destination.remoteIp}${destination.netns ? `@${destination.netns}` : ''}`;
  switch (destination.kind) {
    case 'gre': return `GRE key ${destination.key} ${to}`;
    case 'erspan': return `ERSPAN session ${destination.session} ${to}`;
    case 'erspan3': return `ERSPAN III session ${destination.session} ${to}`;
    case 'vxlan': return `VXLAN VNI ${destination.vni} ${to} port ${destination.port ?? 4789}`;
  }
}

function portNumber(name: string) {
  return (text: string) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < 1 || value > 65535) throw new UsageError(`${name} must be a port from 1 to 65535, not '${text}'`);
    return value;
  };
}

function positiveInteger(name: string) {
  return (text: string) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value <= 0) throw new UsageError(`${name} must be a positive integer, not '${text}'`);
    return value;
  };
}

/** What of the selected frames is sent: --filter, --sample-rate, --snaplen (a rule's stages, in that order). */
export interface Selection {
  filter?: string;
  sampleRate?: number;
  snaplen?: number;
}

export function buildMirrorPlan(sources: InterfaceRef[], destination: Destination, direction: Direction,
  vlans: Array<[number, number]> | undefined, selection: Selection = {}): Plan {
  return {
    sources: sources.map((source, index) => ({ id: `source-${index}`, ...source })),
    sinks: ['kind' in destination ? { id: 'destination', ...destination } : { id: 'destination', kind: 'port', ...destination }],
    rules: sources.map((_, index) => ({
      id: `rule-${index}`, sourceId: `source-${index}`, sinkId: 'destination', direction, ...(vlans ? { vlans } : {}),
      ...(selection.filter !== undefined ? { filter: selection.filter } : {}),
      ...(selection.sampleRate !== undefined ? { sampleRate: selection.sampleRate } : {}),
      ...(selection.snaplen !== undefined ? { snaplen: selection.snaplen } : {}),
    })),
  };
}

/** A value the contract's format refuses, in the API's words: a usage error before anything runs. */
function checked<T>(format: FormatName, attribute: string, parse: (text: string) => T) {
  return (text: string): T => {
    const value = parse(text);
    const reason = formatReason(format, value);
    if (reason !== undefined) throw new UsageError(invalidInputMessage(attribute, reason));
    return value;
  };
}

const wholeNumber = (flag: string) => (text: string): number => {
  if (!/^\d{1,10}$/.test(text)) throw new UsageError(`${flag} must be an integer, not '${text}'`);
  return Number(text);
};

interface Report {
  elapsedSeconds: number;
  cpuSeconds: { user: number; system: number };
  eventLoopLagMs: { p50: number; p99: number; max: number };
  mirrored: { packets: number; bytes: number };
  stats: EngineStats;
}

function summary(report: Report, names: Map<string, string>): string {
  const { stats } = report;
  const lines = [
    `mirrored ${report.mirrored.packets} packets (${report.mirrored.bytes} bytes) in ${report.elapsedSeconds.toFixed(1)} s`,
  ];
  for (const source of stats.sources) {
    lines.push(`  source ${names.get(source.id)}: ${source.packets} packets seen, ${source.captureDrops} capture drops` +
      (source.bpf ? ` (bpf data path, attached with ${source.bpf.attach || 'nothing'})` : '') +
      (source.truncated ? `, ${source.truncated} truncated` : '') + (source.ok ? '' : ` — FAILED: ${source.reason}`));
  }
  for (const sink of stats.sinks) {
    const file = sink.filesOpened !== undefined;
    lines.push(`  destination ${names.get(sink.id)}: ${sink.packets} ${file ? 'written' : 'sent'}` +
      `${file ? filesSummary(sink.filesOpened, sink.filesRemoved) : ''}, ${sink.errors} ${file ? 'write' : 'send'} errors` +
      (sink.truncated ? `, ${sink.truncated} truncated to the path MTU` : '') +
      (sink.fragmented ? `, ${sink.fragmented} fragmented` : '') +
      (sink.ok ? '' : ` — FAILED: ${sink.reason}`));
  }
  const filtered = stats.rules.reduce((n, r) => n + r.filtered, 0);
  const sampledOut = stats.rules.reduce((n, r) => n + r.sampledOut, 0);
  const truncated = stats.rules.reduce((n, r) => n + r.truncated, 0);
  if (filtered || sampledOut || truncated) {
    lines.push(`  selection: ${filtered} filtered out, ${sampledOut} sampled out, ${truncated} cut to the snaplen`);
  }
  const oversize = stats.rules.reduce((n, r) => n + r.oversize, 0);
  const unavailable = stats.rules.reduce((n, r) => n + r.unavailable, 0);
  if (oversize || unavailable) lines.push(`  dropped: ${oversize} oversize, ${unavailable} while the destination was down`);
  lines.push(`  cpu ${(report.cpuSeconds.user + report.cpuSeconds.system).toFixed(2)} s` +
    `, event loop lag p99 ${report.eventLoopLagMs.p99.toFixed(1)} ms`);
  return lines.join('\n');
}

async function runMirror(options: MirrorOptions): Promise<void> {
  const sources = options.source.map(parseInterfaceRef);
  const destination = parseDestination(options);
  // GRE and ERSPAN II: written by the kernel path (rules it cannot serve there, e.g. an IPv6 collector, fall back with their reason).
  if (options.datapath !== 'packet' && 'kind' in destination && destination.kind !== 'gre' && destination.kind !== 'erspan') {
    if (options.datapath === 'bpf') {
      throw new UsageError(`--datapath bpf sends only to a local port (--to), --gre or --erspan so far: ${destination.kind.toUpperCase()} tunnels need --datapath packet`);
    }
    options.datapath = 'packet';  // auto: these tunnels are the packet path's
  }
  for (const source of sources) {
    if (!('kind' in destination) && source.ifname === destination.ifname && (source.netns ?? '') === (destination.netns ?? '')) {
      throw new UsageError(`destination ${label(destination)} is also a source: its copies would be mirrored again`);
    }
  }
  let vlans: Array<[number, number]> | undefined;
  try {
    vlans = options.vlanFilter === undefined ? undefined : parseVlanFilter(options.vlanFilter);
  } catch (error) {
    if (error instanceof VlanFilterError) throw new UsageError(error.message);
    throw error;
  }
  // How the AF_PACKET backend captures: an engine option, not part of the plan.
  const ring: RingSettings = {
    blockSize: options.ringBlockSize, blockCount: options.ringBlocks,
    ...(options.ringTimeoutMs === undefined ? {} : { blockTimeoutMs: options.ringTimeoutMs }),
    ...(options.lowLatency ? { version: 2 as const } : {}),
  };
  const plan = buildMirrorPlan(sources, destination, options.direction, vlans,
    { filter: options.filter, sampleRate: options.sampleRate, snaplen: options.snaplen });
  const names = new Map<string, string>([
    ...sources.map((source, index) => [`source-${index}`, label(source)] as [string, string]),
    ['destination', destinationLabel(destination)],
  ]);

  let engine: Engine;
  try {
    engine = new Engine({ workers: options.workers, priority: options.priority, ring, datapath: options.datapath });
  } catch (error) {
    // The ring options' combinations the kernel refuses (a V3 block under 64 KiB, sizes not powers of two).
    if (error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
  // The histogram records whole timer periods: subtract the period to get the lag.
  const lagResolutionMs = 10;
  const lag = monitorEventLoopDelay({ resolution: lagResolutionMs });
  const started = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  const initial = await engine.apply(plan);
  const failed = [...initial.sources, ...initial.sinks].find((endpoint) => !endpoint.ok);
  // A rule is refused when its sink is (e.g. the destination is a source under another namespace name).
  const refused = initial.rules.find((rule) => !rule.ok);
  if (failed || refused) {
    await engine.close();
    // The engine opened every interface in parallel; its reasons name what is wrong.
    if (failed) throw new Error(`${failed.id === 'destination' ? 'destination' : 'source'} ${names.get(failed.id)}: ${failed.reason}`);
    throw new Error(`cannot mirror: ${refused!.reason}`);
  }
  if (engine.datapathFallback) process.stderr.write(`tapas: using the packet data path: ${engine.datapathFallback}\n`);
  // Rules the kernel path cannot serve (a destination in another namespace than the source) run on AF_PACKET.
  for (const rule of initial.rules) {
    if (rule.datapath === 'packet') process.stderr.write(`tapas: ${rule.id} runs on the packet data path: ${rule.datapathReason}\n`);
  }
  lag.enable();
  process.stderr.write(`tapas: mirroring ${sources.map(label).join(', ')} (${options.direction}) to ${destinationLabel(destination)}` +
    `${options.duration === undefined ? '; Ctrl-C to stop' : ` for ${options.duration} s`}\n`);

  const live = options.format === 'table' && process.stdout.isTTY;
  let previous = { packets: 0, at: Date.now() };
  // Also what keeps the process alive: the engine's own threads do not.
  const ticker = setInterval(() => {
    if (!live) return;
    const stats = engine.stats();
    const mirrored = stats.sinks.reduce((n, s) => n + s.packets, 0);
    const drops = stats.sources.reduce((n, s) => n + s.captureDrops, 0);
    const errors = stats.sinks.reduce((n, s) => n + s.errors, 0);
    const now = Date.now();
    const rate = ((mirrored - previous.packets) * 1000) / Math.max(1, now - previous.at);
    previous = { packets: mirrored, at: now };
    const down = [...stats.sources, ...stats.sinks].filter((e) => !e.ok).map((e) => `${names.get(e.id)}: ${e.reason}`);
    process.stdout.write(`\r\x1b[2Kmirrored ${mirrored} packets  ${Math.round(rate)} pkt/s  capture drops ${drops}  send errors ${errors}` +
      (down.length ? `  [${down.join('; ')}]` : ''));
  }, 1000);

  await new Promise<void>((resolve) => {
    // Whichever comes first ends the run; the other must not keep the process alive.
    const timer = options.duration === undefined ? undefined : setTimeout(() => done(), options.duration * 1000);
    const done = () => {
      clearTimeout(timer);
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });

  clearInterval(ticker);
  if (live) process.stdout.write('\r\x1b[2K');
  lag.disable();
  const stats = await engine.close();
  const cpu = process.cpuUsage(cpuStart);
  const report: Report = {
    elapsedSeconds: Number(process.hrtime.bigint() - started) / 1e9,
    cpuSeconds: { user: cpu.user / 1e6, system: cpu.system / 1e6 },
    eventLoopLagMs: {
      p50: Math.max(0, lag.percentile(50) / 1e6 - lagResolutionMs),
      p99: Math.max(0, lag.percentile(99) / 1e6 - lagResolutionMs),
      max: Math.max(0, lag.max / 1e6 - lagResolutionMs),
    },
    mirrored: {
      packets: stats.sinks.reduce((n, s) => n + s.packets, 0),
      bytes: stats.sinks.reduce((n, s) => n + s.bytes, 0),
    },
    stats,
  };
  if (options.format === 'json') {
    const named = {
      ...report,
      stats: {
        sources: stats.sources.map((s) => ({ ...s, interface: names.get(s.id) })),
        sinks: stats.sinks.map((s) => ({ ...s, interface: names.get(s.id) })),
        rules: stats.rules,
      },
    };
    process.stdout.write(`${JSON.stringify(named, null, 2)}\n`);
  } else {
    process.stdout.write(`${summary(report, names)}\n`);
  }
}

export function registerMirror(program: Command): void {
  const command = program
    .command('mirror')
    .summary('mirror interfaces to a local port or a GRE/ERSPAN/VXLAN tunnel, without a daemon')
    .description(
      'Mirror the traffic of one or more source interfaces to a destination interface until ' +
        'interrupted (Ctrl-C, SIGTERM) or --duration has passed, then print the counters.\n\n' +
        'Directions are the workload\'s, as in OpenStack TaaS: a source is the host side of a VM\'s ' +
        'tap or a container\'s veth, so IN is what the workload receives and OUT what it sends.',
    )
    .requiredOption('-s, --source <IF[@NETNS]...>', 'source interface, optionally inside a network namespace (repeatable)',
      (value: string, previous: string[] = []) => [...previous, value])
    .addOption(new Option('-d, --direction <DIR>', 'which traffic to mirror').choices([...DIRECTIONS]).makeOptionMandatory())
    .option('--vlan-filter <LIST>', 'only frames of these VLAN ids, e.g. 1-5,9 (untagged frames never match)')
    .option('--filter <EXPRESSION>', 'only frames this pcap-filter expression (tcpdump syntax) matches, VLAN tag included, ' +
      'e.g. \'udp port 53 or vlan 10\'', checked('pcap-filter', 'filter', (text) => text))
    .option('--sample-rate <N>', 'send one frame in N (the first of every N the filter passes; the rest are counted as sampled out)',
      checked('sample-rate', 'sample_rate', wholeNumber('--sample-rate')))
    .option('--snaplen <BYTES>', 'send only the first BYTES (64 or more) of each frame; ERSPAN sets its T bit',
      checked('snaplen', 'snaplen', wholeNumber('--snaplen')))
    .option('-t, --to <IF[@NETNS]>', 'destination interface that receives the copies')
    .option('--gre <IP[@NETNS]>', 'or: send the copies in GRE to this collector (routed in NETNS)')
    .option('--key <K>', 'GRE key: the tunnel id', integerIn('--key', 0xffffffff))
    .option('--truncate', 'GRE: cut frames above the path MTU instead of letting the kernel fragment them')
    .option('--erspan <IP[@NETNS]>', 'or: send the copies in ERSPAN type II to this collector')
    .option('--erspan3 <IP[@NETNS]>', 'or: in ERSPAN type III (TaaS erspanv2): timestamp, hardware id, and the direction bit ' +
      'per frame (D=0 for IN, 1 for OUT), so -d BOTH keeps both directions apart in one session')
    .option('--session <S>', 'ERSPAN session id: the tunnel id, 0-1023', integerIn('--session', 1023))
    .option('--index <N>', 'ERSPAN II index (default: the session id read as hex digits, 102 -> 0x102, as OpenStack does)',
      integerIn('--index', 0xfffff))
    .option('--hw-id <N>', 'ERSPAN III hardware id, 0-63 (default 0)', integerIn('--hw-id', 63))
    .option('--vxlan <IP[@NETNS]>', 'or: send the copies in VXLAN (UDP) to this collector')
    .option('--vni <N>', 'VXLAN network identifier: the tunnel id, 0-16777215', integerIn('--vni', 0xffffff))
    .option('--udp-port <P>', 'VXLAN: the collector\'s UDP port (default 4789)', portNumber('--udp-port'));
  addPcapOptions(command, 'the copies (or: instead of a destination interface or tunnel)')
    .option('--duration <SECONDS>', 'stop after this many seconds', positiveInteger('--duration'))
    .addOption(new Option('-f, --format <FORMAT>', 'output of the final counters').choices(['table', 'json']).default('table'))
    .option('--workers <N>', 'capture threads (more than one uses PACKET_FANOUT_HASH)', positiveInteger('--workers'), 1)
    .option('--ring-block-size <BYTES>', 'ring block size, a power of two >= 65536', positiveInteger('--ring-block-size'), 131072)
    .option('--ring-blocks <N>', 'ring blocks per source', positiveInteger('--ring-blocks'), 16)
    .option('--ring-timeout-ms <MS>', 'how long a partly filled block waits (default: 1 ms, ' +
      'and 1 ms more per 32 sources up to 100: every ring has a block timer)', positiveInteger('--ring-timeout-ms'))
    .addOption(new Option('--priority <LEVEL>', 'scheduling of the capture threads: nice 0, nice -10, or SCHED_FIFO')
      .choices([...WORKER_PRIORITIES]).default('high'))
    .addOption(new Option('--datapath <PATH>', 'packet: AF_PACKET rings and worker threads; bpf: tc programs copy frames ' +
      'in the kernel (a --to port in the sources\' namespace; Linux 6.6+ attaches tcx links, older kernels cls_bpf); ' +
      'auto: bpf where it can run, else packet')
      .choices(['packet', 'bpf', 'auto']).default('packet'))
    .option('--low-latency', 'hand each frame over at once (TPACKET_V2) instead of in blocks: sub-millisecond ' +
      'added latency, more CPU at low rates, frames over ~1.9 KiB truncated')
    .addHelpText('after', `
Examples:
  tapas mirror --source tap-vm1 --direction BOTH --to tap-ids
  tapas mirror -s veth-a@ns1 -s veth-b@ns1 -d IN --vlan-filter 10-20,30 -t mon0@ns1 --duration 60 -f json
  tapas mirror -s tap-vm1 -d BOTH --filter 'tcp port 443' --snaplen 128 --sample-rate 10 -t tap-ids
  tapas mirror -s vmh@host -d BOTH -t monh@host --datapath bpf      # copied in the kernel
  tapas mirror -s tap-vm1 -d OUT --gre 192.0.2.10 --key 102
  tapas mirror -s tap-vm1 -d IN --erspan 192.0.2.10 --session 101      # index 0x101
  tapas mirror -s tap-vm1 -d BOTH --erspan3 192.0.2.10 --session 7     # D=0 IN, D=1 OUT
  tapas mirror -s tap-vm1 -d BOTH --vxlan 192.0.2.10@host --vni 5000 --udp-port 4790
  tapas mirror -s tap-vm1 -d BOTH -w /var/tmp/vm1.pcap -C 100 -W 10    # vm1.pcap0..vm1.pcap9, 100 MB each

GRE and ERSPAN are sent from a raw IP socket, VXLAN from a UDP socket: the kernel adds the outer
headers and routes them. ERSPAN cuts frames above the path MTU and sets the T bit; VXLAN cuts them
too (it has no T bit: counted as truncated); GRE leaves them to IP fragmentation unless --truncate.
VXLAN carries no direction: with -d BOTH, IN and OUT share the VNI indistinguishably.
${PCAP_HELP}
  Each record holds the frame as it was on the wire (a VLAN tag the kernel
  moved into metadata is put back) and the kernel's capture time.

Needs CAP_NET_RAW (and CAP_SYS_ADMIN to enter network namespaces): run as root.`)
    .action(runMirror);
}
