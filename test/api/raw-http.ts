/**
 * HTTP without a client library in the way: any Host, Origin or framing a
 * hostile client could send, over a socket of its own, and the answer as it
 * came (status, headers, body parsed as JSON when it is JSON).
 */
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Writes bytes to the daemon's socket and reads until it closes (or timeoutMs): one answer. */
export function rawExchange(baseUrl: string, bytes: string | Buffer, timeoutMs = 3000): Promise<RawResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const all = Buffer.concat(chunks).toString('latin1');
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) {
        resolve({ status: 0, headers: {}, text: all, json: undefined });
        return;
      }
      const [statusLine, ...headerLines] = all.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      let body = Buffer.from(all.slice(end + 4), 'latin1').toString('utf8');
      if (headers['content-length'] !== undefined) body = body.slice(0, Number(headers['content-length']));
      else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = unchunk(body);
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, text: body, json: parseJson(body) });
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      // One answer is all we wait for: stop once its body is complete.
      const all = Buffer.concat(chunks).toString('latin1');
      const end = all.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(all.slice(0, end + 2));
      if (end >= 0 && length && Buffer.byteLength(all.slice(end + 4), 'latin1') >= Number(length[1])) finish();
    });
    socket.on('end', finish);
    socket.on('close', finish);
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (chunks.length > 0 || error.code === 'ECONNRESET' || error.code === 'EPIPE') finish();
      else reject(error);
    });
    socket.write(bytes);
  });
}

function unchunk(body: string): string {
  let out = '';
  let rest = body;
  for (;;) {
    const newline = rest.indexOf('\r\n');
    if (newline < 0) return out;
    const size = parseInt(rest.slice(0, newline), 16);
    if (!size) return out;
    out += rest.slice(newline + 2, newline + 2 + size);
    rest = rest.slice(newline + 2 + size + 2);
  }
}

export interface HttpOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/** One request through node:http, which sends whatever Host, Origin or other header it is given. */
export function http(baseUrl: string, path: string, options: HttpOptions = {}): Promise<RawResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const request = httpRequest({
      host: url.hostname,
      port: url.port,
      path,
      method: options.method ?? 'GET',
      headers: options.headers ?? {},
      agent: false,
    }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(response.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
        resolve({ status: response.statusCode ?? 0, headers, text, json: parseJson(text) });
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    if (options.body !== undefined) request.write(options.body);
    request.end();
  });
}

/** Whether a body is a Neutron error: {"NeutronError": {"type", "message", "detail"}} with strings. */
export function isNeutronError(body: unknown): boolean {
  const error = (body as { NeutronError?: Record<string, unknown> } | undefined)?.NeutronError;
  return error !== undefined && error !== null && typeof error === 'object'
    && typeof error.type === 'string' && typeof error.message === 'string' && typeof error.detail === 'string'
    && Object.keys(body as object).length === 1;
}
