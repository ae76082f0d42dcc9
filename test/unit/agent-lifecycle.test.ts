import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { Agent, type DataPath } from '../../src/agent/agent.js';
import type { DataPathStats } from '../../src/agent/plan-builder.js';
import type { Plan } from '../../src/engine/plan.js';
import type { RequestContext } from '../../src/service/context.js';
import { LocalDesiredState } from '../../src/service/desired-state.js';
import { ObservationBook } from '../../src/service/observations.js';
import { DEFAULT_QUOTAS } from '../../src/service/quotas.js';
import { TaasService } from '../../src/service/taas-service.js';
import { Store } from '../../src/store/store.js';

/**
 * A data path the test drives: it records each plan, holds apply() until the
 * test releases it, and reports as failed the ids the test names. Interfaces
 * whose name starts with "gone" do not exist.
 */
class ScriptedDataPath implements DataPath {
  readonly plans: Plan[] = [];
  failing = new Map<string, string>();
  refuse?: (plan: Plan) => string | undefined;
  private held: Array<() => void> = [];
  hold = false;

  async apply(plan: Plan): Promise<DataPathStats> {
    const refusal = this.refuse?.(plan);
    if (refusal) throw new Error(refusal);
    this.plans.push(plan);
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    return this.statsOf(plan);
  }

  stats(): DataPathStats {
    return this.statsOf(this.plans.at(-1) ?? { sources: [], sinks: [], rules: [] });
  }

  release(): void {
    this.hold = false;
    for (const resolve of this.held.splice(0)) resolve();
  }

  get waiting(): number {
    return this.held.length;
  }

  private statsOf(plan: Plan): DataPathStats {
    const health = (id: string) => (this.failing.has(id) ? { ok: false, reason: this.failing.get(id)! } : { ok: true });
    return {
      sources: plan.sources.map((s) => ({ id: s.id, ...health(s.id), packets: 0, bytes: 0, captureDrops: 0 })),
      sinks: plan.sinks.map((s) => ({ id: s.id, ...health(s.id), packets: 0, bytes: 0, errors: 0 })),
      rules: plan.rules.map((r) => ({ id: r.id, ...health(r.id), packets: 0, bytes: 0, oversize: 0, unavailable: 0 })),
      interfaces: (plan.interfaces ?? []).map((i) => (i.ifname.startsWith('gone')
        ? { id: i.id, present: false, up: false, running: false, mac: '', mtu: 0, reason: `interface '${i.ifname}' does not exist` }
        : { id: i.id, present: true, up: true, running: true, mac: '02:00:00:00:00:09', mtu: 1500 })),
    };
  }
}

const admin: RequestContext = { projectId: 'p', roles: ['admin'] };
const silent = pino({ level: 'silent' });
const until = async (condition: () => boolean) => {
  for (let waited = 0; !condition(); waited += 5) {
    if (waited > 2000) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

describe('status lifecycle (service + agent + store, scripted data path)', () => {
  let dir: string;
  let store: Store;
  let dataPath: ScriptedDataPath;
  let agent: Agent;
  let service: TaasService;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tapas-lifecycle-'));
    store = new Store(dir);
    const desired = new LocalDesiredState(store);
    const observations = new ObservationBook();
    dataPath = new ScriptedDataPath();
    service = new TaasService(store, { hostId: 'h', quotas: DEFAULT_QUOTAS, desired, observations });
    agent = new Agent({ host: 'h', desired, observations, dataPath, logger: silent, intervalMs: 60_000 });
    await agent.start();
  });

  afterEach(async () => {
    dataPath.release();
    await agent.stop();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function setUp() {
    const monitor = service.createPort(admin, { interface: 'monh' });
    const vm = service.createPort(admin, { interface: 'vmh' });
    const tapService = service.createTapService(admin, { port_id: monitor.id });
    const flow = service.createTapFlow(admin, { source_port: vm.id, tap_service_id: tapService.id, direction: 'BOTH' });
    return { monitor, vm, tapService, flow };
  }
  const statusOf = (kind: 'port' | 'tap_service' | 'tap_flow' | 'tap_mirror', id: string) => {
    const { status, status_reason: reason } = service.get(kind, admin, id);
    return { status, status_reason: reason };
  };

  it('creates DOWN, goes ACTIVE once the data path runs it', async () => {
    const { tapService, flow } = setUp();
    expect(flow.status).toBe('DOWN');
    await agent.trigger();
    expect(statusOf('tap_service', tapService.id).status).toBe('ACTIVE');
    expect(statusOf('tap_flow', flow.id)).toEqual({ status: 'ACTIVE', status_reason: null });
    expect(dataPath.plans.at(-1)!.rules.map((r) => r.id)).toEqual([flow.id]);
  });

  it('holds a deleted ACTIVE flow in PENDING_DELETE until the data path has let go, then removes the row', async () => {
    const { flow } = setUp();
    await agent.trigger();
    dataPath.hold = true;
    const outcome = service.delete('tap_flow', admin, flow.id);
    expect(outcome.pending).toBe(true);
    expect(statusOf('tap_flow', flow.id).status).toBe('PENDING_DELETE');

    const released = agent.trigger();
    await until(() => dataPath.waiting > 0);
    // The engine is applying a plan without the flow, but has not finished: the row must still be there.
    expect(dataPath.plans.at(-1)!.rules).toEqual([]);
    expect(store.get('tap_flow', flow.id)!.deleting).toBe(true);
    dataPath.release();
    await released;
    expect(store.get('tap_flow', flow.id)).toBeUndefined();
  });

  it('removes a resource on a host without an agent at once', () => {
    const monitor = service.createPort(admin, { interface: 'monh', host_id: 'elsewhere' });
    expect(service.delete('port', admin, monitor.id).pending).toBe(false);
    expect(store.get('port', monitor.id)).toBeUndefined();
  });

  it('never lets a late agent report complete a delete it did not carry out', async () => {
    const { tapService, flow } = setUp();
    await agent.trigger();
    dataPath.hold = true;
    service.createPort(admin, { interface: 'other0' }); // a change: the agent applies again, with everything in it
    await until(() => dataPath.waiting > 0);
    service.delete('tap_service', admin, tapService.id);
    // Let the in-flight round finish and report, and hold the next one (the plan without the service).
    dataPath.release();
    dataPath.hold = true;
    await until(() => dataPath.waiting > 0);
    expect(dataPath.plans.at(-1)!.sinks).toEqual([]);
    // The round that reported applied a plan that still had the service: the delete waits.
    expect(statusOf('tap_service', tapService.id).status).toBe('PENDING_DELETE');
    expect(statusOf('tap_flow', flow.id).status).toBe('PENDING_DELETE');
    dataPath.release();
    expect(await service.waitUntilGone('tap_service', tapService.id, 2000)).toBe(true);
    expect(store.get('tap_flow', flow.id)).toBeUndefined();
  });

  it('never completes a delete while a refused plan leaves the old one running', async () => {
    const { flow } = setUp();
    await agent.trigger();
    dataPath.refuse = () => 'no memory';
    service.delete('tap_flow', admin, flow.id);
    await agent.trigger();
    expect(statusOf('tap_flow', flow.id).status).toBe('PENDING_DELETE');
    dataPath.refuse = undefined;
    await agent.trigger();
    expect(store.get('tap_flow', flow.id)).toBeUndefined();
  });

  it('answers a waiting delete as soon as the host released it', async () => {
    const { flow } = setUp();
    await agent.trigger();
    service.delete('tap_flow', admin, flow.id);
    expect(await service.waitUntilGone('tap_flow', flow.id, 2000)).toBe(true);
  });

  it('reports ERROR with the data path\'s reason and returns to ACTIVE by itself', async () => {
    const { vm, flow } = setUp();
    dataPath.failing.set(vm.id, "interface 'vmh' does not exist");
    await agent.trigger();
    expect(statusOf('tap_flow', flow.id)).toEqual({
      status: 'ERROR', status_reason: `source port ${vm.id} (vmh): interface 'vmh' does not exist`,
    });
    dataPath.failing.clear();
    await agent.trigger(); // what the timer does every interval
    expect(statusOf('tap_flow', flow.id)).toEqual({ status: 'ACTIVE', status_reason: null });
  });

  it('puts only the rule the data path refused in ERROR', async () => {
    const { vm, flow } = setUp();
    const mirror = service.createTapMirror(admin, { port_id: vm.id, directions: { IN: 1 }, remote_ip: '192.0.2.1', mirror_type: 'gre' });
    dataPath.failing.set(`${mirror.id}/IN`, "unknown sink kind 'gre'");
    await agent.trigger();
    expect(statusOf('tap_flow', flow.id).status).toBe('ACTIVE');
    expect(statusOf('tap_mirror', mirror.id)).toEqual({ status: 'ERROR', status_reason: "IN tunnel to 192.0.2.1: unknown sink kind 'gre'" });
  });

  it('shows a port whose interface is missing in ERROR, with its reason, and a MAC once seen', async () => {
    const port = service.createPort(admin, { interface: 'gone0', netns: 'somewhere' });
    const vm = service.createPort(admin, { interface: 'vmh' });
    expect(vm.mac_address).toBeNull();
    await agent.trigger();
    expect(statusOf('port', port.id)).toEqual({ status: 'ERROR', status_reason: "interface 'gone0' does not exist" });
    expect(service.get('port', admin, vm.id)).toMatchObject({ status: 'ACTIVE', mac_address: '02:00:00:00:00:09' });
  });

  it('shows DOWN with "no agent on host X" for a port bound to a host without an agent', async () => {
    const port = service.createPort(admin, { interface: 'tap9', host_id: 'compute-9' });
    await agent.trigger();
    expect(statusOf('port', port.id)).toEqual({ status: 'DOWN', status_reason: 'no agent on host compute-9' });
  });

  it('puts everything in ERROR when the data path refuses the whole plan, and recovers', async () => {
    const { flow } = setUp();
    dataPath.refuse = () => 'boom';
    await agent.trigger();
    expect(statusOf('tap_flow', flow.id)).toEqual({ status: 'ERROR', status_reason: 'the data path refused the plan: boom' });
    dataPath.refuse = undefined;
    await agent.trigger();
    expect(statusOf('tap_flow', flow.id).status).toBe('ACTIVE');
  });
});

describe('two agents in one process, a tap flow across their hosts', () => {
  let dir: string;
  let store: Store;
  let desired: LocalDesiredState;
  let observations: ObservationBook;
  let service: TaasService;
  const paths = { h1: new ScriptedDataPath(), h2: new ScriptedDataPath() };
  const agents: Partial<Record<'h1' | 'h2', Agent>> = {};

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tapas-hosts-'));
    store = new Store(dir);
    desired = new LocalDesiredState(store);
    observations = new ObservationBook();
    service = new TaasService(store, { hostId: 'h1', quotas: DEFAULT_QUOTAS, desired, observations });
    paths.h1 = new ScriptedDataPath();
    paths.h2 = new ScriptedDataPath();
  });

  afterEach(async () => {
    for (const path of Object.values(paths)) path.release();
    for (const agent of Object.values(agents)) await agent?.stop();
    delete agents.h1;
    delete agents.h2;
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const startAgent = async (host: 'h1' | 'h2') => {
    agents[host] = new Agent({ host, desired, observations, dataPath: paths[host], logger: silent, intervalMs: 60_000 });
    await agents[host]!.start();
  };
  const flowStatus = (id: string) => {
    const { status, status_reason: reason } = service.get('tap_flow', admin, id);
    return { status, status_reason: reason };
  };
  function crossHostFlow() {
    const vm = service.createPort(admin, { interface: 'vmh', host_id: 'h1' });
    const monitor = service.createPort(admin, { interface: 'monh', host_id: 'h2' });
    const tapService = service.createTapService(admin, { port_id: monitor.id });
    return service.createTapFlow(admin, { source_port: vm.id, tap_service_id: tapService.id, direction: 'BOTH' });
  }

  it('is DOWN until both hosts report it, then ACTIVE', async () => {
    const flow = crossHostFlow();
    expect(flowStatus(flow.id)).toEqual({ status: 'DOWN', status_reason: 'no agent on host h1' });
    await startAgent('h1');
    expect(flowStatus(flow.id)).toEqual({ status: 'DOWN', status_reason: 'no agent on host h2' });
    expect(paths.h1.plans.at(-1)!.sinks).toEqual([{ id: flow.tap_service_id, kind: 'host', host: 'h2' }]);
    await startAgent('h2');
    expect(paths.h2.plans.at(-1)!.sinks).toEqual([{ id: flow.tap_service_id, kind: 'port', ifname: 'monh' }]);
    expect(flowStatus(flow.id)).toEqual({ status: 'ACTIVE', status_reason: null });
  });

  it('is ERROR naming the host that fails, and ACTIVE again when it recovers', async () => {
    const flow = crossHostFlow();
    await startAgent('h1');
    await startAgent('h2');
    paths.h2.failing.set(flow.tap_service_id, "interface 'monh' was removed");
    await agents.h2!.trigger();
    expect(flowStatus(flow.id)).toEqual({ status: 'ERROR', status_reason: `on host h2: tap service ${flow.tap_service_id} is in ERROR` });
    paths.h2.failing.clear();
    paths.h1.failing.set(flow.source_port, "interface 'vmh' was removed");
    await agents.h2!.trigger();
    await agents.h1!.trigger();
    expect(flowStatus(flow.id).status_reason).toMatch(/^on host h1: source port .* interface 'vmh' was removed$/);
    paths.h1.failing.clear();
    await agents.h1!.trigger();
    expect(flowStatus(flow.id)).toEqual({ status: 'ACTIVE', status_reason: null });
  });

  it('stays PENDING_DELETE until both hosts released it', async () => {
    const flow = crossHostFlow();
    await startAgent('h1');
    await startAgent('h2');
    paths.h2.hold = true;
    service.delete('tap_flow', admin, flow.id);
    await agents.h1!.trigger();
    expect(paths.h1.plans.at(-1)!.rules).toEqual([]);
    await until(() => paths.h2.waiting > 0);
    expect(flowStatus(flow.id).status).toBe('PENDING_DELETE');
    paths.h2.release();
    expect(await service.waitUntilGone('tap_flow', flow.id, 2000)).toBe(true);
    expect(store.get('tap_flow', flow.id)).toBeUndefined();
  });

  it('completes a delete when the host that held it goes away', async () => {
    const flow = crossHostFlow();
    await startAgent('h1');
    await startAgent('h2');
    paths.h2.hold = true;
    service.delete('tap_flow', admin, flow.id);
    await until(() => paths.h2.waiting > 0);
    await agents.h1!.trigger();
    expect(store.get('tap_flow', flow.id)).toBeDefined();
    observations.unregister('h2');
    expect(store.get('tap_flow', flow.id)).toBeUndefined();
  });
});
