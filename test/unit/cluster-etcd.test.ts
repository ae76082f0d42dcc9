import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Etcd3 } from 'etcd3';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { Agent, type DataPath } from '../../src/agent/agent.js';
import type { DataPathStats } from '../../src/agent/plan-builder.js';
import { connectEtcd, readPrefix } from '../../src/cluster/etcd.js';
import { EtcdDesiredState } from '../../src/cluster/etcd-desired-state.js';
import { EtcdObservations } from '../../src/cluster/etcd-observations.js';
import { Keyspace } from '../../src/cluster/keys.js';
import { EtcdPublisher } from '../../src/cluster/publisher.js';
import { EtcdStateWatcher } from '../../src/cluster/state-watcher.js';
import type { Plan } from '../../src/engine/plan.js';
import type { RequestContext } from '../../src/service/context.js';
import { ObservationBook } from '../../src/service/observations.js';
import { DEFAULT_QUOTAS } from '../../src/service/quotas.js';
import { TaasService } from '../../src/service/taas-service.js';
import { Store } from '../../src/store/store.js';
import { EtcdServer, TcpProxy, etcdAvailable, etcdSkipReason, makeCertificates } from '../helpers/etcd.js';

/** A data path that runs every plan in full and remembers them. */
class RecordingDataPath implements DataPath {
  readonly plans: Plan[] = [];

  async apply(plan: Plan): Promise<DataPathStats> {
    this.plans.push(plan);
    return this.stats();
  }

  stats(): DataPathStats {
    const plan = this.plans.at(-1) ?? { sources: [], sinks: [], rules: [] };
    const ok = { ok: true, packets: 0, bytes: 0 };
    return {
      sources: plan.sources.map((s) => ({ id: s.id, ...ok, captureDrops: 0 })),
      sinks: plan.sinks.map((s) => ({ id: s.id, ...ok, errors: 0 })),
      rules: plan.rules.map((r) => ({ id: r.id, ...ok, oversize: 0, unavailable: 0 })),
      interfaces: (plan.interfaces ?? []).map((i) => ({ id: i.id, present: true, up: true, running: true, mac: '02:00:00:00:00:01', mtu: 1500 })),
      terminations: (plan.terminations ?? []).map((t) => ({ id: t.id, ok: true, packets: 0, errors: 0 })),
    };
  }
}

const admin: RequestContext = { projectId: 'p', roles: ['admin'] };
const silent = pino({ level: 'silent' });

async function until<T>(what: string, check: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

interface RunningAgent {
  host: string;
  client: Etcd3;
  desired: EtcdDesiredState;
  observations: EtcdObservations;
  dataPath: RecordingDataPath;
  agent: Agent;
  stop(): Promise<void>;
}

describe.skipIf(!etcdAvailable)(`cluster mode over a real etcd (${etcdSkipReason})`, () => {
  let etcd: EtcdServer;
  let proxy: TcpProxy;
  let prefixCount = 0;

  beforeAll(async () => {
    etcd = await EtcdServer.start();
    proxy = await TcpProxy.start({ host: '127.0.0.1', port: Number(new URL(etcd.url).port) });
  });
  afterAll(async () => {
    await proxy?.cut();
    await etcd?.destroy();
  });

  let dir: string;
  let store: Store;
  let keys: Keyspace;
  let serverClient: Etcd3;
  let book: ObservationBook;
  let publisher: EtcdPublisher;
  let watcher: EtcdStateWatcher;
  let service: TaasService;
  const agents: RunningAgent[] = [];

  beforeEach(async () => {
    prefixCount += 1;
    dir = mkdtempSync(join(tmpdir(), 'tapas-cluster-'));
    store = new Store(dir);
    keys = new Keyspace(`/test${prefixCount}`);
    serverClient = connectEtcd({ endpoints: [etcd.url], prefix: '' });
    book = new ObservationBook();
    publisher = new EtcdPublisher(serverClient, keys, store, silent);
    watcher = new EtcdStateWatcher(serverClient, keys, book, publisher, silent);
    service = new TaasService(store, { quotas: DEFAULT_QUOTAS, desired: publisher, observations: book });
    await watcher.start();
    await publisher.start();
  });

  afterEach(async () => {
    for (const running of agents.splice(0)) await running.stop();
    await watcher.close();
    await publisher.close();
    serverClient.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
    await proxy.resume();
  });

  async function startAgent(host: string, endpoint = etcd.url): Promise<RunningAgent> {
    const client = connectEtcd({ endpoints: [endpoint], prefix: '' });
    const desired = new EtcdDesiredState(client, keys, host, silent);
    const observations = new EtcdObservations(client, keys, { ttlSeconds: 2, heartbeatMs: 1000, logger: silent });
    const dataPath = new RecordingDataPath();
    const agent = new Agent({ host, desired, observations, dataPath, underlayIp: `192.0.2.${agents.length + 11}`, logger: silent, intervalMs: 100 });
    await desired.start();
    await agent.start();
    let stopped = false;
    const running: RunningAgent = {
      host, client, desired, observations, dataPath, agent,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await agent.stop();
        await observations.close();
        await desired.close();
        client.close();
      },
    };
    agents.push(running);
    return running;
  }

  const statusOf = (kind: 'port' | 'tap_service' | 'tap_flow' | 'tap_mirror', id: string) => {
    const { status, status_reason: reason } = service.get(kind, admin, id);
    return { status, status_reason: reason };
  };

  function crossHostFlow() {
    const vm = service.createPort(admin, { interface: 'vmh', host_id: 'A' });
    const monitor = service.createPort(admin, { interface: 'monh', host_id: 'B' });
    const tapService = service.createTapService(admin, { port_id: monitor.id });
    const flow = service.createTapFlow(admin, { source_port: vm.id, tap_service_id: tapService.id, direction: 'BOTH' });
    return { vm, monitor, tapService, flow };
  }

  it('publishes each host its share, runs a flow across two hosts ACTIVE, and removes a delete once both let go', async () => {
    const a = await startAgent('A');
    const b = await startAgent('B');
    const { vm, monitor, tapService, flow } = crossHostFlow();
    await until('the flow ACTIVE', () => statusOf('tap_flow', flow.id).status === 'ACTIVE');
    const key = publisher.tunnelKey(tapService.id)!;
    expect(key).toBeGreaterThan(0);
    // A sends to B's underlay address with the tap service's key; B ends that tunnel in the service's port.
    expect(a.dataPath.plans.at(-1)!.sinks).toEqual([{ id: tapService.id, kind: 'host', host: 'B', remoteIp: '192.0.2.12', key }]);
    expect(a.dataPath.plans.at(-1)!.rules.map((rule) => rule.id)).toEqual([flow.id]);
    expect(b.dataPath.plans.at(-1)!.terminations).toEqual([{ id: tapService.id, key, sinkId: tapService.id }]);
    expect(b.dataPath.plans.at(-1)!.sinks).toEqual([{ id: tapService.id, kind: 'port', ifname: 'monh' }]);
    // Each host's prefix holds its own share and nothing of the other's.
    const published = await readPrefix(serverClient, keys.nodes);
    expect(published.kvs.map((kv) => kv.key).sort()).toEqual([
      keys.resource('A', 'port', monitor.id), keys.resource('A', 'port', vm.id), keys.resource('A', 'tap_flow', flow.id),
      keys.resource('A', 'tap_service', tapService.id), keys.peer('A', 'B'),
      keys.resource('B', 'port', monitor.id), keys.resource('B', 'port', vm.id), keys.resource('B', 'tap_flow', flow.id),
      keys.resource('B', 'tap_service', tapService.id),
    ].sort());
    expect(book.agents().map((agent) => [agent.host, agent.underlay_ip]).sort()).toEqual([['A', '192.0.2.11'], ['B', '192.0.2.12']]);

    // A change touches the keys of the hosts that carry the resource, nothing else.
    service.createPort(admin, { interface: 'other0', host_id: 'A' });
    await until('published', () => publisher.lastWrites === 1 || undefined);

    expect(service.delete('tap_flow', admin, flow.id).pending).toBe(true);
    expect(await service.waitUntilGone('tap_flow', flow.id, 5000)).toBe(true);
    expect(a.dataPath.plans.at(-1)!.rules).toEqual([]);
    expect(b.dataPath.plans.at(-1)!.terminations).toBeUndefined();
  });

  it('completes a delete that never reached the host\'s keys (created and deleted within one publish)', async () => {
    const a = await startAgent('A');
    await startAgent('B');
    const { flow } = crossHostFlow();
    await until('the flow ACTIVE', () => statusOf('tap_flow', flow.id).status === 'ACTIVE');
    // A publish in flight (B's keys); meanwhile a port on A comes and goes: A's keys never see it,
    // A's etcd revision never reaches that of the delete, and yet A carries nothing of it.
    service.createPort(admin, { interface: 'b1', host_id: 'B' });
    const fleeting = service.createPort(admin, { interface: 'a1', host_id: 'A' });
    expect(service.delete('port', admin, fleeting.id).pending).toBe(true);
    expect(await service.waitUntilGone('port', fleeting.id, 5000)).toBe(true);
    expect(a.dataPath.plans.some((plan) => plan.interfaces?.some((i) => i.id === fleeting.id))).toBe(false);
    // And a mirror on A only: B, which it does not involve, is no part of its delete.
    const mirror = service.createTapMirror(admin, { port_id: flow.source_port, directions: { IN: 7 }, remote_ip: '192.0.2.99', mirror_type: 'gre' });
    await until('the mirror ACTIVE', () => statusOf('tap_mirror', mirror.id).status === 'ACTIVE');
    service.delete('tap_mirror', admin, mirror.id);
    expect(await service.waitUntilGone('tap_mirror', mirror.id, 5000)).toBe(true);
    expect(a.dataPath.plans.at(-1)!.sinks.map((sink) => sink.kind)).toEqual(['host']);
  });

  it('keeps a port on a host without an agent DOWN "no agent on host X", and a flow into it, until that agent comes', async () => {
    const a = await startAgent('A');
    const { vm, flow, tapService } = crossHostFlow();
    await until('A reported', () => statusOf('port', vm.id).status === 'ACTIVE');
    expect(statusOf('tap_flow', flow.id)).toEqual({ status: 'DOWN', status_reason: 'no agent on host B' });
    // A has no address for B yet: nothing to send to.
    expect(a.dataPath.plans.at(-1)!.sinks).toEqual([{ id: tapService.id, kind: 'host', host: 'B', key: publisher.tunnelKey(tapService.id) }]);
    const ghost = service.createPort(admin, { interface: 'eth0', host_id: 'nowhere' });
    expect(statusOf('port', ghost.id)).toEqual({ status: 'DOWN', status_reason: 'no agent on host nowhere' });
    await startAgent('B');
    await until('the flow ACTIVE once B registered', () => statusOf('tap_flow', flow.id).status === 'ACTIVE');
    expect(a.dataPath.plans.at(-1)!.sinks).toEqual([
      { id: tapService.id, kind: 'host', host: 'B', remoteIp: '192.0.2.12', key: publisher.tunnelKey(tapService.id) },
    ]);
  });

  it('puts what an agent that died carried DOWN "no agent on host B" once its lease expires', async () => {
    await startAgent('A');
    const toB = await TcpProxy.start({ host: '127.0.0.1', port: Number(new URL(etcd.url).port) });
    try {
      await startAgent('B', toB.url);
      const { flow } = crossHostFlow();
      await until('the flow ACTIVE', () => statusOf('tap_flow', flow.id).status === 'ACTIVE');
      // Death (or a host cut off): nothing revokes the lease, no keepalive arrives any more.
      const diedAt = Date.now();
      await toB.cut();
      await until('B gone', () => statusOf('tap_flow', flow.id).status_reason === 'no agent on host B', 6000);
      const seconds = (Date.now() - diedAt) / 1000;
      expect(seconds).toBeLessThan(2 + 1.5); // the lease TTL, and the time to notice
      expect(statusOf('tap_flow', flow.id).status).toBe('DOWN');
      expect(book.hasAgent('B')).toBe(false);
    } finally {
      await toB.cut();
    }
  });

  it('follows the desired state through an etcd restart, and the server follows the agents', async () => {
    const a = await startAgent('A');
    await startAgent('B');
    const { flow } = crossHostFlow();
    await until('the flow ACTIVE', () => statusOf('tap_flow', flow.id).status === 'ACTIVE');
    const resyncs = a.desired.resyncs;
    const plans = a.dataPath.plans.length;
    await etcd.restart();
    // While etcd was down, nothing was torn down.
    expect(a.dataPath.plans.slice(plans).every((plan) => plan.rules.length === 1)).toBe(true);
    const port = service.createPort(admin, { interface: 'after0', host_id: 'A' });
    await until('A saw the port created after the restart', () => a.desired.snapshot('A').ports.some((p) => p.id === port.id), 15_000);
    expect(a.desired.resyncs).toBeGreaterThan(resyncs);
    await until('the new port ACTIVE', () => statusOf('port', port.id).status === 'ACTIVE', 10_000);
    expect(statusOf('tap_flow', flow.id).status).toBe('ACTIVE');
  });

  it('publishes again what etcd lost while the server was away from it', async () => {
    const a = await startAgent('A');
    const { vm, flow } = crossHostFlow();
    await until('A has the flow', () => a.desired.snapshot('A').tapFlows.length === 1);
    // Keys lost behind the server's back (a restore from an older backup, say), then etcd restarts.
    await serverClient.delete().prefix(keys.nodes);
    await until('A lost them', () => a.desired.snapshot('A').tapFlows.length === 0);
    await etcd.restart();
    await until('A has them back', () => a.desired.snapshot('A').tapFlows.some((f) => f.id === flow.id), 15_000);
    await until('the port ACTIVE', () => statusOf('port', vm.id).status === 'ACTIVE', 10_000);
  });

  it('reads everything again after losing etcd while the history was compacted, and re-registers after its lease expired', async () => {
    const a = await startAgent('A', proxy.url);
    await startAgent('B');
    const { vm, flow } = crossHostFlow();
    await until('the flow ACTIVE', () => statusOf('tap_flow', flow.id).status === 'ACTIVE');
    const plans = a.dataPath.plans.length;
    await proxy.cut();
    // Longer than the lease: A's keys expire, and the server sees no agent on A.
    await until('A gone', () => statusOf('port', vm.id).status_reason === 'no agent on host A', 6000);
    const added = service.createPort(admin, { interface: 'cut0', host_id: 'A' });
    const mirror = service.createTapMirror(admin, { port_id: vm.id, directions: { OUT: 9 }, remote_ip: '192.0.2.99', mirror_type: 'gre' });
    await until('published', () => publisher.lastWrites > 0 || undefined);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { revision } = await readPrefix(serverClient, keys.root);
    await serverClient.kv.compact({ revision, physical: true });
    // A's data path kept running what it had while etcd was out of reach.
    expect(a.dataPath.plans.slice(plans).every((plan) => plan.rules.length === 1)).toBe(true);

    await proxy.resume();
    await until('A saw what changed while cut off', () => {
      const snapshot = a.desired.snapshot('A');
      return snapshot.ports.some((p) => p.id === added.id) && snapshot.tapMirrors.some((m) => m.id === mirror.id);
    }, 15_000);
    expect(a.desired.currentRevision).toBeGreaterThanOrEqual(revision);
    await until('A registered again', () => book.hasAgent('A') && statusOf('port', added.id).status === 'ACTIVE', 10_000);
    expect(a.observations.leasesGranted).toBe(2);
    expect(statusOf('tap_flow', flow.id).status).toBe('ACTIVE');
  });

  it('registers again with a new lease when its lease is revoked under it', async () => {
    const a = await startAgent('A');
    const { vm } = crossHostFlow();
    await until('A reported', () => statusOf('port', vm.id).status === 'ACTIVE');
    const lease = a.observations.currentLease!;
    await serverClient.leaseClient.leaseRevoke({ ID: lease });
    await until('A registered again', () => a.observations.leasesGranted === 2 && a.observations.currentLease !== lease || undefined, 6000);
    await until('A back', () => book.hasAgent('A') && statusOf('port', vm.id).status === 'ACTIVE', 6000);
    const stateKeys = (await readPrefix(serverClient, keys.stateOf('A'))).kvs.map((kv) => kv.key);
    expect(stateKeys).toContain(keys.agent('A'));
    expect(stateKeys).toContain(keys.observation('A', 'port', vm.id));
  });

  it('gives every tap service its own tunnel key, kept across a restart of the server', async () => {
    await startAgent('A');
    const { tapService } = crossHostFlow();
    const other = service.createTapService(admin, { port_id: service.createPort(admin, { interface: 'mon2', host_id: 'B' }).id });
    await until('published', () => publisher.tunnelKey(other.id));
    const first = publisher.tunnelKey(tapService.id)!;
    const second = publisher.tunnelKey(other.id)!;
    expect(first).not.toBe(second);
    const restarted = new EtcdPublisher(serverClient, keys, store, silent);
    await restarted.start();
    expect([restarted.tunnelKey(tapService.id), restarted.tunnelKey(other.id)]).toEqual([first, second]);
    expect(restarted.lastWrites).toBe(0);
    await restarted.close();
  });
});

describe.skipIf(!etcdAvailable)(`cluster mode with etcd authentication (${etcdSkipReason})`, () => {
  let etcd: EtcdServer;
  const prefix = '/tapas';
  const keys = new Keyspace(prefix);

  beforeAll(async () => {
    etcd = await EtcdServer.start();
    // The roles of docs/cluster.md: the server writes nodes/ and reads state/; each agent reads
    // its own nodes/HOST/ and writes its own state/HOST/.
    etcd.ctl(['user', 'add', 'root', '--new-user-password=rootpw']);
    etcd.ctl(['user', 'grant-role', 'root', 'root']);
    etcd.ctl(['role', 'add', 'tapas-server']);
    etcd.ctl(['role', 'grant-permission', 'tapas-server', '--prefix=true', 'readwrite', keys.nodes]);
    etcd.ctl(['role', 'grant-permission', 'tapas-server', '--prefix=true', 'read', keys.state]);
    etcd.ctl(['user', 'add', 'tapas-server', '--new-user-password=serverpw']);
    etcd.ctl(['user', 'grant-role', 'tapas-server', 'tapas-server']);
    for (const host of ['A', 'B']) {
      etcd.ctl(['role', 'add', `tapas-agent-${host}`]);
      etcd.ctl(['role', 'grant-permission', `tapas-agent-${host}`, '--prefix=true', 'read', keys.node(host)]);
      etcd.ctl(['role', 'grant-permission', `tapas-agent-${host}`, '--prefix=true', 'readwrite', keys.stateOf(host)]);
      etcd.ctl(['user', 'add', `agent-${host}`, `--new-user-password=pw-${host}`]);
      etcd.ctl(['user', 'grant-role', `agent-${host}`, `tapas-agent-${host}`]);
    }
    etcd.ctl(['auth', 'enable']);
  });
  afterAll(async () => {
    await etcd?.destroy();
  });

  it('lets host A\'s agent register and read its own keys, and refuses it B\'s', async () => {
    const server = connectEtcd({ endpoints: [etcd.url], prefix, user: 'tapas-server', password: 'serverpw' });
    const clientA = connectEtcd({ endpoints: [etcd.url], prefix, user: 'agent-A', password: 'pw-A' });
    try {
      await server.put(keys.resource('A', 'port', 'p1')).value('{}');
      await server.put(keys.resource('B', 'port', 'p2')).value('{}');

      const desired = new EtcdDesiredState(clientA, keys, 'A', silent);
      await desired.start();
      expect(desired.currentRevision).toBeGreaterThan(0);
      await desired.close();
      const observations = new EtcdObservations(clientA, keys, { ttlSeconds: 5, logger: silent });
      observations.register({ host: 'A', datapath: 'packet', underlay_ip: '192.0.2.11' });
      observations.report({ host: 'A', revision: 3, observations: [{ kind: 'port', id: 'p1', status: 'ACTIVE', reason: null }] });
      await observations.registered;
      expect((await server.get(keys.agent('A')).string())).toContain('"underlay_ip":"192.0.2.11"');

      // A's credentials cannot write B's state, nor read (or write) B's desired state, nor the server's keys.
      await expect(clientA.put(keys.agent('B')).value('{"host":"B"}')).rejects.toThrow(/permission denied/);
      await expect(clientA.put(keys.observation('B', 'port', 'p2')).value('{}')).rejects.toThrow(/permission denied/);
      await expect(clientA.get(keys.resource('B', 'port', 'p2')).string()).rejects.toThrow(/permission denied/);
      await expect(clientA.put(keys.resource('A', 'port', 'p1')).value('{"forged":true}')).rejects.toThrow(/permission denied/);
      await expect(clientA.delete().key(keys.agent('B'))).rejects.toThrow(/permission denied/);
      expect(await server.get(keys.agent('B')).string()).toBeNull();
      // And the server cannot pose as an agent.
      await expect(server.put(keys.agent('A')).value('{}')).rejects.toThrow(/permission denied/);

      await observations.close();
      expect(await server.get(keys.agent('A')).string()).toBeNull();
    } finally {
      clientA.close();
      server.close();
    }
  });
});

describe.skipIf(!etcdAvailable)(`cluster mode with etcd client certificates (${etcdSkipReason})`, () => {
  let etcd: EtcdServer;
  let certificates: ReturnType<typeof makeCertificates>;
  let certificateDir: string;
  const keys = new Keyspace('/tapas');

  beforeAll(async () => {
    certificateDir = mkdtempSync(join(tmpdir(), 'tapas-certs-'));
    certificates = makeCertificates(certificateDir, ['root', 'agent-A']);
    etcd = await EtcdServer.start({
      tls: { ca: certificates.ca, ...certificates.server, root: certificates.clients.root! },
    });
    // With --client-cert-auth, the certificate's CN is the user (docs/cluster.md).
    etcd.ctl(['user', 'add', 'root', '--new-user-password=unused']);
    etcd.ctl(['user', 'grant-role', 'root', 'root']);
    etcd.ctl(['role', 'add', 'tapas-agent-A']);
    etcd.ctl(['role', 'grant-permission', 'tapas-agent-A', '--prefix=true', 'read', keys.node('A')]);
    etcd.ctl(['role', 'grant-permission', 'tapas-agent-A', '--prefix=true', 'readwrite', keys.stateOf('A')]);
    etcd.ctl(['user', 'add', 'agent-A', '--new-user-password=unused']);
    etcd.ctl(['user', 'grant-role', 'agent-A', 'tapas-agent-A']);
    etcd.ctl(['auth', 'enable']);
  });
  afterAll(async () => {
    await etcd?.destroy();
    rmSync(certificateDir, { recursive: true, force: true });
  });

  it('lets the agent whose certificate says agent-A register over TLS, and refuses it B\'s keys', async () => {
    const agentA = certificates.clients['agent-A']!;
    const client = connectEtcd({ endpoints: [etcd.url], prefix: '/tapas', caFile: certificates.ca, certFile: agentA.cert, keyFile: agentA.key });
    try {
      const observations = new EtcdObservations(client, keys, { ttlSeconds: 5, logger: silent });
      observations.register({ host: 'A', datapath: 'packet', underlay_ip: '192.0.2.11' });
      await observations.registered;
      await expect(client.put(keys.agent('B')).value('{}')).rejects.toThrow(/permission denied/);
      await expect(client.get(keys.resource('B', 'port', 'p')).string()).rejects.toThrow(/permission denied/);
      await observations.close();
    } finally {
      client.close();
    }
  });
});

