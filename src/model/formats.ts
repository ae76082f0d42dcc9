/**
 * The value formats of the resource contract, each rule written once. A rule
 * returns undefined for a value that conforms and otherwise the reason it does
 * not, worded for Neutron's `Invalid input for ATTRIBUTE. Reason: ...`. The
 * API's schemas use them as custom ajv formats (see api/schemas.ts) and the
 * CLI checks its options with them before it sends anything.
 */
import { canonicalIpAddress, IpAddressError } from './ip-address.js';
import { parseVlanFilter, VlanFilterError } from './vlan-filter.js';

/** A value as an error message quotes it: strings in quotes, anything else as JSON, cut at 80 characters. */
export function showValue(value: unknown): string {
  const text = typeof value === 'string' ? `'${value}'` : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** Neutron's wording of a bad attribute value, from the API and the CLI alike. */
export function invalidInputMessage(attribute: string, reason: string): string {
  return `Invalid input for ${attribute}. Reason: ${reason}.`;
}

/** How a message names a value inside an attribute: `binding:profile (interface)`, `directions (IN)`. */
export function attributePath(attribute: string, keys: readonly string[] = []): string {
  return keys.length > 0 ? `${attribute} (${keys.join('.')})` : attribute;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (text: string): boolean => UUID.test(text);

/** IFNAMSIZ is 16 bytes with the terminating NUL. */
const MAX_INTERFACE_BYTES = 15;

function interfaceNameReason(text: string): string | undefined {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes >= 1 && bytes <= MAX_INTERFACE_BYTES && !/[\s/:\0]/.test(text) && text !== '.' && text !== '..') return undefined;
  return `${showValue(text)} is not a valid interface name (1 to ${MAX_INTERFACE_BYTES} bytes, no whitespace, '/', ':' or NUL)`;
}

// A network namespace: a name under /run/netns, or an absolute path such as /proc/PID/ns/net.
const NETNS_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/;
const NETNS_PATH = /^\/[A-Za-z0-9_./-]{1,4095}$/;

function netnsReason(text: string): string | undefined {
  const name = NETNS_NAME.test(text) && !text.includes('..');
  const path = NETNS_PATH.test(text) && !text.split('/').includes('..');
  if (name || path) return undefined;
  return `${showValue(text)} is not a valid network namespace (a name under /run/netns or an absolute path, without '..')`;
}

/** The reason a parser gives for refusing text, when it throws its own error class. */
function parserReason(parse: (text: string) => unknown, refusal: new (...args: never[]) => Error) {
  return (text: string): string | undefined => {
    try {
      parse(text);
      return undefined;
    } catch (error) {
      if (error instanceof refusal) return error.message;
      throw error;
    }
  };
}

/** ERSPAN type II carries a 10-bit session id. */
export const ERSPAN_MAX_SESSION_ID = 1023;
/** A VXLAN network identifier is 24 bits. */
export const VXLAN_MAX_VNI = 0xff_ffff;
/** A GRE key is 32 bits. */
export const GRE_MAX_KEY = 0xffff_ffff;

const tunnelIdReason = (what: string, max: number) => (id: number): string | undefined =>
  (Number.isInteger(id) && id >= 0 && id <= max ? undefined : `tunnel id ${id} is not ${what} (0 to ${max})`);

export type Format =
  | { type: 'string'; reason: (value: string) => string | undefined }
  | { type: 'number'; reason: (value: number) => string | undefined };

const stringFormat = (reason: (value: string) => string | undefined): Format => ({ type: 'string', reason });
const numberFormat = (reason: (value: number) => string | undefined): Format => ({ type: 'number', reason });

/** A rule's snaplen: at least the headers (64 bytes), at most libpcap's MAXIMUM_SNAPLEN (native/plan.h). */
export const MIN_SNAPLEN = 64;
export const MAX_SNAPLEN = 262_144;
export const MAX_SAMPLE_RATE = 0xffff_ffff;

/**
 * What compiles a pcap-filter expression: libpcap, through the native addon,
 * in the processes that have it (the API server and the CLI set it with
 * useFilterCompiler). It returns null, or libpcap's message. The web page has
 * none: there only the length is checked, and the API says the rest.
 */
type FilterCompiler = (expression: string) => string | null;
let filterCompiler: FilterCompiler | undefined;

export function useFilterCompiler(compile: FilterCompiler): void {
  filterCompiler = compile;
}

function pcapFilterReason(text: string): string | undefined {
  if (text.includes('\0')) return `${showValue(text)} contains a NUL byte`;
  const message = filterCompiler?.(text) ?? null;
  return message === null ? undefined : `${showValue(text)} does not compile: ${message}`;
}

/** Every custom format by the name schemas give it. */
export const FORMATS = {
  uuid: stringFormat((text) => (isUuid(text) ? undefined : `${showValue(text)} is not a valid UUID`)),
  'interface-name': stringFormat(interfaceNameReason),
  netns: stringFormat(netnsReason),
  'ip-address': stringFormat(parserReason(canonicalIpAddress, IpAddressError)),
  'vlan-filter': stringFormat(parserReason(parseVlanFilter, VlanFilterError)),
  'gre-key': numberFormat(tunnelIdReason('a GRE key', GRE_MAX_KEY)),
  'erspan-session-id': numberFormat(tunnelIdReason('an ERSPAN session id', ERSPAN_MAX_SESSION_ID)),
  'vxlan-vni': numberFormat(tunnelIdReason('a VXLAN VNI', VXLAN_MAX_VNI)),
  'pcap-filter': stringFormat(pcapFilterReason),
  snaplen: numberFormat((n) => (Number.isInteger(n) && n >= MIN_SNAPLEN && n <= MAX_SNAPLEN ? undefined
    : `${n} is not a snaplen (${MIN_SNAPLEN} to ${MAX_SNAPLEN} bytes)`)),
  'sample-rate': numberFormat((n) => (Number.isInteger(n) && n >= 1 && n <= MAX_SAMPLE_RATE ? undefined
    : `${n} is not a sample rate (1 to ${MAX_SAMPLE_RATE}: one frame in N)`)),
  'udp-port': numberFormat((port) => (Number.isInteger(port) && port >= 1 && port <= 65535 ? undefined : `${port} is not a UDP port (1 to 65535)`)),
} satisfies Record<string, Format>;

export type FormatName = keyof typeof FORMATS;

/** Why value does not conform to the named format, or undefined when it does (or the format is not ours). */
export function formatReason(format: string, value: unknown): string | undefined {
  const rule = (FORMATS as Record<string, Format | undefined>)[format];
  if (rule?.type === 'string' && typeof value === 'string') return rule.reason(value);
  if (rule?.type === 'number' && typeof value === 'number') return rule.reason(value);
  return undefined;
}
