import { spawn } from 'node:child_process';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  humanRate, rates, redraw, renderJson, renderLines, renderTable, sampleOf, type Sample,
} from '../../src/cli/stats.js';
import type { StatsReport } from '../../src/service/stats.js';
import { DaemonProcess, until, type ApiClient } from '../api/daemon-process.js';
import { finished, runCli, TAPAS, type CliResult } from '../helpers/cli.js';
import { makeFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';

const ABSENT_NS = `tapas-stats-absent-${process.pid}`;
const ESC = '\x1b';

const rated = (packets: number | null, bytes: number | null, drops: Record<string, number> = {}) =>
  ({ packets, bytes, drops, packets_per_second: null, bits_per_second: null });
const owned = { project_id: 'default', hosts: [] };

/** A stats report as the daemon once answered: two flows (one with an awkward name), a mirror that does not run. */
const RECORDED_REPORT: StatsReport = {
  time: '2026-01-02T03:04:05.000Z',
  tap_flows: [
    { ...owned, id: 'f1', name: 'tf_0', status: 'ACTIVE', status_reason: null, tap_service_id: 's1', source_port: 'p1', direction: 'BOTH',
      ...rated(120, 11_760, { oversize: 1, unavailable: 1 }) },
    { ...owned, id: 'f2', name: 'say "hi", c:\\ \n', status: 'ACTIVE', status_reason: null, tap_service_id: 'gone', source_port: 'p2', direction: 'IN',
      ...rated(5, 500) },
  ],
  tap_mirrors: [{
    ...owned, id: 'm1', name: 'tm', status: 'ERROR', status_reason: 'interface vm9 is gone', port_id: 'p1', remote_ip: '192.0.2.9', mirror_type: 'erspanv1',
    directions: { IN: { tunnel_id: 7, ...rated(null, null) } }, ...rated(null, null),
  }],
  tap_services: [{ ...owned, id: 's1', name: 'ts_0', status: 'ACTIVE', status_reason: null, port_id: 'p9', ...rated(125, 12_260) }],
};

function sample(at: number, packets: number | null, bytes = 0): Sample {
  return {
    at,
    entries: [
      { kind: 'tap_flow', id: 'f1', name: 'tf_0', status: 'ACTIVE', status_reason: null, direction: 'BOTH', to: 'ts_0',
        counters: packets === null ? null : { packets, bytes, drops: 1 } },
      { kind: 'tap_mirror', id: 'm1', name: 'tm 1', status: 'ERROR', status_reason: 'interface vm9 is gone', direction: 'IN',
        to: 'gre to 192.0.2.9', counters: null },
    ],
  };
}

describe('tapas stats rendering, on recorded counters', () => {
  it('reads the daemon\'s stats report: flows with their service\'s name, mirrors with their tunnel, drops summed', () => {
    expect(sampleOf(RECORDED_REPORT, 1000)).toEqual({
      at: 1000,
      entries: [
        { kind: 'tap_flow', id: 'f1', name: 'tf_0', status: 'ACTIVE', status_reason: null, direction: 'BOTH', to: 'ts_0',
          counters: { packets: 120, bytes: 11_760, drops: 2 } },
        { kind: 'tap_flow', id: 'f2', name: 'say "hi", c:\\ \n', status: 'ACTIVE', status_reason: null, direction: 'IN', to: 'gone',
          counters: { packets: 5, bytes: 500, drops: 0 } },
        { kind: 'tap_mirror', id: 'm1', name: 'tm', status: 'ERROR', status_reason: 'interface vm9 is gone', direction: 'IN',
          to: 'erspanv1 to 192.0.2.9', counters: null },
      ],
    });
  });

  it('computes rates between two samples; no rate without a previous sample, after a reset, or for what does not run', () => {
    const [flow, mirror] = rates(sample(1000, 100, 10_000), sample(3000, 300, 30_000));
    expect(flow).toMatchObject({ packets_per_second: 100, bits_per_second: 80_000 });
    expect(mirror).toMatchObject({ packets_per_second: null, bits_per_second: null });
    expect(rates(undefined, sample(3000, 300))[0]!.packets_per_second).toBeNull();
    expect(rates(sample(1000, 500), sample(2000, 3))[0]!.packets_per_second).toBeNull();
    expect(rates(sample(1000, 5, 500), sample(2000, 5, 500))[0]).toMatchObject({ packets_per_second: 0, bits_per_second: 0 });
  });

  it('scales rates with SI prefixes', () => {
    expect(humanRate(null, 'bit/s')).toBe('-');
    expect(humanRate(0, 'pkt/s')).toBe('0 pkt/s');
    expect(humanRate(7.25, 'pkt/s')).toBe('7.25 pkt/s');
    expect(humanRate(80_000, 'bit/s')).toBe('80.0 kbit/s');
    expect(humanRate(1_234_567_890, 'bit/s')).toBe('1.23 Gbit/s');
  });

  it('renders the table a terminal shows', () => {
    const at = Date.UTC(2026, 0, 2, 3, 4, 5);
    const text = renderTable(rates(sample(at - 2000, 100, 10_000), sample(at, 300, 30_000)), at, 2);
    expect(text).toBe([
      'tapas stats  2026-01-02T03:04:05Z  (rates over 2 s)',
      '+------------+------+-----------+------------------+-------------------------------+---------+-----------+-------------+-------+',
      '| Kind       | Name | Direction | To               | Status                        | Packets | Pkt/s     | Bit/s       | Drops |',
      '+------------+------+-----------+------------------+-------------------------------+---------+-----------+-------------+-------+',
      '| tap flow   | tf_0 | BOTH      | ts_0             | ACTIVE                        | 300     | 100 pkt/s | 80.0 kbit/s | 1     |',
      '| tap mirror | tm 1 | IN        | gre to 192.0.2.9 | ERROR (interface vm9 is gone) | -       | -         | -           | -     |',
      '+------------+------+-----------+------------------+-------------------------------+---------+-----------+-------------+-------+',
    ].join('\n'));
    expect(renderTable([], at, 1)).toBe('tapas stats  2026-01-02T03:04:05Z  (rates over 1 s)\nno tap flows or tap mirrors');
  });

  it('adds a Datapath column when the report says one, with a footnote per reason a rule runs on packet', () => {
    const at = Date.UTC(2026, 0, 2, 3, 4, 5);
    const why = 'the bpf data path does not filter, sample or cut copies yet';
    const flow = (id: string, name: string, datapath: 'bpf' | 'packet', reason?: string) => ({
      ...owned, id, name, status: 'ACTIVE', status_reason: null, tap_service_id: 's1', source_port: 'p1', direction: 'IN',
      ...rated(1, 100), datapath, ...(reason === undefined ? {} : { datapath_reason: reason }),
    });
    const report: StatsReport = {
      ...RECORDED_REPORT,
      tap_flows: [flow('f1', 'plain', 'bpf'), flow('f2', 'filtered', 'packet', why), flow('f3', 'sampled', 'packet', why)],
      tap_mirrors: [],
    };
    const sampled = sampleOf(report, at);
    expect(sampled.entries[1]!.counters).toEqual({ packets: 1, bytes: 100, drops: 0, datapath: 'packet', datapath_reason: why });
    const lines = renderTable(rates(undefined, sampled), at, 1).split('\n');
    expect(lines[2]).toMatch(/\| Drops \| Datapath +\|$/);
    expect(lines[4]).toMatch(/\| plain +\|.*\| bpf +\|$/);
    expect(lines[5]).toMatch(/\| filtered +\|.*\| packet \[1\] \|$/);
    expect(lines[6]).toMatch(/\| sampled +\|.*\| packet \[1\] \|$/);
    expect(lines.slice(8)).toEqual([`[1] ${why}`]);
    expect(renderLines(rates(undefined, sampled), at).split('\n')[1]).toContain(`datapath=packet datapath_reason="${why}"`);
    const json = JSON.parse(renderJson(rates(undefined, sampled), at, false));
    expect(json.resources.map((r: any) => [r.datapath, r.datapath_reason])).toEqual([['bpf', undefined], ['packet', why], ['packet', why]]);
  });

  it('renders plain key=value lines for a pipe, quoting what has spaces', () => {
    const at = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    expect(renderLines(rates(sample(at - 2000, 100, 10_000), sample(at, 300, 30_000)), at)).toBe([
      '2026-01-02T03:04:05.678Z tap_flow name=tf_0 id=f1 direction=BOTH to=ts_0 status=ACTIVE packets=300 bytes=30000 drops=1 pkt/s=100.0 bit/s=80000',
      '2026-01-02T03:04:05.678Z tap_mirror name="tm 1" id=m1 direction=IN to="gre to 192.0.2.9" status=ERROR packets=- bytes=- drops=- pkt/s=- bit/s=- reason="interface vm9 is gone"',
    ].join('\n'));
    const parsed = JSON.parse(renderJson(rates(undefined, sample(at, 3, 300)), at, false));
    expect(parsed.resources[0]).toMatchObject({ kind: 'tap_flow', name: 'tf_0', packets: 3, bytes: 300, drops: 1, packets_per_second: null });
    expect(parsed.resources[1]).toMatchObject({ kind: 'tap_mirror', status: 'ERROR', packets: null });
  });

  it('redraws in place: back over the previous drawing, clear below', () => {
    expect(redraw(0, 'a\nb')).toBe(`${ESC}[Ja\nb\n`);
    expect(redraw(2, 'c\nd')).toBe(`${ESC}[2F${ESC}[Jc\nd\n`);
  });
});

/** Runs the CLI under a pseudo-terminal (util-linux script), so that stdout is a TTY. */
function underPty(args: string[], env: NodeJS.ProcessEnv) {
  // `exec`: script runs the command through $SHELL, and a shell left waiting in
  // the terminal's process group would die of the Ctrl-C itself (dash does).
  const command = `exec ${[TAPAS, ...args].map((arg) => `'${arg}'`).join(' ')}`;
  return spawn('script', ['-qfec', command, '/dev/null'], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
}

describe('tapas stats against a running daemon', () => {
  let daemon: DaemonProcess;
  let env: NodeJS.ProcessEnv;
  let tapas: (...args: string[]) => Promise<CliResult>;

  beforeAll(async () => {
    daemon = await DaemonProcess.start();
    env = { TAPAS_ENDPOINT: daemon.url, TAPAS_TOKEN: '' };
    tapas = (...args: string[]) => runCli(args, { env });
    // Nothing here can run (the namespace does not exist): statuses, no traffic.
    const api = daemon.client();
    const vm = await api.port('stats-vm', 'stvm0', ABSENT_NS);
    const monitor = await api.port('stats-mon', 'stmon0', ABSENT_NS);
    const service = await api.create('/v2.0/taas/tap_services', { tap_service: { name: 'stats-ts', port_id: monitor.id } });
    await api.create('/v2.0/taas/tap_flows', { tap_flow: { name: 'stats-tf', source_port: vm.id, tap_service_id: service.id, direction: 'IN' } });
    await api.create('/v2.0/taas/tap_mirrors', {
      tap_mirror: { name: 'stats tm', port_id: vm.id, directions: { OUT: 33 }, remote_ip: '198.51.100.3', mirror_type: 'gre' },
    });
    await until(api, '/v2.0/taas/tap_flows?name=stats-tf', (body) => body.tap_flows[0].status === 'ERROR');
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
  });

  it('one shot, -f json: every tap flow and tap mirror with the status the API reports', async () => {
    const result = await tapas('stats', '-f', 'json', '--interval', '0.2');
    expect(result.code, result.stderr).toBe(0);
    const { time, resources } = JSON.parse(result.stdout);
    expect(Date.now() - Date.parse(time)).toBeLessThan(10_000);
    const api = daemon.client();
    const flow = (await api.get('/v2.0/taas/tap_flows?name=stats-tf')).body.tap_flows[0];
    const mirror = (await api.get('/v2.0/taas/tap_mirrors')).body.tap_mirrors[0];
    expect(resources).toEqual([
      expect.objectContaining({ kind: 'tap_flow', id: flow.id, name: 'stats-tf', status: flow.status, status_reason: flow.status_reason, direction: 'IN', to: 'stats-ts' }),
      expect.objectContaining({ kind: 'tap_mirror', id: mirror.id, name: 'stats tm', status: mirror.status, direction: 'OUT', to: 'gre to 198.51.100.3' }),
    ]);
    expect(flow.status_reason).toEqual(expect.any(String));
  });

  it('one shot, table', async () => {
    const result = await tapas('stats', '--interval', '0.2');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^tapas stats {2}\S+Z {2}\(rates over 0\.2 s\)\n\+-/);
    expect(result.stdout).toMatch(/\| tap flow +\| stats-tf +\| IN +\| stats-ts +\| ERROR \(/);
    expect(result.stdout).toMatch(/\| tap mirror +\| stats tm +\| OUT +\| gre to 198\.51\.100\.3 +\|/);
  });

  it('--watch into a pipe: plain lines, one per resource and refresh, no terminal control', async () => {
    const result = await tapas('stats', '--watch', '--count', '3', '--interval', '0.2');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toContain(ESC);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(6);
    for (const [index, line] of lines.entries()) {
      expect(line).toMatch(index % 2 === 0
        ? /^\S+Z tap_flow name=stats-tf id=\S+ direction=IN to=stats-ts status=ERROR packets=\S+ bytes=\S+ drops=\S+ pkt\/s=\S+ bit\/s=\S+ datapath=packet reason=".+"$/
        : /^\S+Z tap_mirror name="stats tm" id=\S+ direction=OUT to="gre to 198\.51\.100\.3" status=\S+ packets=/);
    }
    const times = lines.filter((_, index) => index % 2 === 0).map((line) => Date.parse(line.split(' ')[0]!));
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(150);
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(150);
  });

  it('--watch -f json: one JSON object per refresh', async () => {
    const result = await tapas('stats', '--watch', '--count', '2', '--interval', '0.2', '-f', 'json');
    expect(result.code, result.stderr).toBe(0);
    const samples = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(samples).toHaveLength(2);
    expect(samples.map((s) => s.resources.map((r: { name: string }) => r.name))).toEqual([['stats-tf', 'stats tm'], ['stats-tf', 'stats tm']]);
  });

  it('--watch on a terminal: one table redrawn in place, cursor hidden and given back', async () => {
    const child = underPty(['stats', '--watch', '--count', '3', '--interval', '0.3'], env);
    child.stdin.end();
    const { code, stdout } = await finished(child);
    expect(code).toBe(0);
    expect(stdout.startsWith(`${ESC}[?25l`)).toBe(true);
    expect(stdout.trimEnd().endsWith(`${ESC}[?25h`)).toBe(true);
    const drawings = stdout.split(`${ESC}[J`).slice(1);
    expect(drawings).toHaveLength(3);
    // Each redraw goes back exactly over the lines of the drawing before it.
    const moves = [...stdout.matchAll(new RegExp(`${ESC.replace('\x1b', '\\x1b')}\\[(\\d+)F`, 'g'))].map((match) => Number(match[1]));
    const heights = drawings.map((drawing) => drawing.replace(`${ESC}[?25h`, '').replace(/\r/g, '').replace(new RegExp(`${'\\x1b'}\\[\\d+F$`), '').trimEnd().split('\n').length);
    expect(moves).toEqual([heights[0], heights[1]]);
    for (const drawing of drawings) {
      expect(drawing).toMatch(/tapas stats {2}\S+Z {2}\(rates over 0\.3 s\)/);
      expect(drawing).toMatch(/\| tap flow +\| stats-tf +\|/);
      expect(drawing).toContain('(Ctrl-C to stop)');
    }
  });

  it('--watch on a terminal stops on Ctrl-C, exit 0, cursor back', async () => {
    const child = underPty(['stats', '--watch', '--interval', '0.3'], env);
    const result = finished(child);
    let seen = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no drawing: ${seen}`)), 20_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes('(Ctrl-C to stop)')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    child.stdin!.write('\x03');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const { code, stdout } = await result;
    clearTimeout(killer);
    expect(code).toBe(0);
    expect(stdout.trimEnd().endsWith(`${ESC}[?25h`)).toBe(true);
  });
});

describe.skipIf(!netnsAvailable)(`tapas stats counts real traffic (${netnsSkipReason})`, () => {
  const lab = new Lab('cst');
  let host: string, vm: string, monitor: string, collector: string;
  let daemon: DaemonProcess;
  let api: ApiClient;
  let tapas: (...args: string[]) => Promise<CliResult>;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    monitor = await lab.namespace('mon');
    collector = await lab.namespace('col');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.veth(host, 'monh', monitor, 'mon0');
    await lab.veth(host, 'colh', collector, 'col0');
    await lab.exec(host, 'ip', ['addr', 'add', '198.19.7.1/24', 'dev', 'colh']);
    await lab.exec(collector, 'ip', ['addr', 'add', '198.19.7.2/24', 'dev', 'col0']);
    await lab.exec(vm, 'ip', ['addr', 'add', '198.18.7.2/24', 'dev', 'vm0']);
    await lab.exec(host, 'ip', ['addr', 'add', '198.18.7.1/24', 'dev', 'vmh']);
    daemon = await DaemonProcess.start();
    api = daemon.client();
    tapas = (...args: string[]) => runCli(args, { env: { TAPAS_ENDPOINT: daemon.url, TAPAS_TOKEN: '' } });
    for (const args of [
      ['port', 'create', 'vm', '--interface', 'vmh', '--netns', host],
      ['port', 'create', 'mon', '--interface', 'monh', '--netns', host],
      ['tap', 'service', 'create', '--name', 'ts', '--port', 'mon'],
      ['tap', 'flow', 'create', '--name', 'tf', '--port', 'vm', '--tap-service', 'ts', '--direction', 'BOTH'],
      ['tap', 'mirror', 'create', '--name', 'tm', '--port', 'vm', '--directions', 'IN=11', '--directions', 'OUT=12',
        '--remote-ip', '198.19.7.2', '--mirror-type', 'gre'],
    ]) {
      const result = await tapas(...args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
    }
    await until(api, '/v2.0/taas/tap_flows?name=tf', (body) => body.tap_flows[0].status === 'ACTIVE');
    await until(api, '/v2.0/taas/tap_mirrors?name=tm', (body) => body.tap_mirrors[0].status === 'ACTIVE');
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    await lab.cleanup();
  });

  it('counts each frame of known origin once per tap flow and tap mirror, bytes exactly', async () => {
    const before = JSON.parse((await tapas('stats', '-f', 'json', '--interval', '0.1')).stdout);
    const toVm = [1, 2, 3].map((sequence) => makeFrame({ dst: '02:00:00:00:07:02', src: '02:00:00:00:07:01', stream: 'st-in', sequence, length: 100 }));
    const fromVm = [1, 2, 3, 4].map((sequence) => makeFrame({ dst: '02:00:00:00:07:01', src: '02:00:00:00:07:02', stream: 'st-out', sequence, length: 200 }));
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    await sleep(300);
    const after = JSON.parse((await tapas('stats', '-f', 'json', '--interval', '0.1')).stdout);
    const delta = (name: string, field: 'packets' | 'bytes' | 'drops') => {
      const find = (body: any) => body.resources.find((r: any) => r.name === name)[field];
      return find(after) - find(before);
    };
    expect(delta('tf', 'packets')).toBe(7);
    expect(delta('tf', 'bytes')).toBe(3 * 100 + 4 * 200);
    expect(delta('tm', 'packets')).toBe(7);
    expect(delta('tm', 'bytes')).toBe(3 * 100 + 4 * 200);
    expect(delta('tf', 'drops')).toBe(0);
    expect(after.resources.map((r: any) => r.status)).toEqual(['ACTIVE', 'ACTIVE']);
  });

  it('shows packets/s and bits/s while traffic flows, in the piped --watch lines', async () => {
    const ping = lab.exec(vm, 'ping', ['-c', '40', '-i', '0.05', '-W', '1', '198.18.7.1']);
    const result = await tapas('stats', '--watch', '--count', '2', '--interval', '0.6');
    await ping;
    expect(result.code, result.stderr).toBe(0);
    const flowLines = result.stdout.trimEnd().split('\n').filter((line) => line.includes(' tap_flow name=tf '));
    expect(flowLines).toHaveLength(2);
    for (const line of flowLines) {
      const pps = Number(/ pkt\/s=(\S+)/.exec(line)![1]);
      const bps = Number(/ bit\/s=(\S+)/.exec(line)![1]);
      // 20 echo requests and 20 replies a second cross vmh; the ping's first packets may fall before the first sample.
      expect(pps).toBeGreaterThan(10);
      expect(pps).toBeLessThan(80);
      // Each is a 98-byte frame (84 bytes of IP): bits per packet 8 x 98, ARP aside.
      // Both rates are printed rounded, so their ratio may overshoot by a fraction of a percent.
      expect(bps / pps).toBeGreaterThan(8 * 60);
      expect(bps / pps).toBeLessThanOrEqual(8 * 98 * 1.01);
    }
  });
});
