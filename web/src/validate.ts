/**
 * The create forms' checks, made with the API's own rules: the resource
 * contract's required attributes, lengths and formats (src/model/contract.ts,
 * src/model/formats.ts) and the API's wording, so the page refuses what the
 * API would refuse, with the message the API would give. The API decides in
 * the end: what only it can know (ownership, loops, tunnel id reuse, quotas)
 * comes back as its error, which the form shows as is.
 */
import { CONTRACT, type ResourceKind } from '../../src/model/contract.js';
import { attributePath, formatReason, invalidInputMessage, showValue } from '../../src/model/formats.js';

/** The attributes a form would send, and the API's message when it would refuse them. */
export interface Checked {
  body: Record<string, unknown>;
  error?: string;
}

interface Schema {
  maxLength?: number;
  format?: string;
}

type Attributes = Record<string, { schema: Schema; post: string }>;

/** Why the API refuses a string attribute's value, or undefined. */
function stringProblem(name: string, schema: Schema, value: string): string | undefined {
  if (schema.maxLength !== undefined && value.length > schema.maxLength) {
    return invalidInputMessage(name, `${showValue(value)} exceeds maximum length of ${schema.maxLength}`);
  }
  const reason = schema.format === undefined ? undefined : formatReason(schema.format, value);
  return reason === undefined ? undefined : invalidInputMessage(name, reason);
}

/**
 * A form's fields as a create body (empty optional fields left out), checked
 * in the order the API checks: required attributes first, then each in the
 * contract's order.
 */
function check(kind: ResourceKind, values: Record<string, string>, extra: Record<string, unknown> = {}, extraProblem?: () => string | undefined): Checked {
  const attributes = CONTRACT[kind].attributes as unknown as Attributes;
  const body: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(values)) if (value !== '') body[name] = value;
  Object.assign(body, extra);
  const order = Object.keys(attributes);
  for (const name of order) {
    if (attributes[name]!.post === 'required' && !(name in body)) {
      return { body, error: `Failed to parse request. Required attribute '${name}' not specified` };
    }
  }
  for (const name of order) {
    const value = body[name];
    if (typeof value === 'string') {
      const problem = stringProblem(name, attributes[name]!.schema, value);
      if (problem !== undefined) return { body, error: problem };
    } else if (name in extra && extraProblem) {
      const problem = extraProblem();
      if (problem !== undefined) return { body, error: problem };
    }
  }
  return { body };
}

export interface CommonValues {
  name: string;
  description: string;
}

export function checkTapService(values: CommonValues & { port_id: string }): Checked {
  return check('tap_service', { ...values });
}

export function checkTapFlow(values: CommonValues & { source_port: string; tap_service_id: string; direction: string; vlan_filter: string }): Checked {
  return check('tap_flow', { ...values, vlan_filter: values.vlan_filter.trim() === '' ? '' : values.vlan_filter });
}

export function checkTapMirror(values: CommonValues & {
  port_id: string; mirror_type: string; remote_ip: string; in_id: string; out_id: string; both_id?: string; udp_port?: string;
}): Checked {
  const { in_id: inId, out_id: outId, both_id: bothId = '', udp_port: udpPortText = '', ...rest } = values;
  const directions: Record<string, number | string> = {};
  for (const [direction, text] of [['IN', inId.trim()], ['OUT', outId.trim()], ['BOTH', bothId.trim()]] as const) {
    if (text !== '') directions[direction] = /^-?\d+$/.test(text) ? Number(text) : text;
  }
  // Only a vxlan mirror has a UDP port; an empty field is the default (4789).
  const udpPortGiven = udpPortText.trim();
  const udpPort = udpPortGiven === '' ? {} : { udp_port: /^\d+$/.test(udpPortGiven) ? Number(udpPortGiven) : udpPortGiven };
  const formats = CONTRACT.tap_mirror.attributes.directions.formatBy.formats as Record<string, string>;
  const directionsProblem = () => {
    if (Object.keys(directions).length === 0) return invalidInputMessage('directions', 'must not be empty');
    for (const [direction, id] of Object.entries(directions)) {
      const where = attributePath('directions', [direction]);
      if (typeof id !== 'number') return invalidInputMessage(where, `${showValue(id)} is not a valid number`);
      const reason = formatReason(formats[values.mirror_type] ?? '', id);
      if (reason !== undefined) return invalidInputMessage(where, reason);
    }
    if ('udp_port' in udpPort) {
      const port = udpPort.udp_port;
      if (typeof port !== 'number') return invalidInputMessage('udp_port', `${showValue(port)} is not a valid number`);
      const reason = formatReason('udp-port', port);
      if (reason !== undefined) return invalidInputMessage('udp_port', reason);
    }
    return undefined;
  };
  return check('tap_mirror', { ...rest, remote_ip: values.remote_ip.trim() }, { directions, ...udpPort }, directionsProblem);
}
