import { isIPv4, isIPv6 } from 'node:net';

export class IpAddressError extends Error {}

// What URL canonicalization makes of an IPv4-mapped IPv6 address ("::ffff:192.0.2.77" → "::ffff:c000:24d").
const IPV4_MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * An IPv4 or IPv6 address in canonical text form, so that two spellings of one
 * address ("2001:DB8:0::1", "2001:db8::1") compare equal when tunnel ids are
 * checked for reuse toward the same remote. An IPv4-mapped IPv6 address
 * ("::ffff:192.0.2.77") is the IPv4 address it maps: packets to it leave as IPv4.
 */
export function canonicalIpAddress(text: string): { address: string; family: 4 | 6 } {
  if (isIPv4(text)) return { address: text, family: 4 };
  // Zone ids ("fe80::1%eth0") name an interface of this host: no use for a remote collector.
  if (isIPv6(text) && !text.includes('%')) {
    const bracketed = new URL(`http://[${text}]/`).hostname;
    const address = bracketed.slice(1, -1);
    const mapped = IPV4_MAPPED.exec(address);
    if (mapped) {
      const high = parseInt(mapped[1]!, 16);
      const low = parseInt(mapped[2]!, 16);
      return { address: [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.'), family: 4 };
    }
    return { address, family: 6 };
  }
  throw new IpAddressError(`'${text}' is not a valid IP address`);
}

/**
 * Why an address (canonical, as canonicalIpAddress gives it) cannot be the
 * remote end of a tunnel, or undefined when it can: the unspecified address,
 * loopback, multicast and the limited broadcast never reach one collector.
 */
export function remoteAddressReason(canonical: { address: string; family: 4 | 6 }): string | undefined {
  const { address, family } = canonical;
  if (family === 4) {
    const first = Number(address.split('.')[0]);
    if (address === '0.0.0.0') return `'${address}' is the unspecified address, not a remote host`;
    if (first === 127) return `'${address}' is a loopback address (127.0.0.0/8): tunnels go to a remote collector`;
    if (address === '255.255.255.255') return `'${address}' is the broadcast address, not a remote host`;
    if (first >= 224 && first <= 239) return `'${address}' is a multicast address (224.0.0.0/4), not a remote host`;
    return undefined;
  }
  if (address === '::') return `'${address}' is the unspecified address, not a remote host`;
  if (address === '::1') return `'${address}' is the loopback address: tunnels go to a remote collector`;
  const firstGroup = address.split(':')[0]!;
  if (firstGroup.length === 4 && firstGroup.startsWith('ff')) return `'${address}' is a multicast address (ff00::/8), not a remote host`;
  return undefined;
}
