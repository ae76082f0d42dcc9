import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { STORE_FILE } from '../../src/store/store.js';
import { DaemonProcess, until, type ApiClient } from '../api/daemon-process.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';

const VM_MAC = '02:00:00:00:20:01';
const HOST_MAC = '02:00:00:00:20:02';
const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';

interface Attempt {
  path: string;
  name: string;
  /** The id the daemon answered with: the change was accepted. */
  acceptedId?: string;
}

/**
 * Every accepted change is committed before the answer: kill -9 in the middle
 * of a burst of creates, restart on the same state directory, and the store
 * holds each accepted resource exactly once and the data path comes back.
 */
describe.skipIf(!netnsAvailable)(`durability of the daemon (${netnsSkipReason})`, () => {
  const lab = new Lab('ddu');
  let host: string, vm: string, monitor: string;
  let daemon: DaemonProcess;
  let api: ApiClient;
  let stateDir: string;
  let vmPortId: string, serviceId: string, flowId: string;
  const attempts: Attempt[] = [];

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    daemon = await DaemonProcess.start({ args: ['--quota', 'port=-1', '--quota', 'tap_flow=-1'] });
    stateDir = daemon.stateDir;
    api = daemon.client();
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    await lab.cleanup();
  });

  async function mirroredFrames(stream: string): Promise<{ sent: Buffer[]; copies: Buffer[] }> {
    const capture = await lab.capture(monitor, 'mon0');
    const sent = [1, 2, 3, 4].map((sequence) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream, sequence }));
    await lab.sendFrames(vm, 'vm0', sent);
    return { sent, copies: testFramesOf(await capture.stop()) };
  }

  it('mirrors before the crash', async () => {
    vmPortId = (await api.port('vm', 'vmh', host)).id;
    const monitorPortId = (await api.port('monitor', 'monh', host)).id;
    serviceId = (await api.create(TS, { tap_service: { name: 'ts', port_id: monitorPortId } })).id;
    flowId = (await api.create(TF, { tap_flow: { name: 'tf', source_port: vmPortId, tap_service_id: serviceId, direction: 'OUT' } })).id;
    await until(api, `${TF}/${flowId}`, (body) => body.tap_flow.status === 'ACTIVE');
    const { sent, copies } = await mirroredFrames('pre');
    expect(copies.map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));
  });

  it('keeps every accepted create of a burst exactly once across kill -9 and a restart', async () => {
    // Requests in flight from several connections at once; the daemon dies while they run.
    const requests: Promise<void>[] = [];
    const inFlight = 8;
    let stop = false;
    let sent = 0;
    const send = async (lane: number) => {
      for (let round = 0; !stop && round < 400; round += 1) {
        const index = sent;
        sent += 1;
        // Alternate kinds: ports on interfaces that need not exist, and tap flows with one VLAN each.
        const attempt: Attempt = index % 2 === 0
          ? { path: '/v2.0/ports', name: `burst-port-${index}` }
          : { path: TF, name: `burst-flow-${index}` };
        attempts.push(attempt);
        const body = attempt.path === TF
          ? { tap_flow: { name: attempt.name, source_port: vmPortId, tap_service_id: serviceId, direction: 'IN', vlan_filter: String(1 + index) } }
          : { port: { name: attempt.name, 'binding:profile': { interface: `b${lane}x${index}` } } };
        try {
          const response = await api.post(attempt.path, body);
          if (response.status !== 201) throw new Error(`unexpected ${response.status}: ${JSON.stringify(response.body)}`);
          attempt.acceptedId = (Object.values(response.body)[0] as { id: string }).id;
        } catch (error) {
          if (!stop) throw error;
          return; // the connection died with the daemon: this one may or may not have been committed
        }
      }
    };
    let lanesEnded = 0;
    for (let lane = 0; lane < inFlight; lane += 1) requests.push(send(lane).finally(() => { lanesEnded += 1; }));
    // Let a good number of creates through, then crash mid-stream (a lane that failed ends the wait: Promise.all reports it).
    while (attempts.filter((a) => a.acceptedId).length < 60 && lanesEnded === 0) await sleep(10);
    stop = true;
    await daemon.crash();
    await Promise.all(requests);

    const accepted = attempts.filter((a) => a.acceptedId);
    expect(accepted.length).toBeGreaterThanOrEqual(60);
    // The crash really came mid-burst: some creates were sent and never answered.
    expect(attempts.length).toBeGreaterThan(accepted.length);

    daemon = await DaemonProcess.start({ stateDir, args: ['--quota', 'port=-1', '--quota', 'tap_flow=-1'] });
    api = daemon.client();
    const ports = (await api.get('/v2.0/ports')).body.ports as Array<{ id: string; name: string }>;
    const flows = (await api.get(TF)).body.tap_flows as Array<{ id: string; name: string; tap_service_id: string; source_port: string }>;
    const byName = new Map<string, string[]>();
    for (const resource of [...ports, ...flows]) byName.set(resource.name, [...(byName.get(resource.name) ?? []), resource.id]);

    for (const attempt of accepted) {
      expect(byName.get(attempt.name), attempt.name).toEqual([attempt.acceptedId]);
    }
    // What was not answered exists at most once; nothing exists that was never sent.
    for (const [name, ids] of byName) expect(ids.length, name).toBe(1);
    const attempted = new Set(attempts.map((a) => a.name));
    for (const name of byName.keys()) {
      if (name.startsWith('burst-')) expect(attempted.has(name), name).toBe(true);
    }
    // Every flow still points at what exists.
    const portIds = new Set(ports.map((p) => p.id));
    for (const flow of flows) {
      expect(portIds.has(flow.source_port)).toBe(true);
      expect(flow.tap_service_id).toBe(serviceId);
    }
  });

  it('restores the data path after the restart: statuses return to ACTIVE and mirroring resumes', async () => {
    await until(api, `${TF}/${flowId}`, (body) => body.tap_flow.status === 'ACTIVE');
    await until(api, `${TS}/${serviceId}`, (body) => body.tap_service.status === 'ACTIVE');
    const { sent, copies } = await mirroredFrames('post');
    // Exactly once each: the restored plan has one capture of the port, not one per start.
    expect(copies.map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));
  });

  it('stops cleanly on SIGTERM (exit 0) and leaves a store that passes SQLite\'s own checks', async () => {
    const code = await daemon.stop();
    expect(code).toBe(0);
    expect(daemon.logs.map((line) => line.msg)).toContain('stopped');
    const db = new Database(join(stateDir, STORE_FILE), { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(db.pragma('foreign_key_check')).toEqual([]);
    } finally {
      db.close();
    }
    // And it starts again from that store.
    daemon = await DaemonProcess.start({ stateDir });
    api = daemon.client();
    await until(api, `${TF}/${flowId}`, (body) => body.tap_flow.status === 'ACTIVE');
  });
});

describe('tapas serve on SIGTERM', () => {
  it('drains: a request already being received is answered and committed before the exit', async () => {
    const daemon = await DaemonProcess.start();
    const url = new URL(daemon.url);
    const body = JSON.stringify({ port: { name: 'drained', 'binding:profile': { interface: 'drain0' } } });
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let answer = '';
    socket.on('data', (chunk) => { answer += chunk.toString(); });
    const half = Math.floor(body.length / 2);
    socket.write(`POST /v2.0/ports HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n`
      + `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, half)}`);
    await sleep(200);
    const exit = daemon.stop();
    await sleep(300);
    expect(daemon.running).toBe(true); // still waiting for the rest of the request
    socket.write(body.slice(half));
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    expect(answer).toMatch(/^HTTP\/1\.1 201 /);
    expect(await exit).toBe(0);

    const restarted = await DaemonProcess.start({ stateDir: daemon.stateDir });
    expect((await restarted.client().get('/v2.0/ports?name=drained')).body.ports).toHaveLength(1);
    await restarted.stop();
    restarted.removeState();
  });

  it('never hangs on a FIFO given as a port\'s netns: the port is ERROR with a reason, and a restart still starts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapas-fifo-'));
    const fifo = join(dir, 'not-a-namespace');
    execFileSync('mkfifo', [fifo]);
    try {
      const first = await DaemonProcess.start();
      const port = await first.client().port('fifo-port', 'fifo0', fifo);
      const failed = await until(first.client(), `/v2.0/ports/${port.id}`, (body) => body.port.status === 'ERROR', 5000);
      expect(failed.port.status_reason).toContain('is not a network namespace');
      const started = Date.now();
      expect((await first.client().get('/v2.0/ports')).status).toBe(200);
      expect(Date.now() - started).toBeLessThan(1000);
      expect(await first.stop()).toBe(0);

      // The agent applies the stored state before the listener opens: the FIFO must not block that either.
      const restarted = await DaemonProcess.start({ stateDir: first.stateDir });
      const again = await until(restarted.client(), `/v2.0/ports/${port.id}`, (body) => body.port.status === 'ERROR', 5000);
      expect(again.port.status_reason).toContain('is not a network namespace');
      await restarted.stop();
      restarted.removeState();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
