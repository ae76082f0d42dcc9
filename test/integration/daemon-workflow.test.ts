import { readdirSync, readFileSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, until, type ApiClient } from '../api/daemon-process.js';
import { makeFrame, parseTestFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';

const VM_MAC = '02:00:00:00:10:01';
const HOST_MAC = '02:00:00:00:10:02';
const TS = '/v2.0/taas/tap_services';

/** The tcx links a process holds, from the kernel's account of its descriptors. */
function tcxLinksOf(pid: number): number {
  let links = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (/^link_type:\s+tcx$/m.test(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))) links += 1;
    } catch {
      // closed meanwhile
    }
  }
  return links;
}
const TF = '/v2.0/taas/tap_flows';

/**
 * The TaaS usage workflow through the API, with real traffic: a "VM" behind
 * the veth vmh, a monitor behind monh, both host sides in a host namespace of
 * the test's own. The daemon runs as the product does: its own process, its
 * own store.
 */
describe.skipIf(!netnsAvailable).each([
  { datapath: 'packet', args: [] },
  // The kernel data path under the whole workflow: plans changed by the API, ports that vanish and return.
  { datapath: 'bpf', args: ['--datapath', 'bpf'] },
])(`TaaS workflow through the daemon, $datapath data path (${netnsSkipReason})`, ({ datapath, args }) => {
  const lab = new Lab('dwf');
  let host: string, vm: string, monitor: string;
  let daemon: DaemonProcess;
  let api: ApiClient;
  let vmPort: any, monitorPort: any, service: any;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
    daemon = await DaemonProcess.start({ args });
    api = daemon.client();
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    await lab.cleanup();
  });

  /** Frames into the VM (the host side transmits them) and frames the VM sends. */
  async function sendTraffic(stream: string) {
    const toVm = [1, 2, 3].map((sequence) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: `${stream}i`, sequence, length: 60 + sequence * 100 }));
    const fromVm = [1, 2, 3].map((sequence) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: `${stream}o`, sequence, length: 60 + sequence * 200 }));
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    return { toVm, fromVm };
  }

  const hex = (frames: Buffer[]) => frames.map((frame) => frame.toString('hex'));

  it('registers the ports, creates a tap service and a flow DOWN, and both go ACTIVE', async () => {
    vmPort = await api.port('vm-port', 'vmh', host);
    monitorPort = await api.port('monitor-port', 'monh', host);
    const seenPort = await until(api, `/v2.0/ports/${vmPort.id}`, (body) => body.port.status === 'ACTIVE');
    expect(seenPort.port.mac_address).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);

    const createdService = await api.post(TS, { tap_service: { name: 'ts_0', port_id: monitorPort.id } });
    expect(createdService.status).toBe(201);
    expect(createdService.body.tap_service.status).toBe('DOWN');
    service = createdService.body.tap_service;
    const createdFlow = await api.post(TF, { tap_flow: { name: 'tf_0', source_port: vmPort.id, tap_service_id: service.id, direction: 'BOTH' } });
    expect(createdFlow.body.tap_flow.status).toBe('DOWN');

    await until(api, `${TS}/${service.id}`, (body) => body.tap_service.status === 'ACTIVE');
    const flow = await until(api, `${TF}/${createdFlow.body.tap_flow.id}`, (body) => body.tap_flow.status === 'ACTIVE');
    expect(flow.tap_flow.status_reason).toBeNull();
  });

  it('mirrors the VM\'s traffic to the monitor, both directions, byte for byte, each frame once', async () => {
    const capture = await lab.capture(monitor, 'mon0');
    const { toVm, fromVm } = await sendTraffic('wf');
    const copies = testFramesOf(await capture.stop());
    expect(hex(copies)).toEqual(hex([...toVm, ...fromVm]));
    // The daemon holds a tcx link per hook of the source exactly when it runs the kernel's data path.
    expect(tcxLinksOf(daemon.child.pid!)).toBe(datapath === 'bpf' ? 2 : 0);
  });

  it('counts what each flow mirrored in /metrics', async () => {
    const flow = (await api.get(`${TF}?name=tf_0`)).body.tap_flows[0];
    const metrics = (await api.get('/metrics')).body as string;
    const packets = new RegExp(`^tapas_tap_flow_packets_total\\{[^}]*tap_flow_id="${flow.id}"[^}]*\\} (\\d+)$`, 'm').exec(metrics);
    expect(Number(packets?.[1])).toBe(6);
    const bytes = new RegExp(`^tapas_tap_flow_bytes_total\\{[^}]*tap_flow_id="${flow.id}"[^}]*\\} (\\d+)$`, 'm').exec(metrics);
    expect(Number(bytes?.[1])).toBe([160, 260, 360, 260, 460, 660].reduce((a, b) => a + b, 0));
    expect(metrics).toMatch(new RegExp(`^tapas_tap_flow_dropped_total\\{[^}]*tap_flow_id="${flow.id}"[^}]*\\} 0$`, 'm'));
    expect(metrics).toMatch(/^tapas_resources\{kind="tap_flow",status="ACTIVE"\} 1$/m);
  });

  it('honours direction and vlan_filter set through the API', async () => {
    const flow = (await api.get(`${TF}?name=tf_0`)).body.tap_flows[0];
    expect((await api.delete(`${TF}/${flow.id}`)).status).toBe(204);
    const tagged = await api.create(TF, {
      tap_flow: { name: 'tf_vlan', source_port: vmPort.id, tap_service_id: service.id, direction: 'OUT', vlan_filter: '10-20' },
    });
    await until(api, `${TF}/${tagged.id}`, (body) => body.tap_flow.status === 'ACTIVE');
    const capture = await lab.capture(monitor, 'mon0');
    const frames = [5, 15, 25].map((vlan) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'vl', sequence: vlan, vlan }));
    await lab.sendFrames(vm, 'vm0', [...frames, makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'vl', sequence: 99 })]);
    await lab.sendFrames(host, 'vmh', [makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'vl', sequence: 16, vlan: 16 })]);
    const copies = testFramesOf(await capture.stop());
    expect(copies.map((frame) => parseTestFrame(frame)?.sequence)).toEqual([15]);
    expect((await api.delete(`${TF}/${tagged.id}`)).status).toBe(204);
  });

  it('stops the copies once the flow is deleted', async () => {
    const flow = await api.create(TF, { tap_flow: { name: 'tf_del', source_port: vmPort.id, tap_service_id: service.id, direction: 'BOTH' } });
    await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ACTIVE');
    const before = await lab.capture(monitor, 'mon0');
    await sendTraffic('b4');
    expect(testFramesOf(await before.stop())).toHaveLength(6);

    expect((await api.delete(`${TF}/${flow.id}`)).status).toBe(204);
    expect((await api.get(`${TF}/${flow.id}`)).status).toBe(404);
    const after = await lab.capture(monitor, 'mon0');
    await sendTraffic('af');
    expect(testFramesOf(await after.stop())).toEqual([]);
  });

  it('puts a flow in ERROR with a reason when its source interface vanishes, and back to ACTIVE when it returns', async () => {
    const flow = await api.create(TF, { tap_flow: { name: 'tf_err', source_port: vmPort.id, tap_service_id: service.id, direction: 'BOTH' } });
    await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ACTIVE');

    await lab.deleteLink(host, 'vmh');
    const failed = await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ERROR');
    expect(failed.tap_flow.status_reason).toContain('vmh');
    expect(failed.tap_flow.status_reason).toContain(vmPort.id);
    const port = await until(api, `/v2.0/ports/${vmPort.id}`, (body) => body.port.status === 'ERROR');
    expect(port.port.status_reason).toMatch(/vmh/);
    // The service's own port is fine: only the flow is affected.
    expect((await api.get(`${TS}/${service.id}`)).body.tap_service.status).toBe('ACTIVE');

    await lab.veth(host, 'vmh', vm, 'vm0');
    await until(api, `${TF}/${flow.id}`, (body) => body.tap_flow.status === 'ACTIVE', 15_000);
    expect((await api.get(`${TF}/${flow.id}`)).body.tap_flow.status_reason).toBeNull();
    await until(api, `/v2.0/ports/${vmPort.id}`, (body) => body.port.status === 'ACTIVE');

    // Give the re-opened ring a moment, then check that mirroring resumed.
    await sleep(200);
    const capture = await lab.capture(monitor, 'mon0');
    const { toVm, fromVm } = await sendTraffic('rc');
    expect(hex(testFramesOf(await capture.stop()))).toEqual(hex([...toVm, ...fromVm]));
  });

  it('puts the tap service in ERROR when the monitor port vanishes, and recovers it', async () => {
    await lab.deleteLink(host, 'monh');
    const failed = await until(api, `${TS}/${service.id}`, (body) => body.tap_service.status === 'ERROR');
    expect(failed.tap_service.status_reason).toContain('monh');
    const flows = (await api.get(`${TF}?tap_service_id=${service.id}`)).body.tap_flows;
    expect(flows.every((flow: { status: string }) => flow.status === 'ERROR')).toBe(true);
    await lab.veth(host, 'monh', monitor, 'mon0');
    await until(api, `${TS}/${service.id}`, (body) => body.tap_service.status === 'ACTIVE', 15_000);
    await until(api, `${TF}?tap_service_id=${service.id}`, (body) => body.tap_flows.every((flow: { status: string }) => flow.status === 'ACTIVE'));
  });

  it('deleting the tap service removes its flows and releases the monitor port', async () => {
    expect((await api.delete(`${TS}/${service.id}`)).status).toBe(204);
    const remaining = await until(api, TF, (body) => body.tap_flows.length === 0);
    expect(remaining.tap_flows).toEqual([]);
    const capture = await lab.capture(monitor, 'mon0');
    await sendTraffic('gn');
    expect(testFramesOf(await capture.stop())).toEqual([]);
    // The same port can serve a new tap service at once.
    expect((await api.post(TS, { tap_service: { port_id: monitorPort.id } })).status).toBe(201);
  });
});
