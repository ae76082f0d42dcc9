/**
 * Per-project quotas: daemon-wide defaults (from `tapas serve --quota`),
 * overridden per project through the Neutron quotas API and kept in the store.
 * -1 means unlimited, as in Neutron.
 */
import { RESOURCE_KINDS, type ResourceKind } from '../model/resources.js';
import type { Store } from '../store/store.js';
import { BadRequest, OverQuota } from './errors.js';

export type QuotaLimits = Record<ResourceKind, number>;

export const DEFAULT_QUOTAS: QuotaLimits = { port: 100, tap_service: 10, tap_flow: 50, tap_mirror: 10 };

export const UNLIMITED = -1;

export function isQuotaResource(name: string): name is ResourceKind {
  return (RESOURCE_KINDS as readonly string[]).includes(name);
}

export function checkQuotaLimit(resource: string, limit: unknown): number {
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < UNLIMITED || limit > 1_000_000) {
    const shown = typeof limit === 'string' ? limit : JSON.stringify(limit) ?? String(limit);
    throw new BadRequest(`Invalid input for ${resource}. Reason: '${shown.length > 80 ? `${shown.slice(0, 77)}...` : shown}' is not a valid quota: `
      + 'an integer from -1 (unlimited) to 1000000.');
  }
  return limit;
}

export class Quotas {
  constructor(
    private readonly store: Store,
    private readonly defaults: QuotaLimits,
  ) {}

  limits(projectId: string): QuotaLimits {
    return { ...this.defaults, ...this.store.quotaOverrides(projectId) };
  }

  /** Throws 409 OverQuota when the project already holds its limit of this kind. */
  ensureRoomFor(kind: ResourceKind, projectId: string): void {
    const limit = this.limits(projectId)[kind];
    if (limit === UNLIMITED) return;
    if (this.store.count(kind, projectId) >= limit) throw new OverQuota(kind, limit);
  }
}
