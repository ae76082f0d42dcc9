import { describe, expect, it } from 'vitest';

import { formatReason } from '../../src/model/formats.js';
import { canonicalNetns } from '../../src/model/netns.js';

describe('canonicalNetns: one spelling per namespace, looked up nowhere', () => {
  it('spells a file directly under /run/netns as its name, however the path is written', () => {
    for (const spelling of ['ns1', '/run/netns/ns1', '/run/netns//ns1', '/run/netns//ns1/', '/run/netns/./ns1', '//run/./netns///ns1//', '/./run/netns/ns1/.']) {
      expect(canonicalNetns(spelling)).toBe('ns1');
    }
  });

  it('keeps other paths as paths, without repeated slashes, . components or a trailing slash', () => {
    expect(canonicalNetns('/proc/123/ns/net')).toBe('/proc/123/ns/net');
    expect(canonicalNetns('/proc//123/./ns/net/')).toBe('/proc/123/ns/net');
    expect(canonicalNetns('/run/netns/a/b')).toBe('/run/netns/a/b');
    expect(canonicalNetns('/run/netns')).toBe('/run/netns');
    expect(canonicalNetns('/run/netns/')).toBe('/run/netns');
    expect(canonicalNetns('/var/run/netns/ns1')).toBe('/var/run/netns/ns1');
    expect(canonicalNetns('/')).toBe('/');
  });

  it('keeps a path whose last part is no valid name as a path, and leaves what the format refuses alone', () => {
    expect(canonicalNetns('/run/netns/-x')).toBe('/run/netns/-x');
    expect(canonicalNetns('/run/netns/.hidden')).toBe('/run/netns/.hidden');
    expect(canonicalNetns('/run/netns/../../proc/1/ns/net')).toBe('/run/netns/../../proc/1/ns/net');
  });

  it('gives a spelling the netns format accepts for every one it accepts', () => {
    for (const spelling of ['ns1', 'a.b_c-d', '/run/netns//ns1/', '/proc//1/ns/net/', '/run/netns/./-x', '/x/./y//']) {
      expect(formatReason('netns', spelling)).toBeUndefined();
      expect(formatReason('netns', canonicalNetns(spelling))).toBeUndefined();
      expect(canonicalNetns(canonicalNetns(spelling))).toBe(canonicalNetns(spelling));
    }
  });
});
