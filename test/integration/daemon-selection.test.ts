import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, until, type ApiClient } from '../api/daemon-process.js';
import { finished, runCli, startCli, stderrContains } from '../helpers/cli.js';
import { makeUdpFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';
const TM = '/v2.0/taas/tap_mirrors';
const VM_MAC = '02:00:00:00:31:01';
const HOST_MAC = '02:00:00:00:31:02';

/** An IPv4/UDP frame from the VM to dstPort, its sequence number in the payload, padded to length. */
function udpFrame(dstPort: number, sequence: number, length = 60): Buffer {
  return makeUdpFrame({ dst: HOST_MAC, src: VM_MAC, dstPort, sequence, length, marker: 'tapas-sel' });
}

const ours = (frames: Buffer[]) => frames.filter((frame) => frame.includes('tapas-sel')).map((frame) => frame.toString('hex'));

/**
 * filter, snaplen and sample_rate through the API and the CLI: validated (a
 * bad expression is a 400 with libpcap's message), stored, updatable, run by
 * the daemon's agent on real frames, and counted in GET /v2.0/taas/stats.
 */
describe.skipIf(!netnsAvailable)(`filter, snaplen and sample_rate through the daemon (${netnsSkipReason})`, () => {
  const lab = new Lab('dsel');
  let host: string, vm: string, mon1: string, mon2: string;
  let daemon: DaemonProcess;
  let api: ApiClient;
  let vmPort: any, service1: any, service2: any;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    mon1 = await lab.namespace('m1');
    mon2 = await lab.namespace('m2');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.veth(host, 'm1h', mon1, 'm1');
    await lab.veth(host, 'm2h', mon2, 'm2');
    daemon = await DaemonProcess.start();
    api = daemon.client();
    vmPort = await api.port('vm', 'vmh', host);
    service1 = await api.create(TS, { tap_service: { name: 's1', port_id: (await api.port('m1', 'm1h', host)).id } });
    service2 = await api.create(TS, { tap_service: { name: 's2', port_id: (await api.port('m2', 'm2h', host)).id } });
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    await lab.cleanup();
  });

  it('lists the extensions tapas-filter, tapas-snaplen and tapas-sampling', async () => {
    const aliases = (await api.get('/v2.0/extensions')).body.extensions.map((e: { alias: string }) => e.alias);
    expect(aliases).toEqual(expect.arrayContaining(['tapas-filter', 'tapas-snaplen', 'tapas-sampling']));
  });

  it('refuses a filter libpcap does not compile with a 400 that quotes libpcap, and bad snaplen and sample_rate', async () => {
    const flow = (extra: Record<string, unknown>) => api.post(TF, { tap_flow: { source_port: vmPort.id, tap_service_id: service1.id, direction: 'OUT', ...extra } });
    const bad = await flow({ filter: 'udp prot 1000' });
    expect(bad.status).toBe(400);
    expect(bad.body.NeutronError.type).toBe('HTTPBadRequest');
    expect(bad.body.NeutronError.message).toBe("Invalid input for filter. Reason: 'udp prot 1000' does not compile: can't parse filter expression: syntax error.");
    const range = await flow({ filter: 'port 70000' });
    expect(range.status).toBe(400);
    expect(range.body.NeutronError.message).toBe("Invalid input for filter. Reason: 'port 70000' does not compile: illegal port number 70000 > 65535.");
    expect((await flow({ snaplen: 63 })).body.NeutronError.message).toBe('Invalid input for snaplen. Reason: 63 is not a snaplen (64 to 262144 bytes).');
    expect((await flow({ sample_rate: 0 })).status).toBe(400);
    const mirror = await api.post(TM, { tap_mirror: { port_id: vmPort.id, remote_ip: '198.51.100.9', mirror_type: 'gre', directions: { IN: 9 }, filter: 'tcp[' } });
    expect(mirror.status).toBe(400);
    expect(mirror.body.NeutronError.message).toMatch(/^Invalid input for filter\. Reason: 'tcp\[' does not compile: /);
    // Nothing was stored.
    expect((await api.get(TF)).body.tap_flows).toEqual([]);
  });

  it('the CLI refuses a bad --filter, --snaplen or --sample-rate with exit 2 before sending anything', async () => {
    const base = ['--endpoint', daemon.url, 'tap', 'flow', 'create', '--port', vmPort.id, '--tap-service', service1.id, '--direction', 'OUT'];
    const bad = await runCli([...base, '--filter', 'udp prot 1000']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Invalid input for filter. Reason: 'udp prot 1000' does not compile: can't parse filter expression: syntax error.");
    expect((await runCli([...base, '--snaplen', '10'])).code).toBe(2);
    expect((await runCli([...base, '--sample-rate', 'ten'])).code).toBe(2);
    const mirror = await runCli(['mirror', '-s', 'vmh', '-d', 'IN', '-t', 'lo', '--filter', 'ip and']);
    expect(mirror.code).toBe(2);
    expect(mirror.stderr).toContain('Invalid input for filter.');
    expect((await runCli(['tap', 'flow', 'create', '--help'])).stdout).toMatch(/--filter <EXPRESSION>[\s\S]*--snaplen <BYTES>[\s\S]*--sample-rate <N>/);
    expect((await api.get(TF)).body.tap_flows).toEqual([]);
  });

  it('two flows of one port with different filters, a snaplen and a sample rate: each service gets its frames, counted in the stats', async () => {
    const created = await runCli(['--endpoint', daemon.url, 'tap', 'flow', 'create', '--name', 'dns', '--port', vmPort.id, '--tap-service', service1.id,
      '--direction', 'OUT', '--filter', 'udp dst port 1000', '--snaplen', '96']);
    expect(created.code, created.stderr).toBe(0);
    const [f1] = (await api.get(`${TF}?name=dns`)).body.tap_flows;
    expect(f1).toMatchObject({ filter: 'udp dst port 1000', snaplen: 96, sample_rate: null });
    const f2 = await api.create(TF, { tap_flow: { name: 'sampled', source_port: vmPort.id, tap_service_id: service2.id, direction: 'OUT', filter: 'udp dst port 2000', sample_rate: 4 } });
    expect(f2).toMatchObject({ filter: 'udp dst port 2000', snaplen: null, sample_rate: 4 });
    for (const flow of [f1, f2]) await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ACTIVE');

    const frames = Array.from({ length: 60 }, (_, i) => udpFrame([1000, 2000, 3000][i % 3]!, i, 200));
    const c1 = await lab.capture(mon1, 'm1');
    const c2 = await lab.capture(mon2, 'm2');
    await lab.sendFrames(vm, 'vm0', frames);
    const [got1, got2] = [await c1.stop(), await c2.stop()];
    expect(ours(got1)).toEqual(frames.filter((_, i) => i % 3 === 0).map((f) => f.subarray(0, 96).toString('hex')));
    const to2 = frames.filter((_, i) => i % 3 === 1);
    expect(ours(got2)).toEqual(to2.filter((_, i) => i % 4 === 0).map((f) => f.toString('hex')));

    const stats = await until(api, '/v2.0/taas/stats', (body) => {
      const flows = body.stats.tap_flows as Array<{ id: string; packets: number | null }>;
      return flows.find((f) => f.id === f1.id)?.packets === 20 && flows.find((f) => f.id === f2.id)?.packets === 5;
    });
    const byId = new Map(stats.stats.tap_flows.map((f: { id: string }) => [f.id, f]));
    expect(byId.get(f1.id)).toMatchObject({ packets: 20, selection: { filtered: 40, sampled_out: 0, truncated: 20 }, drops: { oversize: 0, unavailable: 0 } });
    expect(byId.get(f2.id)).toMatchObject({ packets: 5, selection: { filtered: 40, sampled_out: 15, truncated: 0 } });

    const shown = await runCli(['--endpoint', daemon.url, 'stats']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain('Filtered/Sampled out/Cut');
    expect(shown.stdout).toMatch(/40\/0\/20/);
    expect(shown.stdout).toMatch(/40\/15\/0/);
    const metrics = await api.get('/metrics');
    expect(String(metrics.body)).toMatch(new RegExp(`^tapas_tap_flow_sampled_out_total\\{[^}]*tap_flow_id="${f2.id}"[^}]*\\} 15$`, 'm'));

    // An update changes what runs: the filter of the first flow now takes port 3000.
    const updated = await api.put(`${TF}/${f1.id}`, { tap_flow: { filter: 'udp dst port 3000', snaplen: null } });
    expect(updated.status).toBe(200);
    expect(updated.body.tap_flow).toMatchObject({ filter: 'udp dst port 3000', snaplen: null });
    const badUpdate = await api.put(`${TF}/${f1.id}`, { tap_flow: { filter: 'udp dst port' } });
    expect(badUpdate.status).toBe(400);
    // The CLI's update checks and converts as create does.
    const cliUpdate = await runCli(['--endpoint', daemon.url, 'tap', 'flow', 'update', 'sampled', '--sample-rate', '2', '--snaplen', '128']);
    expect(cliUpdate.code, cliUpdate.stderr).toBe(0);
    expect((await api.get(`${TF}/${f2.id}`)).body.tap_flow).toMatchObject({ sample_rate: 2, snaplen: 128 });
    const cliBad = await runCli(['--endpoint', daemon.url, 'tap', 'flow', 'update', 'sampled', '--filter', 'udp dst port']);
    expect(cliBad.code).toBe(2);
    expect(cliBad.stderr).toContain('Invalid input for filter.');
    await until(api, '/v2.0/taas/stats', () => true);
    // The agent applies the new plan within its interval; frames sent after it are selected anew.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const c3 = await lab.capture(mon1, 'm1');
    await lab.sendFrames(vm, 'vm0', frames);
    expect(ours(await c3.stop())).toEqual(frames.filter((_, i) => i % 3 === 2).map((f) => f.toString('hex')));
  });

  it('tapas mirror --filter --sample-rate --snaplen: the same stages without a daemon, counted in its JSON report', async () => {
    // Its own source and destination: the daemon's flows above still run on vmh.
    await lab.veth(host, 'm3h', mon2, 'm3');
    const capture = await lab.capture(mon2, 'm3');
    const child = startCli(['mirror', '-s', `vmh@${host}`, '-d', 'OUT', '-t', `m3h@${host}`, '--filter', 'udp and dst port 2000 and not vlan',
      '--sample-rate', '2', '--snaplen', '64', '--duration', '2', '-f', 'json']);
    const done = finished(child);
    await stderrContains(child, 'tapas: mirroring');
    const frames = Array.from({ length: 30 }, (_, i) => udpFrame([1000, 2000, 3000][i % 3]!, i, 200));
    await lab.sendFrames(vm, 'vm0', frames);
    const result = await done;
    expect(result.code, result.stderr).toBe(0);
    const passed = frames.filter((_, i) => i % 3 === 1);
    expect(ours(await capture.stop())).toEqual(passed.filter((_, i) => i % 2 === 0).map((f) => f.subarray(0, 64).toString('hex')));
    const report = JSON.parse(result.stdout);
    expect(report.stats.rules[0]).toMatchObject({ packets: 5, filtered: 20, sampledOut: 5, truncated: 5 });
  });
});

/**
 * `tapas serve --datapath bpf`: a plain tap flow runs in the kernel, one with
 * a filter on AF_PACKET, each on real frames; GET /v2.0/taas/stats, tapas
 * stats and /metrics say which path runs each and why the filtered one is not
 * the kernel's.
 */
describe.skipIf(!netnsAvailable)(`each tap flow's data path through the daemon, --datapath bpf (${netnsSkipReason})`, () => {
  const lab = new Lab('ddp');
  let host: string, vm: string, mon1: string, mon2: string;
  let daemon: DaemonProcess;
  let api: ApiClient;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    mon1 = await lab.namespace('m1');
    mon2 = await lab.namespace('m2');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.veth(host, 'm1h', mon1, 'm1');
    await lab.veth(host, 'm2h', mon2, 'm2');
    daemon = await DaemonProcess.start({ args: ['--datapath', 'bpf'] });
    api = daemon.client();
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    await lab.cleanup();
  });

  it('a plain tap flow runs on bpf, one with a filter on packet with the reason, in the stats, tapas stats and /metrics', async () => {
    const vmPort = await api.port('vm', 'vmh', host);
    const service1 = await api.create(TS, { tap_service: { name: 's1', port_id: (await api.port('m1', 'm1h', host)).id } });
    const service2 = await api.create(TS, { tap_service: { name: 's2', port_id: (await api.port('m2', 'm2h', host)).id } });
    const plain = await api.create(TF, { tap_flow: { name: 'plain', source_port: vmPort.id, tap_service_id: service1.id, direction: 'OUT' } });
    const filtered = await api.create(TF, { tap_flow: { name: 'filtered', source_port: vmPort.id, tap_service_id: service2.id, direction: 'OUT',
      filter: 'udp dst port 2000' } });
    for (const flow of [plain, filtered]) await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ACTIVE');

    // Real frames: the kernel copies all of them, AF_PACKET those the filter takes.
    const frames = Array.from({ length: 20 }, (_, i) => udpFrame([1000, 2000][i % 2]!, i, 100));
    const c1 = await lab.capture(mon1, 'm1');
    const c2 = await lab.capture(mon2, 'm2');
    await lab.sendFrames(vm, 'vm0', frames);
    expect(ours(await c1.stop())).toEqual(frames.map((f) => f.toString('hex')));
    expect(ours(await c2.stop())).toEqual(frames.filter((_, i) => i % 2 === 1).map((f) => f.toString('hex')));

    const stats = await until(api, '/v2.0/taas/stats', (body) => {
      const flows = body.stats.tap_flows as Array<{ id: string; packets: number | null }>;
      return (flows.find((f) => f.id === plain.id)?.packets ?? 0) >= 20 && flows.find((f) => f.id === filtered.id)?.packets === 10;
    });
    const byId = new Map<string, any>(stats.stats.tap_flows.map((f: { id: string }) => [f.id, f]));
    expect(byId.get(plain.id)).toMatchObject({ datapath: 'bpf' });
    expect(byId.get(plain.id).datapath_reason).toBeUndefined();
    expect(byId.get(plain.id).hosts[0]).toMatchObject({ datapath: 'bpf' });
    expect(byId.get(filtered.id)).toMatchObject({ datapath: 'packet', datapath_reason: expect.stringMatching(/filter/) });
    expect(byId.get(filtered.id).hosts[0]).toMatchObject({ datapath: 'packet', datapath_reason: byId.get(filtered.id).datapath_reason });
    const reason = byId.get(filtered.id).datapath_reason as string;

    const shown = await runCli(['--endpoint', daemon.url, 'stats']);
    expect(shown.code, shown.stderr).toBe(0);
    const lines = shown.stdout.split('\n');
    expect(lines.find((line) => line.startsWith('| Kind'))).toContain('| Datapath');
    expect(lines.find((line) => / plain /.test(line))).toMatch(/\| bpf +\|/);
    expect(lines.find((line) => / filtered /.test(line))).toMatch(/\| packet \[1\] +\|/);
    expect(lines).toContain(`[1] ${reason}`);
    const json = await runCli(['--endpoint', daemon.url, 'stats', '-f', 'json']);
    expect(json.code, json.stderr).toBe(0);
    const resources = new Map<string, any>(JSON.parse(json.stdout).resources.map((r: { id: string }) => [r.id, r]));
    expect(resources.get(plain.id)).toMatchObject({ datapath: 'bpf' });
    expect(resources.get(filtered.id)).toMatchObject({ datapath: 'packet', datapath_reason: reason });

    const metrics = String((await api.get('/metrics')).body);
    expect(metrics).toMatch(new RegExp(`^tapas_tap_flow_datapath\\{[^}]*tap_flow_id="${plain.id}"[^}]*datapath="bpf"[^}]*\\} 1$`, 'm'));
    expect(metrics).toMatch(new RegExp(`^tapas_tap_flow_datapath\\{[^}]*tap_flow_id="${filtered.id}"[^}]*datapath="packet"[^}]*\\} 1$`, 'm'));
  });
});
