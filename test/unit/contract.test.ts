import { Ajv } from 'ajv';
import ajvFormats from 'ajv-formats';
import { describe, expect, it } from 'vitest';

import { contractFormats, createBodySchema, updateBodySchema } from '../../src/api/schemas.js';
import { ATTRIBUTES } from '../../src/api/views.js';
import { columnsOf, inputFromBody, recordFields } from '../../src/model/contract.js';
import { formatReason } from '../../src/model/formats.js';

/** The resource contract and its format rules, without a daemon. */
describe('format rules', () => {
  const ok = (format: string, value: string | number) => expect(formatReason(format, value), `${format} ${value}`).toBeUndefined();
  const bad = (format: string, value: string | number, reason: RegExp) => expect(formatReason(format, value)).toMatch(reason);

  it('interface names: 1 to 15 bytes of UTF-8, no NUL, slash, colon or whitespace', () => {
    ok('interface-name', 'eth0');
    ok('interface-name', 'a'.repeat(15));
    ok('interface-name', 'é'.repeat(7)); // 14 bytes
    bad('interface-name', 'a'.repeat(16), /not a valid interface name \(1 to 15 bytes/);
    bad('interface-name', 'é'.repeat(8), /not a valid interface name/); // 8 characters, 16 bytes
    for (const name of ['', 'a/b', 'a:b', 'a b', 'a\tb', 'a\0b', '.', '..']) bad('interface-name', name, /not a valid interface name/);
  });

  it('netns: a name under /run/netns or an absolute path, never with ..', () => {
    for (const netns of ['host1', 'ns_1.a-b', '/proc/123/ns/net', '/run/netns/x']) ok('netns', netns);
    for (const netns of ['../x', 'a..b', '/run/netns/../../proc/1/ns/net', 'a/b', '-x', '', 'a'.repeat(256), 'x y']) {
      bad('netns', netns, /is not a valid network namespace/);
    }
  });

  it('UUIDs, IP addresses, VLAN filters and tunnel ids', () => {
    ok('uuid', '4A1C1F0E-0000-4000-8000-000000000000');
    bad('uuid', 'not-a-uuid', /^'not-a-uuid' is not a valid UUID$/);
    ok('ip-address', '192.0.2.1');
    ok('ip-address', '2001:DB8::1');
    bad('ip-address', '1.2.3', /'1\.2\.3' is not a valid IP address/);
    bad('ip-address', 'fe80::1%eth0', /is not a valid IP address/);
    ok('vlan-filter', '1-5,9,18-27');
    bad('vlan-filter', '1-5,', /invalid vlan_filter item ''/);
    bad('vlan-filter', '0', /between 1 and 4094/);
    bad('vlan-filter', '9-3', /9 > 3/);
    ok('erspan-session-id', 1023);
    bad('erspan-session-id', 1024, /tunnel id 1024 is not an ERSPAN session id \(0 to 1023\)/);
    ok('gre-key', 2 ** 32 - 1);
    bad('gre-key', 2 ** 32, /is not a GRE key/);
    bad('gre-key', -1, /is not a GRE key/);
  });
});

describe('the contract', () => {
  const ajv = contractFormats(ajvFormats.default(new Ajv({ allErrors: false, verbose: true })));

  it('views show the attributes in the order clients have always seen them', () => {
    const common = ['id', 'project_id', 'tenant_id', 'name', 'description', 'status', 'status_reason', 'created_at', 'updated_at'];
    expect(ATTRIBUTES).toEqual({
      port: [...common, 'mac_address', 'admin_state_up', 'binding:host_id', 'binding:profile'],
      tap_service: [...common, 'port_id'],
      // tapas-filter, tapas-snaplen, tapas-sampling after TaaS's own.
      tap_flow: [...common, 'tap_service_id', 'source_port', 'direction', 'vlan_filter', 'filter', 'snaplen', 'sample_rate'],
      tap_mirror: [...common, 'port_id', 'directions', 'remote_ip', 'mirror_type', 'udp_port', 'filter', 'snaplen', 'sample_rate'],
    });
  });

  it('the store columns are the stored attributes (statuses and MACs are not stored)', () => {
    expect(columnsOf('port')).toEqual(['id', 'project_id', 'name', 'description', 'created_at', 'updated_at', 'host_id', 'interface', 'netns']);
    expect(columnsOf('tap_mirror')).not.toContain('directions');
    expect(columnsOf('tap_flow')).not.toContain('status');
  });

  it('a create body: required attributes, formats, and tunnel ids by mirror type', () => {
    const validate = ajv.compile(createBodySchema('tap_mirror'));
    const port = '4a1c1f0e-0000-4000-8000-000000000000';
    const mirror = (attributes: Record<string, unknown>) => ({ tap_mirror: { port_id: port, remote_ip: '192.0.2.1', mirror_type: 'gre', directions: { IN: 1 }, ...attributes } });
    expect(validate(mirror({}))).toBe(true);
    expect(validate(mirror({ directions: { IN: 5000 } }))).toBe(true);
    expect(validate(mirror({ mirror_type: 'erspanv1', directions: { IN: 5000 } }))).toBe(false);
    expect(validate.errors?.[0]).toMatchObject({ keyword: 'format', instancePath: '/tap_mirror/directions/IN', params: { format: 'erspan-session-id' } });
    expect(validate(mirror({ mirror_type: 'erspanv2', directions: { BOTH: 1024 } }))).toBe(false);
    expect(validate.errors?.[0]).toMatchObject({ keyword: 'format', instancePath: '/tap_mirror/directions/BOTH', params: { format: 'erspan-session-id' } });
    expect(validate(mirror({ mirror_type: 'vxlan', directions: { OUT: 2 ** 24 - 1 }, udp_port: 4790 }))).toBe(true);
    expect(validate(mirror({ mirror_type: 'vxlan', directions: { OUT: 2 ** 24 } }))).toBe(false);
    expect(validate.errors?.[0]).toMatchObject({ keyword: 'format', params: { format: 'vxlan-vni' } });
    expect(validate(mirror({ mirror_type: 'vxlan', udp_port: 65536 }))).toBe(false);
    expect(validate(mirror({ status: 'ACTIVE' }))).toBe(false);
    expect(validate(mirror({ remote_ip: 'collector' }))).toBe(false);
    expect(validate({ tap_mirror: { port_id: port } })).toBe(false);
  });

  it('an update body takes only what allow_put allows', () => {
    const validate = ajv.compile(updateBodySchema('tap_flow'));
    expect(validate({ tap_flow: { name: 'x', description: 'y' } })).toBe(true);
    expect(validate({ tap_flow: { direction: 'IN' } })).toBe(false);
  });

  it('a body becomes record fields, defaults filled in', () => {
    const input = inputFromBody('port', { name: 'p', 'binding:profile': { interface: 'eth0' }, 'binding:host_id': 'h1', admin_state_up: true });
    expect(input).toEqual({ name: 'p', interface: 'eth0', netns: undefined, host_id: 'h1', admin_state_up: true });
    expect(recordFields('port', input)).toEqual({ project_id: null, name: 'p', description: '', host_id: 'h1', interface: 'eth0', netns: null });
    expect(recordFields('tap_flow', { tap_service_id: 's', source_port: 'p', direction: 'IN' }))
      .toMatchObject({ vlan_filter: null, name: '', description: '', direction: 'IN' });
  });
});
