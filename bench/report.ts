/** The Markdown report: machine, versions, method, headline ratios against the targets, then every table. */
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { byId, hostAboveBaselineNs, lossFreeRate, over, pathAboveBaselineNs, perPacketNs, point, sizeOf } from './derive.js';
import type { ContenderResult, Results, ScaleRun } from './results.js';
import { spread, type Spread } from './stats.js';
import { sizeLabel } from './traffic.js';

const REFERENCE_RATE = 100_000;

const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : '–');
const kpps = (value: number) => (Number.isFinite(value) ? (value / 1000).toFixed(value >= 100_000 ? 0 : 1) : '–');

function withSpread(s: Spread, format: (v: number) => string): string {
  if (s.n === 0) return '–';
  if (s.n === 1 || s.min === s.max) return format(s.median);
  return `${format(s.median)} (${format(s.min)}–${format(s.max)})`;
}

const rateLabel = (target: number | null) => (target === null ? 'unpaced' : `${kpps(target)}k`);

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function measured(contenders: ContenderResult[]): ContenderResult[] {
  return contenders.filter((c) => !c.skipped && c.kind !== 'baseline');
}

interface Target {
  what: string;
  ratio: number;
  goal: string;
  pass: boolean | undefined;
  detail: string;
}

function ratioTarget(what: string, ratio: number, atLeast: number | undefined, atMost: number | undefined, detail: string): Target {
  const pass = !Number.isFinite(ratio) ? undefined : atLeast !== undefined ? ratio >= atLeast : ratio <= atMost!;
  const goal = atLeast !== undefined ? `≥ ${atLeast}` : `≤ ${atMost}`;
  return { what, ratio, goal, pass, detail };
}

export function targets(results: Results): Target[] {
  const size = 60;
  const tapas = lossFreeRate(results, 'tapas', size).median;
  const tc = lossFreeRate(results, 'tc', size).median;
  const dl = lossFreeRate(results, 'daemonlogger', size).median;
  const erspan = lossFreeRate(results, 'tapas-erspan', size).median;
  const cpu = (id: string) => over(point(sizeOf(byId(results, id), size), REFERENCE_RATE), perPacketNs).median;
  const p99 = (id: string) => spread(sizeOf(byId(results, id), size)?.latency?.map((r) => r.p99) ?? []).median;
  const lowLatency = Number.isFinite(p99('tapas-low-latency'));
  const latency = lowLatency ? p99('tapas-low-latency') : p99('tapas');
  const scale = results.scale.filter((s) => !s.failed);
  const first = scale.find((s) => s.sources === 1);
  const last = scale[scale.length - 1];
  const scaleCpu = (s: ScaleRun | undefined) => spread(s?.trials.map(perPacketNs) ?? []).median;
  const apply = spread(last?.applySeconds ?? []).median;
  const lastN = last?.sources ?? 256;
  const generatorBound = (id: string) => sizeOf(byId(results, id), size)?.search?.bound === 'generator' ? ' (generator limit: a lower bound)' : '';
  return [
    ratioTarget('64 B loss-free rate, tapas ÷ tc mirred', tapas / tc, 0.9, undefined,
      `${kpps(tapas)} vs ${kpps(tc)} kpps${generatorBound('tc')}`),
    ratioTarget('64 B loss-free rate, tapas ÷ daemonlogger', tapas / dl, 2, undefined, `${kpps(tapas)} vs ${kpps(dl)} kpps`),
    ratioTarget(`CPU per mirrored packet at ${kpps(REFERENCE_RATE)} kpps, tapas ÷ daemonlogger`, cpu('tapas') / cpu('daemonlogger'),
      undefined, 0.5, `${fixed(cpu('tapas'), 0)} vs ${fixed(cpu('daemonlogger'), 0)} ns`),
    ratioTarget(`added latency p99 at ${kpps(results.settings.latencyRate)} kpps, tapas${lowLatency ? ' --low-latency' : ''} ÷ 1 ms`,
      latency / 1000, undefined, 1, `${fixed(latency, 0)} µs${lowLatency ? ` (default blocks: ${fixed(p99('tapas'), 0)} µs)` : ''}`),
    ratioTarget('64 B loss-free rate, ERSPAN ÷ local port', erspan / tapas, 0.8, undefined, `${kpps(erspan)} vs ${kpps(tapas)} kpps`),
    // A rule's filter stage: a 3-term pcap filter every frame passes, against no filter (issue 14).
    ratioTarget(`CPU per mirrored packet at ${kpps(REFERENCE_RATE)} kpps, 3-term filter ÷ no filter`, cpu('tapas-filter') / cpu('tapas'),
      undefined, 1.2, `${fixed(cpu('tapas-filter'), 0)} vs ${fixed(cpu('tapas'), 0)} ns`),
    ratioTarget(`CPU per packet, ${lastN} sources ÷ 1 source`, scaleCpu(last) / scaleCpu(first), undefined, 1.1,
      `${fixed(scaleCpu(last), 0)} vs ${fixed(scaleCpu(first), 0)} ns`),
    ratioTarget(`apply of ${lastN} sources ÷ 2 s`, apply / 2, undefined, 1, `${fixed(apply, 3)} s`),
    // Issue 12: the kernel data path, by the host's marginal CPU (its copies are made in softirq, outside any process).
    ...bpfTargets(results, size),
  ];
}

/** Issue 12's targets for `tapas --datapath bpf`: host marginal CPU at 100 kpps and flat out, rate, tunnels, latency, scale. */
function bpfTargets(results: Results, size: number): Target[] {
  const host = (id: string, target: number | null) =>
    over(point(sizeOf(byId(results, id), size), target), (t) => hostAboveBaselineNs(results, size, t)).median;
  const bpfRate = lossFreeRate(results, 'tapas-bpf', size).median;
  const tcRate = lossFreeRate(results, 'tc', size).median;
  const p99 = spread(sizeOf(byId(results, 'tapas-bpf'), size)?.latency?.map((r) => r.p99) ?? []).median;
  const scale = results.scale.filter((s) => !s.failed && s.bpf && !s.bpf.failed);
  const first = scale.find((s) => s.sources === 1);
  const last = scale[scale.length - 1];
  const scaleHost = (s: ScaleRun | undefined) => spread(s?.bpf?.trials.map((t) => hostAboveBaselineNs(results, size, t, s.baseline)) ?? []).median;
  const list: Target[] = [];
  for (const target of [REFERENCE_RATE, null]) {
    const at = target === null ? 'flat out (unpaced)' : `${kpps(target)} kpps`;
    for (const [peer, label, goal] of [['tc', 'tc mirred', 1.2], ['tapas', 'tapas (AF_PACKET)', 0.6], ['daemonlogger', 'daemonlogger', 0.5]] as const) {
      list.push(ratioTarget(`host CPU per mirrored packet ${at}, tapas --datapath bpf ÷ ${label}`, host('tapas-bpf', target) / host(peer, target),
        undefined, goal, `${fixed(host('tapas-bpf', target), 0)} vs ${fixed(host(peer, target), 0)} ns`));
    }
  }
  list.push(ratioTarget('64 B loss-free rate, tapas --datapath bpf ÷ tc mirred', bpfRate / tcRate, 1, undefined,
    `${kpps(bpfRate)} vs ${kpps(tcRate)} kpps${sizeOf(byId(results, 'tapas-bpf'), size)?.search?.bound === 'generator' ? ' (generator limit: a lower bound)' : ''}`));
  for (const [id, label] of [['tapas-bpf-gre', 'GRE'], ['tapas-bpf-erspan', 'ERSPAN']] as const) {
    list.push(ratioTarget(`host CPU per mirrored packet at ${kpps(REFERENCE_RATE)} kpps, bpf ${label} ÷ bpf local port`,
      host(id, REFERENCE_RATE) / host('tapas-bpf', REFERENCE_RATE), undefined, 1.5,
      `${fixed(host(id, REFERENCE_RATE), 0)} vs ${fixed(host('tapas-bpf', REFERENCE_RATE), 0)} ns`));
  }
  list.push(ratioTarget(`added latency p99 at ${kpps(results.settings.latencyRate)} kpps, tapas --datapath bpf ÷ 100 µs`, p99 / 100, undefined, 1,
    `${fixed(p99, 1)} µs`));
  list.push(ratioTarget(`host CPU per packet, tapas --datapath bpf, ${last?.sources ?? 256} sources ÷ 1 source`, scaleHost(last) / scaleHost(first),
    undefined, 1.1, `${fixed(scaleHost(last), 0)} vs ${fixed(scaleHost(first), 0)} ns`));
  return list;
}

function sweepTables(results: Results, size: number): string {
  const rates = results.settings.rates[size] ?? [];
  const contenders = results.contenders.filter((c) => !c.skipped);
  const offered = contenders.map((c) => {
    const result = sizeOf(c, size);
    return [c.label, ...rates.map((r) => withSpread(over(point(result, r), (t) => t.offeredRate), kpps))];
  });
  const ratio = measured(results.contenders).map((c) => {
    const result = sizeOf(c, size);
    if (!result) return [c.label, ...rates.map(() => failedCell(c, size))];
    return [c.label, ...rates.map((r) => withSpread(over(point(result, r), (t) => 100 * (1 - t.loss)), (v) => v.toFixed(v >= 99.95 ? 2 : 1)))];
  });
  const cpu = measured(results.contenders).filter((c) => c.kind !== 'kernel').map((c) =>
    [c.label, ...rates.map((r) => withSpread(over(point(sizeOf(c, size), r), perPacketNs), (v) => fixed(v, 0)))]);
  const path = measured(results.contenders).map((c) =>
    [c.label, ...rates.map((r) => withSpread(over(point(sizeOf(c, size), r), (t) => pathAboveBaselineNs(results, size, t)), (v) => fixed(v, 0)))]);
  const host = measured(results.contenders).map((c) =>
    [c.label, ...rates.map((r) => withSpread(over(point(sizeOf(c, size), r), (t) => hostAboveBaselineNs(results, size, t)), (v) => fixed(v, 0)))]);
  const header = ['requested rate →', ...rates.map(rateLabel)];
  return [
    `#### Offered rate reached at the source port (kpps)\n\n${table(header, offered)}`,
    `#### Mirrored ÷ offered (%)\n\n${table(header, ratio)}`,
    `#### CPU of the whole host above the no-mirror baseline, per mirrored packet (ns)\n\n` +
      'All cores, softirq included: wall time × CPUs − idle (the kernel\'s tickless idle accounting) during the trial, ' +
      'minus what the same offered load costs with no mirror (per offered frame, the median of its trials). ' +
      'Every contender, the kernel\'s mirrors and tapas\'s bpf path included, is measured this way. ' +
      'It counts everything the host runs, other work on the shared machine too: compare within a column.\n\n' + table(header, host),
    `#### CPU of the mirroring process per mirrored packet (ns)\n\n${table(header, cpu)}`,
    `#### CPU of the whole path above the no-mirror baseline, per mirrored packet (ns)\n\n` +
      'Generator + mirroring process + ksoftirqd, minus what the same offered load costs with no mirror. ' +
      'This is where the kernel\'s mirrors show their cost (softirq, in the sender\'s context). ' +
      'Noisy: it is a difference of two larger numbers.\n\n' + table(header, path),
  ].join('\n\n');
}

function failedCell(contender: ContenderResult, size: number): string {
  const failed = contender.sizes.find((s) => s.size === size)?.failed;
  return failed ? 'failed' : '–';
}

function searchTable(results: Results): string {
  const rows = measured(results.contenders).map((c) => [
    c.label,
    ...results.settings.sizes.map((size) => {
      const search = sizeOf(c, size)?.search;
      if (!search) return failedCell(c, size);
      const rate = withSpread(spread(search.rates), kpps);
      return search.bound === 'generator' ? `≥ ${rate} (generator limit)` : search.bound === 'none' ? `< ${kpps(search.bracket[1])}` : rate;
    }),
  ]);
  return table(['contender', ...results.settings.sizes.map((s) => `${sizeLabel(s)} (kpps)`)], rows);
}

function latencyTable(results: Results): string {
  const size = results.settings.sizes[0]!;
  const rows = measured(results.contenders).map((c) => {
    const runs = sizeOf(c, size)?.latency;
    if (!runs) return [c.label, failedCell(c, size), '', '', ''];
    const us = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(v < 10 ? 1 : 0)} µs`);
    return [
      c.label,
      withSpread(spread(runs.map((r) => r.p50)), us),
      withSpread(spread(runs.map((r) => r.p99)), us),
      withSpread(spread(runs.map((r) => r.max)), us),
      runs.map((r) => `${r.paired}/${r.originals}`).join(', '),
    ];
  });
  return table(['contender', 'p50', 'p99', 'max', 'paired copies / originals'], rows);
}

function scaleTable(results: Results): string {
  const first = results.scale.find((s) => s.sources === 1 && !s.failed);
  const firstCpu = spread(first?.trials.map(perPacketNs) ?? []).median;
  const rows = results.scale.map((s) => {
    if (s.failed) return [String(s.sources), `failed: ${s.failed}`, '', '', '', '', '', '', '', '', '', '', '', ''];
    const cpu = spread(s.trials.map(perPacketNs));
    const perSource = first && s.sources > 1 ? (s.rssKiB - first.rssKiB) / (s.sources - 1) : NaN;
    return [
      String(s.sources),
      withSpread(spread(s.applySeconds.map((v) => v * 1000)), (v) => fixed(v, 1)),
      withSpread(spread(s.closeSeconds.map((v) => v * 1000)), (v) => fixed(v, 1)),
      fixed(s.launchToMirroringSeconds, 2),
      `${fixed(s.rssKiB / 1024, 1)}`,
      fixed(perSource / 1024, 2),
      fixed(s.ringBytesPerSource / 2 ** 20, 2),
      withSpread(spread(s.trials.map((t) => 100 * (1 - t.loss))), (v) => v.toFixed(2)),
      withSpread(cpu, (v) => fixed(v, 0)),
      fixed(cpu.median / firstCpu, 2),
      String(s.ringDrops),
      withSpread(spread(s.trials.map((t) => hostAboveBaselineNs(results, 60, t, s.baseline))), (v) => fixed(v, 0)),
      s.bpf?.failed ? `failed: ${s.bpf.failed}` : withSpread(spread(s.bpf?.trials.map((t) => 100 * (1 - t.loss)) ?? []), (v) => v.toFixed(2)),
      withSpread(spread(s.bpf?.trials.map((t) => hostAboveBaselineNs(results, 60, t, s.baseline)) ?? []), (v) => fixed(v, 0)),
    ];
  });
  return table(['sources', 'apply (ms)', 'close (ms)', 'launch → all mirrored (s)', 'RSS (MiB)', 'RSS per extra source (MiB)',
    'ring per source (MiB)', 'mirrored ÷ offered (%)', 'CPU per packet (ns)', '÷ 1 source', 'ring drops',
    'host CPU per packet above no mirror (ns)', 'bpf: mirrored ÷ offered (%)', 'bpf: host CPU per packet above no mirror (ns)'], rows);
}

function tapasTable(results: Results): string {
  const rows = results.contenders.filter((c) => c.kind === 'tapas' && !c.skipped).flatMap((c) =>
    c.sizes.filter((s) => s.tapas).map((s) => [c.label, sizeLabel(s.size), String(s.tapas!.ringDrops), String(s.tapas!.sinkErrors),
      fixed(s.tapas!.eventLoopLagP99Ms, 1), fixed(s.tapas!.rssKiB / 1024, 1)]));
  return table(['run', 'frames', 'ring drops (whole session)', 'send errors', 'event loop lag p99 (ms)', 'RSS (MiB)'], rows);
}

function method(results: Results): string {
  const s = results.settings;
  return `Topology (network namespaces, veth pairs, created and deleted by the run; IPv6 off; no route to the root namespace):

\`\`\`
gen ──g0═s0── mir ──d0═m0── mon      local port: copies counted at m0
               └──t0═c0── col        GRE / ERSPAN: tunnel packets counted at c0 (MTU 9000, no address; an nftables ingress chain drops them on arrival, so the collector's IP stack does not route each one)
\`\`\`

- **Traffic**: IPv4/UDP frames (198.18.0.1 → 198.19.0.1, the RFC 2544 range) out of g0, from CPU 0. Paced rates come from \`bench/tools/multi-send.py\` (a packet socket, a batch every 0.5 ms: even load at any time scale a mirror cares about; up to about 400 kpps); the "unpaced" column is trafgen (netsniff-ng ${results.versions.trafgen}) flat out while the mirror runs. trafgen's own \`-b\` rate is not used: it sends each second's frames in one burst at full speed and then idles, which is not the offered rate it names. The latency runs use trafgen with a gap between frames (\`-t\`), which is smooth. Frames are 60 bytes on the veth (64 B on a wire, with FCS) and 1514 bytes (1518 B: a full 1500-byte MTU). The destination MAC belongs to nobody, so on s0 the frames are what the workload sends: TaaS direction OUT. Each trial sends ${s.trialSeconds} s of traffic.
- **Offered** = rx packets of the source port s0 during the trial; **mirrored** = rx packets of m0 (or c0) after the copies stop arriving. Rates are per second of trafgen's own sending time.
- **Contenders**, one after the other in the mirror namespace on the same interfaces: \`tapas mirror --source s0 --direction OUT --to d0\` (or \`--gre\`/\`--erspan\` to the collector; defaults: 1 worker, TPACKET_V3 ring of 16 × 128 KiB, 1 ms block timeout; "tapas --low-latency" hands each frame over at once, TPACKET_V2), \`tc\` clsact + \`u32 match u32 0 0 action mirred egress mirror dev d0\` on s0 ingress, nftables netdev ingress \`dup to "d0"\`, \`daemonlogger -i s0 -o d0\`, \`netsniff-ng --in s0 --out d0 --ring-size 2MiB\` (its default ring cannot be allocated in a namespace; its TX ring is flushed by a 10 µs interval timer, \`-k\`, left at the default). Mirroring processes are not pinned (the generator is, to CPU 0). Each run starts the mirror, shows it delivers copies, warms it up (one unrecorded trial), then measures.
- **Repeats**: everything ${s.repeats}×; figures are the median with (min–max). The contenders take turns: repetition 1 of every contender, then repetition 2, and so on, each repetition a fresh start of the mirror, so that a noisy minute on the shared machine does not land on one contender only.
- **Loss-free rate**: < ${s.lossFree * 100}% loss with at least 90% of the requested rate reached. Each repetition's sweep brackets it (highest loss-free sweep rate, next rate), then ${s.searchSteps} bisection steps give the highest loss-free offered rate that repetition saw. When even the unpaced generator sees no loss the figure is the generator's limit (a lower bound).
- **CPU**: the mirroring process's on-CPU time from the scheduler (sum of \`/proc/PID/task/*/schedstat\` over its threads, ns resolution) between the trial's start and end, divided by mirrored packets. It includes softirq work the kernel does in that process's context (e.g. delivering its copies to the monitor). The kernel's mirrors have no process: their work runs in softirq, mostly in the sender's context (this kernel has no IRQ time accounting, so it is charged to the interrupted task); the "whole path above baseline" table shows it as generator + mirror + ksoftirqd CPU (the generator's from wait4 rusage) minus the same with no mirror. The **host** figure, the one issue 12's targets use, is the whole machine's: wall time × CPUs − (idle + iowait + steal) from \`/proc/stat\` between the trial's start and end, minus the no-mirror run's per offered frame, per mirrored packet. Its idle part comes from the kernel's tickless idle accounting (exact); the user/system/softirq columns of \`/proc/stat\` are tick samples that miss sub-tick bursts of packet work entirely here, so they are not used. tapas --datapath bpf is \`tapas mirror … --datapath bpf\` (tc programs on s0, tcx links; \`--gre\`/\`--erspan\` written by BPF through tapas's veth pair).
- **Latency**: at ${kpps(s.latencyRate)} kpps, ${s.latencyFrames} frames, ${s.latencyRepeats}×. tcpdump on s0 (originals) and on m0/c0 (copies) write kernel receive timestamps in nanoseconds; both are taken by the same kernel clock at the same point (the veth's netif_rx), so copy − original is what the mirror adds (plus the copy's own veth hop). Frames are paired by their IPv4 id, which trafgen counts up per frame; GRE and ERSPAN copies are decapsulated first.
- **Scale**: N veth pairs g<i>═s<i> into one destination. For each N: \`Engine.apply\` of the plan \`tapas mirror\` would build, timed in a fresh process (\`bench/apply-probe.ts\`, ${s.scaleRepeats}×) with the VmRSS it adds; then \`tapas mirror\` with N sources under ${kpps(s.scaleRate)} kpps of 64 B frames in total, sent round-robin over all N sources by a paced Python sender (\`bench/tools/multi-send.py\`) for ${s.scaleSeconds} s, ${s.scaleRepeats}×: CPU per mirrored packet, VmRSS, ring drops; then the same load with no mirror (the host baseline) and under \`tapas mirror --datapath bpf\` (host CPU per packet above that baseline). The block timeout is tapas's default for N sources: 1 ms up to 32 sources, 1 ms more per 32, at most 8 ms. "launch → all mirrored" is from starting \`tapas mirror\` until one frame through every source came out (includes Node's start).
- The machine is shared (2 cores, other engineers' builds and tests): absolute figures move from run to run; compare ratios within one run.`;
}

export function writeReport(results: Results, file: string, chart: string): void {
  const goals = targets(results);
  const verdict = (t: { pass: boolean | undefined }) => (t.pass === undefined ? 'not measured' : t.pass ? 'met' : '**missed**');
  const sections = [
    `# tapas benchmark${results.settings.quick ? ' (quick smoke run: one repetition, not for figures)' : ''}`,
    `Generated by \`npm run bench${results.settings.quick ? ' -- --quick' : ''}\` on ${results.generatedAt} in ${Math.round(results.durationSeconds)} s.`,
    `![offered vs mirrored](${chart})`,
    ...(existsSync(join(dirname(file), 'findings.md'))
      ? ['Where targets are missed, what the profiles show and what would close the gap: [findings.md](findings.md) (written by hand after a run).']
      : []),
    '## Targets (ratios measured in this run)',
    table(['target', 'measured', 'ratio', 'goal', 'verdict'], goals.map((t) => [t.what, t.detail, fixed(t.ratio, 2), t.goal, verdict(t)])),
    '## Machine and versions',
    table(['', ''], [...Object.entries(results.machine), ...Object.entries(results.versions)].map(([k, v]) => [k, v])),
    '## Method',
    method(results),
    '## Highest loss-free rate',
    searchTable(results),
    ...results.settings.sizes.flatMap((size) => [`## Rate sweep, ${sizeLabel(size)} frames`, sweepTables(results, size)]),
    `## Added latency at ${kpps(results.settings.latencyRate)} kpps (${sizeLabel(results.settings.sizes[0]!)} frames)`,
    latencyTable(results),
    '## tapas counters',
    tapasTable(results),
    ...(results.scale.length ? ['## Scale: N sources into one tap service', scaleTable(results)] : []),
    ...(results.notes.length || results.contenders.some((c) => c.sizes.some((s) => s.failed))
      ? ['## Notes', [...results.notes, ...results.contenders.flatMap((c) => c.sizes.filter((s) => s.failed)
        .map((s) => `${c.label}, ${sizeLabel(s.size)}: failed: ${s.failed}`))].map((n) => `- ${n}`).join('\n')]
      : []),
  ];
  writeFileSync(file, `${sections.join('\n\n')}\n`);
}

