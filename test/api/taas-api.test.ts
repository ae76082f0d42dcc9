import { spawnSync } from 'node:child_process';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, until, type ApiClient } from './daemon-process.js';

const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';
const TM = '/v2.0/taas/tap_mirrors';

/**
 * The TaaS API against a running daemon (noauth, admin). Ports name
 * interfaces that need not exist: these tests are about the API's rules;
 * the data path has its own tests in test/integration/daemon-*.
 */
describe('TaaS API', () => {
  let daemon: DaemonProcess;
  let api: ApiClient;
  let counter = 0;
  const uniqueInterface = () => `ta${process.pid % 1000}x${(counter += 1)}`;
  const newPort = (name = `port-${counter}`) => api.port(name, uniqueInterface());

  beforeAll(async () => {
    daemon = await DaemonProcess.start({ args: ['--quota', 'tap_service=-1', '--quota', 'tap_flow=-1', '--quota', 'tap_mirror=-1'] });
    api = daemon.client();
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
  });

  it('lists the v2.0 version at / and the TaaS extensions', async () => {
    const root = await api.get('/');
    expect(root.status).toBe(200);
    expect(root.body.versions).toEqual([{ id: 'v2.0', status: 'CURRENT', links: [{ href: `${daemon.url}/v2.0/`, rel: 'self' }] }]);
    const extensions = await api.get('/v2.0/extensions');
    expect(extensions.body.extensions.map((e: { alias: string }) => e.alias)).toEqual(
      expect.arrayContaining(['taas', 'taas-vlan-filter', 'tap-mirror']));
    expect((await api.get('/v2.0/extensions/taas')).body.extension.name).toBe('Neutron Tap as a Service');
    expect((await api.get('/v2.0/extensions/nope')).status).toBe(404);
  });

  it('registers a port with its interface and reads MAC and status from the interface', async () => {
    const port = await api.port('loopback', 'lo', undefined, { description: 'the host loopback' });
    expect(port).toMatchObject({
      name: 'loopback', description: 'the host loopback', status: 'DOWN', project_id: 'default', tenant_id: 'default',
      'binding:profile': { interface: 'lo' }, admin_state_up: true,
    });
    const seen = await until(api, `/v2.0/ports/${port.id}`, (body) => body.port.status === 'ACTIVE');
    expect(seen.port.mac_address).toBe('00:00:00:00:00:00');

    const missing = await api.port('missing', 'nosuch0');
    const failed = await until(api, `/v2.0/ports/${missing.id}`, (body) => body.port.status === 'ERROR');
    expect(failed.port.status_reason).toMatch(/nosuch0/);
    expect((await api.get('/v2.0/ports?name=missing')).body.ports.map((p: { id: string }) => p.id)).toEqual([missing.id]);
  });

  it('accepts a port on a host without an agent, and shows it DOWN with the reason', async () => {
    const port = await api.port('far-away', 'eth9', undefined, { 'binding:host_id': 'compute-9' });
    expect(port).toMatchObject({ 'binding:host_id': 'compute-9', status: 'DOWN', status_reason: 'no agent on host compute-9', mac_address: null });
    const service = await api.create(TS, { tap_service: { port_id: port.id } });
    expect(service).toMatchObject({ status: 'DOWN', status_reason: 'no agent on host compute-9' });
    const deleted = await api.request('DELETE', `/v2.0/ports/${port.id}`);
    expect(deleted.status).toBe(204);
    expect((await api.get(`${TS}/${service.id}`)).status).toBe(404);
  });

  it('creates a tap service DOWN, shows it under both spellings, and changes only name and description', async () => {
    const port = await newPort();
    const created = await api.post(TS, { tap_service: { name: 'ts-a', port_id: port.id } });
    expect(created.status).toBe(201);
    const service = created.body.tap_service;
    expect(service).toMatchObject({ name: 'ts-a', description: '', port_id: port.id, status: 'DOWN', project_id: 'default', tenant_id: 'default' });
    expect(service.id).toMatch(/^[0-9a-f-]{36}$/);

    const underscore = await api.get(`${TS}/${service.id}`);
    const dashed = await api.get(`/v2.0/taas/tap-services/${service.id}`);
    expect(dashed.body.tap_service.id).toBe(service.id);
    expect(dashed.body.tap_service.port_id).toBe(underscore.body.tap_service.port_id);

    const updated = await api.put(`${TS}/${service.id}`, { tap_service: { name: 'ts-renamed', description: 'monitor A' } });
    expect(updated.status).toBe(200);
    expect(updated.body.tap_service).toMatchObject({ name: 'ts-renamed', description: 'monitor A', port_id: port.id });
    expect((await api.get(`${TS}/${service.id}`)).body.tap_service.name).toBe('ts-renamed');

    const readOnly = await api.put(`${TS}/${service.id}`, { tap_service: { port_id: port.id } });
    expect(readOnly.status).toBe(400);
    expect(readOnly.body.NeutronError).toEqual({ type: 'HTTPBadRequest', message: 'Cannot update read-only attribute port_id', detail: '' });
  });

  it('filters lists on any attribute, honours fields, and pages with limit and marker', async () => {
    const ports = [await newPort('f1'), await newPort('f2'), await newPort('f3')];
    const services = [];
    for (const [index, port] of ports.entries()) {
      services.push(await api.create(TS, { tap_service: { name: index < 2 ? 'pair' : 'single', port_id: port.id } }));
    }
    const pair = await api.get(`${TS}?name=pair`);
    expect(pair.body.tap_services.map((s: { id: string }) => s.id)).toEqual([services[0].id, services[1].id]);
    const byPort = await api.get(`${TS}?port_id=${ports[2]!.id}&name=single`);
    expect(byPort.body.tap_services.map((s: { id: string }) => s.id)).toEqual([services[2].id]);
    const either = await api.get(`${TS}?id=${services[0].id}&id=${services[2].id}`);
    expect(either.body.tap_services).toHaveLength(2);

    const fields = await api.get(`${TS}?name=pair&fields=id&fields=name`);
    expect(fields.body.tap_services).toEqual([{ id: services[0].id, name: 'pair' }, { id: services[1].id, name: 'pair' }]);
    const one = await api.get(`${TS}/${services[0].id}?fields=status`);
    expect(one.body.tap_service).toEqual({ status: expect.any(String) });

    const first = await api.get(`${TS}?name=pair&limit=1`);
    expect(first.body.tap_services.map((s: { id: string }) => s.id)).toEqual([services[0].id]);
    const next = new URL(first.body.tap_services_links[0].href);
    expect(next.searchParams.get('marker')).toBe(services[0].id);
    const second = await api.get(`${next.pathname}${next.search}`);
    expect(second.body.tap_services.map((s: { id: string }) => s.id)).toEqual([services[1].id]);
    expect(second.body.tap_services_links).toBeUndefined();

    expect((await api.get(`${TS}?colour=blue`)).status).toBe(400);
  });

  it('answers a whole list (kept serialized while nothing changed) as it answers the same list through a query', async () => {
    const port = await newPort('whole');
    // Statuses change as the agent reports: compare lists read back to back until two agree.
    const same = async () => {
      for (let tries = 0; ; tries += 1) {
        const whole = await api.get('/v2.0/ports');
        // limit=0 is no limit: the same list, made and serialized for this request.
        const made = await api.get('/v2.0/ports?limit=0');
        if (JSON.stringify(whole.body) === JSON.stringify(made.body) || tries === 50) {
          expect(whole.headers.get('content-type')).toBe('application/json; charset=utf-8');
          expect(whole.body).toEqual(made.body);
          return whole.body;
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    await same();
    await api.request('PUT', `/v2.0/ports/${port.id}`, { port: { name: 'whole-renamed' } });
    const renamed = await same();
    expect(renamed.ports.find((p: { id: string }) => p.id === port.id).name).toBe('whole-renamed');
  });

  it('creates tap flows with direction and a validated vlan_filter, under both spellings', async () => {
    const monitor = await newPort();
    const vm = await newPort();
    const service = await api.create(TS, { tap_service: { name: 'ts-flows', port_id: monitor.id } });
    const flow = await api.post('/v2.0/taas/tap-flows', {
      tap_flow: { name: 'tf-a', source_port: vm.id, tap_service_id: service.id, direction: 'IN', vlan_filter: '1-5,9' },
    });
    expect(flow.status).toBe(201);
    expect(flow.body.tap_flow).toMatchObject({
      name: 'tf-a', source_port: vm.id, tap_service_id: service.id, direction: 'IN', vlan_filter: '1-5,9', status: 'DOWN',
    });
    expect((await api.get(`${TF}?tap_service_id=${service.id}`)).body.tap_flows.map((f: { id: string }) => f.id)).toEqual([flow.body.tap_flow.id]);

    const noDirection = await api.post(TF, { tap_flow: { source_port: vm.id, tap_service_id: service.id } });
    expect(noDirection.status).toBe(400);
    expect(noDirection.body.NeutronError.message).toBe("Failed to parse request. Required attribute 'direction' not specified");

    const badVlan = await api.post(TF, { tap_flow: { source_port: vm.id, tap_service_id: service.id, direction: 'OUT', vlan_filter: '1-5,' } });
    expect(badVlan.status).toBe(400);
    expect(badVlan.body.NeutronError.message).toMatch(/^Invalid input for vlan_filter/);

    const readOnly = await api.put(`${TF}/${flow.body.tap_flow.id}`, { tap_flow: { direction: 'OUT' } });
    expect(readOnly.body.NeutronError.message).toBe('Cannot update read-only attribute direction');
  });

  it('refuses a tap service on a port that already has one (409)', async () => {
    const port = await newPort();
    await api.create(TS, { tap_service: { port_id: port.id } });
    const second = await api.post(TS, { tap_service: { port_id: port.id } });
    expect(second.status).toBe(409);
    expect(second.body.NeutronError.type).toBe('TapServicePortInUse');
  });

  it('refuses loops: a service port as a source into its own service, or into any other (409, the engine\'s rule)', async () => {
    const portA = await newPort();
    const portB = await newPort();
    const vm = await newPort();
    const serviceA = await api.create(TS, { tap_service: { name: 'A', port_id: portA.id } });
    const serviceB = await api.create(TS, { tap_service: { name: 'B', port_id: portB.id } });

    const self = await api.post(TF, { tap_flow: { source_port: portA.id, tap_service_id: serviceA.id, direction: 'BOTH' } });
    expect(self.status).toBe(409);
    expect(self.body.NeutronError.type).toBe('TapFlowLoop');

    // A port that receives copies is never captured (the data path refuses it), so no chain, and no cycle, can form.
    const chain = await api.post(TF, { tap_flow: { source_port: portA.id, tap_service_id: serviceB.id, direction: 'BOTH' } });
    expect(chain.status).toBe(409);
    expect(chain.body.NeutronError.type).toBe('PortIsTapServiceDestination');
    const mirror = await api.post('/v2.0/taas/tap_mirrors', {
      tap_mirror: { port_id: portB.id, directions: { IN: 4001 }, remote_ip: '192.0.2.200', mirror_type: 'gre' },
    });
    expect(mirror.status).toBe(409);
    expect(mirror.body.NeutronError.type).toBe('PortIsTapServiceDestination');

    // Nor can a mirrored port become a destination.
    await api.create(TF, { tap_flow: { source_port: vm.id, tap_service_id: serviceB.id, direction: 'BOTH' } });
    const destination = await api.post(TS, { tap_service: { port_id: vm.id } });
    expect(destination.status).toBe(409);
    expect(destination.body.NeutronError.type).toBe('PortIsMirrored');
  });

  it('refuses a flow that would deliver the same frames twice, but not disjoint directions or VLANs', async () => {
    const monitor = await newPort();
    const vm = await newPort();
    const service = await api.create(TS, { tap_service: { port_id: monitor.id } });
    const flow = (direction: string, vlan_filter?: string) =>
      api.post(TF, { tap_flow: { source_port: vm.id, tap_service_id: service.id, direction, ...(vlan_filter ? { vlan_filter } : {}) } });
    expect((await flow('IN', '10-20')).status).toBe(201);
    expect((await flow('OUT', '10-20')).status).toBe(201);
    expect((await flow('IN', '21-30')).status).toBe(201);
    const overlap = await flow('BOTH', '15');
    expect(overlap.status).toBe(409);
    expect(overlap.body.NeutronError.type).toBe('TapFlowOverlap');
    expect((await flow('IN')).status).toBe(409);
  });

  it('validates tap mirrors: tunnel ids per type, remote IP, and one tunnel id per remote (409)', async () => {
    const port = await newPort();
    const mirror = (body: Record<string, unknown>) =>
      api.post(TM, { tap_mirror: { port_id: port.id, remote_ip: '192.0.2.10', mirror_type: 'erspanv1', directions: { IN: 101, OUT: 102 }, ...body } });
    const created = await mirror({ name: 'tm-a' });
    expect(created.status).toBe(201);
    expect(created.body.tap_mirror).toMatchObject({
      name: 'tm-a', port_id: port.id, remote_ip: '192.0.2.10', mirror_type: 'erspanv1', directions: { IN: 101, OUT: 102 },
    });
    expect((await api.get(`/v2.0/taas/tap-mirrors/${created.body.tap_mirror.id}`)).body.tap_mirror.directions).toEqual({ IN: 101, OUT: 102 });

    const taken = await mirror({ directions: { OUT: 101 } });
    expect(taken.status).toBe(409);
    expect(taken.body.NeutronError.type).toBe('TapMirrorTunnelIdInUse');
    expect((await mirror({ remote_ip: '192.0.2.11' })).status).toBe(201);

    expect((await mirror({ directions: { IN: 1024 }, remote_ip: '192.0.2.12' })).status).toBe(400);
    expect((await mirror({ directions: { IN: 1024 }, remote_ip: '192.0.2.12', mirror_type: 'gre' })).status).toBe(201);
    expect((await mirror({ directions: { IN: 2 ** 32 }, remote_ip: '192.0.2.13', mirror_type: 'gre' })).status).toBe(400);
    expect((await mirror({ directions: { IN: 7, OUT: 7 }, remote_ip: '192.0.2.14' })).status).toBe(400);
    expect((await mirror({ directions: {}, remote_ip: '192.0.2.14' })).status).toBe(400);
    expect((await mirror({ directions: { UP: 3 }, remote_ip: '192.0.2.14' })).status).toBe(400);
    expect((await mirror({ directions: { IN: '3' }, remote_ip: '192.0.2.14' })).status).toBe(400);
    expect((await mirror({ remote_ip: '300.1.2.3' })).status).toBe(400);
    expect((await mirror({ mirror_type: 'geneve', remote_ip: '192.0.2.15' })).status).toBe(400);

    // Two spellings of one IPv6 address are one remote.
    expect((await mirror({ remote_ip: '2001:db8::1', directions: { IN: 5 } })).status).toBe(201);
    const sameRemote = await mirror({ remote_ip: '2001:DB8:0:0::1', directions: { OUT: 5 } });
    expect(sameRemote.status).toBe(409);
  });

  it('accepts mirror_type erspanv2 and vxlan with their tunnel id ranges, udp_port for vxlan only, and BOTH alone', async () => {
    const port = await newPort();
    const mirror = (body: Record<string, unknown>) =>
      api.post(TM, { tap_mirror: { port_id: port.id, remote_ip: '192.0.2.40', mirror_type: 'erspanv2', directions: { BOTH: 1023 }, ...body } });
    const reason = (reply: { body: { NeutronError: { message: string } } }) => reply.body.NeutronError.message;

    const erspan3 = await mirror({});
    expect(erspan3.status).toBe(201);
    expect(erspan3.body.tap_mirror).toMatchObject({ mirror_type: 'erspanv2', directions: { BOTH: 1023 }, udp_port: null });
    const tooBig = await mirror({ directions: { IN: 1024 }, remote_ip: '192.0.2.41' });
    expect(tooBig.status).toBe(400);
    expect(reason(tooBig)).toContain('directions (IN)');
    expect(reason(tooBig)).toContain('tunnel id 1024 is not an ERSPAN session id (0 to 1023)');

    const vxlan = await mirror({ mirror_type: 'vxlan', directions: { IN: 2 ** 24 - 1, OUT: 0 }, remote_ip: '192.0.2.42' });
    expect(vxlan.status).toBe(201);
    expect(vxlan.body.tap_mirror).toMatchObject({ mirror_type: 'vxlan', directions: { IN: 16777215, OUT: 0 }, udp_port: 4789 });
    const shown = await api.get(`${TM}/${vxlan.body.tap_mirror.id}`);
    expect(shown.body.tap_mirror).toMatchObject({ udp_port: 4789, directions: { IN: 16777215, OUT: 0 } });
    expect((await api.get(`${TM}?mirror_type=vxlan`)).body.tap_mirrors.map((m: { id: string }) => m.id)).toContain(vxlan.body.tap_mirror.id);
    const vni = await mirror({ mirror_type: 'vxlan', directions: { BOTH: 2 ** 24 }, remote_ip: '192.0.2.43' });
    expect(vni.status).toBe(400);
    expect(reason(vni)).toContain('tunnel id 16777216 is not a VXLAN VNI (0 to 16777215)');
    const port4790 = await mirror({ mirror_type: 'vxlan', directions: { BOTH: 5000 }, remote_ip: '192.0.2.43', udp_port: 4790 });
    expect(port4790.status).toBe(201);
    expect(port4790.body.tap_mirror.udp_port).toBe(4790);
    for (const bad of [0, 65536, 1.5, '4789']) {
      expect((await mirror({ mirror_type: 'vxlan', directions: { BOTH: 5001 }, remote_ip: '192.0.2.44', udp_port: bad })).status).toBe(400);
    }
    const notVxlan = await mirror({ mirror_type: 'gre', directions: { BOTH: 5 }, remote_ip: '192.0.2.44', udp_port: 4789 });
    expect(notVxlan.status).toBe(400);
    expect(reason(notVxlan)).toContain('only a vxlan tap mirror has a UDP port');

    // BOTH excludes IN and OUT.
    for (const directions of [{ BOTH: 7, IN: 8 }, { BOTH: 7, OUT: 8 }, { BOTH: 7, IN: 8, OUT: 9 }]) {
      const both = await mirror({ directions, remote_ip: '192.0.2.45' });
      expect(both.status).toBe(400);
      expect(reason(both)).toMatch(/^Invalid input for directions\. Reason: /);
      expect(reason(both)).toContain('BOTH sends IN and OUT in one tunnel and cannot be combined with');
    }
    // BOTH's tunnel id is taken toward its remote like any direction's.
    const taken = await mirror({ mirror_type: 'gre', directions: { OUT: 1023 } });
    expect(taken.status).toBe(409);
    expect(reason(taken)).toContain(`tap mirror ${erspan3.body.tap_mirror.id} (BOTH)`);
    const takenByBoth = await mirror({ mirror_type: 'gre', directions: { BOTH: 16777215 }, remote_ip: '192.0.2.42' });
    expect(takenByBoth.status).toBe(409);

    const extension = await api.get('/v2.0/extensions/tap-mirror-both-direction');
    expect(extension.status).toBe(200);
    expect(extension.body.extension).toMatchObject({ alias: 'tap-mirror-both-direction', name: 'Tap as a Service mirror with BOTH direction support' });
  });

  it('cascades deletes: a service takes its flows, a port takes services, flows and mirrors', async () => {
    const monitor = await newPort();
    const vm = await newPort();
    const service = await api.create(TS, { tap_service: { port_id: monitor.id } });
    const flow = await api.create(TF, { tap_flow: { source_port: vm.id, tap_service_id: service.id, direction: 'BOTH' } });
    expect((await api.delete(`${TS}/${service.id}`)).status).toBe(204);
    expect((await api.get(`${TF}/${flow.id}`)).status).toBe(404);
    expect((await api.get(`${TS}/${service.id}`)).status).toBe(404);

    const service2 = await api.create(TS, { tap_service: { port_id: monitor.id } });
    const flow2 = await api.create(TF, { tap_flow: { source_port: vm.id, tap_service_id: service2.id, direction: 'OUT' } });
    const mirror = await api.create(TM, { tap_mirror: { port_id: vm.id, remote_ip: '198.51.100.1', mirror_type: 'gre', directions: { IN: 1 } } });
    expect((await api.delete(`/v2.0/ports/${vm.id}`)).status).toBe(204);
    expect((await api.get(`${TF}/${flow2.id}`)).status).toBe(404);
    expect((await api.get(`${TM}/${mirror.id}`)).status).toBe(404);
    expect((await api.get(`${TS}/${service2.id}`)).status).toBe(200);
    expect((await api.delete(`/v2.0/ports/${monitor.id}`)).status).toBe(204);
    expect((await api.get(`${TS}/${service2.id}`)).status).toBe(404);
    expect((await api.delete(`/v2.0/ports/${monitor.id}`)).status).toBe(404);
  });

  it('answers 404 for unknown ids and paths and 405 for methods a path does not have, in the Neutron format', async () => {
    const unknown = await api.get(`${TS}/4a1c1f0e-0000-4000-8000-000000000000`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.NeutronError).toEqual({
      type: 'TapServiceNotFound', message: 'Tap Service 4a1c1f0e-0000-4000-8000-000000000000 does not exist', detail: '',
    });
    expect((await api.get(`${TS}/not-a-uuid`)).status).toBe(404);
    expect((await api.get('/v2.0/networks')).body.NeutronError.type).toBe('HTTPNotFound');
    const method = await api.request('PUT', TS, { tap_service: {} });
    expect(method.status).toBe(405);
    expect(method.body.NeutronError.type).toBe('HTTPMethodNotAllowed');
  });

  it('accepts the .json suffix of old Neutron clients', async () => {
    const list = await api.get(`${TS}.json?name=pair`);
    expect(list.status).toBe(200);
    expect(list.body.tap_services).toHaveLength(2);
  });

  it('refuses to start a second daemon on the same state directory', () => {
    const main = new URL('../../dist/cli/main.js', import.meta.url).pathname;
    const second = spawnSync(process.execPath, [main, 'serve', '--listen', '127.0.0.1:0', '--state-dir', daemon.stateDir],
      { encoding: 'utf8', timeout: 30_000 });
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(/in use by another tapas daemon/);
    expect(daemon.running).toBe(true);
  });
});
