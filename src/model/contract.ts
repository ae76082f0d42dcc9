/**
 * The resource contract: one declaration per resource (ports, tap services,
 * tap flows, tap mirrors) of every attribute the API has. For each it says
 * what TaaS's RESOURCE_ATTRIBUTE_MAP says — type and format, allow_post
 * (required, optional or no), allow_put, default, is_visible, is_filter,
 * sortable — and what tapas's layers need: where the value lives (a store
 * column, several columns, its own table, or derived from observations or
 * another attribute) and how the CLI shows and asks for it.
 *
 * Everything else reads it: the API's body and reply schemas and list queries
 * (api/schemas.ts, api/views.ts), the error handler's known attributes
 * (api/errors.ts), the store's columns (store/store.ts), the records' types
 * (model/resources.ts), the service's create path and the CLI's nouns
 * (cli/resources.ts). Adding an attribute: see docs/architecture.md.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

import { DIRECTIONS } from '../engine/plan.js';
import type { FormatName } from './formats.js';

export type ResourceKind = 'port' | 'tap_service' | 'tap_flow' | 'tap_mirror';
export const RESOURCE_KINDS: readonly ResourceKind[] = ['port', 'tap_service', 'tap_flow', 'tap_mirror'];

/** TaaS's gre and erspanv1 (ERSPAN type II); tapas's erspanv2 (ERSPAN type III) and vxlan. */
export type MirrorType = 'gre' | 'erspanv1' | 'erspanv2' | 'vxlan';
export const MIRROR_TYPES: readonly MirrorType[] = ['gre', 'erspanv1', 'erspanv2', 'vxlan'];

/** The keys of a tap mirror's directions: BOTH is upstream TaaS's tap-mirror-both-direction (IN and OUT in one tunnel). */
export const MIRROR_DIRECTIONS = ['IN', 'OUT', 'BOTH'] as const;
export type MirrorDirection = (typeof MIRROR_DIRECTIONS)[number];

/** VXLAN's IANA port, a vxlan tap mirror's udp_port when none is given. */
export const VXLAN_DEFAULT_PORT = 4789;

export const STATUSES = ['DOWN', 'ACTIVE', 'ERROR', 'PENDING_DELETE'] as const;

// ---- schema building blocks (TypeBox) ----

/** A string out of a fixed list (one `enum`, so a failure reads "'X' is not in [...]"). */
const StringEnum = <const T extends readonly string[]>(values: T) => Type.Unsafe<T[number]>({ type: 'string', enum: [...values] });

/** A string that may also be null (one `type: [string, null]`, formats and lengths apply to the string). */
const NullableString = (options: { maxLength?: number; format?: FormatName } = {}) =>
  Type.Unsafe<string | null>({ type: ['string', 'null'], ...options });

const Uuid = () => Type.String({ format: 'uuid', maxLength: 64 });

/** An integer that may also be null (the format applies to the integer). */
const NullableInteger = (options: { format?: FormatName } = {}) => Type.Unsafe<number | null>({ type: ['integer', 'null'], ...options });

// ---- what an attribute declares ----

/** allow_post: whether a create must, may or must not give it. */
export type Post = 'required' | 'optional' | 'no';

/** Where an attribute's value lives. Record field names are the store's column names. */
export type Storage =
  /** A column of the resource's own table (and the record field of that name). */
  | { column: string }
  /** An object attribute spread over columns, key → column; a null column is left out of the object. */
  | { columns: Record<string, string> }
  /** Rows of another table, kept by the store (the record field has the attribute's name). */
  | { table: string }
  /** Not stored: the shown resource's field of that name (an observation, or another attribute). */
  | { derived: string }
  /** Not stored: always this value. */
  | { constant: unknown };

export interface CliOption {
  /** The option as commander declares it, e.g. `--vlan-filter <VLAN_FILTER>`. */
  flag: string;
  /** Help text; `{label}` stands for the noun (`tap flow`). */
  help: string;
  /** `create` takes it as a positional argument instead (`tapas port create NAME`). */
  positional?: boolean;
  /** The value names another resource by name or ID; the CLI resolves it to the ID. */
  refersTo?: ResourceKind;
  /** An enum value accepted in any case. */
  anyCase?: boolean;
  /** Repeated KEY=VALUE options build the object (keys: the schema's properties). */
  entries?: { example: string };
  /** Where help lists it, lower first (default 50; ties in attribute order). */
  order?: number;
}

export interface CliSpec {
  /** The heading the OpenStack client (and its TaaS plugin) gives it; default: the attribute's name. */
  heading?: string;
  /** Its position among the columns `list` shows; absent: not listed. */
  list?: number;
  /** The `create` option that sets it (`update` offers those of updatable attributes too). */
  option?: CliOption;
  /** An object attribute's keys, each shown and set on its own (binding:profile's interface and netns). */
  parts?: Record<string, CliSpec>;
}

export interface Attribute {
  /** Type and format as requests carry it and replies show it (TaaS `validate`). */
  schema: TSchema;
  /** allow_post. */
  post: Post;
  /** allow_put. */
  put: boolean;
  /** The value a create that leaves it out stores. */
  default?: unknown;
  /** is_visible: replies show it. */
  visible: boolean;
  /** is_filter: lists filter on it (`?name=x`). */
  filter: boolean;
  /** A list may be sorted by it (`sort_key`). */
  sort: boolean;
  store: Storage;
  /** The values of this object attribute have a format chosen by another attribute's value. */
  formatBy?: { attribute: string; formats: Record<string, FormatName> };
  cli?: CliSpec;
}

export interface ResourceContract {
  /** As people say it: `tap service`. */
  label: string;
  /** The collection's paths, the canonical one first. */
  paths: readonly string[];
  attributes: Record<string, Attribute>;
}

/**
 * Fills in what most attributes share: visible, not updatable, filterable and
 * sortable unless the value is an object.
 */
function attribute<const A extends Partial<Attribute> & Pick<Attribute, 'schema' | 'post' | 'store'>>(spec: A) {
  const scalar = spec.schema.type !== 'object';
  return { put: false, visible: true, filter: scalar, sort: scalar, ...spec };
}

const NAME = Type.String({ maxLength: 255 });
const PROJECT = Type.String({ maxLength: 255 });

/** Where the common attributes stand in `list` (kinds list different ones, in their own order). */
interface ListedAt {
  id?: number;
  tenant_id?: number;
  name?: number;
  status?: number;
}

/** The attributes every resource has, as Neutron names them (project_id echoed as tenant_id). */
function common(listed: ListedAt, name: CliOption = { flag: '--name <NAME>', help: 'name of the {label}' }) {
  return {
    id: attribute({ schema: Uuid(), post: 'no', store: { column: 'id' }, cli: { heading: 'ID', list: listed.id } }),
    project_id: attribute({
      schema: PROJECT, post: 'optional', store: { column: 'project_id' },
      cli: { option: { flag: '--project <PROJECT>', help: 'owner project (admin only when it is not yours)', order: 90 } },
    }),
    tenant_id: attribute({ schema: PROJECT, post: 'optional', store: { derived: 'project_id' }, cli: { heading: 'Tenant', list: listed.tenant_id } }),
    name: attribute({
      schema: NAME, post: 'optional', put: true, default: '', store: { column: 'name' },
      cli: { heading: 'Name', list: listed.name, option: name },
    }),
    description: attribute({
      schema: Type.String({ maxLength: 1024 }), post: 'optional', put: true, default: '', store: { column: 'description' },
      cli: { option: { flag: '--description <DESCRIPTION>', help: 'description of the {label}', order: 80 } },
    }),
    status: attribute({ schema: StringEnum(STATUSES), post: 'no', store: { derived: 'status' }, cli: { heading: 'Status', list: listed.status } }),
    status_reason: attribute({ schema: NullableString(), post: 'no', store: { derived: 'status_reason' } }),
    created_at: attribute({ schema: Type.String(), post: 'no', store: { column: 'created_at' } }),
    updated_at: attribute({ schema: Type.String(), post: 'no', store: { column: 'updated_at' } }),
  };
}

const TUNNEL_ID = Type.Optional(Type.Integer());

/**
 * What of the selected traffic is sent (tapas extensions tapas-filter,
 * tapas-snaplen, tapas-sampling; a TaaS client ignores them): a pcap-filter
 * expression, one frame in N, the first N bytes of each frame. The same on
 * tap flows and tap mirrors; applied per rule in this order (docs/engine.md).
 */
function selection() {
  return {
    filter: attribute({
      schema: NullableString({ format: 'pcap-filter', maxLength: 4096 }), post: 'optional', put: true, default: null,
      store: { column: 'packet_filter' },
      cli: { option: { flag: '--filter <EXPRESSION>', help: 'only frames this pcap-filter expression (tcpdump syntax) matches, VLAN tag included, e.g. \'udp port 53\'', order: 60 } },
    }),
    snaplen: attribute({
      schema: NullableInteger({ format: 'snaplen' }), post: 'optional', put: true, default: null, store: { column: 'snaplen' },
      cli: { option: { flag: '--snaplen <BYTES>', help: 'send only the first BYTES of each frame (64 or more; ERSPAN sets its T bit)', order: 61 } },
    }),
    sample_rate: attribute({
      schema: NullableInteger({ format: 'sample-rate' }), post: 'optional', put: true, default: null, store: { column: 'sample_rate' },
      cli: { option: { flag: '--sample-rate <N>', help: 'send one frame in N (the first of every N the filter passes)', order: 62 } },
    }),
  };
}

export const CONTRACT = {
  port: {
    label: 'port',
    paths: ['/v2.0/ports'],
    attributes: {
      ...common({ id: 1, name: 2, status: 6 }, { flag: '--name <NAME>', help: 'name of the port', positional: true }),
      mac_address: attribute({ schema: NullableString(), post: 'no', store: { derived: 'mac_address' }, cli: { heading: 'MAC Address', list: 3 } }),
      admin_state_up: attribute({ schema: Type.Literal(true), post: 'optional', store: { constant: true } }),
      /** The host whose agent captures this interface. */
      'binding:host_id': attribute({
        schema: NAME, post: 'optional', store: { column: 'host_id' },
        cli: { option: { flag: '--host <HOST>', help: 'binding:host_id: the host whose agent captures it (default: the daemon\'s host; required in cluster mode)' } },
      }),
      /** The host-side interface facing the workload, and its network namespace (null: the daemon's own). */
      'binding:profile': attribute({
        schema: Type.Object({
          interface: Type.String({ format: 'interface-name', maxLength: 64 }),
          netns: Type.Optional(NullableString({ format: 'netns', maxLength: 4096 })),
        }, { additionalProperties: false }),
        post: 'required', store: { columns: { interface: 'interface', netns: 'netns' } },
        cli: {
          parts: {
            interface: {
              heading: 'Interface', list: 4,
              option: { flag: '--interface <IF>', help: 'the host-side interface facing the workload (VM tap, container veth)' },
            },
            netns: {
              heading: 'Netns', list: 5,
              option: { flag: '--netns <NETNS>', help: 'network namespace of the interface (default: the daemon\'s own)' },
            },
          },
        },
      }),
    },
  },
  tap_service: {
    label: 'tap service',
    paths: ['/v2.0/taas/tap_services', '/v2.0/taas/tap-services'],
    attributes: {
      ...common({ id: 1, tenant_id: 2, name: 3, status: 5 }),
      port_id: attribute({
        schema: Uuid(), post: 'required', store: { column: 'port_id' },
        cli: {
          heading: 'Port', list: 4,
          option: { flag: '--port <PORT>', help: 'name or ID of the port that receives the copies (the monitor\'s)', refersTo: 'port' },
        },
      }),
    },
  },
  tap_flow: {
    label: 'tap flow',
    paths: ['/v2.0/taas/tap_flows', '/v2.0/taas/tap-flows'],
    attributes: {
      ...common({ id: 1, tenant_id: 2, name: 3, status: 4 }),
      tap_service_id: attribute({
        schema: Uuid(), post: 'required', store: { column: 'tap_service_id' },
        cli: {
          list: 6,
          option: { flag: '--tap-service <TAP_SERVICE>', help: 'name or ID of the tap service that receives the copies', refersTo: 'tap_service' },
        },
      }),
      source_port: attribute({
        schema: Uuid(), post: 'required', store: { column: 'source_port' },
        cli: { list: 5, option: { flag: '--port <SOURCE_PORT>', help: 'name or ID of the port whose traffic is mirrored', refersTo: 'port' } },
      }),
      /** The workload's: IN is into it, OUT out of it. */
      direction: attribute({
        schema: StringEnum(DIRECTIONS), post: 'required', store: { column: 'direction' },
        cli: {
          heading: 'Direction', list: 7,
          option: { flag: '--direction <DIRECTION>', help: 'IN (to the workload), OUT (from it) or BOTH; any case', anyCase: true },
        },
      }),
      vlan_filter: attribute({
        schema: NullableString({ format: 'vlan-filter', maxLength: 1024 }), post: 'optional', default: null, store: { column: 'vlan_filter' },
        cli: { option: { flag: '--vlan-filter <VLAN_FILTER>', help: 'only frames of these VLAN ids, e.g. 1-5,9,18-27' } },
      }),
      ...selection(),
    },
  },
  tap_mirror: {
    label: 'tap mirror',
    paths: ['/v2.0/taas/tap_mirrors', '/v2.0/taas/tap-mirrors'],
    attributes: {
      ...common({ id: 1, tenant_id: 2, name: 3, status: 8 }),
      port_id: attribute({
        schema: Uuid(), post: 'required', store: { column: 'port_id' },
        cli: { heading: 'Port', list: 4, option: { flag: '--port <PORT>', help: 'name or ID of the port whose traffic is mirrored', refersTo: 'port' } },
      }),
      /**
       * A tunnel id per direction: a GRE key, an ERSPAN session id or a VXLAN
       * VNI. BOTH (tap-mirror-both-direction) sends IN and OUT in one tunnel
       * and excludes them (the service refuses BOTH with IN or OUT).
       */
      directions: attribute({
        schema: Type.Object({ IN: TUNNEL_ID, OUT: TUNNEL_ID, BOTH: TUNNEL_ID }, { additionalProperties: false, minProperties: 1 }),
        post: 'required', store: { table: 'tap_mirror_tunnels' },
        formatBy: {
          attribute: 'mirror_type',
          formats: { gre: 'gre-key', erspanv1: 'erspan-session-id', erspanv2: 'erspan-session-id', vxlan: 'vxlan-vni' },
        },
        cli: {
          heading: 'Directions', list: 5,
          option: {
            flag: '--directions <DIRECTION=TUNNEL_ID>',
            help: 'a direction (IN, OUT, or BOTH: both in one tunnel) and its tunnel id: GRE key, ERSPAN session id or VXLAN VNI; repeatable',
            entries: { example: 'IN=101' },
          },
        },
      }),
      remote_ip: attribute({
        schema: Type.String({ format: 'ip-address', maxLength: 64 }), post: 'required', store: { column: 'remote_ip' },
        cli: { heading: 'Remote IP', list: 6, option: { flag: '--remote-ip <IP>', help: 'the collector\'s address (IPv4 or IPv6)' } },
      }),
      mirror_type: attribute({
        schema: StringEnum(MIRROR_TYPES), post: 'required', store: { column: 'mirror_type' },
        cli: {
          heading: 'Mirror Type', list: 7,
          option: { flag: '--mirror-type <TYPE>', help: 'tunnel: gre, erspanv1 (ERSPAN type II), erspanv2 (ERSPAN type III) or vxlan' },
        },
      }),
      /** vxlan only: the collector's UDP port (4789 when not given; null for the other types). */
      udp_port: attribute({
        schema: NullableInteger({ format: 'udp-port' }), post: 'optional', default: null, store: { column: 'udp_port' },
        cli: { heading: 'UDP Port', option: { flag: '--udp-port <PORT>', help: 'vxlan only: the collector\'s UDP port (default 4789)' } },
      }),
      ...selection(),
    },
  },
} as const satisfies Record<ResourceKind, ResourceContract>;

/** The attributes of a kind, in the order replies show them. */
export function attributesOf(kind: ResourceKind): ReadonlyArray<[string, Attribute]> {
  return Object.entries(CONTRACT[kind].attributes);
}

export function attributeOf(kind: ResourceKind, name: string): Attribute | undefined {
  return Object.hasOwn(CONTRACT[kind].attributes, name) ? (CONTRACT[kind].attributes as Record<string, Attribute>)[name] : undefined;
}

/** The columns of a kind's table that hold its attributes. */
export function columnsOf(kind: ResourceKind): string[] {
  return attributesOf(kind).flatMap(([, { store }]) => ('column' in store ? [store.column] : 'columns' in store ? Object.values(store.columns) : []));
}

// ---- the record types, read off the contract ----

type Attributes<K extends ResourceKind> = (typeof CONTRACT)[K]['attributes'];
type UnionToIntersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;
type Flatten<T> = { [P in keyof T]: T[P] };

/** The record fields an attribute fills, with their types. */
type FieldsOf<N extends string, A> =
  A extends { store: { column: infer C extends string }; schema: infer S extends TSchema } ? { [P in C]: Static<S> }
    : A extends { store: { columns: infer M extends Record<string, string> }; schema: infer S extends TSchema }
      ? { [P in keyof M as M[P]]: P extends keyof Static<S> ? Exclude<Static<S>[P], undefined> | (undefined extends Static<S>[P] ? null : never) : never }
      : A extends { store: { table: string }; schema: infer S extends TSchema } ? { [P in N]: Static<S> }
        : Record<never, never>;

/** What the store keeps of a resource: what a user asked for, and whether a delete of it is in progress. */
export type RecordOf<K extends ResourceKind> = Flatten<UnionToIntersection<
  { [N in keyof Attributes<K>]: FieldsOf<N & string, Attributes<K>[N]> }[keyof Attributes<K>]
> & {
  /** A delete was accepted: the resource waits for every involved host to let go of it (PENDING_DELETE). */
  deleting: boolean;
}>;

/** The fields an attribute gives a create's input: record-side names, the attribute's own when it is not stored. */
type InputFieldsOf<N extends string, A> =
  A extends { store: { columns: infer M extends Record<string, string> }; schema: infer S extends TSchema }
    ? { [P in keyof Static<S> as P extends keyof M ? M[P] : never]: Static<S>[P] }
    : A extends { store: { column: infer C extends string }; schema: infer S extends TSchema } ? { [P in C]: Static<S> }
      : A extends { schema: infer S extends TSchema } ? { [P in N]: Static<S> } : Record<never, never>;

type PostedFieldsOf<N extends string, A> =
  A extends { post: 'required' } ? InputFieldsOf<N, A> : A extends { post: 'optional' } ? Partial<InputFieldsOf<N, A>> : Record<never, never>;

/** What a create gives (allow_post), record-side: binding:profile as interface and netns, binding:host_id as host_id. */
export type CreateInput<K extends ResourceKind> = Flatten<UnionToIntersection<
  { [N in keyof Attributes<K>]: PostedFieldsOf<N & string, Attributes<K>[N]> }[keyof Attributes<K>]
>>;

// ---- between bodies and records ----

/**
 * A create body's attributes as record fields: an attribute spread over
 * columns gives each of them; the others keep their names.
 */
export function inputFromBody<K extends ResourceKind>(kind: K, body: Record<string, unknown>): CreateInput<K> {
  const input: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(body)) {
    const store = attributeOf(kind, name)?.store;
    if (store && 'column' in store) input[store.column] = value;
    else if (store && 'columns' in store) {
      for (const [key, column] of Object.entries(store.columns)) input[column] = (value as Record<string, unknown>)[key];
    } else input[name] = value;
  }
  return input as CreateInput<K>;
}

/** The stored fields of a new resource from a create's input, defaults filled in (null where none is declared). */
export function recordFields<K extends ResourceKind>(kind: K, input: CreateInput<K>): Partial<RecordOf<K>> {
  const given = input as Record<string, unknown>;
  const fields: Record<string, unknown> = {};
  for (const [name, { post, store, default: fallback }] of attributesOf(kind)) {
    if (post === 'no') continue;
    const columns = 'column' in store ? [store.column] : 'columns' in store ? Object.values(store.columns) : 'table' in store ? [name] : [];
    for (const column of columns) fields[column] = given[column] ?? fallback ?? null;
  }
  return fields as Partial<RecordOf<K>>;
}

/** An attribute's value as replies show it, from a shown resource (a record with its derived fields). */
export function shownValue(attribute: Attribute, name: string, shown: object): unknown {
  const { store } = attribute;
  const resource = shown as Record<string, unknown>;
  if ('column' in store) return resource[store.column];
  if ('columns' in store) {
    return Object.fromEntries(Object.entries(store.columns)
      .filter(([, column]) => resource[column] !== null && resource[column] !== undefined)
      .map(([key, column]) => [key, resource[column]]));
  }
  if ('table' in store) return resource[name];
  if ('derived' in store) return resource[store.derived];
  return store.constant;
}
