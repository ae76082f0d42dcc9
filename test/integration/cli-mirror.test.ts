import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { finished, runCli, startCli, stderrContains } from '../helpers/cli.js';
import { makeFrame, testFramesOf } from '../helpers/frames.js';
import { Lab, netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const VM_MAC = '02:00:00:00:03:01';
const HOST_MAC = '02:00:00:00:03:02';

describe('tapas mirror: usage errors', () => {
  it('refuses a destination that is also a source (exit 2)', async () => {
    const result = await runCli(['mirror', '-s', 'eth9@ns', '-d', 'IN', '-t', 'eth9@ns']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('destination eth9@ns is also a source');
  });

  it('refuses an invalid direction, vlan filter or interface name (exit 2)', async () => {
    const direction = await runCli(['mirror', '-s', 'a', '-d', 'SIDEWAYS', '-t', 'b']);
    expect(direction.code).toBe(2);
    expect(direction.stderr).toMatch(/Allowed choices are IN, OUT, BOTH/);
    const vlan = await runCli(['mirror', '-s', 'a', '-d', 'IN', '--vlan-filter', '1-5,', '-t', 'b']);
    expect(vlan.code).toBe(2);
    expect(vlan.stderr).toMatch(/invalid vlan_filter item/);
    const range = await runCli(['mirror', '-s', 'a', '-d', 'IN', '--vlan-filter', '9-3', '-t', 'b']);
    expect(range.code).toBe(2);
    expect(range.stderr).toMatch(/9 > 3/);
    const name = await runCli(['mirror', '-s', 'a-name-far-too-long', '-d', 'IN', '-t', 'b']);
    expect(name.code).toBe(2);
    expect(name.stderr).toMatch(/at most 15 characters/);
    const alias = await runCli(['mirror', '-s', 'eth0:1', '-d', 'IN', '-t', 'b']);
    expect(alias.code).toBe(2);
    expect(alias.stderr).toMatch(/no '\/', ':' or whitespace/);
  });

  it('refuses a VXLAN or ERSPAN III tunnel on the bpf data path, which sends only to local ports, GRE and ERSPAN II so far (exit 2)', async () => {
    const result = await runCli(['mirror', '-s', 'a', '-d', 'IN', '--vxlan', '192.0.2.1', '--vni', '1', '--datapath', 'bpf']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--datapath bpf sends only to a local port (--to), --gre or --erspan so far: VXLAN tunnels need --datapath packet');
    const other = await runCli(['mirror', '-s', 'a', '-d', 'IN', '-t', 'b', '--datapath', 'xdp']);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/Allowed choices are packet, bpf/);
  });

  it('explains itself with --help', async () => {
    const result = await runCli(['mirror', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/IN is what the workload receives/);
    expect(result.stdout).toMatch(/Examples:/);
  });
});

describe.skipIf(!netnsAvailable)(`tapas mirror in namespaces (${netnsSkipReason})`, () => {
  const lab = new Lab('cli');
  let host: string, vm: string, monitor: string;

  beforeAll(async () => {
    ({ host, vm, monitor } = await lab.vmAndMonitor());
  });

  afterAll(() => lab.cleanup());

  it('names an unknown interface or network namespace (exit 1)', async () => {
    const iface = await runCli(['mirror', '-s', `nosuch@${host}`, '-d', 'IN', '-t', `monh@${host}`]);
    expect(iface.code).toBe(1);
    expect(iface.stderr).toContain(`source nosuch@${host}: interface 'nosuch' does not exist`);
    const netns = await runCli(['mirror', '-s', 'vmh@no-such-netns', '-d', 'IN', '-t', `monh@${host}`]);
    expect(netns.code).toBe(1);
    expect(netns.stderr).toContain("network namespace 'no-such-netns' does not exist");
  });

  it('says that it needs CAP_NET_RAW when run without it (exit 1)', async () => {
    const result = await runCli(['mirror', '-s', 'lo', '-d', 'IN', '-t', 'lo2'], {
      prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'],
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/CAP_NET_RAW/);
  });

  it('mirrors until --duration, then prints the counters as JSON', async () => {
    const capture = await lab.capture(monitor, 'mon0');
    const child = startCli(['mirror', '-s', `vmh@${host}`, '-d', 'BOTH', '-t', `monh@${host}`, '--duration', '2', '-f', 'json']);
    const done = finished(child);
    await stderrContains(child, 'tapas: mirroring');
    const sent = Array.from({ length: 10 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'cli', sequence: i }));
    await lab.sendFrames(vm, 'vm0', sent);
    const result = await done;
    const copies = testFramesOf(await capture.stop());
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.mirrored.packets).toBe(10);
    expect(report.stats.sources[0]).toMatchObject({ interface: `vmh@${host}`, ok: true, packets: 10, captureDrops: 0 });
    expect(report.stats.rules[0]).toMatchObject({ ok: true, packets: 10 });
    expect(report.stats.sinks[0]).toMatchObject({ interface: `monh@${host}`, ok: true, packets: 10, errors: 0 });
    expect(report.elapsedSeconds).toBeGreaterThanOrEqual(2);
    expect(report.cpuSeconds.user + report.cpuSeconds.system).toBeGreaterThan(0);
    expect(copies.map((f) => f.toString('hex'))).toEqual(sent.map((f) => f.toString('hex')));
  });

  it('stops on SIGINT, before --duration has passed, and prints a human summary', async () => {
    const started = Date.now();
    const child = startCli(['mirror', '-s', `vmh@${host}`, '-d', 'IN', '-t', `monh@${host}`, '--duration', '60']);
    const done = finished(child);
    await stderrContains(child, 'for 60 s');
    await lab.sendFrames(host, 'vmh', [makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'sigint', sequence: 1 })]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    child.kill('SIGINT');
    const result = await done;
    expect(result.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(result.stdout).toMatch(/^mirrored 1 packets \(60 bytes\)/);
    expect(result.stdout).toContain(`source vmh@${host}: 1 packets seen, 0 capture drops`);
  });

  it('--datapath bpf copies in the kernel: the same copies and counters, and the summary says how it attached', async () => {
    const capture = await lab.capture(monitor, 'mon0');
    const child = startCli(['mirror', '-s', `vmh@${host}`, '-d', 'BOTH', '-t', `monh@${host}`, '--duration', '2', '-f', 'json', '--datapath', 'bpf']);
    const done = finished(child);
    await stderrContains(child, 'tapas: mirroring');
    const toVm = Array.from({ length: 5 }, (_, i) => makeFrame({ dst: VM_MAC, src: HOST_MAC, stream: 'bpfi', sequence: i }));
    const fromVm = Array.from({ length: 5 }, (_, i) => makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'bpfo', sequence: i, length: 200 }));
    await lab.sendFrames(host, 'vmh', toVm);
    await lab.sendFrames(vm, 'vm0', fromVm);
    const result = await done;
    const copies = testFramesOf(await capture.stop());
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.mirrored).toEqual({ packets: 10, bytes: 5 * 60 + 5 * 200 });
    expect(report.stats.sources[0]).toMatchObject({ interface: `vmh@${host}`, ok: true, packets: 10, bpf: { attach: 'tcx' } });
    expect(report.stats.rules[0]).toMatchObject({ ok: true, packets: 10, datapath: 'bpf' });
    expect(copies.map((f) => f.toString('hex'))).toEqual([...toVm, ...fromVm].map((f) => f.toString('hex')));
    // The process is gone, and with it its tcx links: no copy is made any more.
    const after = await lab.capture(monitor, 'mon0', 'after');
    await lab.sendFrames(vm, 'vm0', [makeFrame({ dst: HOST_MAC, src: VM_MAC, stream: 'gone', sequence: 1 })]);
    expect(testFramesOf(await after.stop())).toEqual([]);
  });

  it('--datapath bpf without privileges says so (exit 1)', async () => {
    const result = await runCli(['mirror', '-s', 'lo', '-d', 'IN', '-t', 'lo2', '--datapath', 'bpf'], {
      prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'],
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/the bpf data path cannot run here: .*needs root: CAP_BPF and CAP_NET_ADMIN/);
  });

  it('--datapath auto falls back to packet where bpf cannot run, and says why', async () => {
    // Inside the host namespace, without CAP_BPF and CAP_SYS_ADMIN (which also allows bpf()) but with
    // CAP_NET_RAW: AF_PACKET works, BPF does not.
    const result = await runCli(['mirror', '-s', 'vmh', '-d', 'IN', '-t', 'monh', '--duration', '1', '-f', 'json', '--datapath', 'auto'], {
      prefix: ['ip', 'netns', 'exec', host, 'setpriv', '--bounding-set=-sys_admin,-bpf,-perfmon'],
    });
    expect(result.stderr).toMatch(/tapas: using the packet data path: the bpf data path cannot run here: .*Operation not permitted/);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).stats.sources[0]).toMatchObject({ ok: true, packet: expect.any(Object) });
  });

  it('--datapath auto runs bpf where it can', async () => {
    const result = await runCli(['mirror', '-s', `vmh@${host}`, '-d', 'IN', '-t', `monh@${host}`, '--duration', '1', '-f', 'json', '--datapath', 'auto']);
    expect(result.code).toBe(0);
    expect(result.stderr).not.toMatch(/using the packet data path/);
    expect(JSON.parse(result.stdout).stats.sources[0]).toMatchObject({ ok: true, bpf: { attach: 'tcx' } });
  });
});
