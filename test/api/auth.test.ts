import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, type ApiClient } from './daemon-process.js';

const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';
const TM = '/v2.0/taas/tap_mirrors';
const MAIN = new URL('../../dist/cli/main.js', import.meta.url).pathname;

const TOKENS = {
  admin: 'admin-token-0123456789',
  alpha: 'alpha-member-0123456789',
  alphaReader: 'alpha-reader-0123456789',
  beta: 'beta-member-0123456789',
};

/**
 * Two projects with static tokens: every cross-project read, use and delete
 * is refused; readers cannot write; quotas trip at the configured limit.
 */
describe('token auth, projects and quotas', () => {
  let daemon: DaemonProcess;
  let dir: string;
  let admin: ApiClient, alpha: ApiClient, alphaReader: ApiClient, beta: ApiClient;
  const ids = { alphaPort: '', alphaVm: '', alphaService: '', alphaFlow: '', alphaMirror: '', betaPort: '', betaVm: '', betaService: '' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tapas-auth-'));
    const tokensFile = join(dir, 'tokens.json');
    writeFileSync(tokensFile, JSON.stringify({
      tokens: [
        { token: TOKENS.admin, project_id: 'ops', roles: ['admin'] },
        { token: TOKENS.alpha, project_id: 'alpha', roles: ['member'] },
        { token: TOKENS.alphaReader, project_id: 'alpha', roles: ['reader'] },
        { token: TOKENS.beta, project_id: 'beta', roles: ['member'] },
      ],
    }), { mode: 0o600 });
    daemon = await DaemonProcess.start({
      args: ['--tokens', tokensFile, '--quota', 'tap_service=2', '--quota', 'tap_flow=3', '--quota', 'tap_mirror=1'],
    });
    admin = daemon.client({ 'x-auth-token': TOKENS.admin });
    alpha = daemon.client({ 'x-auth-token': TOKENS.alpha });
    alphaReader = daemon.client({ 'x-auth-token': TOKENS.alphaReader });
    beta = daemon.client({ 'x-auth-token': TOKENS.beta });

    // Ports are registered by the operator, for a project.
    ids.alphaPort = (await admin.port('alpha-monitor', 'au0', undefined, { project_id: 'alpha' })).id;
    ids.alphaVm = (await admin.port('alpha-vm', 'au1', undefined, { project_id: 'alpha' })).id;
    ids.betaPort = (await admin.port('beta-monitor', 'au2', undefined, { tenant_id: 'beta' })).id;
    ids.betaVm = (await admin.port('beta-vm', 'au3', undefined, { project_id: 'beta' })).id;
    ids.alphaService = (await alpha.create(TS, { tap_service: { name: 'alpha-ts', port_id: ids.alphaPort } })).id;
    ids.alphaFlow = (await alpha.create(TF, { tap_flow: { source_port: ids.alphaVm, tap_service_id: ids.alphaService, direction: 'BOTH' } })).id;
    ids.alphaMirror = (await alpha.create(TM, { tap_mirror: { port_id: ids.alphaVm, remote_ip: '192.0.2.7', mirror_type: 'gre', directions: { IN: 7 } } })).id;
    ids.betaService = (await beta.create(TS, { tap_service: { name: 'beta-ts', port_id: ids.betaPort } })).id;
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses requests without a token, or with an unknown one (401), but serves the version document', async () => {
    const anonymous = daemon.client();
    const missing = await anonymous.get(TS);
    expect(missing.status).toBe(401);
    expect(missing.body.NeutronError.type).toBe('HTTPUnauthorized');
    expect((await daemon.client({ 'x-auth-token': 'guess-guess-guess' }).get(TS)).status).toBe(401);
    expect((await anonymous.post(TS, { tap_service: { port_id: ids.alphaPort } })).status).toBe(401);
    expect((await anonymous.get('/metrics')).status).toBe(401);
    expect((await anonymous.get('/')).status).toBe(200);
  });

  it('stamps resources with the caller\'s project, echoed as project_id and tenant_id', async () => {
    const service = (await alpha.get(`${TS}/${ids.alphaService}`)).body.tap_service;
    expect(service).toMatchObject({ project_id: 'alpha', tenant_id: 'alpha' });
  });

  it('lists only the caller\'s own resources; the admin sees all', async () => {
    expect((await alpha.get(TS)).body.tap_services.map((s: { id: string }) => s.id)).toEqual([ids.alphaService]);
    expect((await beta.get(TS)).body.tap_services.map((s: { id: string }) => s.id)).toEqual([ids.betaService]);
    expect((await beta.get(TF)).body.tap_flows).toEqual([]);
    expect((await beta.get(TM)).body.tap_mirrors).toEqual([]);
    expect((await beta.get('/v2.0/ports')).body.ports.map((p: { id: string }) => p.id).sort()).toEqual([ids.betaPort, ids.betaVm].sort());
    expect((await beta.get(`${TS}?tenant_id=alpha`)).body.tap_services).toEqual([]);
    expect((await admin.get(TS)).body.tap_services).toHaveLength(2);
  });

  it('answers 404 to every cross-project read, update and delete, and leaves the resources alone', async () => {
    const targets = [
      `${TS}/${ids.alphaService}`, `${TF}/${ids.alphaFlow}`, `${TM}/${ids.alphaMirror}`, `/v2.0/ports/${ids.alphaPort}`,
    ];
    for (const path of targets) {
      expect((await beta.get(path)).status, path).toBe(404);
      const kind = path.includes('tap_services') ? 'tap_service' : path.includes('tap_flows') ? 'tap_flow' : path.includes('tap_mirrors') ? 'tap_mirror' : 'port';
      if (kind !== 'port') {
        expect((await beta.put(path, { [kind]: { name: 'stolen' } })).status, path).toBe(404);
        expect((await beta.delete(path)).status, path).toBe(404);
      }
      expect((await alpha.get(path)).status, path).toBe(200);
    }
    expect((await alpha.get(`${TS}/${ids.alphaService}`)).body.tap_service.name).toBe('alpha-ts');
  });

  it('refuses the use of another project\'s ports and tap services', async () => {
    const foreignDestination = await beta.post(TS, { tap_service: { port_id: ids.alphaVm } });
    expect(foreignDestination.status).toBe(404);
    expect(foreignDestination.body.NeutronError.type).toBe('InvalidDestinationPort');

    const foreignSource = await beta.post(TF, { tap_flow: { source_port: ids.alphaVm, tap_service_id: ids.betaService, direction: 'IN' } });
    expect(foreignSource.status).toBe(404);
    expect(foreignSource.body.NeutronError.type).toBe('InvalidSourcePort');

    const foreignService = await beta.post(TF, { tap_flow: { source_port: ids.betaVm, tap_service_id: ids.alphaService, direction: 'IN' } });
    expect(foreignService.status).toBe(404);
    expect(foreignService.body.NeutronError.type).toBe('TapServiceNotFound');

    const foreignMirror = await beta.post(TM, { tap_mirror: { port_id: ids.alphaVm, remote_ip: '192.0.2.8', mirror_type: 'gre', directions: { IN: 8 } } });
    expect(foreignMirror.status).toBe(404);

    const asAlpha = await beta.post(TS, { tap_service: { port_id: ids.betaVm, project_id: 'alpha' } });
    expect(asAlpha.status).toBe(403);
    expect((await alpha.get(TS)).body.tap_services).toHaveLength(1);
  });

  it('lets only the admin register, rename or delete ports', async () => {
    const byMember = await alpha.post('/v2.0/ports', { port: { 'binding:profile': { interface: 'eth0' } } });
    expect(byMember.status).toBe(403);
    expect(byMember.body.NeutronError.type).toBe('PolicyNotAuthorized');
    expect((await alpha.delete(`/v2.0/ports/${ids.alphaPort}`)).status).toBe(403);
    expect((await alpha.put(`/v2.0/ports/${ids.alphaPort}`, { port: { name: 'x' } })).status).toBe(403);
  });

  it('lets a reader read its project but not write anything (403)', async () => {
    expect((await alphaReader.get(TS)).body.tap_services.map((s: { id: string }) => s.id)).toEqual([ids.alphaService]);
    const writes = [
      await alphaReader.post(TS, { tap_service: { port_id: ids.alphaVm } }),
      await alphaReader.put(`${TS}/${ids.alphaService}`, { tap_service: { name: 'x' } }),
      await alphaReader.delete(`${TF}/${ids.alphaFlow}`),
      await alphaReader.delete(`${TS}/${ids.alphaService}`),
    ];
    expect(writes.map((w) => w.status)).toEqual([403, 403, 403, 403]);
    expect((await alpha.get(`${TF}/${ids.alphaFlow}`)).status).toBe(200);
  });

  it('trips quotas at the configured limit (409 OverQuota) and counts per project', async () => {
    const extra = (await admin.port('alpha-extra', 'au4', undefined, { project_id: 'alpha' })).id;
    const extra2 = (await admin.port('alpha-extra2', 'au5', undefined, { project_id: 'alpha' })).id;
    expect((await alpha.post(TS, { tap_service: { port_id: extra } })).status).toBe(201);
    const over = await alpha.post(TS, { tap_service: { port_id: extra2 } });
    expect(over.status).toBe(409);
    expect(over.body.NeutronError.type).toBe('OverQuota');
    expect(over.body.NeutronError.message).toContain('tap_service');

    const mirrorOver = await alpha.post(TM, { tap_mirror: { port_id: extra, remote_ip: '192.0.2.9', mirror_type: 'gre', directions: { IN: 9 } } });
    expect(mirrorOver.status).toBe(409);
    expect(mirrorOver.body.NeutronError.type).toBe('OverQuota');

    // beta has its own count.
    const betaExtra = (await admin.port('beta-extra', 'au6', undefined, { project_id: 'beta' })).id;
    expect((await beta.post(TS, { tap_service: { port_id: betaExtra } })).status).toBe(201);
  });

  it('lets the admin raise a project\'s quota through the Neutron quotas API, and no one else', async () => {
    expect((await alpha.put('/v2.0/quotas/alpha', { quota: { tap_service: 10 } })).status).toBe(403);
    expect((await alpha.get('/v2.0/quotas/alpha')).body.quota).toMatchObject({ tap_service: 2, tap_flow: 3, tap_mirror: 1 });
    expect((await beta.get('/v2.0/quotas/alpha')).status).toBe(403);
    const raised = await admin.put('/v2.0/quotas/alpha', { quota: { tap_service: 3 } });
    expect(raised.status).toBe(200);
    expect(raised.body.quota.tap_service).toBe(3);
    const extra2 = (await alpha.get('/v2.0/ports?name=alpha-extra2')).body.ports[0].id;
    expect((await alpha.post(TS, { tap_service: { port_id: extra2 } })).status).toBe(201);
    expect((await admin.delete('/v2.0/quotas/alpha')).status).toBe(204);
    expect((await alpha.get('/v2.0/quotas/alpha')).body.quota.tap_service).toBe(2);
  });

  it('serves /metrics to the admin only', async () => {
    expect((await alpha.get('/metrics')).status).toBe(403);
    const metrics = await admin.get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('tapas_resources');
  });

  it('reports stats to each project for its own resources only, as JSON and as a stream', async () => {
    const ofAlpha = (await alpha.get('/v2.0/taas/stats')).body.stats;
    const ofBeta = (await beta.get('/v2.0/taas/stats')).body.stats;
    const ofAll = (await admin.get('/v2.0/taas/stats')).body.stats;
    const idsOf = (rows: Array<{ id: string }>) => rows.map((row) => row.id);
    const projectsOf = (report: Record<string, Array<{ project_id: string }>>) =>
      new Set(['tap_flows', 'tap_mirrors', 'tap_services'].flatMap((kind) => report[kind]!.map((row) => row.project_id)));
    expect(projectsOf(ofAlpha)).toEqual(new Set(['alpha']));
    expect(projectsOf(ofBeta)).toEqual(new Set(['beta']));
    expect(idsOf(ofAlpha.tap_flows)).toContain(ids.alphaFlow);
    expect(idsOf(ofAlpha.tap_mirrors)).toContain(ids.alphaMirror);
    expect(idsOf(ofBeta.tap_services)).toContain(ids.betaService);
    expect(idsOf(ofAll.tap_services).sort()).toEqual([...idsOf(ofAlpha.tap_services), ...idsOf(ofBeta.tap_services)].sort());
    expect(ofAlpha.tap_mirrors.find((mirror: { id: string }) => mirror.id === ids.alphaMirror).directions.IN).toMatchObject({ tunnel_id: 7 });
    expect(ofAlpha.tap_flows.find((flow: { id: string }) => flow.id === ids.alphaFlow))
      .toMatchObject({ source_port: ids.alphaVm, direction: 'BOTH', hosts: expect.any(Array) });
    expect((await daemon.client().get('/v2.0/taas/stats')).status).toBe(401);

    const response = await fetch(`${daemon.url}/v2.0/taas/stats/stream?interval=0.2`, {
      headers: { 'x-auth-token': TOKENS.beta, accept: 'text/event-stream' }, signal: AbortSignal.timeout(10_000),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events: Array<{ stats: { time: string; tap_services: Array<{ id: string }> } }> = [];
    let text = '';
    const reader = response.body!.getReader();
    while (events.length < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      const blocks = text.split('\n\n');
      text = blocks.pop()!;
      for (const block of blocks) {
        expect(block).toMatch(/^event: stats\ndata: /);
        events.push(JSON.parse(block.slice(block.indexOf('data: ') + 6)));
      }
    }
    await reader.cancel();
    expect(events).toHaveLength(3);
    expect(events.every((event) => idsOf(event.stats.tap_services).join() === idsOf(ofBeta.tap_services).join())).toBe(true);
    const gap = Date.parse(events[2]!.stats.time) - Date.parse(events[1]!.stats.time);
    expect(gap).toBeGreaterThanOrEqual(150);

    const badInterval = await beta.get('/v2.0/taas/stats/stream?interval=0');
    expect(badInterval.status).toBe(400);
    expect(badInterval.body.NeutronError.message).toContain('interval');
  });
});

describe('listen address policy', () => {
  const serve = (args: string[]) => spawnSync(process.execPath, [MAIN, 'serve', '--state-dir', mkdtempSync(join(tmpdir(), 'tapas-listen-')), ...args],
    { encoding: 'utf8', timeout: 20_000 });

  it('refuses to listen beyond loopback without token auth (usage error, exit 2)', () => {
    const result = serve(['--listen', '0.0.0.0:0']);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/refusing to listen on 0\.0\.0\.0 without token auth/);
    const v6 = serve(['--listen', '[::]:0', '--auth', 'noauth']);
    expect(v6.status).toBe(2);
  });

  it('refuses token auth without a usable tokens file', () => {
    expect(serve(['--auth', 'token']).status).toBe(2);
    const dir = mkdtempSync(join(tmpdir(), 'tapas-tokens-'));
    const bad = join(dir, 'tokens.json');
    writeFileSync(bad, JSON.stringify({ tokens: [{ token: 'short', project_id: 'p', roles: ['member'] }] }));
    const result = serve(['--tokens', bad]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/at least 8 characters/);
    writeFileSync(bad, JSON.stringify({ tokens: [{ token: 'long-enough-token', project_id: 'p', roles: ['owner'] }] }));
    expect(serve(['--tokens', bad]).stderr).toMatch(/roles/);
    rmSync(dir, { recursive: true, force: true });
  });
});
