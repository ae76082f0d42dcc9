/**
 * The CLI's side of the HTTP API: where the daemon is (--endpoint,
 * TAPAS_ENDPOINT), who we are (--token, TAPAS_TOKEN), requests with the
 * Neutron error format turned into one readable message, and the lookup of a
 * resource by name or id the way the OpenStack client does it.
 */
import { Command, Option } from 'commander';

import { isUuid } from '../model/formats.js';

import { UsageError } from './errors.js';

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:9696';

/** An error answer from the daemon, or no answer at all: exit code 1, the message printed. */
export class ServerError extends Error {
  constructor(message: string, readonly status?: number, readonly type?: string) {
    super(message);
  }
}

export interface Collection {
  /** The resource's name in bodies: `tap_service`; the list is `${kind}s`. */
  kind: string;
  /** As people say it: `tap service`. */
  label: string;
  path: string;
}

const REQUEST_TIMEOUT_MS = 30_000;

export type Resource = Record<string, unknown> & { id: string };

export class ApiClient {
  constructor(readonly endpoint: string, private readonly token?: string) {}

  async request(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await this.send(method, path, 'application/json', AbortSignal.timeout(REQUEST_TIMEOUT_MS), body);
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = text;
    }
    if (!response.ok) throw errorOf(method, path, response, parsed);
    return parsed;
  }

  /**
   * Follows a Server-Sent Events stream: calls onEvent with each event's name
   * and parsed data until the stream ends or signal aborts.
   */
  async stream(path: string, onEvent: (event: string, data: unknown) => void, signal: AbortSignal): Promise<void> {
    const response = await this.send('GET', path, 'text/event-stream', signal);
    if (!response.ok || !response.body) {
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch { /* not JSON: reported as the status line */ }
      throw errorOf('GET', path, response, parsed);
    }
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for await (const chunk of response.body) {
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        let end: number;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (data.length > 0) onEvent(event, JSON.parse(data.join('\n')));
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      throw new ServerError(`the stream from ${this.endpoint}${path} broke: ${(error as Error).message}`);
    }
  }

  private async send(method: string, path: string, accept: string, signal: AbortSignal, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { accept };
    if (this.token) headers['x-auth-token'] = this.token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      return await fetch(`${this.endpoint}${path}`, {
        method, headers, signal,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const reason = cause?.code ?? cause?.message ?? (error instanceof Error ? error.message : String(error));
      throw new ServerError(`cannot reach the tapas daemon at ${this.endpoint} (${reason}): is \`tapas serve\` running? (--endpoint, TAPAS_ENDPOINT)`);
    }
  }

  async list(collection: Collection, filters: Record<string, string> = {}): Promise<Resource[]> {
    const query = new URLSearchParams(filters).toString();
    const body = await this.request('GET', `${collection.path}${query ? `?${query}` : ''}`) as Record<string, Resource[]>;
    return body[`${collection.kind}s`] ?? [];
  }

  async get(collection: Collection, id: string): Promise<Resource> {
    const body = await this.request('GET', `${collection.path}/${encodeURIComponent(id)}`) as Record<string, Resource>;
    return body[collection.kind]!;
  }

  async create(collection: Collection, attributes: Record<string, unknown>): Promise<Resource> {
    const body = await this.request('POST', collection.path, { [collection.kind]: attributes }) as Record<string, Resource>;
    return body[collection.kind]!;
  }

  async update(collection: Collection, id: string, attributes: Record<string, unknown>): Promise<Resource> {
    const body = await this.request('PUT', `${collection.path}/${encodeURIComponent(id)}`, { [collection.kind]: attributes }) as Record<string, Resource>;
    return body[collection.kind]!;
  }

  async delete(collection: Collection, id: string): Promise<void> {
    await this.request('DELETE', `${collection.path}/${encodeURIComponent(id)}`);
  }

  /**
   * A resource named by its id or its name. An id is tried first; a name must
   * match exactly one resource (`GET ...?name=X`), as the OpenStack client requires.
   */
  async find(collection: Collection, nameOrId: string): Promise<Resource> {
    if (isUuid(nameOrId)) {
      try {
        return await this.get(collection, nameOrId);
      } catch (error) {
        if (!(error instanceof ServerError && error.status === 404)) throw error;
      }
    }
    const matches = await this.list(collection, { name: nameOrId });
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new ServerError(`More than one ${collection.label} exists with the name '${nameOrId}' `
        + `(${matches.map((match) => match.id).join(', ')}): use its ID`);
    }
    throw new ServerError(`No ${collection.label} with a name or ID of '${nameOrId}' exists`);
  }
}

function errorOf(method: string, path: string, response: Response, parsed: unknown): ServerError {
  const neutron = (parsed as { NeutronError?: { type?: string; message?: string } } | undefined)?.NeutronError;
  if (neutron?.message) return new ServerError(neutron.message, response.status, neutron.type);
  return new ServerError(`${method} ${path}: HTTP ${response.status} ${response.statusText}`, response.status);
}

export interface ClientFlags {
  endpoint: string;
  token?: string;
}

/** The options every command that talks to the daemon understands, set on the root command. */
export function addClientOptions(program: Command): void {
  program
    .addOption(new Option('--endpoint <URL>', 'the tapas daemon\'s API').env('TAPAS_ENDPOINT').default(DEFAULT_ENDPOINT))
    .addOption(new Option('--token <TOKEN>', 'auth token (X-Auth-Token) when the daemon runs with --auth token').env('TAPAS_TOKEN'));
}

export function clientFor(command: Command): ApiClient {
  const flags = command.optsWithGlobals<ClientFlags>();
  let url: URL;
  try {
    url = new URL(flags.endpoint);
  } catch {
    throw new UsageError(`invalid --endpoint '${flags.endpoint}': expected a URL such as ${DEFAULT_ENDPOINT}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`invalid --endpoint '${flags.endpoint}': only http:// and https:// URLs`);
  }
  // A Neutron-style endpoint may be given with its version suffix; the paths carry it already.
  const base = url.toString().replace(/\/+$/, '').replace(/\/v2\.0$/, '');
  return new ApiClient(base, flags.token || undefined);
}
