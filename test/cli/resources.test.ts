import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, type ApiClient } from '../api/daemon-process.js';
import { runCli, type CliResult } from '../helpers/cli.js';

/**
 * The tapas CLI against a real daemon over HTTP. The ports name interfaces
 * in a network namespace that does not exist: the data path never opens
 * anything, so these tests send no packet anywhere.
 */
const ABSENT_NS = `tapas-cli-absent-${process.pid}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function cli(endpoint: string, token = '') {
  return (...args: string[]) => runCli(args, { env: { TAPAS_ENDPOINT: endpoint, TAPAS_TOKEN: token } });
}

/** A loopback URL where nothing listens: a port the kernel just handed out and took back. */
async function closedEndpoint(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** Runs fn over items, a few at a time: the CLI's start-up costs CPU and the machine is shared. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  }));
  return results;
}

/** No stack trace, no commander internals: one message line (plus maybe a usage hint). */
function expectCleanError(result: CliResult) {
  expect(result.stderr).toMatch(/^tapas: |^error: /);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(result.stdout).toBe('');
}

describe('tapas port / tap service / tap flow / tap mirror against a running daemon', () => {
  let daemon: DaemonProcess;
  let api: ApiClient;
  let tapas: (...args: string[]) => Promise<CliResult>;
  let json: (...args: string[]) => Promise<any>;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    daemon = await DaemonProcess.start({ args: ['--host', 'hv1'] });
    api = daemon.client();
    tapas = cli(daemon.url);
    json = async (...args: string[]) => {
      const result = await tapas(...args, '-f', 'json');
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(result.stdout);
    };
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
  });

  it('port create registers an interface with its netns, host, description and project', async () => {
    const vm = await json('port', 'create', 'vm-a', '--interface', 'clivm0', '--netns', ABSENT_NS,
      '--description', 'first VM', '--host', 'hv1');
    expect(vm.ID).toMatch(UUID);
    expect(vm).toMatchObject({
      Name: 'vm-a', description: 'first VM', 'binding:host_id': 'hv1',
      'binding:profile': { interface: 'clivm0', netns: ABSENT_NS }, Tenant: 'default', project_id: 'default',
    });
    const stored = (await api.get(`/v2.0/ports/${vm.ID}`)).body.port;
    expect(stored).toMatchObject({ name: 'vm-a', description: 'first VM', 'binding:profile': { interface: 'clivm0', netns: ABSENT_NS } });
    ids.vmA = vm.ID;

    const other = await json('port', 'create', 'vm-b', '--interface', 'clivm1', '--netns', ABSENT_NS, '--project', 'other');
    expect(other).toMatchObject({ Name: 'vm-b', project_id: 'other', Tenant: 'other' });
    expect(other['binding:host_id']).toBe('hv1');
    ids.vmB = other.ID;

    const monitor = await tapas('port', 'create', 'monitor', '--interface', 'climon0', '--netns', ABSENT_NS, '-f', 'value', '-c', 'ID');
    expect(monitor.code, monitor.stderr).toBe(0);
    expect(monitor.stdout).toMatch(new RegExp(`^${UUID.source.slice(1, -1)}\n$`));
    ids.monitor = monitor.stdout.trim();
    expect((await api.get(`/v2.0/ports/${ids.monitor}`)).body.port.name).toBe('monitor');
  });

  it('port create without --netns leaves binding:profile with the interface only', async () => {
    const port = await json('port', 'create', 'no-ns', '--interface', 'clinons0');
    expect(port['binding:profile']).toEqual({ interface: 'clinons0' });
    expect((await tapas('port', 'delete', 'no-ns')).code).toBe(0);
  });

  it('port list: a table for people, JSON rows keyed by heading, bare values for scripts, filters', async () => {
    const table = await tapas('port', 'list');
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^\+-+\+/);
    expect(lines[1]).toMatch(/^\| ID +\| Name +\| MAC Address +\| Interface +\| Netns +\| Status +\|$/);
    expect(lines.filter((line) => line.startsWith('| ') && line.includes(ids.vmA!))[0]).toMatch(new RegExp(`\\| vm-a +\\| None +\\| clivm0 +\\| ${ABSENT_NS} +\\|`));
    expect(lines).toHaveLength(4 + 3);

    const rows = await json('port', 'list');
    expect(rows.map((row: any) => row.Name).sort()).toEqual(['monitor', 'vm-a', 'vm-b']);
    expect(Object.keys(rows[0])).toEqual(['ID', 'Name', 'MAC Address', 'Interface', 'Netns', 'Status']);

    const values = await tapas('port', 'list', '-f', 'value', '-c', 'Name', '-c', 'Interface');
    expect(values.stdout.trimEnd().split('\n').sort()).toEqual(['monitor climon0', 'vm-a clivm0', 'vm-b clivm1']);

    expect((await json('port', 'list', '--name', 'vm-b')).map((row: any) => row.ID)).toEqual([ids.vmB]);
    expect((await json('port', 'list', '--project', 'other')).map((row: any) => row.ID)).toEqual([ids.vmB]);
    expect(await json('port', 'list', '--name', 'nobody')).toEqual([]);
  });

  it('port show takes a name or an ID; -c picks columns by heading or attribute name, in the order given', async () => {
    const byName = await json('port', 'show', 'vm-a');
    const byId = await json('port', 'show', ids.vmA!);
    expect(byName).toEqual(byId);
    expect(byName.ID).toBe(ids.vmA);
    const table = await tapas('port', 'show', 'vm-a');
    expect(table.stdout).toMatch(/^\+-+\+-+\+\n\| Field +\| Value +\|\n/);
    expect(table.stdout).toMatch(new RegExp(`\\| binding:profile +\\| interface='clivm0', netns='${ABSENT_NS}' +\\|`));
    const picked = await tapas('port', 'show', 'vm-a', '-f', 'value', '-c', 'binding:host_id', '-c', 'id', '-c', 'Name');
    expect(picked.stdout).toBe(`hv1\n${ids.vmA}\nvm-a\n`);
    expect(await json('port', 'show', 'vm-a', '-c', 'MAC Address', '-c', 'Status')).toEqual({ 'MAC Address': null, Status: expect.any(String) });
  });

  it('tap service create resolves --port by name or by ID', async () => {
    const service = await json('tap', 'service', 'create', '--name', 'ts_0', '--port', 'monitor', '--description', 'IDS feed');
    expect(service).toMatchObject({ Name: 'ts_0', Port: ids.monitor, description: 'IDS feed', Status: expect.stringMatching(/^(DOWN|ERROR)$/) });
    ids.ts0 = service.ID;
    const stored = (await api.get(`/v2.0/taas/tap_services/${service.ID}`)).body.tap_service;
    expect(stored).toMatchObject({ name: 'ts_0', port_id: ids.monitor, description: 'IDS feed' });

    const monitor2 = await json('port', 'create', 'monitor2', '--interface', 'climon1', '--netns', ABSENT_NS);
    const byId = await json('tap', 'service', 'create', '--name', 'ts_1', '--port', monitor2.ID);
    expect(byId.Port).toBe(monitor2.ID);
    ids.ts1 = byId.ID;
    ids.monitor2 = monitor2.ID;

    const listed = await json('tap', 'service', 'list');
    expect(Object.keys(listed[0])).toEqual(['ID', 'Tenant', 'Name', 'Port', 'Status']);
    expect(listed.map((row: any) => row.Name).sort()).toEqual(['ts_0', 'ts_1']);
  });

  it('tap flow create resolves --port and --tap-service, takes --direction in any case and --vlan-filter', async () => {
    const flow = await json('tap', 'flow', 'create', '--name', 'tf_0', '--port', 'vm-a', '--tap-service', 'ts_0', '--direction', 'both');
    expect(flow).toMatchObject({ Name: 'tf_0', Direction: 'BOTH', source_port: ids.vmA, tap_service_id: ids.ts0, vlan_filter: null });
    ids.tf0 = flow.ID;
    const filtered = await json('tap', 'flow', 'create', '--name', 'tf_vlan', '--port', ids.vmA!, '--tap-service', ids.ts1!,
      '--direction', 'OUT', '--vlan-filter', '1-5,9', '--description', 'trunk');
    expect(filtered).toMatchObject({ Direction: 'OUT', vlan_filter: '1-5,9', description: 'trunk', tap_service_id: ids.ts1 });
    const stored = (await api.get(`/v2.0/taas/tap_flows/${filtered.ID}`)).body.tap_flow;
    expect(stored).toMatchObject({ source_port: ids.vmA, tap_service_id: ids.ts1, direction: 'OUT', vlan_filter: '1-5,9' });

    const listed = await json('tap', 'flow', 'list');
    expect(Object.keys(listed[0])).toEqual(['ID', 'Tenant', 'Name', 'Status', 'source_port', 'tap_service_id', 'Direction']);
    const values = await tapas('tap', 'flow', 'list', '-f', 'value', '-c', 'Name', '-c', 'Direction');
    expect(values.stdout.trimEnd().split('\n').sort()).toEqual(['tf_0 BOTH', 'tf_vlan OUT']);
  });

  it('tap mirror create turns repeated --directions into the directions dict', async () => {
    const mirror = await json('tap', 'mirror', 'create', '--name', 'tm_0', '--port', 'vm-a', '--directions', 'IN=101',
      '--directions', 'out=102', '--remote-ip', '198.51.100.7', '--mirror-type', 'erspanv1');
    expect(mirror).toMatchObject({
      Name: 'tm_0', Port: ids.vmA, Directions: { IN: 101, OUT: 102 }, 'Remote IP': '198.51.100.7', 'Mirror Type': 'erspanv1',
    });
    ids.tm0 = mirror.ID;
    const gre = await json('tap', 'mirror', 'create', '--port', ids.vmA!, '--directions', 'OUT=7',
      '--remote-ip', '2001:db8::7', '--mirror-type', 'gre', '--name', 'tm_gre');
    expect(gre).toMatchObject({ Directions: { OUT: 7 }, 'Remote IP': '2001:db8::7', 'Mirror Type': 'gre' });
    expect((await api.get(`/v2.0/taas/tap_mirrors/${gre.ID}`)).body.tap_mirror.directions).toEqual({ OUT: 7 });

    const table = await tapas('tap', 'mirror', 'list', '-c', 'Name', '-c', 'Directions');
    expect(table.stdout).toMatch(/\| tm_0 +\| IN='101', OUT='102' \|/);
    expect((await tapas('tap', 'mirror', 'delete', 'tm_gre')).code).toBe(0);
  });

  it('tap mirror create --mirror-type erspanv2 / vxlan with --directions BOTH=N and --udp-port', async () => {
    const erspan3 = await json('tap', 'mirror', 'create', '--name', 'tm_e3', '--port', 'vm-a', '--directions', 'both=9',
      '--remote-ip', '198.51.100.9', '--mirror-type', 'erspanv2');
    expect(erspan3).toMatchObject({ Directions: { BOTH: 9 }, 'Mirror Type': 'erspanv2', 'UDP Port': null });
    const vxlan = await json('tap', 'mirror', 'create', '--name', 'tm_vx', '--port', 'vm-a', '--directions', 'BOTH=16777215',
      '--remote-ip', '198.51.100.9', '--mirror-type', 'vxlan', '--udp-port', '4790');
    expect(vxlan).toMatchObject({ Directions: { BOTH: 16777215 }, 'Mirror Type': 'vxlan', 'UDP Port': 4790 });
    expect((await api.get(`/v2.0/taas/tap_mirrors/${vxlan.ID}`)).body.tap_mirror).toMatchObject({ udp_port: 4790, directions: { BOTH: 16777215 } });
    for (const [args, message] of [
      [['--directions', 'BOTH=16777216', '--mirror-type', 'vxlan'], /Invalid input for directions \(BOTH\)\. Reason: tunnel id 16777216 is not a VXLAN VNI \(0 to 16777215\)\./],
      [['--directions', 'BOTH=1', '--mirror-type', 'vxlan', '--udp-port', '70000'], /Invalid input for udp_port\. Reason: 70000 is not a UDP port \(1 to 65535\)\./],
      [['--directions', 'BOTH=1', '--mirror-type', 'vxlan', '--udp-port', 'x'], /--udp-port must be an integer, not 'x'/],
    ] as const) {
      const result = await tapas('tap', 'mirror', 'create', '--port', 'vm-a', '--remote-ip', '198.51.100.10', ...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    // BOTH with IN: the daemon's 400, exit 1.
    const both = await tapas('tap', 'mirror', 'create', '--port', 'vm-a', '--remote-ip', '198.51.100.10', '--mirror-type', 'gre',
      '--directions', 'BOTH=1', '--directions', 'IN=2');
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('BOTH sends IN and OUT in one tunnel and cannot be combined with IN');
    for (const name of ['tm_e3', 'tm_vx']) expect((await tapas('tap', 'mirror', 'delete', name)).code).toBe(0);
  });

  it('update renames and re-describes; the new name resolves and the old one no longer does', async () => {
    const updated = await json('tap', 'service', 'update', 'ts_1', '--name', 'ids-feed', '--description', 'to the IDS');
    expect(updated).toMatchObject({ ID: ids.ts1, Name: 'ids-feed', description: 'to the IDS' });
    expect((await api.get(`/v2.0/taas/tap_services/${ids.ts1}`)).body.tap_service.name).toBe('ids-feed');
    expect((await json('tap', 'service', 'show', 'ids-feed')).ID).toBe(ids.ts1);
    const gone = await tapas('tap', 'service', 'show', 'ts_1');
    expect(gone.code).toBe(1);

    expect((await json('tap', 'flow', 'update', ids.tf0!, '--description', 'vm-a both ways')).description).toBe('vm-a both ways');
    expect((await json('tap', 'mirror', 'update', 'tm_0', '--name', 'tm_renamed')).Name).toBe('tm_renamed');
    expect((await json('port', 'update', 'vm-b', '--description', 'second VM')).description).toBe('second VM');
  });

  it('a name two resources share is refused as ambiguous, listing their IDs, also where it is a reference', async () => {
    await json('port', 'create', 'dup-mon-1', '--interface', 'clidup1', '--netns', ABSENT_NS);
    await json('port', 'create', 'dup-mon-2', '--interface', 'clidup2', '--netns', ABSENT_NS);
    const first = await json('tap', 'service', 'create', '--name', 'dup', '--port', 'dup-mon-1');
    const second = await json('tap', 'service', 'create', '--name', 'dup', '--port', 'dup-mon-2');
    for (const args of [
      ['tap', 'service', 'show', 'dup'],
      ['tap', 'service', 'delete', 'dup'],
      ['tap', 'service', 'update', 'dup', '--name', 'x'],
      ['tap', 'flow', 'create', '--port', 'vm-a', '--tap-service', 'dup', '--direction', 'IN'],
    ]) {
      const result = await tapas(...args);
      expect(result.code, args.join(' ')).toBe(1);
      expectCleanError(result);
      expect(result.stderr).toContain("More than one tap service exists with the name 'dup'");
      expect(result.stderr).toContain(first.ID);
      expect(result.stderr).toContain(second.ID);
    }
    // Both still exist, and each is reachable by its ID.
    expect((await json('tap', 'service', 'show', first.ID)).Name).toBe('dup');
    expect((await tapas('tap', 'service', 'delete', first.ID, second.ID)).code).toBe(0);
    expect(await json('tap', 'service', 'list', '--name', 'dup')).toEqual([]);
  });

  it('an unknown name or ID is exit 1 with the name in the message', async () => {
    const cases: Array<[string[], string]> = [
      [['port', 'show', 'nobody'], "No port with a name or ID of 'nobody' exists"],
      [['tap', 'flow', 'show', '3f1d2c4b-0000-4000-8000-000000000000'], "No tap flow with a name or ID of '3f1d2c4b-0000-4000-8000-000000000000' exists"],
      [['tap', 'service', 'create', '--port', 'nobody'], "No port with a name or ID of 'nobody' exists"],
      [['tap', 'flow', 'create', '--port', 'vm-a', '--tap-service', 'nothing', '--direction', 'IN'], "No tap service with a name or ID of 'nothing' exists"],
      [['tap', 'mirror', 'delete', 'nothing'], "No tap mirror with a name or ID of 'nothing' exists"],
    ];
    const results = await mapLimit(cases, 3, ([args]) => tapas(...args));
    results.forEach((result, index) => {
      expect(result.code, cases[index]![0].join(' ')).toBe(1);
      expectCleanError(result);
      expect(result.stderr).toBe(`tapas: ${cases[index]![1]}\n`);
    });
  });

  it('a value the contract\'s format refuses is exit 2 before sending, worded as the API words it', async () => {
    const cases: Array<[string[], string, Record<string, unknown>]> = [
      [['tap', 'flow', 'create', '--port', 'vm-a', '--tap-service', 'ts_0', '--direction', 'IN', '--vlan-filter', '1-5,'], '/v2.0/taas/tap_flows',
        { tap_flow: { source_port: ids.vmA, tap_service_id: ids.ts0, direction: 'IN', vlan_filter: '1-5,' } }],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'IN=2000', '--remote-ip', '198.51.100.8', '--mirror-type', 'erspanv1'], '/v2.0/taas/tap_mirrors',
        { tap_mirror: { port_id: ids.vmA, directions: { IN: 2000 }, remote_ip: '198.51.100.8', mirror_type: 'erspanv1' } }],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'IN=5', '--remote-ip', 'collector.example', '--mirror-type', 'gre'], '/v2.0/taas/tap_mirrors',
        { tap_mirror: { port_id: ids.vmA, directions: { IN: 5 }, remote_ip: 'collector.example', mirror_type: 'gre' } }],
      [['port', 'create', 'bad-if', '--interface', 'a-very-long-interface'], '/v2.0/ports',
        { port: { name: 'bad-if', 'binding:profile': { interface: 'a-very-long-interface' } } }],
      [['port', 'create', 'bad-ns', '--interface', 'eth0', '--netns', '/run/netns/../../proc/1/ns/net'], '/v2.0/ports',
        { port: { name: 'bad-ns', 'binding:profile': { interface: 'eth0', netns: '/run/netns/../../proc/1/ns/net' } } }],
    ];
    for (const [args, path, body] of cases) {
      const direct = await api.post(path, body);
      expect(direct.status, args.join(' ')).toBe(400);
      expect(direct.body.NeutronError.message).toMatch(/^Invalid input for .*\. Reason: .+\.$/);
      const result = await tapas(...args);
      expect(result.code, args.join(' ')).toBe(2);
      expectCleanError(result);
      expect(result.stderr).toBe(`tapas: ${direct.body.NeutronError.message}\n`);
    }
  });

  it('the daemon\'s refusals: exit 1 with its NeutronError message, as the API words it', async () => {

    // A tap service's own port as a source into it: a loop, 409.
    const loop = await tapas('tap', 'flow', 'create', '--port', 'monitor', '--tap-service', 'ts_0', '--direction', 'BOTH');
    expect(loop.code).toBe(1);
    expectCleanError(loop);
    const loopDirect = await api.post('/v2.0/taas/tap_flows', { tap_flow: { source_port: ids.monitor, tap_service_id: ids.ts0, direction: 'BOTH' } });
    expect(loopDirect.status).toBe(409);
    expect(loop.stderr).toBe(`tapas: ${loopDirect.body.NeutronError.message}\n`);
  });

  it('delete takes names and IDs, several at once; a partial failure deletes the rest and exits 1', async () => {
    await json('port', 'create', 'del-src', '--interface', 'clidel0', '--netns', ABSENT_NS);
    const a = await json('tap', 'flow', 'create', '--name', 'del-a', '--port', 'del-src', '--tap-service', 'ts_0', '--direction', 'IN');
    const b = await json('tap', 'flow', 'create', '--name', 'del-b', '--port', 'del-src', '--tap-service', 'ts_0', '--direction', 'OUT');
    const ok = await tapas('tap', 'flow', 'delete', 'del-a', b.ID);
    expect(ok).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect((await api.get(`/v2.0/taas/tap_flows/${a.ID}`)).status).toBe(404);
    expect((await api.get(`/v2.0/taas/tap_flows/${b.ID}`)).status).toBe(404);

    const c = await json('tap', 'flow', 'create', '--name', 'del-c', '--port', 'del-src', '--tap-service', 'ts_0', '--direction', 'IN');
    const partial = await tapas('tap', 'flow', 'delete', 'no-such-flow', 'del-c');
    expect(partial.code).toBe(1);
    expect(partial.stderr).toContain("failed to delete tap flow 'no-such-flow': No tap flow with a name or ID of 'no-such-flow' exists");
    expect(partial.stderr).toContain('failed to delete 1 of 2 tap flows');
    expect((await api.get(`/v2.0/taas/tap_flows/${c.ID}`)).status).toBe(404);
  });

  it('deleting a port deletes what uses it (the daemon cascades)', async () => {
    const port = await json('port', 'create', 'short-lived', '--interface', 'clitmp0', '--netns', ABSENT_NS);
    const service = await json('tap', 'service', 'create', '--name', 'ts_tmp', '--port', 'short-lived');
    expect((await tapas('port', 'delete', 'short-lived')).code).toBe(0);
    expect((await api.get(`/v2.0/ports/${port.ID}`)).status).toBe(404);
    expect((await api.get(`/v2.0/taas/tap_services/${service.ID}`)).status).toBe(404);
  });

  it('usage errors exit 2 with a message, before anything reaches the daemon', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['tap', 'flow', 'create', '--port', 'vm-a', '--tap-service', 'ts_0', '--direction', 'SIDEWAYS'], /--direction must be one of IN, OUT, BOTH, not 'SIDEWAYS'/],
      [['tap', 'flow', 'create', '--port', 'vm-a', '--tap-service', 'ts_0'], /required option '--direction <DIRECTION>' not specified/],
      [['tap', 'service', 'create', '--name', 'x'], /required option '--port <PORT>' not specified/],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'IN101', '--remote-ip', '198.51.100.1', '--mirror-type', 'gre'], /--directions must be IN=TUNNEL_ID or OUT=TUNNEL_ID/],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'UP=1', '--remote-ip', '198.51.100.1', '--mirror-type', 'gre'], /--directions must be IN=TUNNEL_ID or OUT=TUNNEL_ID or BOTH=TUNNEL_ID/],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'IN=1', '--directions', 'in=2', '--remote-ip', '198.51.100.1', '--mirror-type', 'gre'], /--directions gives IN twice/],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'IN=1', '--remote-ip', '198.51.100.1', '--mirror-type', 'geneve'], /argument 'geneve' is invalid.*gre, erspanv1, erspanv2, vxlan/],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'IN=1', '--mirror-type', 'gre'], /required option '--remote-ip <IP>'/],
      [['port', 'create', '--interface', 'x0'], /missing required argument 'name'/],
      [['port', 'create', 'p'], /required option '--interface <IF>'/],
      [['port', 'create', 'p', '--interface', 'eth 0'], /^tapas: Invalid input for binding:profile \(interface\)\. Reason: 'eth 0' is not a valid interface name/],
      [['port', 'create', 'p', '--interface', 'eth0', '--netns', 'a/../b'], /^tapas: Invalid input for binding:profile \(netns\)\. Reason: 'a\/\.\.\/b' is not a valid network namespace/],
      [['tap', 'flow', 'create', '--port', 'vm-a', '--tap-service', 'ts_0', '--direction', 'IN', '--vlan-filter', '9-3'], /^tapas: Invalid input for vlan_filter\. Reason: invalid vlan_filter range '9-3'/],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'OUT=1024', '--remote-ip', '198.51.100.1', '--mirror-type', 'erspanv1'], /^tapas: Invalid input for directions \(OUT\)\. Reason: tunnel id 1024 is not an ERSPAN session id \(0 to 1023\)\./],
      [['tap', 'mirror', 'create', '--port', 'vm-a', '--directions', 'IN=1', '--remote-ip', 'fe80::1%eth0', '--mirror-type', 'gre'], /^tapas: Invalid input for remote_ip\. Reason: 'fe80::1%eth0' is not a valid IP address\./],
      [['port', 'list', '-f', 'yaml'], /argument 'yaml' is invalid.*table, json, value/],
      [['port', 'list', '-c', 'Colour'], /no column 'Colour': choose from ID, Name, MAC Address, Interface, Netns, Status/],
      [['tap', 'service', 'create', '--port', 'monitor', '-c', 'Nope'], /no column 'Nope'/],
      [['tap', 'service', 'update', 'ts_0'], /nothing to update: give --name and\/or --description/],
      [['tap', 'flow', 'frobnicate'], /unknown command 'frobnicate'/],
      [['port', 'show'], /missing required argument 'port'/],
      [['tap'], /Usage: tapas tap/],
      [['port', 'list', '--colour'], /unknown option '--colour'/],
      [['--endpoint', 'not a url', 'port', 'list'], /invalid --endpoint 'not a url'/],
      [['--endpoint', 'ftp://127.0.0.1:9696', 'port', 'list'], /only http:\/\/ and https:\/\//],
      [['stats', '--interval', '0'], /--interval must be a positive number up to 60, not '0'/],
      [['stats', '--watch', '--interval', '120'], /--interval must be a positive number up to 60, not '120'/],
      [['stats', '--watch', '--count', '1.5'], /--count must be a positive integer/],
      [['completion', 'zsh'], /no completion for 'zsh': only bash/],
    ];
    const before = (await api.get('/metrics')).body as string;
    const results = await mapLimit(cases, 3, ([args]) => tapas(...args));
    results.forEach((result, index) => {
      const [args, message] = cases[index]!;
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    });
    // None of them sent a request: the API's request counters did not move.
    const requests = (text: string) => text.split('\n').filter((line) => line.startsWith('tapas_http_requests_total{') && !line.includes('route="/metrics"')).join('\n');
    expect(requests((await api.get('/metrics')).body as string)).toBe(requests(before));
  });

  it('--endpoint wins over TAPAS_ENDPOINT; a /v2.0 suffix is accepted; nothing listening is exit 1 with a clear message', async () => {
    const nothing = await closedEndpoint();
    const flag = await runCli(['--endpoint', daemon.url, 'port', 'list', '-f', 'value', '-c', 'Name'], { env: { TAPAS_ENDPOINT: nothing } });
    expect(flag.code, flag.stderr).toBe(0);
    expect(flag.stdout.split('\n')).toContain('vm-a');
    const after = await runCli(['port', 'list', '--endpoint', `${daemon.url}/v2.0/`, '-f', 'value', '-c', 'Name'], { env: { TAPAS_ENDPOINT: nothing } });
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toBe(flag.stdout);

    const nowhere = await runCli(['port', 'list'], { env: { TAPAS_ENDPOINT: nothing } });
    expect(nowhere.code).toBe(1);
    expectCleanError(nowhere);
    expect(nowhere.stderr).toBe(`tapas: cannot reach the tapas daemon at ${nothing} (ECONNREFUSED): is \`tapas serve\` running? (--endpoint, TAPAS_ENDPOINT)\n`);
    const statsNowhere = await runCli(['stats'], { env: { TAPAS_ENDPOINT: nothing } });
    expect(statsNowhere.code).toBe(1);
    expect(statsNowhere.stderr).toMatch(/cannot reach the tapas daemon/);
  });

  it('--help at every level, with examples, exit 0', async () => {
    const levels = [
      [], ['port'], ['tap'], ['tap', 'service'], ['tap', 'flow'], ['tap', 'mirror'],
      ...['port', 'tap service', 'tap flow', 'tap mirror'].flatMap((noun) =>
        ['create', 'list', 'show', 'update', 'delete'].map((verb) => [...noun.split(' '), verb])),
      ['stats'], ['completion'],
    ];
    const results = await mapLimit(levels, 3, (path) => tapas(...path, '--help'));
    results.forEach((result, index) => {
      const path = levels[index]!;
      expect(result.code, path.join(' ')).toBe(0);
      expect(result.stdout).toContain(`Usage: tapas${path.length ? ` ${path.join(' ')}` : ''}`);
      if (path.length > 1 || path[0] === 'tap' || path[0] === 'stats' || path[0] === 'completion') {
        expect(result.stdout, path.join(' ')).toMatch(/Examples:\n {2}(tapas|source)/);
      }
      if (path.length > 0 && path[0] !== 'completion') expect(result.stdout, path.join(' ')).toContain('--endpoint <URL>');
    });
    const flowCreate = results[levels.findIndex((path) => path.join(' ') === 'tap flow create')]!.stdout;
    for (const option of ['--name', '--port', '--tap-service', '--direction', '--vlan-filter', '--description', '--project', '-f, --format', '-c, --column']) {
      expect(flowCreate).toContain(option);
    }
  });
});

describe('tapas with token auth: --token and TAPAS_TOKEN', () => {
  let daemon: DaemonProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tapas-cli-tokens-'));
    const tokensFile = join(dir, 'tokens.json');
    writeFileSync(tokensFile, JSON.stringify({
      tokens: [
        { token: 'cli-admin-0123456789', project_id: 'ops', roles: ['admin'] },
        { token: 'cli-reader-0123456789', project_id: 'ops', roles: ['reader'] },
      ],
    }), { mode: 0o600 });
    daemon = await DaemonProcess.start({ args: ['--tokens', tokensFile] });
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    rmSync(dir, { recursive: true, force: true });
  });

  it('TAPAS_TOKEN authenticates; --token wins over it; a reader may list but not create; no token is refused', async () => {
    const admin = cli(daemon.url, 'cli-admin-0123456789');
    const created = await admin('port', 'create', 'tok-port', '--interface', 'clitok0', '--netns', ABSENT_NS, '-f', 'value', '-c', 'project_id');
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toBe('ops\n');

    const asReader = await admin('--token', 'cli-reader-0123456789', 'port', 'list', '-f', 'value', '-c', 'Name');
    expect(asReader.code, asReader.stderr).toBe(0);
    expect(asReader.stdout).toBe('tok-port\n');
    const readerCreates = await admin('--token', 'cli-reader-0123456789', 'tap', 'service', 'create', '--port', 'tok-port');
    expect(readerCreates.code).toBe(1);
    expectCleanError(readerCreates);
    const direct = await daemon.client({ 'x-auth-token': 'cli-reader-0123456789' }).post('/v2.0/taas/tap_services', { tap_service: { port_id: '00000000-0000-4000-8000-000000000000' } });
    expect(direct.status).toBe(403);
    expect(readerCreates.stderr).toBe(`tapas: ${direct.body.NeutronError.message}\n`);

    const anonymous = await cli(daemon.url)('port', 'list');
    expect(anonymous.code).toBe(1);
    expectCleanError(anonymous);
    const unauthenticated = await daemon.client().get('/v2.0/ports');
    expect(unauthenticated.status).toBe(401);
    expect(anonymous.stderr).toBe(`tapas: ${unauthenticated.body.NeutronError.message}\n`);

    const wrong = await cli(daemon.url, 'not-a-token-at-all')('port', 'list');
    expect(wrong.code).toBe(1);
    expectCleanError(wrong);
  });
});
