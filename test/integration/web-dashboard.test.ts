import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, until, type ApiClient } from '../api/daemon-process.js';
import { chromiumInstalled, launchChromium, openPage, type WatchedPage } from '../helpers/browser.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';

const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';
const TM = '/v2.0/taas/tap_mirrors';
// The lab's own addresses, only ever inside its namespaces.
const VM_HOST_SIDE = '198.18.41.1';
const VM_IP = '198.18.41.2';
const HOST_TO_COLLECTOR = '198.18.42.1';
const COLLECTOR_IP = '198.18.42.2';
const MARKUP_NAME = '<img src=x onerror=alert(document.domain)>';
const MARKUP_DESCRIPTION = '<svg onload=alert(2)></svg><script>alert(3)</script><b>bold</b>';

// In CI the browser tests always run (setup installs chromium); elsewhere they need root and chromium.
const runBrowserTests = netnsAvailable && (chromiumInstalled || process.env.CI === 'true');

/**
 * The operator's page in a real headless Chromium against a daemon that
 * mirrors real traffic between namespaces of the test's own: what the page
 * shows is what the store holds, its rates follow a ping flood, a removed
 * interface turns its flow red with the reason, its forms change the API's
 * lists, a reader gets no actions, and markup in a name is only text.
 */
describe.skipIf(!runBrowserTests)(`the web page in headless Chromium (${netnsSkipReason}; Debian's chromium)`, () => {
  const lab = new Lab('web');
  let host: string, vm: string;
  let daemon: DaemonProcess;
  let api: ApiClient;
  let browser: Browser;
  let watched: WatchedPage;
  const ids = { vmPort: '', vm2Port: '', monitorPort: '', sparePort: '', remotePort: '', service: '', flow: '', markupFlow: '', remoteFlow: '', mirror: '', lostMirror: '' };

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    const monitor = await lab.namespace('mon');
    const collector = await lab.namespace('col');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.veth(host, 'monh', monitor, 'mon0');
    await lab.veth(host, 'colh', collector, 'col0');
    await lab.veth(host, 'spareh', monitor, 'spare0');
    await lab.veth(host, 'vm2h', vm, 'vm1');
    await lab.exec(host, 'ip', ['addr', 'add', `${VM_HOST_SIDE}/24`, 'dev', 'vmh']);
    await lab.exec(vm, 'ip', ['addr', 'add', `${VM_IP}/24`, 'dev', 'vm0']);
    await lab.exec(host, 'ip', ['addr', 'add', `${HOST_TO_COLLECTOR}/24`, 'dev', 'colh']);
    await lab.exec(collector, 'ip', ['addr', 'add', `${COLLECTOR_IP}/24`, 'dev', 'col0']);

    daemon = await DaemonProcess.start();
    api = daemon.client();
    ids.vmPort = (await api.port('vm1-port', 'vmh', host)).id;
    ids.monitorPort = (await api.port('ids-port', 'monh', host)).id;
    ids.sparePort = (await api.port('spare-port', 'spareh', host)).id;
    ids.vm2Port = (await api.port('vm2-port', 'vm2h', host)).id;
    // A port on a second host, which has no agent: the page groups by host once there are several.
    ids.remotePort = (await api.port('vm9-port', 'vm9h', undefined, { 'binding:host_id': 'compute-2' })).id;
    ids.service = (await api.create(TS, { tap_service: { name: 'ids', port_id: ids.monitorPort } })).id;
    ids.flow = (await api.create(TF, { tap_flow: { name: 'vm1-both', source_port: ids.vmPort, tap_service_id: ids.service, direction: 'BOTH' } })).id;
    ids.markupFlow = (await api.create(TF, {
      tap_flow: { name: MARKUP_NAME, description: MARKUP_DESCRIPTION, source_port: ids.vm2Port, tap_service_id: ids.service, direction: 'OUT', vlan_filter: '10-20' },
    })).id;
    ids.remoteFlow = (await api.create(TF, { tap_flow: { name: 'vm9-in', source_port: ids.remotePort, tap_service_id: ids.service, direction: 'IN' } })).id;
    ids.mirror = (await api.create(TM, {
      tap_mirror: { name: 'to-collector', port_id: ids.vmPort, remote_ip: COLLECTOR_IP, mirror_type: 'erspanv1', directions: { IN: 101, OUT: 102 } },
    })).id;
    ids.lostMirror = (await api.create(TM, {
      tap_mirror: { name: 'to-nowhere', port_id: ids.vmPort, remote_ip: '203.0.113.9', mirror_type: 'gre', directions: { IN: 9 } },
    })).id;
    await until(api, `${TF}/${ids.flow}`, (body) => body.tap_flow.status === 'ACTIVE');
    await until(api, `${TM}/${ids.mirror}`, (body) => body.tap_mirror.status === 'ACTIVE');
    await until(api, `${TM}/${ids.lostMirror}`, (body) => body.tap_mirror.status === 'ERROR');

    browser = await launchChromium();
    watched = await openPage(browser);
  });

  afterAll(async () => {
    await browser?.close();
    await daemon?.stop();
    daemon?.removeState();
    await lab.cleanup();
  });

  const node = (key: string) => watched.page.locator(`[data-node="${key}"]`);
  /** The page, loaded (each test can run on its own, -t). */
  async function loaded() {
    if (!watched.page.url().startsWith(daemon.url)) await watched.page.goto(`${daemon.url}/`);
    return watched.page;
  }
  const rate = async (row: string) => Number(await watched.page.locator(`[data-row="${row}"] [data-col="pps"]`).getAttribute('data-value') || 0);

  it('draws every resource of the store, by host, coloured by its status, with the reason on hover', async () => {
    const { page } = watched;
    const response = await page.goto(`${daemon.url}/`);
    const csp = response!.headers()['content-security-policy']!;
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('unsafe-inline');

    const lists = {
      port: (await api.get('/v2.0/ports')).body.ports,
      tap_service: (await api.get(TS)).body.tap_services,
      tap_flow: (await api.get(TF)).body.tap_flows,
      tap_mirror: (await api.get(TM)).body.tap_mirrors,
    };
    for (const [kind, items] of Object.entries(lists)) {
      await expect.poll(() => page.locator(`[data-node^="${kind}:"]`).count()).toBe(items.length);
      for (const item of items) {
        await expect.poll(() => node(`${kind}:${item.id}`).getAttribute('data-status'), { timeout: 5000 }).toBe(item.status);
      }
    }
    await expect.poll(() => node(`remote:${COLLECTOR_IP}`).count()).toBe(1);
    // Which port feeds which service, and the way the copies go.
    for (const edge of [`port:${ids.vmPort}>tap_flow:${ids.flow}`, `tap_flow:${ids.flow}>tap_service:${ids.service}`,
      `tap_service:${ids.service}>port:${ids.monitorPort}`, `port:${ids.vmPort}>tap_mirror:${ids.mirror}`, `tap_mirror:${ids.mirror}>remote:${COLLECTOR_IP}`]) {
      expect(await page.locator(`[data-edge="${edge}"]`).count(), edge).toBe(1);
    }
    expect(await node(`tap_flow:${ids.flow}`).textContent()).toContain('BOTH');
    expect(await node(`tap_mirror:${ids.mirror}`).textContent()).toContain('ERSPAN II IN=101 OUT=102');
    // Two hosts: this one, and compute-2, whose missing agent is shown.
    expect(await page.locator('[data-host]').count()).toBe(2);
    expect(await node('agent:compute-2').textContent()).toContain('no agent');

    // An ERROR is red, and says why on hover.
    const lost = (await api.get(`${TM}/${ids.lostMirror}`)).body.tap_mirror;
    expect(await node(`tap_mirror:${ids.lostMirror}`).locator('rect.stripe').evaluate((rect) => getComputedStyle(rect).fill)).toBe('rgb(255, 93, 93)');
    await node(`tap_mirror:${ids.lostMirror}`).hover();
    await expect.poll(() => page.locator('[role="tooltip"]').textContent()).toContain(lost.status_reason);
    await watched.screenshot('overview');
  });

  it('shows a ping flood in its flow\'s rate within 3 s, and in the mirror\'s', async () => {
    const page = await loaded();
    await node(`tap_flow:${ids.flow}`).click();
    await expect.poll(() => page.locator(`[data-row="tap_flow:${ids.flow}"]`).count()).toBe(1);
    expect(await rate(`tap_flow:${ids.flow}`)).toBeLessThan(50);

    const started = Date.now();
    // Bounded: 5,000 echo requests at 2 ms (about 10 s), all inside the lab's namespaces.
    const ping = lab.track(spawn('ip', ['netns', 'exec', vm, 'ping', '-q', '-c', '5000', '-i', '0.002', '-W', '1', VM_HOST_SIDE], { stdio: 'ignore' }));
    try {
      await expect.poll(() => rate(`tap_flow:${ids.flow}`), { timeout: 3000, interval: 100 }).toBeGreaterThan(200);
      const seenAfterMs = Date.now() - started;
      expect(seenAfterMs).toBeLessThan(3000);
      await expect.poll(() => rate(`tap_mirror:${ids.mirror}`), { timeout: 3000, interval: 100 }).toBeGreaterThan(200);
      await expect.poll(() => rate(`tap_mirror:${ids.mirror}:OUT`), { timeout: 3000, interval: 100 }).toBeGreaterThan(100);
      // The details of the selected flow follow too; let the charts draw some seconds of it.
      await expect.poll(() => page.locator('.details .big').first().textContent()).toMatch(/pkt\/s/);
      await page.mouse.move(640, 790);
      await sleep(6000);
      expect(await rate(`tap_flow:${ids.flow}`)).toBeGreaterThan(200);
      await watched.screenshot('live-rates');
    } finally {
      ping.kill('SIGINT');
    }
  });

  it('shows markup in names and descriptions as text, and runs none of it', async () => {
    const { page } = watched;
    watched.reset();
    await page.reload();
    const flow = node(`tap_flow:${ids.markupFlow}`);
    await expect.poll(() => flow.count()).toBe(1);
    await flow.hover();
    await expect.poll(() => page.locator('[role="tooltip"] .tooltip-name').textContent()).toBe(MARKUP_NAME);
    await flow.click();
    expect(await page.locator('.details-name').textContent()).toBe(MARKUP_NAME);
    expect(await page.locator('.details .description').textContent()).toBe(MARKUP_DESCRIPTION);
    await expect.poll(() => page.locator(`[data-row="tap_flow:${ids.markupFlow}"] .name`).textContent()).toContain(MARKUP_NAME);
    // The delete confirmation names it too, as text.
    await page.click('[data-action="delete"]');
    expect(await page.locator('[data-dialog="confirm-delete"] .quoted').textContent()).toBe(MARKUP_NAME);
    await page.locator('[data-dialog="confirm-delete"] button', { hasText: 'Cancel' }).click();
    await page.click('[data-action="create-tap_flow"]');
    expect(await page.locator('select[name="source_port"] option').allTextContents()).toEqual(expect.arrayContaining([expect.stringContaining('vm1-port')]));
    await page.locator('[data-dialog="create-tap_flow"] button', { hasText: 'Cancel' }).click();
    await sleep(1500);

    // Nothing ran: no element made of the markup, no dialog, no error, no CSP violation, nothing fetched from elsewhere.
    expect(await page.locator('img, svg svg, b, script:not([src="/web/app.js"])').count()).toBe(0);
    expect(watched.dialogs).toEqual([]);
    expect(watched.pageErrors).toEqual([]);
    expect(watched.consoleErrors).toEqual([]);
    expect(await watched.cspViolations()).toEqual([]);
    expect(watched.requests.filter((request) => !request.url.startsWith(`${daemon.url}/`))).toEqual([]);
    expect(await page.evaluate(() => document.cookie)).toBe('');
  });

  it('creates a tap service, a tap flow and a tap mirror through the forms, refusing bad input with the API\'s message, and deletes after a confirmation', async () => {
    const page = await loaded();
    const dialog = (name: string) => page.locator(`[data-dialog="${name}"]`);

    // A tap service on a mirrored port would loop: the API refuses it (409), and the form shows its message.
    await page.click('[data-action="create-tap_service"]');
    await dialog('create-tap_service').locator('input[name="name"]').fill('ts-form');
    await dialog('create-tap_service').locator('select[name="port_id"]').selectOption(ids.vmPort);
    await dialog('create-tap_service').locator('[data-action="submit"]').click();
    const refused = await api.post(TS, { tap_service: { name: 'ts-form', port_id: ids.vmPort } });
    expect(refused.status).toBe(409);
    await expect.poll(() => dialog('create-tap_service').locator('[data-testid="form-error"]').textContent()).toBe(refused.body.NeutronError.message);
    await dialog('create-tap_service').locator('select[name="port_id"]').selectOption(ids.sparePort);
    await dialog('create-tap_service').locator('[data-action="submit"]').click();
    await expect.poll(() => dialog('create-tap_service').count()).toBe(0);
    const service = (await until(api, `${TS}?name=ts-form`, (body) => body.tap_services.length === 1)).tap_services[0];
    expect(service.port_id).toBe(ids.sparePort);
    await expect.poll(() => node(`tap_service:${service.id}`).count()).toBe(1);

    // A bad VLAN filter is refused before sending, in the API's words.
    await page.click('[data-action="create-tap_flow"]');
    const flowForm = dialog('create-tap_flow');
    await flowForm.locator('input[name="name"]').fill('tf-form');
    await flowForm.locator('select[name="source_port"]').selectOption(ids.vmPort);
    await flowForm.locator('select[name="tap_service_id"]').selectOption(service.id);
    await flowForm.locator('select[name="direction"]').selectOption('IN');
    await flowForm.locator('input[name="vlan_filter"]').fill('30-20');
    const posts = watched.requests.filter((request) => request.method === 'POST').length;
    await flowForm.locator('[data-action="submit"]').click();
    const bad = await api.post(TF, { tap_flow: { name: 'tf-form', source_port: ids.vmPort, tap_service_id: service.id, direction: 'IN', vlan_filter: '30-20' } });
    await expect.poll(() => flowForm.locator('[data-testid="form-error"]').textContent()).toBe(bad.body.NeutronError.message);
    await watched.screenshot('form-refused');
    expect(watched.requests.filter((request) => request.method === 'POST').length).toBe(posts);
    await flowForm.locator('input[name="vlan_filter"]').fill('20-30');
    await flowForm.locator('[data-action="submit"]').click();
    const flow = (await until(api, `${TF}?name=tf-form`, (body) => body.tap_flows.length === 1)).tap_flows[0];
    expect(flow).toMatchObject({ source_port: ids.vmPort, tap_service_id: service.id, direction: 'IN', vlan_filter: '20-30' });
    await expect.poll(() => node(`tap_flow:${flow.id}`).count()).toBe(1);
    // The new flow is selected.
    await expect.poll(() => page.locator('.details').getAttribute('data-selected')).toBe(`tap_flow:${flow.id}`);

    await page.click('[data-action="create-tap_mirror"]');
    const mirrorForm = dialog('create-tap_mirror');
    await mirrorForm.locator('input[name="name"]').fill('tm-form');
    await mirrorForm.locator('select[name="port_id"]').selectOption(ids.vmPort);
    await mirrorForm.locator('input[name="remote_ip"]').fill(COLLECTOR_IP);
    await mirrorForm.locator('select[name="mirror_type"]').selectOption('gre');
    await mirrorForm.locator('input[name="directions.OUT"]').fill('4242');
    await mirrorForm.locator('[data-action="submit"]').click();
    const mirror = (await until(api, `${TM}?name=tm-form`, (body) => body.tap_mirrors.length === 1)).tap_mirrors[0];
    expect(mirror).toMatchObject({ port_id: ids.vmPort, remote_ip: COLLECTOR_IP, mirror_type: 'gre', directions: { OUT: 4242 } });

    // A VXLAN mirror of both directions, to a UDP port of its own; a VNI over 24 bits is refused in the form.
    await page.click('[data-action="create-tap_mirror"]');
    const vxlanForm = dialog('create-tap_mirror');
    await vxlanForm.locator('input[name="name"]').fill('tm-vxlan');
    await vxlanForm.locator('select[name="port_id"]').selectOption(ids.vmPort);
    await vxlanForm.locator('input[name="remote_ip"]').fill(COLLECTOR_IP);
    await vxlanForm.locator('select[name="mirror_type"]').selectOption('vxlan');
    await vxlanForm.locator('input[name="directions.BOTH"]').fill(String(2 ** 24));
    await vxlanForm.locator('input[name="udp_port"]').fill('4790');
    await vxlanForm.locator('[data-action="submit"]').click();
    await expect.poll(() => vxlanForm.textContent()).toContain('is not a VXLAN VNI (0 to 16777215)');
    await vxlanForm.locator('input[name="directions.BOTH"]').fill('4243');
    await vxlanForm.locator('[data-action="submit"]').click();
    const vxlan = (await until(api, `${TM}?name=tm-vxlan`, (body) => body.tap_mirrors.length === 1)).tap_mirrors[0];
    expect(vxlan).toMatchObject({ mirror_type: 'vxlan', directions: { BOTH: 4243 }, udp_port: 4790 });
    expect((await api.delete(`${TM}/${vxlan.id}`)).status).toBe(204);

    // Delete asks first: cancelling keeps it, confirming removes it.
    await node(`tap_mirror:${mirror.id}`).click();
    await page.click('[data-action="delete"]');
    await dialog('confirm-delete').locator('button', { hasText: 'Cancel' }).click();
    await sleep(300);
    expect((await api.get(`${TM}/${mirror.id}`)).status).toBe(200);
    await page.click('[data-action="delete"]');
    await dialog('confirm-delete').locator('[data-action="confirm-delete"]').click();
    await until(api, TM, (body) => !body.tap_mirrors.some((item: { id: string }) => item.id === mirror.id));
    await expect.poll(() => node(`tap_mirror:${mirror.id}`).count()).toBe(0);

    // Deleting the tap service says it takes its flow along, and does.
    await node(`tap_service:${service.id}`).click();
    await page.click('[data-action="delete"]');
    expect(await dialog('confirm-delete').textContent()).toContain('tf-form');
    await dialog('confirm-delete').locator('[data-action="confirm-delete"]').click();
    await until(api, TF, (body) => !body.tap_flows.some((item: { id: string }) => item.id === flow.id));
    expect((await api.get(`${TS}/${service.id}`)).status).toBe(404);
    await expect.poll(() => node(`tap_service:${service.id}`).count()).toBe(0);
    await expect.poll(() => node(`tap_flow:${flow.id}`).count()).toBe(0);
    expect(watched.pageErrors).toEqual([]);
    expect(watched.dialogs).toEqual([]);
  });

  it('turns a flow red with its reason when its source interface is removed', async () => {
    const page = await loaded();
    await node(`tap_flow:${ids.flow}`).click();
    await lab.deleteLink(host, 'vmh');
    await expect.poll(() => node(`tap_flow:${ids.flow}`).getAttribute('data-status'), { timeout: 10_000 }).toBe('ERROR');
    const reason = (await api.get(`${TF}/${ids.flow}`)).body.tap_flow.status_reason;
    expect(reason).toContain('vmh');
    expect(await node(`tap_flow:${ids.flow}`).locator('rect.stripe').evaluate((rect) => getComputedStyle(rect).fill)).toBe('rgb(255, 93, 93)');
    await expect.poll(() => page.locator('.details [data-field="status_reason"]').textContent()).toBe(reason);
    expect(await page.locator(`[data-row="tap_flow:${ids.flow}"] .status`).textContent()).toBe('ERROR');
    await node(`tap_flow:${ids.flow}`).hover();
    await expect.poll(() => page.locator('[role="tooltip"] .tooltip-reason').textContent()).toBe(reason);
    await watched.screenshot('source-removed');
    expect(watched.pageErrors).toEqual([]);
  });

  it('asks for a token in token mode, keeps it out of URLs and cookies, and shows a reader its project only, with no action', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapas-web-tokens-'));
    const tokens = join(dir, 'tokens.json');
    const READER = 'alpha-reader-token-0123';
    const MEMBER = 'alpha-member-token-0123';
    writeFileSync(tokens, JSON.stringify({
      tokens: [
        { token: 'web-admin-token-0123', project_id: 'ops', roles: ['admin'] },
        { token: READER, project_id: 'alpha', roles: ['reader'] },
        { token: MEMBER, project_id: 'alpha', roles: ['member'] },
      ],
    }), { mode: 0o600 });
    const secured = await DaemonProcess.start({ args: ['--tokens', tokens] });
    try {
      const admin = secured.client({ 'x-auth-token': 'web-admin-token-0123' });
      const alphaPort = (await admin.port('alpha-monitor', 'wta0', undefined, { project_id: 'alpha' })).id;
      const betaPort = (await admin.port('beta-monitor', 'wtb0', undefined, { project_id: 'beta' })).id;
      const alphaService = (await admin.create(TS, { tap_service: { name: 'alpha-ts', port_id: alphaPort, project_id: 'alpha' } })).id;
      const betaService = (await admin.create(TS, { tap_service: { name: 'beta-ts', port_id: betaPort, project_id: 'beta' } })).id;

      const reader = await openPage(browser);
      const { page } = reader;
      await page.goto(`${secured.url}/`);
      await page.locator('input[name="token"]').fill('not-a-token-at-all');
      await page.click('[data-action="sign-in"]');
      await expect.poll(() => page.locator('[role="alert"]').textContent()).toContain('refused');
      await page.locator('input[name="token"]').fill(READER);
      await page.click('[data-action="sign-in"]');
      await expect.poll(() => page.locator(`[data-node="tap_service:${alphaService}"]`).count()).toBe(1);
      expect(await page.locator('[data-testid="session"]').textContent()).toContain('project alpha · reader');
      // Its project only; the stats stream, read with the token in a header, fills the table.
      await expect.poll(() => page.locator(`[data-row="tap_service:${alphaService}"]`).count()).toBe(1);
      expect(await page.locator(`[data-node="tap_service:${betaService}"]`).count()).toBe(0);
      expect(await page.locator(`[data-node="port:${betaPort}"]`).count()).toBe(0);
      // No action anywhere, not even on a selected resource.
      await page.locator(`[data-node="tap_service:${alphaService}"]`).click();
      await expect.poll(() => page.locator('.details').getAttribute('data-selected')).toBe(`tap_service:${alphaService}`);
      expect(await page.locator('[data-action]').count()).toBe(0);
      await reader.screenshot('reader');

      expect(await page.evaluate(() => sessionStorage.getItem('tapas.token'))).toBe(READER);
      expect(await page.evaluate(() => document.cookie)).toBe('');
      expect((await reader.context.cookies()).length).toBe(0);
      expect(reader.requests.every((request) => !request.url.includes(READER) && !request.url.includes('token'))).toBe(true);
      const stream = reader.requests.find((request) => request.url.includes('/v2.0/taas/stats/stream'));
      expect(stream?.headers['x-auth-token']).toBe(READER);
      expect(reader.requests.filter((request) => request.url.includes('/v2.0/')).every((request) => request.headers['x-auth-token'] === READER)).toBe(true);
      expect(reader.pageErrors).toEqual([]);
      expect(reader.dialogs).toEqual([]);
      // The only console error: the refused token's 401.
      expect(reader.consoleErrors.every((text) => text.includes('401'))).toBe(true);

      // A member of the same project gets the actions.
      const member = await openPage(browser);
      await member.page.goto(`${secured.url}/`);
      await member.page.locator('input[name="token"]').fill(MEMBER);
      await member.page.click('[data-action="sign-in"]');
      await expect.poll(() => member.page.locator('[data-action^="create-"]').count()).toBe(3);
      // Signing out forgets the token.
      await member.page.click('[data-testid="sign-out"]');
      await expect.poll(() => member.page.locator('input[name="token"]').count()).toBe(1);
      expect(await member.page.evaluate(() => sessionStorage.getItem('tapas.token'))).toBeNull();
      await reader.context.close();
      await member.context.close();
    } finally {
      await secured.stop();
      secured.removeState();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
