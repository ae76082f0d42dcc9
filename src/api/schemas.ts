/**
 * JSON schemas of request bodies and replies, per resource, built from the
 * resource contract (model/contract.ts): a create accepts the attributes that
 * allow_post, an update those that allow_put, a reply shows the visible ones.
 * Types and formats are checked here, before the service sees a body (the
 * formats are the contract's, registered with ajv by `contractFormats`); the
 * error handler turns a schema failure into Neutron's wording (errors.ts).
 */
import { Type, type TObject, type TSchema } from '@sinclair/typebox';

import { attributesOf, type Attribute, type ResourceKind } from '../model/contract.js';
import { FORMATS, type Format } from '../model/formats.js';

/** The part of ajv a format plugin needs. */
interface FormatRegistry {
  addFormat(name: string, format: { type: 'string'; validate: (value: string) => boolean } | { type: 'number'; validate: (value: number) => boolean }): unknown;
}

/** An ajv plugin: the contract's formats, each checked by its one rule in model/formats.ts. */
export function contractFormats<A extends FormatRegistry>(ajv: A): A {
  for (const [name, format] of Object.entries(FORMATS) as Array<[string, Format]>) {
    ajv.addFormat(name, format.type === 'string'
      ? { type: 'string', validate: (value: string) => format.reason(value) === undefined }
      : { type: 'number', validate: (value: number) => format.reason(value) === undefined });
  }
  return ajv;
}

/**
 * Formats chosen by another attribute's value (a tap mirror's tunnel ids by
 * its mirror_type): one if/then per value.
 */
function formatRules(name: string, attribute: Attribute): object[] {
  const by = attribute.formatBy;
  if (!by) return [];
  return Object.entries(by.formats).map(([value, format]) => ({
    if: { properties: { [by.attribute]: { const: value } }, required: [by.attribute] },
    then: { properties: { [name]: { additionalProperties: { type: FORMATS[format].type, format } } } },
  }));
}

function bodySchema(kind: ResourceKind, properties: Record<string, TSchema>, rules: object[]): TObject {
  const resource = Type.Object(properties, { additionalProperties: false, ...(rules.length > 0 ? { allOf: rules } : {}) });
  return Type.Object({ [kind]: resource }, { additionalProperties: false });
}

/** `{"KIND": {...}}` with the attributes a create may give (allow_post), those it must give required. */
export function createBodySchema(kind: ResourceKind): TObject {
  const properties: Record<string, TSchema> = {};
  const rules: object[] = [];
  for (const [name, attribute] of attributesOf(kind)) {
    if (attribute.post === 'no') continue;
    properties[name] = attribute.post === 'required' ? attribute.schema : Type.Optional(attribute.schema);
    rules.push(...formatRules(name, attribute));
  }
  return bodySchema(kind, properties, rules);
}

/** `{"KIND": {...}}` with the attributes an update may change (allow_put), all optional. */
export function updateBodySchema(kind: ResourceKind): TObject {
  const properties = Object.fromEntries(attributesOf(kind)
    .filter(([, attribute]) => attribute.put)
    .map(([name, attribute]) => [name, Type.Optional(attribute.schema)]));
  return bodySchema(kind, properties, []);
}

/** Keywords that only check input: a reply schema leaves them out and keeps the shape. */
const INPUT_ONLY = new Set(['format', 'pattern', 'maxLength', 'minLength', 'minimum', 'maximum', 'minProperties', 'maxProperties',
  'additionalProperties', 'required', 'enum', 'const', 'allOf']);

/** An attribute's schema as a reply serializes it: types and properties only. */
function shapeOf(schema: object): object {
  return Object.fromEntries(Object.entries(schema)
    .filter(([key]) => !INPUT_ONLY.has(key))
    .map(([key, value]) => [key, key === 'properties'
      ? Object.fromEntries(Object.entries(value as Record<string, object>).map(([inner, sub]) => [inner, shapeOf(sub)]))
      : value]));
}

const STRING = { type: 'string' };

const viewSchema = (kind: ResourceKind) => ({
  type: 'object',
  properties: Object.fromEntries(attributesOf(kind).filter(([, attribute]) => attribute.visible)
    .map(([name, attribute]) => [name, shapeOf(attribute.schema)])),
});

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
