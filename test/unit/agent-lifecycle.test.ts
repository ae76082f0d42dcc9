import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { Agent, type DataPath } from '../../src/agent/agent.js';
import type { EngineStats, InterfaceInfo, Plan } from '../../src/engine/engine.js';
import type { RequestContext } from '../../src/service/context.js';
import { DEFAULT_QUOTAS } from '../../src/service/quotas.js';
import { TaasService } from '../../src/service/taas-service.js';
import { Store } from '../../src/store/store.js';

/**
 * A data path the test drives: it records each plan, holds apply() until the
 * test releases it, and reports as failed the ids the test names.
 */
class ScriptedDataPath implements DataPath {
  readonly plans: Plan[] = [];
  failing = new Map<string, string>();
  refuse?: (plan: Plan) => string | undefined;
  private held: Array<() => void> = [];
  hold = false;

  async apply(plan: Plan): Promise<EngineStats> {
    const refusal = this.refuse?.(plan);
    if (refusal) throw new Error(refusal);
    this.plans.push(plan);
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    return this.statsOf(plan);
  }

  stats(): EngineStats {
    return this.statsOf(this.plans.at(-1) ?? { sources: [], sinks: [], rules: [] });
  }

  release(): void {
    this.hold = false;
    for (const resolve of this.held.splice(0)) resolve();
  }

  get waiting(): number {
    return this.held.length;
  }

  private statsOf(plan: Plan): EngineStats {
    const health = (id: string) => (this.failing.has(id) ? { ok: false, reason: this.failing.get(id)! } : { ok: true });
    return {
      sources: plan.sources.map((s) => ({ id: s.id, ...health(s.id), packets: 0, bytes: 0, ringDrops: 0, ringFreezes: 0, truncated: 0, blockTimeoutMs: 1 })),
      sinks: plan.sinks.map((s) => ({ id: s.id, ...health(s.id), packets: 0, bytes: 0, errors: 0, truncated: 0, fragmented: 0 })),
      rules: plan.rules.map((r) => ({ id: r.id, packets: 0, bytes: 0, oversize: 0, unavailable: 0 })),
    };
  }
}

const admin: RequestContext = { projectId: 'p', roles: ['admin'] };
const probe = (ifname: string): InterfaceInfo => {
  if (ifname.startsWith('gone')) throw new Error(`interface '${ifname}' does not exist`);
  return { ifindex: 1, mtu: 1500, mac: '02:00:00:00:00:09', up: true };
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
    dataPath = new ScriptedDataPath();
    agent = new Agent({ store, dataPath, probe, logger: pino({ level: 'silent' }), intervalMs: 60_000 });
    service = new TaasService(store, { hostId: 'h', quotas: DEFAULT_QUOTAS, onChange: () => void agent.trigger() });
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

  it('creates DOWN, goes ACTIVE once the data path runs it', async () => {
    const { tapService, flow } = setUp();
    expect(flow.status).toBe('DOWN');
    await agent.trigger();
    expect(store.get('tap_service', tapService.id)!.status).toBe('ACTIVE');
    expect(store.get('tap_flow', flow.id)).toMatchObject({ status: 'ACTIVE', status_reason: null });
    expect(dataPath.plans.at(-1)!.rules.map((r) => r.id)).toEqual([flow.id]);
  });

  it('holds a deleted ACTIVE flow in PENDING_DELETE until the data path has let go, then removes the row', async () => {
    const { flow } = setUp();
    await agent.trigger();
    dataPath.hold = true;
    const outcome = service.delete('tap_flow', admin, flow.id);
    expect(outcome.pending).toBe(true);
    expect(service.get('tap_flow', admin, flow.id).status).toBe('PENDING_DELETE');

    const released = agent.trigger();
    while (dataPath.waiting === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    // The engine is applying a plan without the flow, but has not finished: the row must still be there.
    expect(dataPath.plans.at(-1)!.rules).toEqual([]);
    expect(store.get('tap_flow', flow.id)!.status).toBe('PENDING_DELETE');
    dataPath.release();
    await released;
    expect(store.get('tap_flow', flow.id)).toBeUndefined();
  });

  it('removes a resource the data path never ran at once', () => {
    const { flow } = setUp();
    expect(service.delete('tap_flow', admin, flow.id).pending).toBe(false);
    expect(store.get('tap_flow', flow.id)).toBeUndefined();
  });

  it('never lets a late agent report bring back a resource being deleted', async () => {
    const { vm, tapService, flow } = setUp();
    await agent.trigger();
    dataPath.hold = true;
    const inFlight = agent.trigger(); // snapshot taken with everything ACTIVE
    while (dataPath.waiting === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    service.delete('tap_service', admin, tapService.id);
    // The in-flight round will report the flow in ERROR: a change it must not write over the delete.
    dataPath.failing.set(vm.id, 'went away');
    dataPath.release();
    await inFlight;
    expect(store.get('tap_service', tapService.id)!.status).toBe('PENDING_DELETE');
    expect(store.get('tap_flow', flow.id)!.status).toBe('PENDING_DELETE');
    await agent.trigger();
    expect(store.get('tap_service', tapService.id)).toBeUndefined();
    expect(store.get('tap_flow', flow.id)).toBeUndefined();
  });

  it('reports ERROR with the data path\'s reason and returns to ACTIVE by itself', async () => {
    const { vm, flow } = setUp();
    dataPath.failing.set(vm.id, "interface 'vmh' does not exist");
    await agent.trigger();
    expect(store.get('tap_flow', flow.id)).toMatchObject({
      status: 'ERROR', status_reason: `source port ${vm.id} (vmh): interface 'vmh' does not exist`,
    });
    dataPath.failing.clear();
    await agent.trigger(); // what the timer does every interval
    expect(store.get('tap_flow', flow.id)).toMatchObject({ status: 'ACTIVE', status_reason: null });
  });

  it('keeps local mirroring running when the engine refuses the tunnel sinks, and says why mirrors are in ERROR', async () => {
    const { vm, flow } = setUp();
    dataPath.refuse = (plan) => (plan.sinks.some((sink) => sink.kind !== 'port') ? "unknown sink kind 'gre'" : undefined);
    const mirror = service.createTapMirror(admin, { port_id: vm.id, directions: { IN: 1 }, remote_ip: '192.0.2.1', mirror_type: 'gre' });
    await agent.trigger();
    expect(store.get('tap_flow', flow.id)!.status).toBe('ACTIVE');
    expect(store.get('tap_mirror', mirror.id)).toMatchObject({ status: 'ERROR', status_reason: "the data path refused the plan: unknown sink kind 'gre'" });
  });

  it('shows a port whose interface is missing in ERROR, with its reason', async () => {
    const port = service.createPort(admin, { interface: 'gone0', netns: 'somewhere' });
    await agent.trigger();
    expect(store.get('port', port.id)).toMatchObject({ status: 'ERROR', status_reason: "interface 'gone0' does not exist" });
  });
});
