/**
 * `tapas stats [--watch]`: per tap flow and tap mirror, what the data path
 * mirrored — packets/s, bits/s, drops, and the data path that runs it (bpf or
 * packet, and why packet) — next to the resource's status, from
 * the daemon's stats report (GET /v2.0/taas/stats; --watch follows its
 * Server-Sent Events stream). Rates are the difference of two samples, over
 * the interval the user chose.
 * On a terminal --watch redraws one table in place; into a pipe it writes
 * plain `key=value` lines, one per resource and sample.
 */
import { Command, Option } from 'commander';

import { datapathOf, type RuleDatapath, type Selection } from '../model/observation.js';
import type { ResourceStats, StatsReport } from '../service/stats.js';
import { clientFor, type ApiClient } from './client.js';
import { UsageError } from './errors.js';
import { table } from './output.js';

/** What a row's data path counted, which data path that is (bpf, packet) and why AF_PACKET's on an agent that runs bpf. */
export interface Counters extends RuleDatapath {
  packets: number;
  bytes: number;
  drops: number;
  /** With a filter, sample_rate or snaplen: what those stages took out or cut (not drops). */
  selection?: Selection;
}

export interface StatsEntry {
  kind: 'tap_flow' | 'tap_mirror';
  id: string;
  name: string;
  status: string;
  status_reason: string | null;
  /** IN, OUT or BOTH. */
  direction: string;
  /** Where the copies go: a tap service's name, or `erspanv1 to 192.0.2.10`. */
  to: string;
  /** null while the data path runs nothing for it (DOWN, ERROR). */
  counters: Counters | null;
}

export interface Sample {
  /** Milliseconds since the epoch. */
  at: number;
  entries: StatsEntry[];
}

export interface StatsRow extends StatsEntry {
  packets_per_second: number | null;
  bits_per_second: number | null;
}

export const STATS_PATH = '/v2.0/taas/stats';

const dropped = (drops: Record<string, number>) => Object.values(drops).reduce((total, count) => total + count, 0);

/** One look at the daemon's report: what the CLI shows of each tap flow and tap mirror. */
export function sampleOf(report: StatsReport, at = Date.now()): Sample {
  const serviceNames = new Map(report.tap_services.map((service) => [service.id, service.name || service.id]));
  const common = (resource: ResourceStats) => ({
    id: resource.id,
    name: resource.name,
    status: resource.status,
    status_reason: resource.status_reason,
    counters: resource.packets === null ? null : {
      packets: resource.packets, bytes: resource.bytes ?? 0, drops: dropped(resource.drops),
      ...(resource.selection ? { selection: resource.selection } : {}),
      ...datapathOf([resource]),
    },
  });
  const entries: StatsEntry[] = [
    ...report.tap_flows.map((flow): StatsEntry => ({
      kind: 'tap_flow', ...common(flow),
      direction: flow.direction,
      to: serviceNames.get(flow.tap_service_id) ?? flow.tap_service_id,
    })),
    ...report.tap_mirrors.map((mirror): StatsEntry => {
      const directions = Object.keys(mirror.directions);
      return {
        kind: 'tap_mirror', ...common(mirror),
        direction: directions.length === 2 ? 'BOTH' : directions.join(''),
        to: `${mirror.mirror_type} to ${mirror.remote_ip}`,
      };
    }),
  ];
  return { at, entries };
}

export async function takeSample(client: ApiClient): Promise<Sample> {
  const body = await client.request('GET', STATS_PATH) as { stats: StatsReport };
  return sampleOf(body.stats);
}

/** Rates between two samples; a counter that went backwards (restart, re-created) has no rate. */
export function rates(previous: Sample | undefined, current: Sample): StatsRow[] {
  const before = new Map(previous?.entries.map((entry) => [entry.id, entry]) ?? []);
  const seconds = previous ? (current.at - previous.at) / 1000 : 0;
  return current.entries.map((entry) => {
    const old = before.get(entry.id)?.counters;
    const now = entry.counters;
    if (!old || !now || seconds <= 0 || now.packets < old.packets || now.bytes < old.bytes) {
      return { ...entry, packets_per_second: null, bits_per_second: null };
    }
    return { ...entry, packets_per_second: (now.packets - old.packets) / seconds, bits_per_second: ((now.bytes - old.bytes) * 8) / seconds };
  });
}

export function humanRate(value: number | null, unit: string): string {
  if (value === null) return '-';
  const prefixes = ['', 'k', 'M', 'G', 'T'];
  let scaled = value;
  let index = 0;
  while (scaled >= 1000 && index < prefixes.length - 1) {
    scaled /= 1000;
    index += 1;
  }
  const digits = scaled === 0 || scaled >= 100 ? 0 : scaled >= 10 ? 1 : 2;
  return `${scaled.toFixed(digits)} ${prefixes[index]}${unit}`;
}

const HEADINGS = ['Kind', 'Name', 'Direction', 'To', 'Status', 'Packets', 'Pkt/s', 'Bit/s', 'Drops'];

function cells(row: StatsRow): string[] {
  const status = row.status_reason ? `${row.status} (${row.status_reason})` : row.status;
  return [
    row.kind === 'tap_flow' ? 'tap flow' : 'tap mirror',
    row.name || row.id,
    row.direction,
    row.to,
    status,
    row.counters ? String(row.counters.packets) : '-',
    humanRate(row.packets_per_second, 'pkt/s'),
    humanRate(row.bits_per_second, 'bit/s'),
    row.counters ? String(row.counters.drops) : '-',
  ];
}

/** filtered/sampled out/cut, for a row whose filter, sample_rate or snaplen took something. */
const selectionCell = (row: StatsRow): string => {
  const selection = row.counters?.selection;
  return selection ? `${selection.filtered}/${selection.sampled_out}/${selection.truncated}` : '-';
};

/**
 * The Datapath cell of each row (bpf, packet; `packet [n]` when it fell
 * back from bpf) and the footnotes, one per distinct reason: `[n] why`.
 */
function datapathCells(rows: readonly StatsRow[]): { cells: string[]; footnotes: string[] } {
  const reasons: string[] = [];
  const cells = rows.map((row) => {
    const { datapath, datapath_reason: reason } = row.counters ?? {};
    if (datapath === undefined) return '-';
    if (reason === undefined) return datapath;
    if (!reasons.includes(reason)) reasons.push(reason);
    return `${datapath} [${reasons.indexOf(reason) + 1}]`;
  });
  return { cells, footnotes: reasons.map((reason, index) => `[${index + 1}] ${reason}`) };
}

/** The table a person sees (one-shot, or each refresh of --watch on a terminal). */
export function renderTable(rows: readonly StatsRow[], at: number, intervalSeconds: number): string {
  const title = `tapas stats  ${new Date(at).toISOString().replace(/\.\d+Z$/, 'Z')}  (rates over ${intervalSeconds} s)`;
  if (rows.length === 0) return `${title}\nno tap flows or tap mirrors`;
  const headings = [...HEADINGS];
  const columns = rows.map(cells);
  // The data path's column when some row says one (a daemon from before it did not), its reasons as footnotes below.
  const datapaths = datapathCells(rows);
  if (rows.some((row) => row.counters?.datapath !== undefined)) {
    headings.push('Datapath');
    columns.forEach((row, index) => row.push(datapaths.cells[index]!));
  }
  // The column of the selection stages only when some row has one (most hosts never use them).
  if (rows.some((row) => row.counters?.selection)) {
    headings.push('Filtered/Sampled out/Cut');
    columns.forEach((row, index) => row.push(selectionCell(rows[index]!)));
  }
  return [title, table(headings, columns), ...datapaths.footnotes].join('\n');
}

const quoted = (text: string) => (/^[^\s"=]+$/.test(text) ? text : JSON.stringify(text));

/** What --watch writes into a pipe: one `key=value` line per resource and sample, raw numbers. */
export function renderLines(rows: readonly StatsRow[], at: number): string {
  const time = new Date(at).toISOString();
  return rows.map((row) => [
    time, row.kind, `name=${quoted(row.name)}`, `id=${row.id}`, `direction=${row.direction}`, `to=${quoted(row.to)}`,
    `status=${row.status}`,
    `packets=${row.counters?.packets ?? '-'}`, `bytes=${row.counters?.bytes ?? '-'}`, `drops=${row.counters?.drops ?? '-'}`,
    ...(row.counters?.selection ? [`filtered=${row.counters.selection.filtered}`, `sampled_out=${row.counters.selection.sampled_out}`,
      `truncated=${row.counters.selection.truncated}`] : []),
    `pkt/s=${row.packets_per_second === null ? '-' : row.packets_per_second.toFixed(1)}`,
    `bit/s=${row.bits_per_second === null ? '-' : Math.round(row.bits_per_second)}`,
    ...(row.counters?.datapath ? [`datapath=${row.counters.datapath}`] : []),
    ...(row.counters?.datapath_reason ? [`datapath_reason=${quoted(row.counters.datapath_reason)}`] : []),
    ...(row.status_reason ? [`reason=${quoted(row.status_reason)}`] : []),
  ].join(' ')).join('\n');
}

export function renderJson(rows: readonly StatsRow[], at: number, pretty: boolean): string {
  const body = {
    time: new Date(at).toISOString(),
    resources: rows.map(({ counters, ...row }) => ({
      ...row, packets: counters?.packets ?? null, bytes: counters?.bytes ?? null, drops: counters?.drops ?? null,
      ...(counters?.selection ? { selection: counters.selection } : {}),
      ...(counters ? datapathOf([counters]) : {}),
    })),
  };
  return JSON.stringify(body, null, pretty ? 2 : undefined);
}

/** Terminal control: go back over the previous drawing and clear what is below. */
export function redraw(previousLines: number, text: string): string {
  return `${previousLines > 0 ? `\x1b[${previousLines}F` : ''}\x1b[J${text}\n`;
}

interface StatsFlags {
  watch?: boolean;
  interval: number;
  count?: number;
  format: 'table' | 'json';
}

function positiveNumber(name: string, integer: boolean, max: number) {
  return (text: string) => {
    const value = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || value <= 0 || (integer && !Number.isInteger(value)) || value > max) {
      throw new UsageError(`${name} must be a positive ${integer ? 'integer' : 'number'} up to ${max}, not '${text}'`);
    }
    return value;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function runStats(flags: StatsFlags, command: Command): Promise<void> {
  const client = clientFor(command);
  const intervalMs = flags.interval * 1000;
  let previous = await takeSample(client);
  const tty = Boolean(process.stdout.isTTY) && flags.format === 'table';

  if (!flags.watch) {
    await sleep(intervalMs);
    const current = await takeSample(client);
    const rows = rates(previous, current);
    process.stdout.write(`${flags.format === 'json' ? renderJson(rows, current.at, true) : renderTable(rows, current.at, flags.interval)}\n`);
    return;
  }

  // --watch follows the daemon's stream; every event is one refresh.
  const stopping = new AbortController();
  const stop = () => stopping.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (tty) process.stdout.write('\x1b[?25l');
  let drawnLines = 0;
  let refreshes = 0;
  const show = (current: Sample) => {
    const rows = rates(previous, current);
    previous = current;
    refreshes += 1;
    if (flags.format === 'json') {
      process.stdout.write(`${renderJson(rows, current.at, false)}\n`);
    } else if (tty) {
      const text = `${renderTable(rows, current.at, flags.interval)}\n(Ctrl-C to stop)`;
      process.stdout.write(redraw(drawnLines, text));
      drawnLines = text.split('\n').length;
    } else if (rows.length > 0) {
      process.stdout.write(`${renderLines(rows, current.at)}\n`);
    }
    if (flags.count !== undefined && refreshes >= flags.count) stop();
  };
  try {
    let first = true;
    await client.stream(`${STATS_PATH}/stream?interval=${flags.interval}`, (event, data) => {
      if (event !== 'stats' || stopping.signal.aborted) return;
      // The stream's first event is the report at once: the sample taken above already covers it.
      if (first) {
        first = false;
        return;
      }
      show(sampleOf((data as { stats: StatsReport }).stats));
    }, stopping.signal);
  } finally {
    if (tty) process.stdout.write('\x1b[?25h');
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

export function registerStats(program: Command): void {
  program
    .command('stats')
    .configureHelp({ ...program.configureHelp(), showGlobalOptions: true })
    .description('per tap flow and tap mirror: packets, packets/s, bits/s, drops, data path and status, from the daemon\'s counters')
    .option('-w, --watch', 'keep refreshing: in place on a terminal, one line per resource and refresh into a pipe')
    .option('--interval <SECONDS>', 'time between samples (at most 60): rates are measured over it', positiveNumber('--interval', false, 60), 1)
    .option('--count <N>', 'with --watch: stop after N refreshes', positiveNumber('--count', true, 1_000_000))
    .addOption(new Option('-f, --format <FORMAT>', 'table, or json (one object per refresh with --watch)').choices(['table', 'json']).default('table'))
    .addHelpText('after', `
Examples:
  tapas stats                          one table, rates over the next second
  tapas stats --watch                  live, until Ctrl-C
  tapas stats --watch | grep tf_0      plain lines: name=... status=... packets=... pkt/s=... bit/s=... datapath=...
  tapas stats -f json --watch --count 10

The counters are what each host's data path reported (GET /v2.0/taas/stats, and /v2.0/taas/stats/stream
for --watch); in token mode a project sees its own resources. Datapath: bpf (copied in the kernel) or packet
(AF_PACKET); a rule an agent started with --datapath bpf runs on packet has a footnote [n] saying why
(in JSON and the plain lines: datapath_reason).`)
    .action(runStats);
}
