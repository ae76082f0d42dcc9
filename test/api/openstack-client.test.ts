import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess, type ApiClient } from './daemon-process.js';

const run = promisify(execFile);

// Debian's python3-openstackclient + python3-neutron-taas (scripts/packages.txt). CI installs them: never skip there.
const clientInstalled = spawnSync('openstack', ['--version'], { encoding: 'utf8' }).status === 0;
const runClientTests = clientInstalled || process.env.CI === 'true';

interface ClientResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The real OpenStack client against the daemon, as an operator would use it:
 * `openstack --os-auth-type none --os-endpoint URL tap service|flow ...`.
 */
describe.skipIf(!runClientTests)('the OpenStack client (python3-openstackclient + python3-neutron-taas)', () => {
  let daemon: DaemonProcess;
  let api: ApiClient;
  let monitorPort: any, vmPort: any;

  beforeAll(async () => {
    daemon = await DaemonProcess.start();
    api = daemon.client();
    monitorPort = await api.port('monitor-port', 'osc0');
    vmPort = await api.port('vm-port', 'osc1');
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
  });

  async function openstack(...args: string[]): Promise<ClientResult> {
    const env = { ...process.env };
    for (const key of Object.keys(env)) if (key.startsWith('OS_')) delete env[key];
    try {
      const { stdout, stderr } = await run('openstack', ['--os-auth-type', 'none', '--os-endpoint', daemon.url, ...args], { env, timeout: 60_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failure = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof failure.code === 'number' ? failure.code : -1, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
    }
  }

  async function openstackJson(...args: string[]): Promise<any> {
    const result = await openstack(...args, '-f', 'json');
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout);
  }

  it('network agent list shows this host\'s TaaS agent, alive', async () => {
    const agents = await openstackJson('network', 'agent', 'list');
    expect(agents).toEqual([expect.objectContaining({ 'Agent Type': 'TaaS agent', Alive: true, State: true, Binary: 'tapas-agent' })]);
    const host = (await api.get(`/v2.0/ports/${vmPort.id}`)).body.port['binding:host_id'];
    expect(agents[0].Host).toBe(host);
  });

  it('tap service create --port <port name> prints the new service', async () => {
    const service = await openstackJson('tap', 'service', 'create', '--name', 'ts_0', '--port', 'monitor-port');
    expect(service).toMatchObject({ Name: 'ts_0', Port: monitorPort.id, Status: 'DOWN', Tenant: 'default' });
    expect(service.ID).toMatch(/^[0-9a-f-]{36}$/);
    expect((await api.get(`/v2.0/taas/tap_services/${service.ID}`)).body.tap_service.name).toBe('ts_0');
  });

  it('tap flow create --port <source port name> --tap-service ts_0 --direction BOTH prints the new flow', async () => {
    const service = (await api.get('/v2.0/taas/tap_services?name=ts_0')).body.tap_services[0];
    const flow = await openstackJson('tap', 'flow', 'create', '--name', 'tf_0', '--port', 'vm-port', '--tap-service', 'ts_0', '--direction', 'BOTH');
    expect(flow).toMatchObject({ Name: 'tf_0', Direction: 'BOTH', source_port: vmPort.id, tap_service_id: service.id, Tenant: 'default' });
  });

  it('list and show print the expected fields', async () => {
    const services = await openstackJson('tap', 'service', 'list');
    expect(services).toEqual([expect.objectContaining({ Name: 'ts_0', Port: monitorPort.id, Status: expect.any(String) })]);
    const flows = await openstackJson('tap', 'flow', 'list');
    expect(flows).toEqual([expect.objectContaining({ Name: 'tf_0', Direction: 'BOTH', source_port: vmPort.id })]);

    const shown = await openstackJson('tap', 'flow', 'show', 'tf_0');
    expect(shown).toMatchObject({ Name: 'tf_0', Direction: 'BOTH', source_port: vmPort.id });
    const table = await openstack('tap', 'service', 'show', 'ts_0');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/\|\s+Name\s+\|\s+ts_0\s+\|/);
    expect(table.stdout).toMatch(new RegExp(`\\|\\s+Port\\s+\\|\\s+${monitorPort.id}\\s+\\|`));
  });

  it('update --name renames the service and the flow', async () => {
    const service = await openstackJson('tap', 'service', 'update', 'ts_0', '--name', 'ts_1');
    expect(service.Name).toBe('ts_1');
    const flow = await openstackJson('tap', 'flow', 'update', 'tf_0', '--name', 'tf_1', '--description', 'renamed');
    expect(flow).toMatchObject({ Name: 'tf_1', description: 'renamed' });
    expect((await api.get('/v2.0/taas/tap_flows?name=tf_1')).body.tap_flows).toHaveLength(1);
  });

  it('an invalid direction gets the client\'s usage error', async () => {
    const result = await openstack('tap', 'flow', 'create', '--port', 'vm-port', '--tap-service', 'ts_1', '--direction', 'SIDEWAYS');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("argument --direction: invalid choice: 'SIDEWAYS' (choose from 'IN', 'OUT', 'BOTH')");
  });

  it('a missing tap service gets the client\'s not-found error', async () => {
    const result = await openstack('tap', 'flow', 'create', '--port', 'vm-port', '--tap-service', 'no_such_service', '--direction', 'IN');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Unable to find tap_service with name or id 'no_such_service'");
  });

  it('an error from the server is printed with its Neutron message', async () => {
    const result = await openstack('tap', 'flow', 'create', '--port', 'vm-port', '--tap-service', 'ts_1', '--direction', 'IN', '--vlan-filter', '1-5,');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Invalid input for vlan_filter');
    const loop = await openstack('tap', 'flow', 'create', '--port', 'monitor-port', '--tap-service', 'ts_1', '--direction', 'IN');
    expect(loop.code).toBe(1);
    expect(loop.stderr).toContain('is the destination of tap service');
  });

  it('delete removes the flow and the service', async () => {
    const flow = await openstack('tap', 'flow', 'delete', 'tf_1');
    expect(flow.code, flow.stderr).toBe(0);
    const service = await openstack('tap', 'service', 'delete', 'ts_1');
    expect(service.code, service.stderr).toBe(0);
    expect((await api.get('/v2.0/taas/tap_flows')).body.tap_flows).toEqual([]);
    expect((await api.get('/v2.0/taas/tap_services')).body.tap_services).toEqual([]);
    expect(await openstackJson('tap', 'service', 'list')).toEqual([]);
    const again = await openstack('tap', 'service', 'delete', 'ts_1');
    expect(again.code).toBe(1);
  });
});
