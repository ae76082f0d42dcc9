/**
 * The create forms' checks, made with the API's own rules: the resource
 * contract's lengths and formats (src/model/contract.ts, src/model/formats.ts)
 * and the API's wording, so the page refuses what the API would refuse, with
 * the message the API would give. The API decides in the end: what only it
 * can know (ownership, loops, tunnel id reuse, quotas) comes back as its
 * error, which the form shows as is.
 */
import { CONTRACT, type ResourceKind } from '../../src/model/contract.js';
import { attributePath, formatReason, invalidInputMessage, showValue } from '../../src/model/formats.js';

export type Checked = { body: Record<string, unknown> } | { error: string };

const required = (name: string) => `Failed to parse request. Required attribute '${name}' not specified`;

interface StringSchema {
  maxLength?: number;
  format?: string;
}

function schemaOf(kind: ResourceKind, name: string): StringSchema {
  return (CONTRACT[kind].attributes as Record<string, { schema: StringSchema }>)[name]!.schema;
}

/** Why a string attribute's value would be refused, or undefined. */
function stringProblem(kind: ResourceKind, name: string, value: string): string | undefined {
  const { maxLength, format } = schemaOf(kind, name);
  if (maxLength !== undefined && value.length > maxLength) {
    return invalidInputMessage(name, `${showValue(value)} exceeds maximum length of ${maxLength}`);
  }
  const reason = format === undefined ? undefined : formatReason(format, value);
  return reason === undefined ? undefined : invalidInputMessage(name, reason);
}

interface Field {
  name: string;
  value: string;
  /** allow_post required: an empty value is refused. Optional: an empty value is left out (or null when nullable). */
  required?: boolean;
  nullable?: boolean;
}

function collect(kind: ResourceKind, fields: Field[]): Checked {
  const body: Record<string, unknown> = {};
  for (const field of fields) {
    if (field.value === '') {
      if (field.required) return { error: required(field.name) };
      if (field.nullable) body[field.name] = null;
      continue;
    }
  }
  for (const field of fields) {
    if (field.value === '') continue;
    const problem = stringProblem(kind, field.name, field.value);
    if (problem !== undefined) return { error: problem };
    body[field.name] = field.value;
  }
  return { body };
}

export interface CommonValues {
  name: string;
  description: string;
}

export function checkTapService(values: CommonValues & { port_id: string }): Checked {
  return collect('tap_service', [
    { name: 'name', value: values.name },
    { name: 'description', value: values.description },
    { name: 'port_id', value: values.port_id, required: true },
  ]);
}

export function checkTapFlow(values: CommonValues & { source_port: string; tap_service_id: string; direction: string; vlan_filter: string }): Checked {
  return collect('tap_flow', [
    { name: 'name', value: values.name },
    { name: 'description', value: values.description },
    { name: 'source_port', value: values.source_port, required: true },
    { name: 'tap_service_id', value: values.tap_service_id, required: true },
    { name: 'direction', value: values.direction, required: true },
    { name: 'vlan_filter', value: values.vlan_filter.trim() === '' ? '' : values.vlan_filter },
  ]);
}

export function checkTapMirror(values: CommonValues & { port_id: string; mirror_type: string; remote_ip: string; in_id: string; out_id: string }): Checked {
  const checked = collect('tap_mirror', [
    { name: 'name', value: values.name },
    { name: 'description', value: values.description },
    { name: 'port_id', value: values.port_id, required: true },
    { name: 'remote_ip', value: values.remote_ip.trim(), required: true },
    { name: 'mirror_type', value: values.mirror_type, required: true },
  ]);
  if ('error' in checked) return checked;
  const formats = CONTRACT.tap_mirror.attributes.directions.formatBy.formats as Record<string, string>;
  const directions: Record<string, number> = {};
  for (const [direction, text] of [['IN', values.in_id.trim()], ['OUT', values.out_id.trim()]] as const) {
    if (text === '') continue;
    const where = attributePath('directions', [direction]);
    if (!/^-?\d+$/.test(text)) return { error: invalidInputMessage(where, `${showValue(text)} is not a valid integer`) };
    const id = Number(text);
    const reason = formatReason(formats[values.mirror_type] ?? '', id);
    if (reason !== undefined) return { error: invalidInputMessage(where, reason) };
    directions[direction] = id;
  }
  if (Object.keys(directions).length === 0) return { error: invalidInputMessage('directions', 'must not be empty') };
  return { body: { ...checked.body, directions } };
}
