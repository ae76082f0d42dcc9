/**
 * What the API shows of each resource (Neutron's attribute names, project_id
 * echoed as tenant_id), read off the resource contract, and Neutron's list
 * semantics over those views: filters and sort keys on the attributes the
 * contract marks so, `fields`, `limit`/`marker` pagination.
 */
import { attributeOf, attributesOf, RESOURCE_KINDS, shownValue, type Attribute, type ResourceKind } from '../model/contract.js';
import type { Shown } from '../model/resources.js';
import { BadRequest } from '../service/errors.js';

export type View = Record<string, unknown>;

/** Every attribute a view has (is_visible), per kind, in the order replies show them. */
export const ATTRIBUTES: Record<ResourceKind, readonly string[]> = {
  port: visibleAttributes('port'),
  tap_service: visibleAttributes('tap_service'),
  tap_flow: visibleAttributes('tap_flow'),
  tap_mirror: visibleAttributes('tap_mirror'),
};

function visibleAttributes(kind: ResourceKind): string[] {
  return attributesOf(kind).filter(([, attribute]) => attribute.visible).map(([name]) => name);
}

const VISIBLE = Object.fromEntries(RESOURCE_KINDS.map((kind) => [kind, attributesOf(kind).filter(([, attribute]) => attribute.visible)])) as unknown as
  Record<ResourceKind, ReadonlyArray<[string, Attribute]>>;

/** Views made of shown resources that are frozen (the service's shared lists): made once each. */
const VIEWS = new WeakMap<object, View>();

/** A resource as the API shows it: each visible attribute, read where the contract says it lives. Frozen. */
export function toView<K extends ResourceKind>(kind: K, resource: Shown<K>): View {
  const known = VIEWS.get(resource);
  if (known) return known;
  const view: View = {};
  for (const [name, attribute] of VISIBLE[kind]) view[name] = shownValue(attribute, name, resource);
  Object.freeze(view);
  if (Object.isFrozen(resource)) VIEWS.set(resource, view);
  return view;
}

const PAGING = new Set(['fields', 'limit', 'marker', 'sort_key', 'sort_dir', 'page_reverse']);
const MAX_QUERY_VALUES = 500;

export type Query = Record<string, string | string[] | undefined>;

const valuesOf = (value: string | string[] | undefined): string[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

function filterText(value: unknown): string {
  if (value === null || value === undefined) return '';
  return String(value);
}

export interface ListPage {
  items: View[];
  /** The marker of the next page, when a limit cut the list short. */
  nextMarker?: string;
}

/**
 * Applies a Neutron list query to views. Repeated values of one filter are
 * alternatives (`?status=ACTIVE&status=DOWN`); different filters all apply.
 */
export function queryViews(kind: ResourceKind, views: View[], query: Query): ListPage {
  const attributes = ATTRIBUTES[kind];
  const total = Object.values(query).reduce((n, value) => n + valuesOf(value).length, 0);
  if (total > MAX_QUERY_VALUES) throw new BadRequest(`Too many query parameters (${total}); at most ${MAX_QUERY_VALUES} are accepted.`);

  let items = views;
  for (const [key, value] of Object.entries(query)) {
    if (PAGING.has(key)) continue;
    if (!(attributeOf(kind, key)?.filter ?? false)) {
      throw new BadRequest(`${key} is an invalid filter for ${kind}s`, 'HTTPBadRequest');
    }
    const wanted = new Set(valuesOf(value));
    items = items.filter((view) => wanted.has(filterText(view[key])));
  }

  const sortKeys = valuesOf(query.sort_key);
  const sortDirs = valuesOf(query.sort_dir);
  if (sortDirs.length > sortKeys.length) throw new BadRequest('The number of sort_keys and sort_dirs must be the same');
  for (const key of sortKeys) {
    if (!(attributeOf(kind, key)?.sort ?? false)) throw new BadRequest(`${key} is an invalid attribute for sort_key`);
  }
  for (const dir of sortDirs) {
    if (dir !== 'asc' && dir !== 'desc') throw new BadRequest(`${dir} is an invalid value for sort_dir, valid values are 'asc' and 'desc'`);
  }
  if (sortKeys.length > 0) {
    items = [...items].sort((a, b) => {
      for (const [index, key] of sortKeys.entries()) {
        const order = filterText(a[key]).localeCompare(filterText(b[key]));
        if (order !== 0) return sortDirs[index] === 'desc' ? -order : order;
      }
      return 0;
    });
  }
  if (valuesOf(query.page_reverse).some((value) => value.toLowerCase() === 'true')) {
    throw new BadRequest('page_reverse is not supported');
  }

  const marker = valuesOf(query.marker)[0];
  if (marker !== undefined) {
    const at = items.findIndex((view) => view.id === marker);
    if (at < 0) throw new BadRequest(`Marker ${marker} could not be found`);
    items = items.slice(at + 1);
  }
  let nextMarker: string | undefined;
  const limitText = valuesOf(query.limit)[0];
  if (limitText !== undefined) {
    const limit = Number(limitText);
    if (!/^\d+$/.test(limitText) || limit < 0) throw new BadRequest(`Invalid input for limit. Reason: '${limitText}' is not a valid non-negative integer.`);
    // Neutron: limit=0 means no limit.
    if (limit > 0 && items.length > limit) {
      items = items.slice(0, limit);
      nextMarker = String(items[items.length - 1]!.id);
    }
  }

  const fields = valuesOf(query.fields).flatMap((value) => value.split(',')).filter((field) => attributes.includes(field));
  if (fields.length > 0) items = items.map((view) => selectFields(view, fields));
  return nextMarker === undefined ? { items } : { items, nextMarker };
}

export function selectFields(view: View, fields: readonly string[]): View {
  return Object.fromEntries(fields.filter((field) => field in view).map((field) => [field, view[field]]));
}
