import { isIPv4, isIPv6 } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CONTENT_SECURITY_POLICY, prefersHtml } from '../../src/api/web-routes.js';
import { SseParser } from '../../web/src/sse.js';
import { isIPv4 as shimIPv4, isIPv6 as shimIPv6 } from '../../web/src/shims/net.js';
import { checkTapFlow, checkTapMirror, checkTapService, type Checked } from '../../web/src/validate.js';
import { DaemonProcess, type ApiClient } from './daemon-process.js';

const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';
const TM = '/v2.0/taas/tap_mirrors';
const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8';

describe('GET / for browsers and for API clients', () => {
  it('gives the page only to a client that prefers text/html', () => {
    expect(prefersHtml(BROWSER_ACCEPT)).toBe(true);
    expect(prefersHtml('text/html')).toBe(true);
    expect(prefersHtml(undefined)).toBe(false);
    expect(prefersHtml('application/json')).toBe(false); // the OpenStack client (keystoneauth, neutronclient)
    expect(prefersHtml('*/*')).toBe(false); // curl, python-requests
    expect(prefersHtml('application/json, text/html')).toBe(false);
    expect(prefersHtml('application/json;q=0.5, text/html')).toBe(true);
    expect(prefersHtml('text/html;q=0')).toBe(false);
  });

  it('has a Content-Security-Policy of this origin only, without inline script or style', () => {
    expect(CONTENT_SECURITY_POLICY).not.toContain('unsafe');
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "img-src 'self'", "frame-ancestors 'none'"]) {
      expect(CONTENT_SECURITY_POLICY).toContain(directive);
    }
  });
});

describe('the page\'s own code', () => {
  it('parses Server-Sent Events split anywhere, as the stats stream sends them', () => {
    const text = 'event: stats\ndata: {"a":1}\n\n: comment\r\nevent: stats\r\ndata: {"b":\r\ndata: 2}\r\n\r\ndata: plain\n\n';
    for (const size of [1, 2, 3, 7, text.length]) {
      const parser = new SseParser();
      const events = [];
      for (let i = 0; i < text.length; i += size) events.push(...parser.push(text.slice(i, i + size)));
      expect(events).toEqual([
        { event: 'stats', data: '{"a":1}' },
        { event: 'stats', data: '{"b":\n2}' },
        { event: 'message', data: 'plain' },
      ]);
    }
  });

  it('tells IP addresses as node:net does (the API\'s check), in the browser bundle\'s shim', () => {
    const samples = [
      '192.0.2.1', '0.0.0.0', '255.255.255.255', '256.1.1.1', '01.2.3.4', '1.2.3', '1.2.3.4.5', ' 1.2.3.4', '1.2.3.4 ',
      '::', '::1', '2001:db8::1', '2001:DB8:0:0:0:0:0:1', '::ffff:192.0.2.1', '1::2::3', 'fe80::1%eth0', 'fe80::1%', ':::',
      '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::', '::1.2.3.4', '12345::', 'g::1', '', 'localhost',
    ];
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const alphabet = '0123456789abcdef:.%';
    for (let i = 0; i < 3000; i++) {
      samples.push(Array.from({ length: 1 + Math.floor(random() * 20) }, () => alphabet[Math.floor(random() * alphabet.length)]).join(''));
    }
    for (const sample of samples) {
      expect([sample, shimIPv4(sample)]).toEqual([sample, isIPv4(sample)]);
      expect([sample, shimIPv6(sample)]).toEqual([sample, isIPv6(sample)]);
    }
  });
});

/**
 * The page's forms refuse what the API refuses, with the API's message: each
 * bad input is checked by the form's code and sent to a daemon.
 */
describe('the page\'s form checks against the API', () => {
  let daemon: DaemonProcess;
  let api: ApiClient;
  let monitor: string, vm: string, service: string;

  beforeAll(async () => {
    daemon = await DaemonProcess.start();
    api = daemon.client();
    monitor = (await api.port('web-monitor', 'wpm0')).id;
    vm = (await api.port('web-vm', 'wpv0')).id;
    service = (await api.create(TS, { tap_service: { name: 'ts', port_id: monitor } })).id;
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
  });

  const long = (n: number) => 'x'.repeat(n);

  it('gives the API\'s message for each input the API refuses, and sends what it accepts', async () => {
    const flow = { name: '', description: '', source_port: '', tap_service_id: '', direction: 'BOTH', vlan_filter: '' };
    const mirror = { name: '', description: '', port_id: '', mirror_type: 'gre', remote_ip: '', in_id: '', out_id: '' };
    const cases: Array<[string, Checked]> = [
      [TS, checkTapService({ name: long(256), description: '', port_id: monitor })],
      [TS, checkTapService({ name: '', description: long(1025), port_id: monitor })],
      [TS, checkTapService({ name: 'x', description: '', port_id: '' })],
      [TF, checkTapFlow({ ...flow, source_port: vm, tap_service_id: service, vlan_filter: '5-1' })],
      [TF, checkTapFlow({ ...flow, source_port: vm, tap_service_id: service, vlan_filter: '1,,2' })],
      [TF, checkTapFlow({ ...flow, source_port: vm, tap_service_id: service, vlan_filter: '4095' })],
      [TF, checkTapFlow({ ...flow, source_port: vm, tap_service_id: '' })],
      [TM, checkTapMirror({ ...mirror, port_id: vm, remote_ip: '192.0.2.300', in_id: '1' })],
      [TM, checkTapMirror({ ...mirror, port_id: vm, remote_ip: 'fe80::1%eth0', in_id: '1' })],
      [TM, checkTapMirror({ ...mirror, port_id: vm, remote_ip: '192.0.2.1' })],
      [TM, checkTapMirror({ ...mirror, port_id: vm, remote_ip: '192.0.2.1', in_id: 'ten' })],
      [TM, checkTapMirror({ ...mirror, port_id: vm, remote_ip: '192.0.2.1', in_id: '4294967296' })],
      [TM, checkTapMirror({ ...mirror, port_id: vm, remote_ip: '192.0.2.1', mirror_type: 'erspanv1', out_id: '1024' })],
      [TM, checkTapMirror({ ...mirror, port_id: '', remote_ip: '192.0.2.1', in_id: '1' })],
    ];
    for (const [path, checked] of cases) {
      // What the form would have sent had it not refused it, sent anyway.
      const kind = path === TS ? 'tap_service' : path === TF ? 'tap_flow' : 'tap_mirror';
      const answer = await api.post(path, { [kind]: checked.body });
      expect([checked.body, checked.error, answer.status]).toEqual([checked.body, answer.body.NeutronError?.message, 400]);
    }

    const accepted = [
      [TF, checkTapFlow({ ...flow, name: '<img src=x onerror=alert(1)>', source_port: vm, tap_service_id: service, direction: 'IN', vlan_filter: '1-5,9' })],
      [TM, checkTapMirror({ ...mirror, port_id: vm, remote_ip: ' 2001:db8::7 ', mirror_type: 'erspanv1', in_id: '0', out_id: '1023' })],
    ] as const;
    for (const [path, checked] of accepted) {
      expect(checked.error).toBeUndefined();
      const kind = path === TF ? 'tap_flow' : 'tap_mirror';
      const answer = await api.post(path, { [kind]: checked.body });
      expect([answer.status, answer.body]).toEqual([201, expect.anything()]);
    }
  });

  it('serves the page to a browser, with its headers, and the version document to everyone else', async () => {
    const page = await api.request('GET', '/', undefined, { accept: BROWSER_ACCEPT });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('vary')).toContain('Accept');
    expect(page.body).toContain('<script type="module" src="/web/app.js"></script>');
    expect(page.body).not.toMatch(/<script>|<style|style=/);

    for (const accept of ['application/json', '*/*']) {
      const versions = await api.request('GET', '/', undefined, { accept });
      expect(versions.body.versions[0].id).toBe('v2.0');
    }
    const script = await api.request('GET', '/web/app.js', undefined, { accept: '*/*' });
    expect([script.status, script.headers.get('content-type'), script.headers.get('content-security-policy')])
      .toEqual([200, 'text/javascript; charset=utf-8', CONTENT_SECURITY_POLICY]);
    expect((await api.get('/web/app.css')).headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await api.get('/web/favicon.svg')).headers.get('content-type')).toBe('image/svg+xml');
    // Only the built files: nothing else of the file system, not even the page under another name.
    for (const path of ['/web/index.html', '/web/.stamp', '/web/..%2Fcli%2Fmain.js', '/web/%2e%2e%2fpackage.json', '/web/nothing.js']) {
      expect([path, (await api.get(path)).status]).toEqual([path, 404]);
    }
  });

  it('tells the page who it acts for: noauth is the local admin', async () => {
    expect((await api.get('/web/session')).body).toEqual({ session: { project_id: 'default', roles: ['admin'], admin: true, can_write: true } });
  });
});

describe('the page\'s session in token mode', () => {
  let daemon: DaemonProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tapas-web-'));
    const tokens = join(dir, 'tokens.json');
    writeFileSync(tokens, JSON.stringify({
      tokens: [
        { token: 'reader-token-0123', project_id: 'alpha', roles: ['reader'] },
        { token: 'member-token-0123', project_id: 'alpha', roles: ['member'] },
      ],
    }), { mode: 0o600 });
    daemon = await DaemonProcess.start({ args: ['--tokens', tokens] });
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    rmSync(dir, { recursive: true, force: true });
  });

  it('says a token is needed (200, no session) when none is sent, refuses a wrong one (401), and names the roles of a good one', async () => {
    expect((await daemon.client().get('/web/session')).body).toEqual({ session: null });
    expect((await daemon.client({ 'x-auth-token': 'not-a-token-at-all' }).get('/web/session')).status).toBe(401);
    expect((await daemon.client({ 'x-auth-token': 'reader-token-0123' }).get('/web/session')).body.session)
      .toEqual({ project_id: 'alpha', roles: ['reader'], admin: false, can_write: false });
    expect((await daemon.client({ 'x-auth-token': 'member-token-0123' }).get('/web/session')).body.session)
      .toEqual({ project_id: 'alpha', roles: ['member'], admin: false, can_write: true });
    // The page itself is public: it holds no data.
    expect((await daemon.client().request('GET', '/', undefined, { accept: 'text/html' })).status).toBe(200);
  });
});
