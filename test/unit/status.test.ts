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
