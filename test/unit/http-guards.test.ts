import { describe, expect, it } from 'vitest';

import {
  hostOfHeader, isLoopbackHost, jsonDepthProblem, loneSurrogatePath, stripJsonSuffix,
} from '../../src/api/http-guards.js';
import { canonicalIpAddress, remoteAddressReason } from '../../src/model/ip-address.js';
import { storageFailure } from '../../src/store/storage-errors.js';

describe('the loopback guard', () => {
  it('knows loopback names and addresses', () => {
    for (const host of ['localhost', 'LocalHost', '127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    for (const host of ['evil.example', 'localhost.evil.example', '127.0.0.1.nip.io', '10.0.0.1', '::', '::2', '0.0.0.0', '', '128.0.0.1']) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });

  it('takes the host out of a Host header, or nothing from one that is not', () => {
    expect(hostOfHeader('localhost:9696')).toBe('localhost');
    expect(hostOfHeader('[::1]:9696')).toBe('::1');
    expect(hostOfHeader('[::1]')).toBe('::1');
    expect(hostOfHeader('127.0.0.1')).toBe('127.0.0.1');
    for (const bad of ['', 'a:b:c', 'user@localhost', 'localhost:99999', '[::1', 'local host', 'localhost/x']) {
      expect(hostOfHeader(bad), bad).toBeUndefined();
    }
  });
});

describe('the JSON body checks', () => {
  it('measures nesting outside strings only', () => {
    expect(jsonDepthProblem('[[[]]]', 3)).toBeUndefined();
    expect(jsonDepthProblem('[[[[]]]]', 3)).toMatch(/more than 3/);
    expect(jsonDepthProblem('{"a": "[[[[[[[[", "b": "\\"[[[["}', 1)).toBeUndefined();
    expect(jsonDepthProblem(`${'['.repeat(8000)}${']'.repeat(8000)}`)).toMatch(/more than 64/);
  });

  it('finds lone surrogates in values and keys, and lets pairs through', () => {
    expect(loneSurrogatePath({ tap_flow: { name: 'a\ud83d\ude00' } })).toBeUndefined();
    expect(loneSurrogatePath({ tap_flow: { name: 'a\ud800' } })).toEqual(['tap_flow', 'name']);
    expect(loneSurrogatePath({ quota: { '\udc00': 1 } })).toEqual(['quota', '\udc00']);
    expect(loneSurrogatePath({ a: [1, 'ok', '\ude00\ud83d'] })).toEqual(['a', '2']);
    expect(loneSurrogatePath('\ud800')).toEqual([]);
  });

  it('strips .json from the path and never from the query string', () => {
    expect(stripJsonSuffix('/v2.0/ports.json')).toBe('/v2.0/ports');
    expect(stripJsonSuffix('/v2.0/ports.json?name=a.json')).toBe('/v2.0/ports?name=a.json');
    expect(stripJsonSuffix('/v2.0/ports?name=vm.json')).toBe('/v2.0/ports?name=vm.json');
    expect(stripJsonSuffix('/v2.0/ports/x.json.json')).toBe('/v2.0/ports/x.json');
  });
});

describe('remote addresses', () => {
  it('maps an IPv4-mapped IPv6 address to its IPv4 address', () => {
    expect(canonicalIpAddress('::ffff:192.0.2.77')).toEqual({ address: '192.0.2.77', family: 4 });
    expect(canonicalIpAddress('::FFFF:C000:024D')).toEqual({ address: '192.0.2.77', family: 4 });
    expect(canonicalIpAddress('0:0:0:0:0:ffff:c000:24d')).toEqual({ address: '192.0.2.77', family: 4 });
    // Not mapped: the IPv4-compatible form and NAT64 stay IPv6.
    expect(canonicalIpAddress('::192.0.2.77').family).toBe(6);
    expect(canonicalIpAddress('64:ff9b::192.0.2.77').family).toBe(6);
  });

  it('refuses what is no remote host, and only that', () => {
    const reason = (text: string) => remoteAddressReason(canonicalIpAddress(text));
    expect(reason('255.255.255.255')).toMatch(/broadcast/);
    expect(reason('224.0.0.1')).toMatch(/multicast/);
    expect(reason('239.255.255.255')).toMatch(/multicast/);
    expect(reason('ff02::1')).toMatch(/multicast/);
    expect(reason('0.0.0.0')).toMatch(/unspecified/);
    expect(reason('::')).toMatch(/unspecified/);
    expect(reason('127.0.0.1')).toMatch(/loopback/);
    expect(reason('::1')).toMatch(/loopback/);
    expect(reason('::ffff:127.0.0.2')).toMatch(/loopback/);
    for (const fine of ['192.0.2.1', '223.255.255.255', '240.0.0.1', '2001:db8::1', 'ff::1', 'fe80::1', '10.0.0.255']) {
      expect(reason(fine), fine).toBeUndefined();
    }
  });
});

describe('store errors as answers', () => {
  const sqlite = (code: string, message = 'x') => Object.assign(new Error(message), { code });

  it('a full disk is 507, an I/O error or a read-only store 503, anything else is not the disk\'s', () => {
    expect(storageFailure(sqlite('SQLITE_FULL', 'database or disk is full'))).toMatchObject({ status: 507, type: 'InsufficientStorage' });
    expect(storageFailure(sqlite('SQLITE_IOERR_WRITE', 'disk I/O error: ENOSPC'))).toMatchObject({ status: 507 });
    expect(storageFailure(sqlite('SQLITE_IOERR_FSYNC', 'disk I/O error'))).toMatchObject({ status: 503, type: 'StorageUnavailable' });
    expect(storageFailure(sqlite('SQLITE_READONLY'))).toMatchObject({ status: 503 });
    expect(storageFailure(sqlite('SQLITE_BUSY'))).toMatchObject({ status: 503 });
    expect(storageFailure(sqlite('SQLITE_CONSTRAINT_UNIQUE'))).toBeUndefined();
    expect(storageFailure(new Error('plain'))).toBeUndefined();
    expect(storageFailure(undefined)).toBeUndefined();
    expect(storageFailure(sqlite('SQLITE_FULL'))!.message).toMatch(/disk .* is full/);
  });
});
