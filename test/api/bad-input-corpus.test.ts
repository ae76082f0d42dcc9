/**
 * A corpus of bad input, generated from tables so that it grows with the API:
 * the resource kinds, their paths (both spellings) and every attribute with
 * its schema come from the resource contract (src/model/contract.ts), the
 * extension aliases from the server, the quota resources from the kinds.
 * For every case, against a real daemon over real HTTP:
 *
 * - no 5xx, ever;
 * - every error answer is a NeutronError (and JSON);
 * - a write (POST, PUT, PATCH, DELETE) never succeeds;
 * - and after all of it, every listing and every quota is what it was.
 *
 * The cases are listed in $TAPAS_BAD_INPUT_CORPUS (a Markdown table) when set.
 */
import { writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { EXTENSIONS } from '../../src/api/server.js';
import { CONTRACT, RESOURCE_KINDS, type Attribute, type ResourceKind } from '../../src/model/contract.js';
import { DaemonProcess, type ApiClient } from './daemon-process.js';
import { isNeutronError } from './raw-http.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

interface Case {
  what: string;
  method: string;
  /** May hold @tokens@ (ids made in setup), replaced at run time. */
  path: string;
  headers?: Record<string, string>;
  /** Sent as is (tokens replaced); with a JSON content type unless headers say otherwise. */
  body?: string | Buffer;
  /** Bytes written straight to a socket instead (tokens replaced). */
  raw?: string;
}

// ---- the API, as the code declares it ----

const KINDS = RESOURCE_KINDS;
const contractOf = (kind: ResourceKind) => CONTRACT[kind] as { paths: readonly string[]; attributes: Record<string, Attribute> };
/** One of each kind exists (made in setup): its id's token. */
const EXISTING: Record<ResourceKind, string> = { port: '@vm@', tap_service: '@service@', tap_flow: '@flow@', tap_mirror: '@mirror@' };

/** A create body per kind that succeeds as it is (checked in setup): each case breaks one thing of it. */
const VALID_CREATE: Record<ResourceKind, Record<string, Json>> = {
  port: { name: 'corpus-new', 'binding:profile': { interface: 'cpnew0' } },
  tap_service: { name: 'corpus-new', port_id: '@spare@' },
  tap_flow: { name: 'corpus-new', source_port: '@spare@', tap_service_id: '@service@', direction: 'OUT' },
  tap_mirror: { name: 'corpus-new', port_id: '@vm@', remote_ip: '198.51.100.200', mirror_type: 'gre', directions: { IN: 777 } },
};

/** Values that break a format, per format name (unicode oddities among them). */
const BAD_FORMAT: Record<string, Json[]> = {
  uuid: ['not-a-uuid', '4a1c1f0e-0000-4000-8000-00000000000', '４a1c1f0e-0000-4000-8000-000000000000', '4a1c1f0e00004000800000000000000g', "' OR 1=1--"],
  'interface-name': ['', 'a'.repeat(16), 'eth/0', 'eth 0', 'eth:0', 'eth\u00000', '..', 'ééééééééé'],
  netns: ['', '../etc', '/run/netns/../../proc/1/ns/net', 'ns with space', 'nś', '-x'],
  'ip-address': ['1.2.3', '300.1.2.3', 'fe80::1%eth0', 'collector.example', '', '١٩٢.٠.٢.١', '255.255.255.255', '224.0.0.1', '::', '127.0.0.1', '::1', '::ffff:127.0.0.1', 'ff02::1'],
  'vlan-filter': ['1-5,', '4095', '9-3', '0', 'ten', '', '１-５', '1,,2', `${'1,'.repeat(600)}1`],
  // libpcap refuses them (no names that would need a DNS look-up: compiling one would ask a resolver).
  'pcap-filter': ['udp prot 1000', 'port 70000', 'vlan 5000', '(', 'ip and', 'tcp[', 'udp\u0000port 1'],
};

/** Numbers that break a numeric format (wrong types and fractions are tried for every integer). */
const BAD_NUMBER: Record<string, Json[]> = {
  snaplen: [0, 63, 262_145],
  'sample-rate': [0, 2 ** 32],
};

/** Values no attribute of the given schema accepts: wrong types, too long, lone surrogates, formats broken. */
function badValues(schema: Record<string, any>): Json[] {
  if (schema.const !== undefined) return [typeof schema.const === 'boolean' ? !schema.const : null, String(schema.const), 1, 0, null, [], {}];
  const types: string[] = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  const numeric = types.includes('integer') || types.includes('number');
  const values: Json[] = [];
  if (!types.includes('string')) values.push('str');
  if (!numeric) values.push(42, -1.5);
  if (!types.includes('boolean')) values.push(true);
  if (!types.includes('array')) values.push([], ['x']);
  if (!types.includes('object')) values.push({ a: 1 });
  if (!types.includes('null')) values.push(null);
  if (numeric) values.push('1', 1.5, -1, 2 ** 53, 1e300);
  if (numeric && schema.format && BAD_NUMBER[schema.format]) values.push(...BAD_NUMBER[schema.format]!);
  if (types.includes('string')) {
    values.push('\ud800', 'a\udc00b');
    if (schema.maxLength !== undefined) values.push('x'.repeat(schema.maxLength + 1));
    if (schema.enum) {
      const first = String(schema.enum[0]);
      values.push(`${first}x`, first.toLowerCase() === first ? first.toUpperCase() : first.toLowerCase(), '');
    }
    if (schema.format && BAD_FORMAT[schema.format]) values.push(...BAD_FORMAT[schema.format]!);
  }
  if (types.includes('object')) {
    values.push({ unknown_key: 1 });
    if ((schema.required ?? []).length > 0 || (schema.minProperties ?? 0) > 0) values.push({});
  }
  return values;
}

/** Something an attribute might plausibly hold: for attributes a request may not set at all. */
function plausibleValue(schema: Record<string, any>): Json {
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return schema.enum[0];
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  if (type === 'integer' || type === 'number') return 1;
  if (type === 'boolean') return true;
  if (type === 'object') return {};
  return 'plausible';
}

const short = (value: unknown) => {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
};

// ---- the cases ----

const MALFORMED_JSON: Array<[string, string]> = [
  ['truncated JSON', '{"@kind@": {'],
  ['unbalanced braces', '{"@kind@": {}}}'],
  ['trailing comma', '{"@kind@": {"name": "x",}}'],
  ['single quotes', "{'@kind@': {}}"],
  ['a bare word', 'nul'],
  ['an unquoted key', '{@kind@: {}}'],
  ['a JavaScript comment', '{"@kind@": {} /* c */}'],
  ['NaN', '{"@kind@": {"name": NaN}}'],
  ['a control character in a string', '{"@kind@": {"name": "a\u0001b"}}'],
  ['an invalid escape', '{"@kind@": {"name": "\\x41"}}'],
  ['the body null', 'null'],
  ['the body a number', '1'],
  ['the body a string', '"@kind@"'],
  ['the body an array', '[{"@kind@": {}}]'],
  ['the body an empty object', '{}'],
  ['the body true', 'true'],
  ['the resource null', '{"@kind@": null}'],
  ['the resource a list', '{"@kind@": []}'],
  ['the resource a string', '{"@kind@": "x"}'],
  ['a bulk list', '{"@kind@s": [{}]}'],
  ['an unknown top-level key', '{"@kind@": {}, "extra": 1}'],
  ['__proto__', '{"@kind@": {"__proto__": {"admin": true}}}'],
  ['constructor.prototype', '{"@kind@": {"constructor": {"prototype": {"x": 1}}}}'],
  ['65 levels of nesting', `{"@kind@": {"name": ${'['.repeat(65)}${']'.repeat(65)}}}`],
  ['8000 levels of nesting (16 KB)', `{"@kind@": {"name": ${'['.repeat(8000)}${']'.repeat(8000)}}}`],
  ['a lone surrogate in a key', '{"@kind@": {"\\ud800": 1}}'],
  ['an empty body', ''],
  ['whitespace only', ' \n\t '],
  ['a byte-order mark then garbage', '\ufeff{'],
  ['a 70 KB body', `{"@kind@": {"description": "${'d'.repeat(70_000)}"}}`],
  ['1000 keys', `{"@kind@": {${Array.from({ length: 1000 }, (_, i) => `"k${i}": ${i}`).join(', ')}}}`],
];

const NOT_UTF8 = (kind: string) => Buffer.concat([Buffer.from(`{"${kind}": {"name": "`), Buffer.from([0xff, 0xfe, 0xc0, 0xaf]), Buffer.from('"}}')]);

const BAD_CONTENT_TYPES = ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/jsonx', 'json', '*/*', ''];

const BAD_IDS: Array<[string, string]> = [
  ['not a UUID', 'not-a-uuid'],
  ['an unknown UUID', '4a1c1f0e-0000-4000-8000-000000000000'],
  ['a UUID with fullwidth digits', '４a1c1f0e-0000-4000-8000-000000000000'],
  ['101 characters', 'a'.repeat(101)],
  ['2000 characters', 'b'.repeat(2000)],
  ['malformed percent-encoding', '%E0%A4%A'],
  ['a bad percent escape', '%zz'],
  ['an encoded NUL', 'x%00y'],
  ['an encoded lone surrogate', '%ED%A0%80'],
  ['an encoded slash and dots', '..%2F..%2Fetc'],
  ['SQL', "'%20OR%201=1--"],
  ['encoded unicode', '%C3%BC%E2%80%AE'],
  ['an id of another kind', '@other@'],
];

const BAD_QUERIES: Array<[string, string]> = [
  ['an unknown filter', 'colour=red'],
  ['a filter on an object attribute', '@objectattr@=x'],
  ['limit not a number', 'limit=ten'],
  ['a negative limit', 'limit=-1'],
  ['a huge limit', 'limit=99999999999999999999999'],
  ['an unknown marker', 'marker=4a1c1f0e-0000-4000-8000-000000000000'],
  ['a marker that is no UUID', 'marker=%E2%80%AE'],
  ['an unknown sort_key', 'sort_key=colour'],
  ['sort_dir without sort_key', 'sort_dir=asc'],
  ['sort_dir invalid', 'sort_key=name&sort_dir=up'],
  ['page_reverse', 'page_reverse=True'],
  ['1000 filter values', Array.from({ length: 1000 }, () => 'id=x').join('&')],
  ['malformed percent-encoding in a value', 'name=%E0%A4%A'],
  ['an encoded lone surrogate in a key', '%ED%A0%80=1'],
  ['a key with brackets', 'name[]=x&name[a]=y'],
  ['an empty key', '=x&&&'],
  ['unknown fields only', 'fields=colour'],
];

const COLLECTION_WRONG_METHODS = ['PUT', 'DELETE', 'PATCH'];
const MEMBER_WRONG_METHODS = ['POST', 'PATCH'];

function jsonCase(what: string, method: string, path: string, body: Json | string, headers: Record<string, string> = {}): Case {
  return { what, method, path, body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } };
}

function resourceCases(kind: ResourceKind): Case[] {
  const cases: Case[] = [];
  const { paths, attributes } = contractOf(kind);
  const valid = VALID_CREATE[kind];
  const others = KINDS.filter((other) => other !== kind);
  for (const path of paths) {
    const member = `${path}/${EXISTING[kind]}`;
    // Create: one broken attribute at a time, each of the contract's attributes.
    for (const [name, attribute] of Object.entries(attributes)) {
      const schema = attribute.schema as Record<string, any>;
      const values = attribute.post === 'no' ? [plausibleValue(schema), ...badValues(schema).slice(0, 2)] : badValues(schema);
      for (const value of values) {
        cases.push(jsonCase(`create, ${name} = ${short(value)}`, 'POST', path, { [kind]: { ...valid, [name]: value } }));
      }
      if (attribute.post === 'required') {
        const { [name]: _left, ...without } = valid;
        cases.push(jsonCase(`create without ${name}`, 'POST', path, { [kind]: without }));
      }
      // An object attribute's own keys, each broken in turn.
      for (const [key, property] of Object.entries((schema.properties ?? {}) as Record<string, Record<string, any>>)) {
        const base = (valid[name] ?? {}) as Record<string, Json>;
        for (const value of badValues(property)) {
          cases.push(jsonCase(`create, ${name}.${key} = ${short(value)}`, 'POST', path, { [kind]: { ...valid, [name]: { ...base, [key]: value } } }));
        }
      }
      // Update: read-only attributes with any value, writable ones with bad values.
      const updates = attribute.put ? badValues(schema) : [plausibleValue(schema), ...badValues(schema).slice(0, 2)];
      for (const value of updates) {
        cases.push(jsonCase(`update, ${name} = ${short(value)}`, 'PUT', member, { [kind]: { [name]: value } }));
      }
    }
    cases.push(jsonCase('create with an unknown attribute', 'POST', path, { [kind]: { ...valid, colour: 'blue' } }));
    cases.push(jsonCase('update with an unknown attribute', 'PUT', member, { [kind]: { colour: 'blue' } }));
    cases.push(jsonCase('create under another kind\'s key', 'POST', path, { [others[0]!]: valid }));
    // Bodies that are not what a request should carry at all.
    for (const [what, text] of MALFORMED_JSON) {
      const body = text.replaceAll('@kind@', kind);
      cases.push(jsonCase(`create, ${what}`, 'POST', path, body));
      cases.push(jsonCase(`update, ${what}`, 'PUT', member, body));
    }
    cases.push({ what: 'create, a body that is not UTF-8', method: 'POST', path, body: NOT_UTF8(kind), headers: { 'content-type': 'application/json' } });
    cases.push({ what: 'update, a body that is not UTF-8', method: 'PUT', path: member, body: NOT_UTF8(kind), headers: { 'content-type': 'application/json' } });
    for (const type of BAD_CONTENT_TYPES) {
      const body = JSON.stringify({ [kind]: valid });
      cases.push({ what: `create as ${type || 'no content type'}`, method: 'POST', path, body, headers: { 'content-type': type } });
      cases.push({ what: `update as ${type || 'no content type'}`, method: 'PUT', path: member, body: JSON.stringify({ [kind]: { name: 'renamed' } }), headers: { 'content-type': type } });
    }
    // Deletes that must not delete: a body of the wrong type, a bad one, a cross-origin page, a foreign Host.
    cases.push({ what: 'delete with a text/plain body', method: 'DELETE', path: member, body: 'x', headers: { 'content-type': 'text/plain' } });
    cases.push(jsonCase('delete with malformed JSON', 'DELETE', member, '{'));
    cases.push({ what: 'delete from another origin', method: 'DELETE', path: member, headers: { origin: 'http://evil.example' } });
    cases.push({ what: 'delete with a rebound Host', method: 'DELETE', path: member, headers: { host: 'evil.example' } });
    cases.push({ what: 'create from another origin', method: 'POST', path, body: JSON.stringify({ [kind]: valid }), headers: { 'content-type': 'application/json', origin: 'null' } });
    cases.push({ what: 'update from a cross-site page', method: 'PUT', path: member, body: JSON.stringify({ [kind]: { name: 'x' } }), headers: { 'content-type': 'application/json', 'sec-fetch-site': 'cross-site' } });
    // Bad ids on every member route.
    for (const [what, id] of BAD_IDS) {
      const at = `${path}/${id.replace('@other@', EXISTING[others[0]!])}`;
      cases.push({ what: `show, id ${what}`, method: 'GET', path: at });
      cases.push(jsonCase(`update, id ${what}`, 'PUT', at, { [kind]: { name: 'x' } }));
      cases.push({ what: `delete, id ${what}`, method: 'DELETE', path: at });
    }
    // Bad list queries.
    const objectAttribute = Object.entries(attributes).find(([, attribute]) => (attribute.schema as { type?: unknown }).type === 'object')?.[0] ?? 'status_reason';
    for (const [what, query] of BAD_QUERIES) {
      cases.push({ what: `list, ${what}`, method: 'GET', path: `${path}?${query.replace('@objectattr@', encodeURIComponent(objectAttribute))}` });
    }
    cases.push({ what: 'show, an unknown field and a bad query', method: 'GET', path: `${member}?fields=%E0%A4%A&limit=-1` });
    for (const method of COLLECTION_WRONG_METHODS) cases.push(jsonCase(`${method} on the collection`, method, path, { [kind]: valid }));
    for (const method of MEMBER_WRONG_METHODS) cases.push(jsonCase(`${method} on a member`, method, member, { [kind]: { name: 'x' } }));
    cases.push({ what: 'a member path with a trailing slash', method: 'DELETE', path: `${member}/` });
    cases.push({ what: 'a path below a member', method: 'DELETE', path: `${member}/x` });
  }
  return cases;
}

/**
 * Tap mirrors whose tunnel ids fit one mirror_type's format but not the one
 * given (formatBy: each type's maximum + 1), BOTH with IN or OUT, and udp_port
 * where it does not belong or out of range: each a 400.
 */
function mirrorTypeCases(): Case[] {
  const path = CONTRACT.tap_mirror.paths[0];
  const valid = VALID_CREATE.tap_mirror;
  const formats = (CONTRACT.tap_mirror.attributes.directions as Attribute).formatBy!.formats;
  const maxOf: Record<string, number> = { 'gre-key': 2 ** 32 - 1, 'erspan-session-id': 1023, 'vxlan-vni': 2 ** 24 - 1 };
  const cases: Case[] = [];
  for (const [type, format] of Object.entries(formats)) {
    for (const direction of ['IN', 'OUT', 'BOTH']) {
      const id = maxOf[format]! + 1;
      cases.push(jsonCase(`create, ${type} with ${direction} = ${id}`, 'POST', path,
        { tap_mirror: { ...valid, mirror_type: type, directions: { [direction]: id } } }));
    }
    cases.push(jsonCase(`create, ${type} with BOTH and IN`, 'POST', path, { tap_mirror: { ...valid, mirror_type: type, directions: { BOTH: 1, IN: 2 } } }));
    cases.push(jsonCase(`create, ${type} with BOTH and OUT`, 'POST', path, { tap_mirror: { ...valid, mirror_type: type, directions: { OUT: 2, BOTH: 1 } } }));
    if (type !== 'vxlan') cases.push(jsonCase(`create, ${type} with a udp_port`, 'POST', path, { tap_mirror: { ...valid, mirror_type: type, udp_port: 4789 } }));
  }
  for (const port of [0, 65536, -1, 4789.5, '4789', true]) {
    cases.push(jsonCase(`create, vxlan with udp_port = ${short(port)}`, 'POST', path, { tap_mirror: { ...valid, mirror_type: 'vxlan', udp_port: port } }));
  }
  cases.push(jsonCase('update, udp_port (not updatable)', 'PUT', `${path}/${EXISTING.tap_mirror}`, { tap_mirror: { udp_port: 4790 } }));
  return cases;
}

function quotaCases(): Case[] {
  const cases: Case[] = [];
  const member = '/v2.0/quotas/q1';
  for (const resource of KINDS) {
    for (const value of ['many', '5', -2, 1.5, 1_000_001, 1e300, null, true, [], { a: 1 }, '\ud800'] as Json[]) {
      cases.push(jsonCase(`quota ${resource} = ${short(value)}`, 'PUT', member, { quota: { [resource]: value } }));
    }
  }
  for (const [what, body] of [
    ['an unknown resource', { quota: { routers: 3 } }],
    ['a bulk of projects', { quotas: [{ port: 1 }] }],
    ['no quota key', { port: 1 }],
    ['quota null', { quota: null }],
    ['quota a list', { quota: [1] }],
    ['quota a number', { quota: 5 }],
    ['an extra top-level key', { quota: { port: 1 }, extra: 1 }],
    ['a lone surrogate key', { quota: { '\ud800': 1 } }],
  ] as Array<[string, Json]>) cases.push(jsonCase(`quota with ${what}`, 'PUT', member, body));
  for (const [what, text] of MALFORMED_JSON) cases.push(jsonCase(`quota, ${what}`, 'PUT', member, text.replaceAll('@kind@', 'quota')));
  for (const type of BAD_CONTENT_TYPES) cases.push({ what: `quota as ${type || 'no content type'}`, method: 'PUT', path: member, body: '{"quota": {"port": 1}}', headers: { 'content-type': type } });
  // A project id is any string (as in a body's project_id): only those no URL can carry are bad.
  const undecodable = (id: string) => { try { decodeURIComponent(id); return false; } catch { return true; } };
  for (const [what, id] of BAD_IDS.filter(([, id]) => id.length > 100 || undecodable(id))) {
    cases.push({ what: `quota show, project ${what}`, method: 'GET', path: `/v2.0/quotas/${id}` });
    cases.push(jsonCase(`quota update, project ${what}`, 'PUT', `/v2.0/quotas/${id}`, { quota: { port: 1 } }));
    cases.push({ what: `quota reset, project ${what}`, method: 'DELETE', path: `/v2.0/quotas/${id}` });
  }
  cases.push(jsonCase('quota update without a project', 'PUT', '/v2.0/quotas/', { quota: { port: 1 } }));
  cases.push({ what: 'quota reset without a project', method: 'DELETE', path: '/v2.0/quotas/' });
  cases.push({ what: 'quota reset from another origin', method: 'DELETE', path: member, headers: { origin: 'http://evil.example' } });
  cases.push({ what: 'quota update with a rebound Host', method: 'PUT', path: member, body: '{"quota": {"port": 1}}', headers: { 'content-type': 'application/json', host: 'rebind.example:9696' } });
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) cases.push(jsonCase(`${method} on the quota list`, method, '/v2.0/quotas', { quota: { port: 1 } }));
  for (const method of ['POST', 'PATCH']) cases.push(jsonCase(`${method} on a project's quota`, method, member, { quota: { port: 1 } }));
  return cases;
}

function otherRouteCases(): Case[] {
  const cases: Case[] = [];
  const aliases = EXTENSIONS.map((extension) => extension.alias);
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    for (const path of ['/', '/v2.0', '/v2.0/', '/v2.0/extensions', `/v2.0/extensions/${aliases[0]}`, '/v2.0/taas/stats', '/v2.0/taas/stats/stream', '/metrics']) {
      cases.push(jsonCase(`${method} on ${path}`, method, path, { x: 1 }));
    }
  }
  for (const [what, alias] of [['unknown', 'routers'], ['a near miss', `${aliases[0]}x`], ['upper case', aliases[0]!.toUpperCase()], ...BAD_IDS.filter(([, id]) => !id.startsWith('@'))]) {
    cases.push({ what: `extension alias ${what}`, method: 'GET', path: `/v2.0/extensions/${alias}` });
  }
  for (const interval of ['0', '-1', 'ten', '1e9', '0.01', '61', '%E0%A4%A', '']) {
    cases.push({ what: `stats stream, interval ${interval || '(empty)'}`, method: 'GET', path: `/v2.0/taas/stats/stream?interval=${interval}` });
  }
  for (const path of ['/v2.0/networks', '/v2.0/taas', '/v2.0/taas/tap_services/x/y/z', '/v3/ports', '/%E0%A4%A', `/${'x'.repeat(5000)}`, '//v2.0//ports', '/v2.0/ports/../quotas']) {
    cases.push({ what: `unknown path ${short(path)}`, method: 'GET', path });
  }
  // Headers, on a read and on a write.
  const write = { method: 'POST', path: '/v2.0/ports', body: JSON.stringify({ port: VALID_CREATE.port }) };
  for (const [what, headers] of [
    ['a rebound Host', { host: 'evil.example' }],
    ['a rebound Host with the port', { host: 'evil.example:9696' }],
    ['a Host of a public address', { host: '198.51.100.1' }],
    ['a Host with userinfo', { host: 'user@localhost' }],
    ['a foreign Origin', { origin: 'http://evil.example' }],
    ['Origin null', { origin: 'null' }],
    ['a loopback Origin of another port', { origin: 'http://127.0.0.1:1' }],
    ['Sec-Fetch-Site cross-site', { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site same-site', { 'sec-fetch-site': 'same-site' }],
    ['an Expect it cannot meet', { expect: 'teapot' }],
    ['20 KB of headers', { 'x-filler': 'f'.repeat(20_000) }],
    ['a huge X-Project-Id', { 'x-project-id': 'p'.repeat(15_000) }],
  ] as Array<[string, Record<string, string>]>) {
    cases.push({ what: `list with ${what}`, method: 'GET', path: '/v2.0/ports', headers });
    cases.push({ ...write, what: `create with ${what}`, headers: { 'content-type': 'application/json', ...headers } });
  }
  return cases;
}

/** Requests Node's parser refuses before any route: written straight to the socket. */
function framingCases(): Case[] {
  const create = JSON.stringify({ port: VALID_CREATE.port });
  const frames: Array<[string, string]> = [
    ['no Host (HTTP/1.1)', 'GET /v2.0/ports HTTP/1.1\r\n\r\n'],
    ['no Host (HTTP/1.0)', 'GET /v2.0/ports HTTP/1.0\r\n\r\n'],
    ['no Host on a create', `POST /v2.0/ports HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: ${create.length}\r\n\r\n${create}`],
    ['garbage', 'GARBAGE\r\n\r\n'],
    ['an unknown HTTP version', 'GET /v2.0/ports HTTP/9.9\r\nHost: @host@\r\n\r\n'],
    ['a space in the header name', 'GET /v2.0/ports HTTP/1.1\r\nHost: @host@\r\nBad Name: x\r\n\r\n'],
    ['a NUL in a header value', 'GET /v2.0/ports HTTP/1.1\r\nHost: @host@\r\nX-A: a\u0000b\r\n\r\n'],
    ['a folded header', 'GET /v2.0/ports HTTP/1.1\r\nHost: @host@\r\n folded: x\r\n\r\n'],
    ['Content-Length and chunked', `POST /v2.0/ports HTTP/1.1\r\nHost: @host@\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n${create}`],
    ['two Content-Lengths', `POST /v2.0/ports HTTP/1.1\r\nHost: @host@\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: ${create.length}\r\n\r\n${create}`],
    ['a bad chunk size', `POST /v2.0/ports HTTP/1.1\r\nHost: @host@\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n${create}\r\n0\r\n\r\n`],
    ['a negative Content-Length', `POST /v2.0/ports HTTP/1.1\r\nHost: @host@\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n${create}`],
    ['an unknown Transfer-Encoding', `POST /v2.0/ports HTTP/1.1\r\nHost: @host@\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n${create}`],
    ['a request line of 20 KB', `GET /v2.0/ports?name=${'x'.repeat(20_000)} HTTP/1.1\r\nHost: @host@\r\n\r\n`],
    ['CONNECT', 'CONNECT @host@ HTTP/1.1\r\nHost: @host@\r\n\r\n'],
    ['a method Node does not know', 'BREW /v2.0/ports HTTP/1.1\r\nHost: @host@\r\n\r\n'],
    ['an absolute URI of another host', `POST http://evil.example/v2.0/ports HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nContent-Length: ${create.length}\r\n\r\n${create}`],
    ['a Content-Length larger than the body', `POST /v2.0/ports HTTP/1.1\r\nHost: @host@\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n${create}`],
  ];
  return frames.map(([what, raw]) => ({ what: `framing: ${what}`, method: raw.split(' ')[0]!, path: '(raw)', raw }));
}

const CASES: Case[] = [...KINDS.flatMap(resourceCases), ...mirrorTypeCases(), ...quotaCases(), ...otherRouteCases(), ...framingCases()];
const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

// ---- running them ----

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 4 });

function send(base: URL, testCase: Case, fill: (text: string) => string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = testCase.body === undefined ? undefined : typeof testCase.body === 'string' ? Buffer.from(fill(testCase.body)) : testCase.body;
    const headers: Record<string, string | number> = { ...testCase.headers };
    if (headers['content-type'] === '') delete headers['content-type'];
    if (body !== undefined) headers['content-length'] = body.length;
    const request = httpRequest({
      host: base.hostname, port: base.port, method: testCase.method, headers, agent,
      // What a client would put on the wire for a path with non-ASCII characters.
      path: fill(testCase.path).replace(/[^\x21-\x7e]/gu, (character) => encodeURIComponent(character)),
    }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({
        status: response.statusCode ?? 0, contentType: String(response.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8'),
      }));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

function sendRaw(base: URL, bytes: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(base.port), base.hostname);
    const chunks: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const all = Buffer.concat(chunks).toString('utf8');
      const end = all.indexOf('\r\n\r\n');
      const head = end < 0 ? all : all.slice(0, end);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      const contentType = /\r\ncontent-type:\s*([^\r\n]*)/i.exec(head)?.[1] ?? '';
      let text = end < 0 ? '' : all.slice(end + 4);
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (length) text = text.slice(0, Number(length[1]));
      else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) text = text.replace(/^[0-9a-f]+\r\n/i, '').replace(/\r\n0\r\n\r\n$/, '');
      resolve({ status, contentType, text });
    };
    const timer = setTimeout(finish, 3000);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const all = Buffer.concat(chunks).toString('latin1');
      const end = all.indexOf('\r\n\r\n');
      const length = end < 0 ? null : /\r\ncontent-length:\s*(\d+)/i.exec(all.slice(0, end));
      if (length && all.length - end - 4 >= Number(length[1])) finish();
    });
    socket.on('close', finish);
    socket.on('error', (error: NodeJS.ErrnoException) => (chunks.length > 0 || error.code === 'ECONNRESET' ? finish() : reject(error)));
    // Half-closed: the daemon sees where the request ends, even one that promised more.
    socket.end(bytes);
  });
}

describe(`a corpus of ${CASES.length} bad requests: no 5xx, NeutronErrors only, nothing changes`, () => {
  let daemon: DaemonProcess;
  let api: ApiClient;
  let base: URL;
  const tokens = new Map<string, string>();
  const results: Array<{ what: string; request: string; status: number; type: string }> = [];
  let before: unknown;

  const fill = (text: string) => text.replace(/@(\w+)@/g, (whole, name: string) => tokens.get(name) ?? whole);

  /** Every listing (canonical path, all projects) and the quotas: what must not change. */
  async function state(): Promise<unknown> {
    const listings = await Promise.all(KINDS.map(async (kind) => (await api.get(contractOf(kind).paths[0]!)).body));
    const quotas = (await api.get('/v2.0/quotas')).body;
    const limits = await Promise.all(['q1', 'default', 'other'].map(async (project) => (await api.get(`/v2.0/quotas/${project}`)).body));
    return { listings, quotas, limits };
  }

  beforeAll(async () => {
    daemon = await DaemonProcess.start({ args: ['--quota', 'tap_mirror=20'] });
    api = daemon.client();
    base = new URL(daemon.url);
    tokens.set('host', base.host);
    const monitor = (await api.port('corpus-monitor', 'cp0')).id;
    const vm = (await api.port('corpus-vm', 'cp1')).id;
    const spare = (await api.port('corpus-spare', 'cp2')).id;
    const service = (await api.create(CONTRACT.tap_service.paths[0], { tap_service: { name: 'corpus-ts', port_id: monitor } })).id;
    const flow = (await api.create(CONTRACT.tap_flow.paths[0], { tap_flow: { name: 'corpus-tf', source_port: vm, tap_service_id: service, direction: 'IN' } })).id;
    const mirror = (await api.create(CONTRACT.tap_mirror.paths[0], {
      tap_mirror: { name: 'corpus-tm', port_id: vm, remote_ip: '198.51.100.7', mirror_type: 'erspanv1', directions: { IN: 7, OUT: 8 } },
    })).id;
    for (const [name, id] of Object.entries({ monitor, vm, spare, service, flow, mirror })) tokens.set(name, id);
    expect((await api.put('/v2.0/quotas/q1', { quota: { port: 7, tap_flow: 3 } })).status).toBe(200);

    // Each valid create body really creates (so that each case breaks exactly one thing): create, then delete.
    for (const kind of KINDS) {
      const path = contractOf(kind).paths[0]!;
      const created = await api.request('POST', path, fill(JSON.stringify({ [kind]: VALID_CREATE[kind] })), { 'content-type': 'application/json' });
      expect(created.status, `${kind}: ${JSON.stringify(created.body)}`).toBe(201);
      const id = created.body[kind].id as string;
      expect((await api.delete(`${path}/${id}`)).status).toBe(204);
      for (let tries = 0; (await api.get(`${path}/${id}`)).status !== 404; tries++) {
        if (tries > 100) throw new Error(`${kind} ${id} is still there`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    // Statuses come from the agent: wait until they settle before taking the picture.
    let last = await state();
    for (let tries = 0; tries < 50; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const now = await state();
      if (JSON.stringify(now) === JSON.stringify(last)) break;
      last = now;
    }
    before = last;
  });

  afterAll(async () => {
    agent.destroy();
    if (process.env.TAPAS_BAD_INPUT_CORPUS) {
      const lines = ['| case | request | status | NeutronError type |', '|---|---|---|---|',
        ...results.map((r) => `| ${r.what.replace(/\|/g, '\\|')} | \`${r.request.replace(/\|/g, '\\|')}\` | ${r.status} | ${r.type} |`)];
      writeFileSync(process.env.TAPAS_BAD_INPUT_CORPUS, `${lines.join('\n')}\n`);
    }
    await daemon?.stop();
    daemon?.removeState();
  });

  it('covers every kind, both path spellings, quotas, extensions, versions and stats with at least 500 cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(500);
    for (const kind of KINDS) {
      for (const path of contractOf(kind).paths) expect(CASES.some((c) => c.path.startsWith(path)), path).toBe(true);
      // A valid create body names every attribute a create requires.
      for (const [name, attribute] of Object.entries(contractOf(kind).attributes)) {
        if (attribute.post === 'required') expect(VALID_CREATE[kind], `${kind}.${name}`).toHaveProperty([name]);
      }
    }
  });

  for (const testCase of CASES) {
    it(`${testCase.method} ${testCase.path.slice(0, 60)}: ${testCase.what}`, async () => {
      const answer = testCase.raw !== undefined ? await sendRaw(base, fill(testCase.raw)) : await send(base, testCase, fill);
      let body: unknown;
      try {
        body = JSON.parse(answer.text);
      } catch {
        body = undefined;
      }
      const path = fill(testCase.path);
      results.push({
        what: testCase.what,
        request: `${testCase.method} ${path.length > 60 ? `${path.slice(0, 57)}...` : path}`,
        status: answer.status,
        type: (body as { NeutronError?: { type?: string } } | undefined)?.NeutronError?.type ?? '(none)',
      });
      const shown = `${answer.status} ${answer.text.slice(0, 300)}`;
      expect(answer.status, shown).toBeGreaterThanOrEqual(200);
      expect(answer.status, shown).toBeLessThan(500);
      if (answer.status >= 400) {
        expect(answer.contentType, shown).toMatch(/^application\/json/);
        expect(isNeutronError(body), shown).toBe(true);
      }
      if (WRITES.has(testCase.method)) expect(answer.status, `a bad write succeeded: ${shown}`).toBeGreaterThanOrEqual(400);
    });
  }

  it('changed nothing: every listing and every quota is as before, and the daemon still runs without an error logged', async () => {
    expect(await state()).toEqual(before);
    expect(daemon.running).toBe(true);
    expect(daemon.logs.filter((line) => line.level >= 50)).toEqual([]);
  });
});
