import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, type ApiClient } from './daemon-process.js';

const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';
const TM = '/v2.0/taas/tap_mirrors';

interface Case {
  what: string;
  method: string;
  path: string | (() => string);
  /** A string is sent as is; anything else as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  /** A part of the NeutronError message the answer must contain. */
  message?: string | RegExp;
}

/**
 * Bad input never reaches a 500 or a crash: every case is a 4xx with a
 * NeutronError body, and the daemon keeps answering. The table of what was
 * tried is written to $TAPAS_BAD_INPUT_TABLE when set.
 */
describe('bad input is always a 4xx in the Neutron error format', () => {
  let daemon: DaemonProcess;
  let api: ApiClient;
  let portId = '';
  let serviceId = '';
  let vmId = '';
  const results: Array<{ what: string; request: string; status: number; type: string }> = [];

  beforeAll(async () => {
    daemon = await DaemonProcess.start();
    api = daemon.client();
    portId = (await api.port('bad-input-monitor', 'bi0')).id;
    vmId = (await api.port('bad-input-vm', 'bi1')).id;
    serviceId = (await api.create(TS, { tap_service: { port_id: portId } })).id;
    await api.create(TF, { tap_flow: { source_port: vmId, tap_service_id: serviceId, direction: 'IN' } });
  });

  afterAll(async () => {
    if (process.env.TAPAS_BAD_INPUT_TABLE) {
      const lines = ['| bad input | request | status | NeutronError type |', '|---|---|---|---|',
        ...results.map((r) => `| ${r.what} | \`${r.request}\` | ${r.status} | ${r.type} |`)];
      writeFileSync(process.env.TAPAS_BAD_INPUT_TABLE, `${lines.join('\n')}\n`);
    }
    await daemon?.stop();
    daemon?.removeState();
  });

  const service = (attributes: Record<string, unknown>) => ({ tap_service: { port_id: portId, ...attributes } });
  const flow = (attributes: Record<string, unknown>) => ({
    tap_flow: { source_port: vmId, tap_service_id: serviceId, direction: 'IN', ...attributes },
  });
  const mirror = (attributes: Record<string, unknown>) => ({
    tap_mirror: { port_id: portId, remote_ip: '192.0.2.1', mirror_type: 'gre', directions: { IN: 1 }, ...attributes },
  });

  const cases: Case[] = [
    { what: 'malformed JSON', method: 'POST', path: TS, body: '{"tap_service": {', status: 400, message: 'Malformed JSON' },
    { what: 'JSON with a trailing comma', method: 'POST', path: TS, body: '{"tap_service": {"name": "x",}}', status: 400 },
    { what: 'empty body', method: 'POST', path: TS, body: '', status: 400, message: 'Resource body required' },
    { what: 'body is an array', method: 'POST', path: TS, body: [1, 2], status: 400 },
    { what: 'body is a string', method: 'POST', path: TS, body: '"tap_service"', status: 400 },
    { what: 'body is null', method: 'POST', path: TS, body: 'null', status: 400 },
    { what: 'resource key missing', method: 'POST', path: TS, body: { port_id: 'x' }, status: 400, message: "Unable to find 'tap_service' in request body" },
    { what: 'resource is not an object', method: 'POST', path: TS, body: { tap_service: 'ts' }, status: 400 },
    { what: 'bulk create (a list of resources)', method: 'POST', path: TS, body: { tap_services: [{ port_id: 'x' }] }, status: 400, message: 'Bulk' },
    { what: 'huge bulk list', method: 'POST', path: TS, body: { tap_services: Array.from({ length: 2000 }, () => ({ port_id: 'x' })) }, status: 400 },
    { what: 'unknown attribute', method: 'POST', path: TS, body: () => service({ colour: 'blue' }), status: 400, message: "Unrecognized attribute(s) 'colour'" },
    { what: 'read-only attribute in POST', method: 'POST', path: TS, body: () => service({ status: 'ACTIVE' }), status: 400, message: "Attribute 'status' not allowed in POST" },
    { what: 'id in POST', method: 'POST', path: TS, body: () => service({ id: '4a1c1f0e-0000-4000-8000-000000000000' }), status: 400 },
    { what: 'required attribute missing', method: 'POST', path: TS, body: { tap_service: { name: 'x' } }, status: 400, message: "Required attribute 'port_id' not specified" },
    { what: 'name of the wrong type (number)', method: 'POST', path: TS, body: () => service({ name: 42 }), status: 400, message: 'Invalid input for name' },
    { what: 'name of the wrong type (object)', method: 'POST', path: TS, body: () => service({ name: { a: 1 } }), status: 400 },
    { what: 'name null', method: 'POST', path: TS, body: () => service({ name: null }), status: 400 },
    { what: 'name longer than 255', method: 'POST', path: TS, body: () => service({ name: 'n'.repeat(256) }), status: 400, message: 'exceeds maximum length' },
    { what: 'port_id not a UUID', method: 'POST', path: TS, body: { tap_service: { port_id: 'not-a-uuid' } }, status: 400, message: "'not-a-uuid' is not a valid UUID" },
    { what: 'port_id a number', method: 'POST', path: TS, body: { tap_service: { port_id: 7 } }, status: 400 },
    { what: 'port_id of no port', method: 'POST', path: TS, body: { tap_service: { port_id: '4a1c1f0e-0000-4000-8000-000000000000' } }, status: 404 },
    { what: 'project_id and tenant_id differ', method: 'POST', path: TS, body: () => service({ project_id: 'a', tenant_id: 'b' }), status: 400 },
    { what: 'direction invalid', method: 'POST', path: TF, body: () => flow({ direction: 'UP' }), status: 400, message: "'UP' is not in ['IN', 'OUT', 'BOTH']" },
    { what: 'direction lowercase', method: 'POST', path: TF, body: () => flow({ direction: 'in' }), status: 400 },
    { what: 'vlan_filter with a trailing comma', method: 'POST', path: TF, body: () => flow({ vlan_filter: '1-5,' }), status: 400, message: 'vlan_filter' },
    { what: 'vlan_filter out of range', method: 'POST', path: TF, body: () => flow({ vlan_filter: '4095' }), status: 400 },
    { what: 'vlan_filter reversed range', method: 'POST', path: TF, body: () => flow({ vlan_filter: '9-3' }), status: 400 },
    { what: 'vlan_filter VLAN 0', method: 'POST', path: TF, body: () => flow({ vlan_filter: '0' }), status: 400 },
    { what: 'vlan_filter not a string', method: 'POST', path: TF, body: () => flow({ vlan_filter: [1, 5] }), status: 400 },
    { what: 'vlan_filter huge', method: 'POST', path: TF, body: () => flow({ vlan_filter: '1,'.repeat(600) + '1' }), status: 400 },
    { what: 'remote_ip invalid', method: 'POST', path: TM, body: () => mirror({ remote_ip: '1.2.3' }), status: 400, message: 'remote_ip' },
    { what: 'remote_ip with a zone id', method: 'POST', path: TM, body: () => mirror({ remote_ip: 'fe80::1%eth0' }), status: 400 },
    { what: 'mirror_type unknown', method: 'POST', path: TM, body: () => mirror({ mirror_type: 'geneve' }), status: 400 },
    { what: 'ERSPAN session id 1024', method: 'POST', path: TM, body: () => mirror({ mirror_type: 'erspanv1', directions: { OUT: 1024 } }), status: 400, message: 'ERSPAN session id' },
    { what: 'negative tunnel id', method: 'POST', path: TM, body: () => mirror({ directions: { IN: -1 } }), status: 400 },
    { what: 'fractional tunnel id', method: 'POST', path: TM, body: () => mirror({ directions: { IN: 1.5 } }), status: 400 },
    { what: 'tunnel id as a string', method: 'POST', path: TM, body: () => mirror({ directions: { IN: '1' } }), status: 400 },
    { what: 'directions is a list', method: 'POST', path: TM, body: () => mirror({ directions: [1, 2] }), status: 400 },
    { what: 'directions with 1000 keys', method: 'POST', path: TM, body: () => mirror({ directions: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`D${i}`, i])) }), status: 400 },
    { what: 'interface name too long', method: 'POST', path: '/v2.0/ports', body: { port: { 'binding:profile': { interface: 'a-very-long-interface' } } }, status: 400 },
    { what: 'interface name with a slash', method: 'POST', path: '/v2.0/ports', body: { port: { 'binding:profile': { interface: '../etc' } } }, status: 400 },
    { what: 'netns escaping /run/netns', method: 'POST', path: '/v2.0/ports', body: { port: { 'binding:profile': { interface: 'eth0', netns: '/run/netns/../../proc/1/ns/net' } } }, status: 400 },
    { what: 'binding:profile missing interface', method: 'POST', path: '/v2.0/ports', body: { port: { 'binding:profile': {} } }, status: 400 },
    { what: 'update of a read-only attribute', method: 'PUT', path: () => `${TS}/${serviceId}`, body: { tap_service: { port_id: portId } }, status: 400, message: 'Cannot update read-only attribute port_id' },
    { what: 'update of an unknown attribute', method: 'PUT', path: () => `${TS}/${serviceId}`, body: { tap_service: { colour: 'red' } }, status: 400, message: 'Unrecognized attribute' },
    { what: 'update with a wrong type', method: 'PUT', path: () => `${TS}/${serviceId}`, body: { tap_service: { description: false } }, status: 400 },
    { what: 'wrong content type (text/plain)', method: 'POST', path: TS, body: '{"tap_service": {}}', headers: { 'content-type': 'text/plain' }, status: 415 },
    { what: 'wrong content type (form)', method: 'POST', path: TS, body: 'a=b', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415 },
    { what: 'body over the 64 KiB limit', method: 'POST', path: TS, body: () => service({ description: 'd'.repeat(70_000) }), status: 413 },
    { what: 'JSON nested 100000 deep', method: 'POST', path: TS, body: '['.repeat(100_000) + ']'.repeat(100_000), status: 413 },
    { what: 'JSON nested 20000 deep (under the size limit)', method: 'POST', path: TS, body: '{"tap_service":' + '['.repeat(20_000) + ']'.repeat(20_000) + '}', status: 400 },
    { what: '__proto__ in the body', method: 'POST', path: TS, body: '{"tap_service": {"__proto__": {"admin": true}, "port_id": "x"}}', status: 400 },
    { what: 'invalid UUID in the path', method: 'GET', path: `${TS}/not-a-uuid`, status: 404 },
    { what: 'SQL in the path', method: 'GET', path: `${TS}/'%20OR%201=1--`, status: 404 },
    { what: 'delete of an unknown id', method: 'DELETE', path: `${TF}/4a1c1f0e-0000-4000-8000-000000000000`, status: 404 },
    { what: 'unknown list filter', method: 'GET', path: `${TS}?colour=red`, status: 400 },
    { what: 'limit not a number', method: 'GET', path: `${TS}?limit=ten`, status: 400 },
    { what: 'negative limit', method: 'GET', path: `${TS}?limit=-1`, status: 400 },
    { what: 'unknown marker', method: 'GET', path: `${TS}?marker=4a1c1f0e-0000-4000-8000-000000000000`, status: 400 },
    { what: 'sort_dir invalid', method: 'GET', path: `${TS}?sort_key=name&sort_dir=up`, status: 400 },
    { what: 'huge list of filter values', method: 'GET', path: `${TS}?${Array.from({ length: 1000 }, () => 'id=x').join('&')}`, status: 400 },
    { what: 'unknown path', method: 'GET', path: '/v2.0/routers', status: 404 },
    { what: 'method not allowed on a collection', method: 'DELETE', path: TS, status: 405 },
    { what: 'POST to a member', method: 'POST', path: () => `${TS}/${serviceId}`, body: {}, status: 405 },
    { what: 'quota not an integer', method: 'PUT', path: '/v2.0/quotas/p1', body: { quota: { tap_service: 'many' } }, status: 400 },
    { what: 'quota for an unknown resource', method: 'PUT', path: '/v2.0/quotas/p1', body: { quota: { routers: 3 } }, status: 400 },
  ];

  for (const testCase of cases) {
    it(`${testCase.what}: ${testCase.status}`, async () => {
      const path = typeof testCase.path === 'function' ? testCase.path() : testCase.path;
      const body = typeof testCase.body === 'function' ? (testCase.body as () => unknown)() : testCase.body;
      const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
      const response = await api.request(testCase.method, path, payload, {
        ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
        ...testCase.headers,
      });
      const error = (response.body as { NeutronError?: { type: string; message: string; detail: string } }).NeutronError;
      results.push({
        what: testCase.what,
        request: `${testCase.method} ${path.length > 60 ? `${path.slice(0, 57)}...` : path}`,
        status: response.status,
        type: error?.type ?? '(none)',
      });
      expect(response.status, JSON.stringify(response.body)).toBe(testCase.status);
      expect(response.headers.get('content-type')).toMatch(/^application\/json/);
      expect(error).toEqual({ type: expect.any(String), message: expect.any(String), detail: '' });
      if (testCase.message instanceof RegExp) expect(error!.message).toMatch(testCase.message);
      else if (testCase.message) expect(error!.message).toContain(testCase.message);
    });
  }

  it('a request line too long for Node is refused with a 4xx and the daemon keeps serving', async () => {
    const url = new URL(daemon.url);
    const status = await new Promise<number>((resolve, reject) => {
      const request = httpRequest({ host: url.hostname, port: url.port, path: `${TS}?name=${'x'.repeat(20_000)}` }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
      request.end();
    });
    results.push({ what: 'URL longer than the 16 KiB header limit', request: 'GET /v2.0/taas/tap_services?name=xxxx…', status, type: '(Node answers before the API)' });
    expect(status).toBe(431);
  });

  it('survived all of it: still running, nothing created by the bad requests, no 5xx logged', async () => {
    expect(daemon.running).toBe(true);
    expect((await api.get(TS)).body.tap_services).toHaveLength(1);
    expect((await api.get(TM)).body.tap_mirrors).toHaveLength(0);
    expect((await api.get('/v2.0/ports')).body.ports).toHaveLength(2);
    expect(daemon.logs.filter((line) => line.level >= 50)).toEqual([]);
    expect(results.every((r) => r.status >= 400 && r.status < 500)).toBe(true);
  });
});
