import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import type { RequestContext } from '../../src/service/context.js';
import { LocalDesiredState } from '../../src/service/desired-state.js';
import { DEFAULT_QUOTAS } from '../../src/service/quotas.js';
import { TaasService } from '../../src/service/taas-service.js';
import { Store } from '../../src/store/store.js';

import { ObservationBook, SILENT_AFTER_MS } from '../../src/service/observations.js';
import { deriveLifecycle } from '../../src/service/status.js';

describe('status derived from the observations of every involved host', () => {
  let clock = 0;
  const book = new ObservationBook(() => clock);
  book.register({ host: 'h1', datapath: 'packet' });
  book.register({ host: 'h2', datapath: 'packet' });
  const report = (host: string, status: 'ACTIVE' | 'ERROR' | 'DOWN', reason: string | null = null) =>
    book.report({ host, revision: 1, observations: [{ kind: 'tap_flow', id: 'f', status, reason }] });
  const flow = () => deriveLifecycle('tap_flow', 'f', false, ['h1', 'h2'], book);

  it('is DOWN until every host reported it, ACTIVE when all run it, ERROR naming the failing host', () => {
    expect(flow()).toEqual({ status: 'DOWN', status_reason: null });
    report('h1', 'ACTIVE');
    expect(flow()).toEqual({ status: 'DOWN', status_reason: null });
    report('h2', 'ACTIVE');
    expect(flow()).toEqual({ status: 'ACTIVE', status_reason: null });
    report('h2', 'ERROR', 'monitor gone');
    expect(flow()).toEqual({ status: 'ERROR', status_reason: 'on host h2: monitor gone' });
    expect(deriveLifecycle('tap_flow', 'f', true, ['h1', 'h2'], book)).toEqual({ status: 'PENDING_DELETE', status_reason: null });
    expect(deriveLifecycle('tap_flow', 'f', false, ['h1', 'h3'], book)).toEqual({ status: 'DOWN', status_reason: 'no agent on host h3' });
  });

  it('does not show a silent agent\'s observations as current', () => {
    report('h1', 'ACTIVE');
    report('h2', 'ACTIVE');
    clock += SILENT_AFTER_MS + 1;
    report('h1', 'ACTIVE');
    expect(flow()).toEqual({ status: 'DOWN', status_reason: expect.stringMatching(/^the agent on host h2 has not reported since \S+Z$/) });
    report('h2', 'ACTIVE');
    expect(flow()).toEqual({ status: 'ACTIVE', status_reason: null });
  });
});

describe('observation book: complete reports and updates', () => {
  const counted = (id: string, packets: number) => ({
    kind: 'tap_flow' as const, id, status: 'ACTIVE' as const, reason: null, counters: { packets, bytes: packets * 100, drops: {} },
  });

  it('takes an update as what changed: rates over the interval, zero once counters stop, the rest as it was; tells listeners only of changes', () => {
    let clock = 0;
    const book = new ObservationBook(() => clock);
    book.register({ host: 'h', datapath: 'packet' });
    let told = 0;
    book.onChange(() => { told += 1; });
    book.report({ host: 'h', revision: 3, observations: [counted('a', 0), counted('b', 0)] });
    expect(book.observation('h', 'tap_flow', 'a')?.rates).toBeUndefined();
    clock += 1000;
    book.update({ host: 'h', revision: 3, changed: [counted('a', 10)] });
    expect(book.observation('h', 'tap_flow', 'a')?.rates).toEqual({ packets_per_second: 10, bits_per_second: 8000 });
    // b did not change: its rates are known now (zero).
    expect(book.observation('h', 'tap_flow', 'b')?.rates).toEqual({ packets_per_second: 0, bits_per_second: 0 });
    const b = book.observation('h', 'tap_flow', 'b');
    clock += 1000;
    told = 0;
    book.update({ host: 'h', revision: 3, changed: [] });
    // a stopped: zero; b is the very same observation (observed_at: when it last changed).
    expect(book.observation('h', 'tap_flow', 'a')?.rates).toEqual({ packets_per_second: 0, bits_per_second: 0 });
    expect(book.observation('h', 'tap_flow', 'b')).toBe(b);
    expect(told).toBe(1);
    clock += 1000;
    book.update({ host: 'h', revision: 3, changed: [] });
    expect(told).toBe(1);
    // An update is a heartbeat all the same.
    clock += SILENT_AFTER_MS;
    book.update({ host: 'h', revision: 3, changed: [] });
    expect(book.silentSince('h')).toBeUndefined();
    expect(book.released('h', 'tap_flow', 'a', 3)).toBe(false);
    // Releases come with complete reports only.
    book.report({ host: 'h', revision: 4, observations: [counted('b', 0)] });
    expect(book.released('h', 'tap_flow', 'a', 4)).toBe(true);
    expect(book.observation('h', 'tap_flow', 'b')).toBe(b);
  });
});

describe('statuses as the service lists them', () => {
  it('hands out the same objects while nothing they derive from changed, and shows each change (a status, a silent agent, a write)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapas-shown-'));
    const store = new Store(dir);
    try {
      let clock = 0;
      const book = new ObservationBook(() => clock);
      const service = new TaasService(store, { hostId: 'h', quotas: DEFAULT_QUOTAS, desired: new LocalDesiredState(store), observations: book });
      const admin: RequestContext = { projectId: 'p', roles: ['admin'] };
      const a = service.createPort(admin, { interface: 'a0' });
      const b = service.createPort(admin, { interface: 'b0' });
      book.register({ host: 'h', datapath: 'packet' });
      const seen = (id: string, status: 'ACTIVE' | 'DOWN', mac: string) => ({
        kind: 'port' as const, id, status, reason: status === 'DOWN' ? 'interface is down' : null,
        interface: { present: true, up: status === 'ACTIVE', running: true, mac, mtu: 1500 },
      });
      book.report({ host: 'h', revision: 1, observations: [seen(a.id, 'ACTIVE', '02:00:00:00:00:0a'), seen(b.id, 'ACTIVE', '02:00:00:00:00:0b')] });
      const first = service.list('port', admin);
      expect(first.map((port) => [port.status, port.mac_address])).toEqual([['ACTIVE', '02:00:00:00:00:0a'], ['ACTIVE', '02:00:00:00:00:0b']]);
      clock += 1000;
      book.update({ host: 'h', revision: 1, changed: [] });
      expect(service.list('port', admin)).toBe(first);

      book.update({ host: 'h', revision: 1, changed: [seen(b.id, 'DOWN', '02:00:00:00:00:0b')] });
      const second = service.list('port', admin);
      expect(second).not.toBe(first);
      expect(second[0]).toBe(first[0]);
      expect(second[1]).toMatchObject({ status: 'DOWN', status_reason: 'interface is down' });

      clock += SILENT_AFTER_MS + 1;
      expect(service.list('port', admin)[0]!.status_reason).toMatch(/^the agent on host h has not reported since/);
      book.update({ host: 'h', revision: 1, changed: [] });
      expect(service.list('port', admin)[0]).toMatchObject({ status: 'ACTIVE' });

      service.update('port', admin, a.id, { name: 'renamed' });
      expect(service.list('port', admin)[0]).toMatchObject({ name: 'renamed', status: 'ACTIVE' });
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
