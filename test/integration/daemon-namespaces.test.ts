import { execFile } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, until, type ApiClient } from '../api/daemon-process.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const run = promisify(execFile);

const VM_MAC = '02:00:00:00:11:01';
const HOST_MAC = '02:00:00:00:11:02';
const TS = '/v2.0/taas/tap_services';
const TF = '/v2.0/taas/tap_flows';

async function linkExists(ns: string, ifname: string): Promise<boolean> {
  return run('ip', ['-n', ns, 'link', 'show', 'dev', ifname]).then(() => true, () => false);
}

/**
 * Network namespaces as users meet them through the daemon: one namespace
 * spelled several ways is one namespace, and a namespace deleted under the
 * daemon's feet puts what lives in it in ERROR, without the daemon keeping
 * it (and its veth pairs) alive.
 */
describe.skipIf(!netnsAvailable)(`namespaces through the daemon (${netnsSkipReason})`, () => {
  const lab = new Lab('dns');
  let host: string, vm: string, monitor: string;
  let daemon: DaemonProcess;
  let api: ApiClient;
  let vmPort: any, monitorPort: any, service: any;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    daemon = await DaemonProcess.start();
    api = daemon.client();
    vmPort = await api.port('vm-port', 'vmh', host);
    monitorPort = await api.port('monitor-port', 'monh', host);
    service = await api.create(TS, { tap_service: { name: 'ts', port_id: monitorPort.id } });
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    await lab.cleanup();
  });

  it('stores a port\'s namespace in one spelling: /run/netns//NS/ is NS, and registering the interface again is a conflict', async () => {
    for (const spelling of [`/run/netns//${host}/`, `/run/netns/./${host}`, `/run/netns/${host}`]) {
      const again = await api.post('/v2.0/ports', { port: { name: 'again', 'binding:profile': { interface: 'vmh', netns: spelling } } });
      expect(again.status).toBe(409);
      expect(again.body.NeutronError.message).toContain(`already registered as port ${vmPort.id}`);
    }
    const spare = await lab.namespace('spare');
    const created = await api.port('spare-port', 'lo', `/run/netns//./${spare}/`);
    expect(created['binding:profile']).toEqual({ interface: 'lo', netns: spare });
    expect((await api.get(`/v2.0/ports/${created.id}`)).body.port['binding:profile'].netns).toBe(spare);
    expect((await api.delete(`/v2.0/ports/${created.id}`)).status).toBe(204);
  });

  it('shows a port that names a registered interface by another path ERROR, and refuses its flows, naming the first port', async () => {
    const flow = await api.create(TF, { tap_flow: { name: 'tf', source_port: vmPort.id, tap_service_id: service.id, direction: 'BOTH' } });
    await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ACTIVE');

    const link = join(lab.dir, 'host-link');
    symlinkSync(`/run/netns/${host}`, link);
    const twin = await api.port('twin-port', 'vmh', link);
    const shown = await until(api, `/v2.0/ports/${twin.id}`, (body) => body.port.status === 'ERROR');
    expect(shown.port.status_reason).toBe(`interface is already registered as port ${vmPort.id}`);
    // The first port is untouched.
    expect((await api.get(`/v2.0/ports/${vmPort.id}`)).body.port.status).toBe('ACTIVE');

    const twinFlow = await api.create(TF, { tap_flow: { name: 'tf-twin', source_port: twin.id, tap_service_id: service.id, direction: 'BOTH' } });
    const refused = await until(api, `${TF}/${twinFlow.id}`, (body) => body.tap_flow.status === 'ERROR');
    expect(refused.tap_flow.status_reason).toContain(`the same interface as source '${vmPort.id}'`);
    expect((await api.get(`${TF}/${flow.id}`)).body.tap_flow.status).toBe('ACTIVE');

    // Each frame reaches the monitor once, not once per registration.
    const capture = await lab.capture(monitor, 'mon0');
    const frames = [1, 2, 3].map((sequence) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'twin', sequence }));
    await lab.sendFrames(vm, 'vm0', frames);
    expect(testFramesOf(await capture.stop())).toHaveLength(3);

    expect((await api.delete(`${TF}/${twinFlow.id}`)).status).toBe(204);
    expect((await api.delete(`/v2.0/ports/${twin.id}`)).status).toBe(204);
  });

  it('puts the ports, the tap service and the flow of a deleted namespace in ERROR and lets the namespace go; all ACTIVE again when it is back', async () => {
    const flow = (await api.get(`${TF}?name=tf`)).body.tap_flows[0];
    await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ACTIVE');

    const started = Date.now();
    await run('ip', ['netns', 'del', host]);
    const reason = `network namespace '${host}' was deleted`;
    const failed = await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ERROR', 5000);
    expect(failed.tap_flow.status_reason).toContain(reason);
    expect(failed.tap_flow.status_reason).toContain(vmPort.id);
    const port = await until(api, `/v2.0/ports/${vmPort.id}`, (body) => body.port.status === 'ERROR', 5000);
    expect(port.port.status_reason).toBe(reason);
    const dest = await until(api, `${TS}/${service.id}`, (body) => body.tap_service.status === 'ERROR', 5000);
    expect(dest.tap_service.status_reason).toContain(reason);
    const errorMs = Date.now() - started;

    // The daemon holds nothing in it: the kernel frees it, and the veth peers with it.
    while ((await linkExists(vm, 'vm0') || await linkExists(monitor, 'mon0')) && Date.now() - started < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const goneMs = Date.now() - started;
    expect(await linkExists(vm, 'vm0')).toBe(false);
    expect(await linkExists(monitor, 'mon0')).toBe(false);
    console.log(`daemon: ERROR shown after ${errorMs} ms, veth peers gone after ${goneMs} ms`);

    // A namespace of that name again, with the same interfaces: everything runs again by itself.
    await run('ip', ['netns', 'add', host]);
    await lab.exec(host, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.veth(host, 'monh', monitor, 'mon0');
    await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ACTIVE', 10_000);
    await until(api, `/v2.0/ports/${vmPort.id}`, (body) => body.port.status === 'ACTIVE');
    await until(api, `${TS}/${service.id}`, (body) => body.tap_service.status === 'ACTIVE');
    const capture = await lab.capture(monitor, 'mon0');
    const frames = [1, 2, 3].map((sequence) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'back', sequence }));
    await lab.sendFrames(vm, 'vm0', frames);
    expect(testFramesOf(await capture.stop())).toHaveLength(3);
  });
});
