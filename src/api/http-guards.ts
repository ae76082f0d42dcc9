/**
 * What stands between raw HTTP and the routes, so that nothing a client can
 * send reaches a 5xx or an answer that is not a Neutron error:
 *
 * - the loopback guard of noauth mode: only requests addressed to a loopback
 *   name (Host) and not sent by another origin's web page (Origin,
 *   Sec-Fetch-Site), so a page that DNS-rebinds its name to 127.0.0.1 cannot
 *   drive the API as admin;
 * - the JSON body parser: UTF-8 only, nesting at most MAX_JSON_DEPTH deep and
 *   no lone UTF-16 surrogates, each refused with a 400 before ajv sees it;
 * - answers in the Neutron format for what fastify and Node answer themselves
 *   (malformed URLs, overlong path parameters, HTTP framing errors, an
 *   `Expect` they cannot meet, CONNECT).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { canonicalIpAddress } from '../model/ip-address.js';
import { BadRequest, NeutronError } from '../service/errors.js';
import { errorBody, sendError } from './errors.js';

/** How deep arrays and objects may nest in a request body (Neutron's bodies need 3). */
export const MAX_JSON_DEPTH = 64;

// ---- the loopback guard (noauth) ----

/** Whether a host name or address (without port or brackets) is this host's loopback. */
export function isLoopbackHost(host: string): boolean {
  const name = host.toLowerCase();
  if (name === 'localhost') return true;
  if (isIP(name) === 0) return false;
  try {
    const { address, family } = canonicalIpAddress(name);
    return family === 4 ? address.startsWith('127.') : address === '::1';
  } catch {
    return false;
  }
}

/** The host part of a Host header value ("[::1]:9696" → "::1"), or undefined when it is not one. */
export function hostOfHeader(value: string): string | undefined {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s/@]+))(?::(\d{1,5}))?$/.exec(value);
  if (!match) return undefined;
  if (match[3] !== undefined && Number(match[3]) > 65535) return undefined;
  return match[1] ?? match[2];
}

class Forbidden extends NeutronError {
  constructor(message: string) {
    super(403, 'HTTPForbidden', message);
  }
}

/**
 * Checks that a request may be served without authentication: addressed to a
 * loopback name or to the listen address, and not from another origin's page.
 * Throws the NeutronError to answer otherwise.
 */
export function checkLoopbackRequest(request: IncomingMessage, listenHost: string): void {
  const hostHeader = request.headers.host;
  if (hostHeader === undefined || hostHeader === '') {
    throw new BadRequest('A Host header is required.');
  }
  const host = hostOfHeader(hostHeader);
  const allowed = (name: string) => isLoopbackHost(name) || name.toLowerCase() === listenHost.toLowerCase();
  if (host === undefined || !allowed(host)) {
    throw new Forbidden(`Host '${shorten(hostHeader)}' is not this host's loopback address: without token auth, `
      + 'only requests to localhost, 127.0.0.0/8 or [::1] are served.');
  }
  const origin = request.headers.origin;
  if (origin !== undefined && !sameLoopbackOrigin(origin, hostHeader, allowed)) {
    throw new Forbidden(`Cross-origin requests are refused (Origin '${shorten(origin)}'): without token auth, `
      + 'a web page of another origin must not drive this API.');
  }
  // Browsers say where a request comes from even when they send no Origin (a GET of an <img> or <script>).
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    throw new Forbidden(`Cross-origin requests are refused (Sec-Fetch-Site '${shorten(String(site))}').`);
  }
}

function sameLoopbackOrigin(origin: string, hostHeader: string, allowed: (name: string) => boolean): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' || url.origin === 'null') return false;
  let target: URL;
  try {
    target = new URL(`http://${hostHeader}`);
  } catch {
    return false;
  }
  const name = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return url.host === target.host && allowed(name);
}

const shorten = (text: string) => (text.length > 100 ? `${text.slice(0, 97)}...` : text);

/** The onRequest hook of noauth mode. */
export function loopbackGuard(listenHost: string) {
  return async (request: FastifyRequest): Promise<void> => checkLoopbackRequest(request.raw, listenHost);
}

/** Every mode: an HTTP/1.1 request without a Host header is malformed (RFC 9112 3.2). */
export async function requireHost(request: FastifyRequest): Promise<void> {
  const { host } = request.raw.headers;
  if (request.raw.httpVersion === '1.1' && (host === undefined || host === '')) {
    throw new BadRequest('A Host header is required.');
  }
}

// ---- the JSON body parser ----

/** What is wrong with a JSON text's structure before parsing it: nesting deeper than the limit. */
export function jsonDepthProblem(text: string, maxDepth = MAX_JSON_DEPTH): string | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return `arrays and objects nest more than ${maxDepth} deep`;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return undefined;
}

// A lone surrogate: in a /u regex, a well-formed pair is one code point and never matches \p{Cs}.
const LONE_SURROGATE = /\p{Cs}/u;

/** The path to a string (or key) of a parsed JSON value that is not valid UTF-16 (a lone surrogate), if any. */
export function loneSurrogatePath(value: unknown, path: readonly string[] = []): string[] | undefined {
  if (typeof value === 'string') return LONE_SURROGATE.test(value) ? [...path] : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  const entries = Array.isArray(value) ? value.map((item, index) => [String(index), item] as const) : Object.entries(value);
  for (const [key, item] of entries) {
    if (LONE_SURROGATE.test(key)) return [...path, key];
    const found = loneSurrogatePath(item, [...path, key]);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Neutron names an attribute without the resource key around it: {"tap_flow": {"name": …}} → name. */
function attributeName(path: readonly string[]): string {
  if (path.length === 0) return 'the body';
  return (path.length > 1 ? path.slice(1) : path).join('.');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Replaces fastify's application/json parser with one that refuses, as 400s,
 * what the default one passes on to trouble: bytes that are not UTF-8 (they
 * would be silently replaced), nesting too deep for the validator and the
 * error messages to walk, and lone surrogates (SQLite would store U+FFFD).
 * Parsing itself (and the __proto__ / constructor checks) stays fastify's.
 */
export function installJsonParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch {
      done(new BadRequest('Malformed JSON in request body: the body is not valid UTF-8.'), undefined);
      return;
    }
    const depth = jsonDepthProblem(text);
    if (depth !== undefined) {
      done(new BadRequest(`Malformed JSON in request body: ${depth}.`), undefined);
      return;
    }
    parse(request, text, (error: Error | null, value?: unknown) => {
      if (error) {
        done(error as FastifyError, undefined);
        return;
      }
      const where = loneSurrogatePath(value);
      if (where !== undefined) {
        done(new BadRequest(`Invalid input for ${attributeName(where)}. Reason: the string is not valid UTF-16 `
          + '(it holds a lone surrogate, such as \\ud800 without its pair).'), undefined);
        return;
      }
      done(null, value);
    });
  });
}

// ---- Neutron errors for what fastify and Node answer themselves ----

/** fastify's `frameworkErrors`: a URL it cannot decode, a path parameter over maxParamLength. */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const path = (request.raw.url ?? '/').split('?')[0]!;
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    // An id no resource can have: what any unknown id gets, so that clients fall back to a lookup by name.
    void sendError(reply, 404, 'HTTPNotFound', `The resource could not be found: ${shorten(path)} (an id longer than the longest there is).`);
    return;
  }
  if (error.code === 'FST_ERR_BAD_URL') {
    void sendError(reply, 400, 'HTTPBadRequest', `Malformed URL: ${shorten(path)} is not valid percent-encoded UTF-8.`);
    return;
  }
  const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
  void sendError(reply, status, 'HTTPBadRequest', shorten(error.message));
}

const marked = Symbol('tapas.clientErrorAnswered');

function rawResponse(status: number, reason: string, type: string, message: string): string {
  const body = JSON.stringify(errorBody(type, message));
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`
    + `Connection: close\r\n\r\n${body}`;
}

/**
 * fastify's `clientErrorHandler` (the http server's 'clientError'): a request
 * Node could not parse gets a Neutron error, written straight to the socket as
 * Node would write its own, and the connection is closed.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Duplex): void {
  const state = socket as Duplex & { [marked]?: boolean; _httpMessage?: { headersSent?: boolean } };
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  if (state[marked]) return;
  state[marked] = true;
  // As Node does: never write into a response already under way.
  if (socket.writable && !state._httpMessage?.headersSent) {
    let answer: string;
    switch (error.code) {
      case 'HPE_HEADER_OVERFLOW':
        answer = rawResponse(431, 'Request Header Fields Too Large', 'HTTPRequestHeaderFieldsTooLarge',
          'Request header fields too large: the request line and headers may take at most 16 KiB.');
        break;
      case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
        answer = rawResponse(413, 'Payload Too Large', 'HTTPRequestEntityTooLarge', 'Chunk extensions too large.');
        break;
      case 'ERR_HTTP_REQUEST_TIMEOUT':
        answer = rawResponse(408, 'Request Timeout', 'HTTPRequestTimeout', 'The request did not arrive in time.');
        break;
      default:
        answer = rawResponse(400, 'Bad Request', 'HTTPBadRequest',
          `Malformed HTTP request${error.code?.startsWith('HPE_') ? ` (${error.code.slice(4).toLowerCase().replace(/_/g, ' ')})` : ''}.`);
    }
    socket.end(answer);
  }
  // Whatever else the client sends is discarded; the connection goes once the answer is out.
  socket.on('data', () => undefined);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Answers for what the http server would otherwise answer without a body (417) or by closing (CONNECT). */
export function answerServerLevelRequests(server: Server): void {
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    const body = JSON.stringify(errorBody('HTTPExpectationFailed',
      `Expectation '${shorten(String(request.headers.expect))}' cannot be met: only 100-continue is supported.`));
    response.writeHead(417, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
    response.end(body);
  });
  server.on('connect', (_request: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => undefined);
    socket.end(rawResponse(405, 'Method Not Allowed', 'HTTPMethodNotAllowed', 'The method CONNECT is not allowed.'));
    setTimeout(() => socket.destroy(), 1000).unref();
  });
}

/** Old Neutron clients ask for "/ports.json": the suffix is dropped from the path, never from the query string. */
export function stripJsonSuffix(url: string): string {
  const query = url.indexOf('?');
  const path = query < 0 ? url : url.slice(0, query);
  const rest = query < 0 ? '' : url.slice(query);
  return `${path.replace(/\.json$/, '')}${rest}`;
}
