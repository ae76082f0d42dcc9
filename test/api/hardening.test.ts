import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, type ApiClient } from './daemon-process.js';
import { http, isNeutronError, rawExchange } from './raw-http.js';

const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';
const TM = '/v2.0/taas/tap_mirrors';

/** Everything the API holds, as an admin lists it: what "nothing changed" is compared on. */
async function everything(api: ApiClient): Promise<unknown> {
  const lists = await Promise.all(['/v2.0/ports', TS, TF, TM, '/v2.0/quotas'].map(async (path) => (await api.get(path)).body));
  return lists;
}

/**
 * What a hostile tester found against `tapas serve` and how it is answered
 * now, each over real HTTP to a real daemon process.
 */
describe('noauth serves this host only (DNS rebinding, cross-origin pages)', () => {
  let daemon: DaemonProcess;
  let api: ApiClient;
  let port = '';

  beforeAll(async () => {
    daemon = await DaemonProcess.start();
    api = daemon.client();
    port = new URL(daemon.url).port;
    await api.port('rebind-vm', 'rb0');
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
  });

  it('refuses a Host that is not a loopback name with a 403 NeutronError, whatever the path and method', async () => {
    const before = await everything(api);
    for (const host of ['evil.example', `evil.example:${port}`, `rebind.attacker.test:${port}`, '192.0.2.1', `[2001:db8::1]:${port}`, 'localhost.evil.example', '127.0.0.1.evil.example']) {
      for (const [method, path, body] of [
        ['GET', '/v2.0/ports'], ['GET', '/metrics'], ['GET', '/'], ['GET', '/nowhere'], ['GET', '/v2.0/quotas'],
        ['POST', '/v2.0/ports', JSON.stringify({ port: { name: 'rebound', 'binding:profile': { interface: 'rb9' } } })],
        ['PUT', '/v2.0/quotas/default', JSON.stringify({ quota: { port: 1 } })],
      ] as const) {
        const response = await http(daemon.url, path, {
          method, headers: { host: host, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body } : {}),
        });
        expect(response.status, `${method} ${path} Host: ${host} -> ${response.text}`).toBe(403);
        expect(isNeutronError(response.json), response.text).toBe(true);
      }
    }
    expect(await everything(api)).toEqual(before);
  });

  it('serves loopback Host values, with or without the port', async () => {
    for (const host of ['localhost', `localhost:${port}`, 'LOCALHOST', '127.0.0.1', `127.0.0.1:${port}`, '127.8.9.10', `[::1]:${port}`, '[::1]', '[::ffff:127.0.0.1]']) {
      const response = await http(daemon.url, '/v2.0/ports', { headers: { host } });
      expect(response.status, `Host: ${host} -> ${response.text}`).toBe(200);
    }
  });

  it('refuses a page of another origin (Origin, Sec-Fetch-Site) and never sends CORS headers', async () => {
    const before = await everything(api);
    const create = JSON.stringify({ port: { name: 'csrf', 'binding:profile': { interface: 'rb8' } } });
    for (const origin of ['http://evil.example', `http://evil.example:${port}`, 'null', `http://localhost:${Number(port) + 1}`, `https://127.0.0.1:${port}`, 'not a url']) {
      for (const method of ['GET', 'POST', 'DELETE']) {
        const response = await http(daemon.url, method === 'DELETE' ? '/v2.0/ports/4a1c1f0e-0000-4000-8000-000000000000' : '/v2.0/ports', {
          method, headers: { origin, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) }, ...(method === 'POST' ? { body: create } : {}),
        });
        expect(response.status, `${method} Origin: ${origin} -> ${response.text}`).toBe(403);
        expect(isNeutronError(response.json)).toBe(true);
        expect(Object.keys(response.headers).filter((name) => name.startsWith('access-control-'))).toEqual([]);
      }
    }
    for (const site of ['cross-site', 'same-site']) {
      const response = await http(daemon.url, '/metrics', { headers: { 'sec-fetch-site': site } });
      expect(response.status).toBe(403);
      expect(isNeutronError(response.json)).toBe(true);
    }
    // A preflight finds no CORS: the browser never sends the request itself.
    const preflight = await http(daemon.url, '/v2.0/ports', {
      method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBeGreaterThanOrEqual(400);
    expect(Object.keys(preflight.headers).filter((name) => name.startsWith('access-control-'))).toEqual([]);
    // The one cross-origin request a page can send without a preflight: a "simple" text/plain POST.
    const simple = await http(daemon.url, '/v2.0/ports', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: create });
    expect(simple.status).toBe(415);
    expect(await everything(api)).toEqual(before);

    // The daemon's own origin and a browser's address bar are fine.
    expect((await http(daemon.url, '/v2.0/ports', { headers: { origin: `http://127.0.0.1:${port}` } })).status).toBe(200);
    expect((await http(daemon.url, '/v2.0/ports', { headers: { 'sec-fetch-site': 'none' } })).status).toBe(200);
    expect((await http(daemon.url, '/v2.0/ports', { headers: { 'sec-fetch-site': 'same-origin' } })).status).toBe(200);
  });
});

describe('token auth: any Host is served with a token, and conflicts name only what the caller may see', () => {
  let daemon: DaemonProcess;
  let dir: string;
  let admin: ApiClient, alpha: ApiClient;
  const ids = { alphaPort: '', alphaVm: '', betaMirror: '', betaService: '' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tapas-hardening-'));
    const tokens = join(dir, 'tokens.json');
    writeFileSync(tokens, JSON.stringify({
      tokens: [
        { token: 'admin-token-0123456789', project_id: 'ops', roles: ['admin'] },
        { token: 'alpha-token-0123456789', project_id: 'alpha', roles: ['member'] },
      ],
    }), { mode: 0o600 });
    daemon = await DaemonProcess.start({ args: ['--tokens', tokens] });
    admin = daemon.client({ 'x-auth-token': 'admin-token-0123456789' });
    alpha = daemon.client({ 'x-auth-token': 'alpha-token-0123456789' });
    ids.alphaPort = (await admin.port('alpha-monitor', 'hx0', undefined, { project_id: 'alpha' })).id;
    ids.alphaVm = (await admin.port('alpha-vm', 'hx1', undefined, { project_id: 'alpha' })).id;
    const betaVm = (await admin.port('beta-vm', 'hx2', undefined, { project_id: 'beta' })).id;
    ids.betaMirror = (await admin.create(TM, {
      tap_mirror: { project_id: 'beta', port_id: betaVm, remote_ip: '192.0.2.50', mirror_type: 'gre', directions: { IN: 40 } },
    })).id;
    // The operator set up a service of project beta on a port of alpha.
    ids.betaService = (await admin.create(TS, { tap_service: { project_id: 'beta', port_id: ids.alphaPort } })).id;
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves a token holder whatever the Host (the token is the proof)', async () => {
    const response = await http(daemon.url, '/v2.0/ports', { headers: { host: 'tapas.example:9696', 'x-auth-token': 'admin-token-0123456789' } });
    expect(response.status).toBe(200);
  });

  it('a tunnel id in use by another project is a 409 that does not name that project\'s mirror', async () => {
    const taken = await alpha.post(TM, {
      tap_mirror: { port_id: ids.alphaVm, remote_ip: '192.0.2.50', mirror_type: 'gre', directions: { IN: 40 } },
    });
    expect(taken.status).toBe(409);
    expect(taken.body.NeutronError.type).toBe('TapMirrorTunnelIdInUse');
    expect(taken.body.NeutronError.message).not.toContain(ids.betaMirror);
    expect(taken.body.NeutronError.message).toContain('another project');
    expect(taken.body.NeutronError.message).toContain('Tunnel id 40');
    // Its spelling as an IPv4-mapped IPv6 address is the same remote.
    const mapped = await alpha.post(TM, {
      tap_mirror: { port_id: ids.alphaVm, remote_ip: '::ffff:192.0.2.50', mirror_type: 'gre', directions: { OUT: 40 } },
    });
    expect(mapped.status).toBe(409);
    expect(mapped.body.NeutronError.message).not.toContain(ids.betaMirror);

    // The admin sees every project: the mirror is named.
    const adminTaken = await admin.post(TM, {
      tap_mirror: { port_id: ids.alphaVm, remote_ip: '192.0.2.50', mirror_type: 'gre', directions: { OUT: 40 } },
    });
    expect(adminTaken.status).toBe(409);
    expect(adminTaken.body.NeutronError.message).toContain(ids.betaMirror);
  });

  it('a port already receiving another project\'s tap service is a 409 that does not name that service', async () => {
    const taken = await alpha.post(TS, { tap_service: { port_id: ids.alphaPort } });
    expect(taken.status).toBe(409);
    expect(taken.body.NeutronError.message).not.toContain(ids.betaService);
    expect(taken.body.NeutronError.message).toContain('another project');
    const adminTaken = await admin.post(TS, { tap_service: { port_id: ids.alphaPort } });
    expect(adminTaken.status).toBe(409);
    expect(adminTaken.body.NeutronError.message).toContain(ids.betaService);
  });
});

describe('bad input and odd HTTP are 4xx NeutronErrors, never 5xx or another body', () => {
  let daemon: DaemonProcess;
  let api: ApiClient;
  let host = '';
  const ids = { monitor: '', vm: '', spare: '', service: '', flow: '', mirror: '' };

  beforeAll(async () => {
    daemon = await DaemonProcess.start();
    api = daemon.client();
    host = new URL(daemon.url).host;
    ids.monitor = (await api.port('hard-monitor', 'hd0')).id;
    ids.vm = (await api.port('vm', 'hd1')).id;
    ids.spare = (await api.port('spare', 'hd3')).id;
    ids.service = (await api.create(TS, { tap_service: { name: 'hard-ts', port_id: ids.monitor } })).id;
    ids.flow = (await api.create(TF, { tap_flow: { source_port: ids.vm, tap_service_id: ids.service, direction: 'IN' } })).id;
    ids.mirror = (await api.create(TM, {
      tap_mirror: { port_id: ids.vm, remote_ip: '192.0.2.77', mirror_type: 'gre', directions: { IN: 5 } },
    })).id;
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
  });

  const expectNeutron = (response: { status: number; json?: unknown; body?: unknown; text?: string }, status: number) => {
    const body = 'json' in response ? response.json : response.body;
    expect(response.status, JSON.stringify(body ?? response.text)).toBe(status);
    expect(isNeutronError(body), JSON.stringify(body ?? response.text)).toBe(true);
  };

  it('JSON nested thousands deep (16 KB) is a 400 on create, update and quotas, before validation', async () => {
    const deep = `${'['.repeat(8000)}${']'.repeat(8000)}`;
    for (const [method, path, body] of [
      ['POST', TS, `{"tap_service": {"port_id": "${ids.monitor}", "name": ${deep}}}`],
      ['POST', TF, `{"tap_flow": {"name": ${deep}}}`],
      ['POST', TM, `{"tap_mirror": {"description": ${deep}}}`],
      ['POST', '/v2.0/ports', `{"port": {"name": ${deep}}}`],
      ['PUT', `${TS}/${ids.service}`, `{"tap_service": {"name": ${deep}}}`],
      ['PUT', `${TM}/${ids.mirror}`, `{"tap_mirror": {"description": ${deep}}}`],
      ['PUT', '/v2.0/quotas/P', `{"quota": {"tap_flow": ${deep}}}`],
      ['PUT', '/v2.0/quotas/P', `{"quota": ${deep}}`],
      ['POST', TS, `${'{"a":'.repeat(3000)}1${'}'.repeat(3000)}`],
    ] as const) {
      const response = await api.request(method, path, body);
      expectNeutron(response, 400);
      expect(response.body.NeutronError.message).toContain('nest more than 64 deep');
    }
    // Nesting within the limit still reaches the validator, and is worded as its failure.
    const shallow = await api.request('PUT', `${TS}/${ids.service}`, `{"tap_service": {"name": ${'['.repeat(60)}${']'.repeat(60)}}}`);
    expectNeutron(shallow, 400);
    expect(shallow.body.NeutronError.message).toContain('Invalid input for name');
  });

  it('a malformed percent-encoding, an id over 100 characters, a missing Host, 417 and 431 are NeutronErrors', async () => {
    expectNeutron(await api.get(`${TS}/%E0%A4%A`), 400);
    expectNeutron(await api.get(`${TS}/%zz`), 400);
    expectNeutron(await api.get(`${TS}/${'a'.repeat(101)}`), 404);
    expectNeutron(await api.delete(`${TF}/${'f'.repeat(500)}`), 404);
    expectNeutron(await api.request('PUT', `/v2.0/quotas/${'p'.repeat(200)}`, { quota: { port: 1 } }), 404);
    expectNeutron(await rawExchange(daemon.url, 'GET /v2.0/ports HTTP/1.1\r\n\r\n'), 400);
    expectNeutron(await rawExchange(daemon.url, 'GET /v2.0/ports HTTP/1.0\r\n\r\n'), 400);
    expectNeutron(await http(daemon.url, '/v2.0/ports', { headers: { expect: 'the-unexpected' } }), 417);
    expectNeutron(await http(daemon.url, '/v2.0/ports', { headers: { 'x-big': 'b'.repeat(20_000) } }), 431);
    expectNeutron(await rawExchange(daemon.url, `GET /v2.0/ports?name=${'x'.repeat(20_000)} HTTP/1.1\r\nHost: ${host}\r\n\r\n`), 431);
  });

  it('malformed HTTP framing gets a NeutronError written to the socket, and the daemon keeps serving', async () => {
    const framing = [
      'GARBAGE\r\n\r\n',
      'GET /v2.0/ports HTTP/9.9\r\nHost: x\r\n\r\n',
      `POST ${TS} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello`,
      `POST ${TS} HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n`,
      `POST ${TS} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`,
      `GET /v2.0/ports HTTP/1.1\r\nHost: ${host}\r\nBad Header Name: x\r\n\r\n`,
      `GET /v2.0/ports HTTP/1.1\r\nHost: ${host}\r\nX-Nul: a\u0000b\r\n\r\n`,
      `GET /v2.0/ports HTTP/1.1\r\nHost: ${host}\r\n folded: header\r\n\r\n`,
      `CONNECT ${host} HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
    ];
    for (const bytes of framing) {
      const response = await rawExchange(daemon.url, bytes);
      expect(response.status, `${JSON.stringify(bytes)} -> ${response.text}`).toBeGreaterThanOrEqual(400);
      expect(response.status, JSON.stringify(bytes)).toBeLessThan(500);
      expect(isNeutronError(response.json), `${JSON.stringify(bytes)} -> ${response.text}`).toBe(true);
    }
    expect((await api.get('/v2.0/ports')).status).toBe(200);
  });

  it('the .json suffix is taken off the path only, never off the query string', async () => {
    const dotted = (await api.port('vm.json', 'hd2')).id;
    for (const path of ['/v2.0/ports?name=vm.json', '/v2.0/ports.json?name=vm.json', '/v2.0/ports?fields=id&name=vm.json']) {
      const byName = await api.get(path);
      expect(byName.status).toBe(200);
      expect(byName.body.ports.map((port: { id: string }) => port.id), path).toEqual([dotted]);
    }
    const plain = await api.get('/v2.0/ports?name=vm');
    expect(plain.body.ports.map((port: { id: string }) => port.id)).toEqual([ids.vm]);
    expect((await api.get(`/v2.0/ports/${dotted}.json`)).body.port.name).toBe('vm.json');
    expect((await api.delete(`/v2.0/ports/${dotted}`)).status).toBe(204);
  });

  it('a quota URL without a project is refused, and nothing is stored for the empty project', async () => {
    const before = await everything(api);
    expectNeutron(await api.put('/v2.0/quotas/', { quota: { port: 5 } }), 400);
    expectNeutron(await api.get('/v2.0/quotas/'), 400);
    expectNeutron(await api.delete('/v2.0/quotas/'), 400);
    expect(await everything(api)).toEqual(before);
  });

  it('lone surrogates and bytes that are not UTF-8 are refused, not silently replaced', async () => {
    const before = await everything(api);
    for (const [method, path, body] of [
      ['POST', TS, `{"tap_service": {"port_id": "${ids.spare}", "name": "a\\ud800b"}}`],
      ['POST', TS, `{"tap_service": {"port_id": "${ids.spare}", "description": "\\udc00"}}`],
      ['PUT', `${TS}/${ids.service}`, '{"tap_service": {"name": "x\\ud83d"}}'],
      ['PUT', `${TM}/${ids.mirror}`, '{"tap_mirror": {"description": "\\ude00\\ud83d"}}'],
      ['PUT', '/v2.0/ports/' + ids.vm, '{"port": {"name": "\\ud800\\ud800"}}'],
      ['PUT', '/v2.0/quotas/p', '{"quota": {"\\ud800": 2}}'],
    ] as const) {
      const response = await api.request(method, path, body);
      expectNeutron(response, 400);
      expect(response.body.NeutronError.message, body).toMatch(/UTF-16|Unrecognized/);
    }
    const notUtf8 = await http(daemon.url, `${TS}/${ids.service}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from([...Buffer.from('{"tap_service": {"name": "'), 0xff, 0xfe, 0xc3, ...Buffer.from('"}}')]),
    });
    expectNeutron(notUtf8, 400);
    expect(notUtf8.json.NeutronError.message).toContain('UTF-8');
    expect(await everything(api)).toEqual(before);

    // A well-formed pair is a character like any other, kept exactly.
    const emoji = await api.put(`${TS}/${ids.service}`, { tap_service: { name: 'ts \ud83d\ude00 é' } });
    expect(emoji.status).toBe(200);
    expect((await api.get(`${TS}/${ids.service}`)).body.tap_service.name).toBe('ts \u{1F600} é');
    await api.put(`${TS}/${ids.service}`, { tap_service: { name: 'hard-ts' } });
  });

  it('a tap mirror to a broadcast, multicast, unspecified or loopback address is a 400 saying which', async () => {
    const before = await everything(api);
    const refused: Record<string, RegExp> = {
      '255.255.255.255': /broadcast/,
      '224.0.0.5': /multicast/, '239.255.255.250': /multicast/, 'ff02::1': /multicast/, 'FF05::1:3': /multicast/,
      '0.0.0.0': /unspecified/, '::': /unspecified/, '0:0::0': /unspecified/,
      '127.0.0.1': /loopback/, '127.200.1.1': /loopback/, '::1': /loopback/, '::ffff:127.0.0.1': /loopback/,
    };
    for (const [remote, why] of Object.entries(refused)) {
      const response = await api.post(TM, { tap_mirror: { port_id: ids.vm, remote_ip: remote, mirror_type: 'gre', directions: { OUT: 900 } } });
      expectNeutron(response, 400);
      expect(response.body.NeutronError.message).toContain('Invalid input for remote_ip');
      expect(response.body.NeutronError.message).toMatch(why);
    }
    expect(await everything(api)).toEqual(before);
  });

  it('an IPv4-mapped IPv6 remote is its IPv4 address: the same tunnel id is a 409, and the mirror shows IPv4', async () => {
    for (const remote of ['::ffff:192.0.2.77', '::FFFF:C000:024D', '0:0:0:0:0:ffff:192.0.2.77']) {
      const response = await api.post(TM, { tap_mirror: { port_id: ids.vm, remote_ip: remote, mirror_type: 'gre', directions: { OUT: 5 } } });
      expectNeutron(response, 409);
      expect(response.body.NeutronError.type).toBe('TapMirrorTunnelIdInUse');
      expect(response.body.NeutronError.message).toContain('192.0.2.77');
    }
    const created = await api.create(TM, { tap_mirror: { port_id: ids.vm, remote_ip: '::ffff:198.51.100.9', mirror_type: 'gre', directions: { OUT: 5 } } });
    expect(created.remote_ip).toBe('198.51.100.9');
    expectNeutron(await api.post(TM, { tap_mirror: { port_id: ids.vm, remote_ip: '198.51.100.9', mirror_type: 'gre', directions: { IN: 5 } } }), 409);
    expect((await api.delete(`${TM}/${created.id}`)).status).toBe(204);
  });
});

describe('a full disk is a 507 saying so, and the daemon carries on once there is room', () => {
  const root = process.getuid?.() === 0;
  let mount = '';
  let daemon: DaemonProcess | undefined;

  afterAll(async () => {
    await daemon?.stop();
    if (mount) {
      spawnSync('umount', [mount]);
      rmSync(mount, { recursive: true, force: true });
    }
  });

  it.skipIf(!root)('fills a small tmpfs under the store: writes are 507 InsufficientStorage, reads still work', async () => {
    mount = mkdtempSync(join(tmpdir(), 'tapas-full-'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mount]);
    if (mounted.status !== 0) throw new Error(`cannot mount a tmpfs: ${mounted.stderr.toString()}`);
    const stateDir = join(mount, 'state');
    mkdirSync(stateDir);
    daemon = await DaemonProcess.start({ stateDir });
    const api = daemon.client();
    const vm = await api.port('disk-vm', 'df0');
    // Fill what is left of the file system.
    const filler = join(mount, 'filler');
    spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k']);

    for (const [method, path, body] of [
      ['POST', '/v2.0/ports', { port: { name: 'no-room', 'binding:profile': { interface: 'df1' } } }],
      ['POST', TM, { tap_mirror: { port_id: vm.id, remote_ip: '192.0.2.9', mirror_type: 'gre', directions: { IN: 1 } } }],
      ['PUT', `/v2.0/ports/${vm.id}`, { port: { description: 'd'.repeat(1000) } }],
      ['PUT', '/v2.0/quotas/full', { quota: { port: 3 } }],
    ] as const) {
      const response = await api.request(method, path, body);
      expect(response.status, JSON.stringify(response.body)).toBe(507);
      expect(isNeutronError(response.body)).toBe(true);
      expect(response.body.NeutronError.message).toMatch(/disk .* is full/);
    }
    expect((await api.get('/v2.0/ports')).body.ports.map((port: { name: string }) => port.name)).toEqual(['disk-vm']);

    rmSync(filler);
    expect((await api.post('/v2.0/ports', { port: { name: 'room-again', 'binding:profile': { interface: 'df1' } } })).status).toBe(201);
    expect(daemon.running).toBe(true);
  });
});
