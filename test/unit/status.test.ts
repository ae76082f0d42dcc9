import { describe, expect, it } from 'vitest';

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
