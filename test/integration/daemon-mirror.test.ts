import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, until, type ApiClient } from '../api/daemon-process.js';
import { makeFrame, parseTestFrame } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason, sleep } from '../helpers/netns.js';
import { tunnelPackets, vxlanPackets } from './tunnel-decode.js';

const VM_MAC = '02:00:00:00:30:01';
const HOST_MAC = '02:00:00:00:30:02';
const TM = '/v2.0/taas/tap_mirrors';
const HOST_IP = '10.77.0.1';
const COLLECTOR_IP = '10.77.0.2';

interface Tunnelled {
  protocol: number;
  key?: number;
  sequence?: number;
  erspan?: { version: number; session: number; index: number };
  inner: Buffer;
}

/** Decodes what tcpdump captured on the collector: Ethernet, IPv4, GRE, then (ERSPAN II) 8 bytes, then the frame. */
function decodeTunnel(frame: Buffer): Tunnelled | undefined {
  if (frame.readUInt16BE(12) !== 0x0800) return undefined;
  const ip = frame.subarray(14);
  if (ip[9] !== 47) return undefined;
  const gre = ip.subarray((ip[0]! & 0x0f) * 4);
  const flags = gre.readUInt16BE(0);
  const protocol = gre.readUInt16BE(2);
  let offset = 4;
  const result: Partial<Tunnelled> = { protocol };
  if (flags & 0x2000) {
    result.key = gre.readUInt32BE(offset);
    offset += 4;
  }
  if (flags & 0x1000) {
    result.sequence = gre.readUInt32BE(offset);
    offset += 4;
  }
  if (protocol === 0x88be) {
    const w0 = gre.readUInt32BE(offset);
    const w1 = gre.readUInt32BE(offset + 4);
    result.erspan = { version: w0 >>> 28, session: w0 & 0x3ff, index: w1 & 0xfffff };
    offset += 8;
  }
  return { ...result, inner: Buffer.from(gre.subarray(offset)) } as Tunnelled;
}

/**
 * Tap mirrors through the API: the VM's port is mirrored per direction into
 * GRE or ERSPAN II toward a collector in a namespace of the test's own.
 */
describe.skipIf(!netnsAvailable)(`tap mirrors through the daemon (${netnsSkipReason})`, () => {
  const lab = new Lab('dmi');
  let host: string, vm: string, collector: string;
  let daemon: DaemonProcess;
  let api: ApiClient;
  let vmPort: any;

  beforeAll(async () => {
    host = await lab.namespace('host');
    vm = await lab.namespace('vm');
    collector = await lab.namespace('col');
    await lab.veth(host, 'vmh', vm, 'vm0');
    await lab.veth(host, 'colh', collector, 'col0');
    await lab.exec(host, 'ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'colh']);
    await lab.exec(collector, 'ip', ['addr', 'add', `${COLLECTOR_IP}/24`, 'dev', 'col0']);
    daemon = await DaemonProcess.start();
    api = daemon.client();
    vmPort = await api.port('vm', 'vmh', host);
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    await lab.cleanup();
  });

  async function tunnelled(stream: string): Promise<{ toVm: Buffer[]; fromVm: Buffer[]; packets: Tunnelled[] }> {
    const capture = await lab.capture(collector, 'col0');
    const toVm = [1, 2].map((sequence) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: `${stream}i`, sequence, length: 100 }));
    const fromVm = [1, 2].map((sequence) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: `${stream}o`, sequence, length: 200 }));
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    const packets = (await capture.stop()).map(decodeTunnel).filter((p): p is Tunnelled => p !== undefined && parseTestFrame(p.inner) !== undefined);
    return { toVm, fromVm, packets };
  }

  it('sends each direction in GRE with its own key, the original frame inside', async () => {
    const mirror = await api.create(TM, {
      tap_mirror: { name: 'gre-mirror', port_id: vmPort.id, remote_ip: COLLECTOR_IP, mirror_type: 'gre', directions: { IN: 101, OUT: 102 } },
    });
    expect(mirror.status).toBe('DOWN');
    await until(api, `${TM}/${mirror.id}`, (body) => body.tap_mirror.status === 'ACTIVE');

    const { toVm, fromVm, packets } = await tunnelled('gr');
    expect(packets.every((p) => p.protocol === 0x6558)).toBe(true);
    expect(packets.filter((p) => p.key === 101).map((p) => p.inner.toString('hex'))).toEqual(toVm.map((f) => f.toString('hex')));
    expect(packets.filter((p) => p.key === 102).map((p) => p.inner.toString('hex'))).toEqual(fromVm.map((f) => f.toString('hex')));

    const metrics = (await api.get('/metrics')).body as string;
    const sent = new RegExp(`^tapas_tap_mirror_packets_total\\{[^}]*tap_mirror_id="${mirror.id}"[^}]*direction="OUT"[^}]*\\} (\\d+)$`, 'm').exec(metrics);
    expect(Number(sent?.[1])).toBe(2);

    expect((await api.delete(`${TM}/${mirror.id}`)).status).toBe(204);
    expect((await tunnelled('gd')).packets).toEqual([]);
  });

  it('sends ERSPAN type II with the session id and OpenStack\'s index, one direction only', async () => {
    const mirror = await api.create(TM, {
      tap_mirror: { name: 'erspan-mirror', port_id: vmPort.id, remote_ip: COLLECTOR_IP, mirror_type: 'erspanv1', directions: { OUT: 102 } },
    });
    await until(api, `${TM}/${mirror.id}`, (body) => body.tap_mirror.status === 'ACTIVE');
    const { fromVm, packets } = await tunnelled('er');
    expect(packets.map((p) => p.inner.toString('hex'))).toEqual(fromVm.map((f) => f.toString('hex')));
    for (const packet of packets) {
      expect(packet.protocol).toBe(0x88be);
      expect(packet.erspan).toEqual({ version: 1, session: 102, index: 0x102 });
    }
    expect(packets[1]!.sequence).toBe(packets[0]!.sequence! + 1);
    expect((await api.delete(`${TM}/${mirror.id}`)).status).toBe(204);
  });

  /** Frames to and from the VM, and every Ethernet frame the collector's link saw meanwhile. */
  async function wire(stream: string): Promise<{ toVm: Buffer[]; fromVm: Buffer[]; frames: Buffer[] }> {
    const capture = await lab.capture(collector, 'col0');
    const toVm = [1, 2, 3].map((sequence) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: `${stream}i`, sequence, length: 100 }));
    const fromVm = [1, 2].map((sequence) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: `${stream}o`, sequence, length: 200 }));
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    return { toVm, fromVm, frames: await capture.stop() };
  }
  const hex = (frames: Buffer[]) => frames.map((frame) => frame.toString('hex'));

  it('an erspanv2 mirror with directions BOTH: one ERSPAN III session, D=0 for IN and D=1 for OUT; stats under BOTH', async () => {
    const mirror = await api.create(TM, {
      tap_mirror: { name: 'e3-both', port_id: vmPort.id, remote_ip: COLLECTOR_IP, mirror_type: 'erspanv2', directions: { BOTH: 300 } },
    });
    await until(api, `${TM}/${mirror.id}`, (body) => body.tap_mirror.status === 'ACTIVE');
    const { toVm, fromVm, frames } = await wire('e3');
    const packets = tunnelPackets(frames).filter((p) => parseTestFrame(p.inner) !== undefined);
    expect(packets.map((p) => p.erspan3?.session)).toEqual(Array(5).fill(300));
    expect(hex(packets.filter((p) => p.erspan3!.d === 0).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(packets.filter((p) => p.erspan3!.d === 1).map((p) => p.inner))).toEqual(hex(fromVm));
    // The agent reports counters once a second: bounded polling of the stats report.
    let entry: { directions: Record<string, { tunnel_id: number; packets: number | null }> } | undefined;
    for (let attempt = 0; attempt < 50 && entry?.directions.BOTH?.packets !== 5; attempt += 1) {
      if (attempt > 0) await sleep(100);
      const report = (await api.get('/v2.0/taas/stats')).body.stats;
      entry = report.tap_mirrors.find((m: { id: string }) => m.id === mirror.id);
    }
    expect(entry?.directions).toEqual({ BOTH: expect.objectContaining({ tunnel_id: 300, packets: 5 }) });
    expect((await api.delete(`${TM}/${mirror.id}`)).status).toBe(204);
  });

  it('a vxlan mirror on udp_port 4790: VNI = the tunnel id, the original frames inside UDP', async () => {
    const mirror = await api.create(TM, {
      tap_mirror: { name: 'vx', port_id: vmPort.id, remote_ip: COLLECTOR_IP, mirror_type: 'vxlan', directions: { IN: 70000, OUT: 70001 }, udp_port: 4790 },
    });
    expect(mirror.udp_port).toBe(4790);
    await until(api, `${TM}/${mirror.id}`, (body) => body.tap_mirror.status === 'ACTIVE');
    const { toVm, fromVm, frames } = await wire('vx');
    const packets = vxlanPackets(frames, 4790);
    expect(hex(packets.filter((p) => p.vni === 70000).map((p) => p.inner))).toEqual(hex(toVm));
    expect(hex(packets.filter((p) => p.vni === 70001).map((p) => p.inner))).toEqual(hex(fromVm));
    expect(packets).toHaveLength(5);
    expect((await api.delete(`${TM}/${mirror.id}`)).status).toBe(204);
  });

  it('puts a mirror toward an unroutable remote in ERROR with a reason', async () => {
    const mirror = await api.create(TM, {
      tap_mirror: { name: 'nowhere', port_id: vmPort.id, remote_ip: '203.0.113.9', mirror_type: 'gre', directions: { IN: 9 } },
    });
    const failed = await until(api, `${TM}/${mirror.id}`, (body) => body.tap_mirror.status === 'ERROR');
    expect(failed.tap_mirror.status_reason).toContain('203.0.113.9');
    expect((await api.delete(`${TM}/${mirror.id}`)).status).toBe(204);
  });
});
