/**
 * JSON schemas of request bodies and replies, per resource. Shapes and types
 * are checked here, before the service sees a body; the error handler turns a
 * schema failure into Neutron's wording (see errors.ts). Writable attributes
 * follow the TaaS API definitions: only name and description are updatable.
 */
import type { ResourceKind } from '../model/resources.js';
import { MIRROR_TYPES } from '../model/resources.js';
import { DIRECTIONS } from '../engine/plan.js';

const NAME = { type: 'string', maxLength: 255 };
const DESCRIPTION = { type: 'string', maxLength: 1024 };
const PROJECT = { type: 'string', maxLength: 255 };
// UUID syntax is checked by the service so that the message names the attribute Neutron's way.
const REFERENCE = { type: 'string', maxLength: 64 };

const OWNED = { name: NAME, description: DESCRIPTION, project_id: PROJECT, tenant_id: PROJECT };

/** Attributes a create may set, per kind. */
const CREATE_ATTRIBUTES: Record<ResourceKind, { properties: Record<string, object>; required: string[] }> = {
  port: {
    properties: {
      ...OWNED,
      'binding:profile': {
        type: 'object',
        additionalProperties: false,
        required: ['interface'],
        properties: { interface: { type: 'string', maxLength: 64 }, netns: { type: ['string', 'null'], maxLength: 4096 } },
      },
      'binding:host_id': { type: 'string', maxLength: 255 },
      admin_state_up: { const: true },
    },
    required: ['binding:profile'],
  },
  tap_service: {
    properties: { ...OWNED, port_id: REFERENCE },
    required: ['port_id'],
  },
  tap_flow: {
    properties: {
      ...OWNED,
      tap_service_id: REFERENCE,
      source_port: REFERENCE,
      direction: { type: 'string', enum: DIRECTIONS },
      vlan_filter: { type: ['string', 'null'], maxLength: 1024 },
    },
    required: ['tap_service_id', 'source_port', 'direction'],
  },
  tap_mirror: {
    properties: {
      ...OWNED,
      port_id: REFERENCE,
      directions: {
        type: 'object',
        minProperties: 1,
        maxProperties: 2,
        propertyNames: { maxLength: 16 },
        additionalProperties: { type: 'integer' },
      },
      remote_ip: { type: 'string', maxLength: 64 },
      mirror_type: { type: 'string', enum: MIRROR_TYPES },
    },
    required: ['port_id', 'directions', 'remote_ip', 'mirror_type'],
  },
};

export function createBodySchema(kind: ResourceKind): object {
  const { properties, required } = CREATE_ATTRIBUTES[kind];
  return {
    type: 'object',
    required: [kind],
    additionalProperties: false,
    properties: { [kind]: { type: 'object', additionalProperties: false, required, properties } },
  };
}

export function updateBodySchema(kind: ResourceKind): object {
  return {
    type: 'object',
    required: [kind],
    additionalProperties: false,
    properties: { [kind]: { type: 'object', additionalProperties: false, properties: { name: NAME, description: DESCRIPTION } } },
  };
}

const NULLABLE_STRING = { type: ['string', 'null'] };
const STRING = { type: 'string' };

const VIEW_PROPERTIES: Record<ResourceKind, Record<string, object>> = (() => {
  const common = {
    id: STRING, project_id: STRING, tenant_id: STRING, name: STRING, description: STRING,
    status: STRING, status_reason: NULLABLE_STRING, created_at: STRING, updated_at: STRING,
  };
  return {
    port: {
      ...common,
      mac_address: NULLABLE_STRING,
      admin_state_up: { type: 'boolean' },
      'binding:host_id': STRING,
      'binding:profile': { type: 'object', properties: { interface: STRING, netns: STRING } },
    },
    tap_service: { ...common, port_id: STRING },
    tap_flow: { ...common, tap_service_id: STRING, source_port: STRING, direction: STRING, vlan_filter: NULLABLE_STRING },
    tap_mirror: {
      ...common,
      port_id: STRING,
      directions: { type: 'object', properties: { IN: { type: 'integer' }, OUT: { type: 'integer' } } },
      remote_ip: STRING,
      mirror_type: STRING,
    },
  };
})();

const viewSchema = (kind: ResourceKind) => ({ type: 'object', properties: VIEW_PROPERTIES[kind] });

export function itemReplySchema(kind: ResourceKind): object {
  return { type: 'object', properties: { [kind]: viewSchema(kind) } };
}

export function listReplySchema(kind: ResourceKind): object {
  return {
    type: 'object',
    properties: {
      [`${kind}s`]: { type: 'array', items: viewSchema(kind) },
      [`${kind}s_links`]: {
        type: 'array',
        items: { type: 'object', properties: { rel: STRING, href: STRING } },
      },
    },
  };
}

export const neutronErrorSchema = {
  type: 'object',
  properties: {
    NeutronError: { type: 'object', properties: { type: STRING, message: STRING, detail: STRING } },
  },
};
