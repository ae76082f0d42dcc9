import { isIPv4, isIPv6 } from 'node:net';

export class IpAddressError extends Error {}

/**
 * An IPv4 or IPv6 address in canonical text form, so that two spellings of one
 * address ("2001:DB8:0::1", "2001:db8::1") compare equal when tunnel ids are
 * checked for reuse toward the same remote.
 */
export function canonicalIpAddress(text: string): { address: string; family: 4 | 6 } {
  if (isIPv4(text)) return { address: text, family: 4 };
  // Zone ids ("fe80::1%eth0") name an interface of this host: no use for a remote collector.
  if (isIPv6(text) && !text.includes('%')) {
    const bracketed = new URL(`http://[${text}]/`).hostname;
    return { address: bracketed.slice(1, -1), family: 6 };
  }
  throw new IpAddressError(`'${text}' is not a valid IP address`);
}
