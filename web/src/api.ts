/**
 * The page's client of the daemon's API, on the same origin. In token mode it
 * sends the token as X-Auth-Token on every request, the stats stream included
 * (read with fetch(), since EventSource cannot send headers): never in a URL,
 * never in a cookie.
 */
import { SseParser } from './sse.js';
import type { Agent, Inventory, Kind, Port, Session, StatsReport, TapFlow, TapMirror, TapService } from './types.js';
import { COLLECTION } from './types.js';

const TOKEN_KEY = 'tapas.token';

export const storedToken = (): string | null => sessionStorage.getItem(TOKEN_KEY);
export const storeToken = (token: string) => sessionStorage.setItem(TOKEN_KEY, token);
export const forgetToken = () => sessionStorage.removeItem(TOKEN_KEY);

/** A failed request, with the API's own message (NeutronError.message) when it gave one. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly type = '') {
    super(message);
  }
}

async function errorOf(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`;
  let type = '';
  try {
    const body = await response.json() as { NeutronError?: { message?: string; type?: string } };
    if (typeof body.NeutronError?.message === 'string') message = body.NeutronError.message;
    if (typeof body.NeutronError?.type === 'string') type = body.NeutronError.type;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message, type);
}

export class Api {
  constructor(private readonly token: string | null) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { accept: 'application/json', ...(this.token ? { 'x-auth-token': this.token } : {}), ...extra };
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(path, {
      method,
      headers: this.headers(body === undefined ? {} : { 'content-type': 'application/json' }),
      body: body === undefined ? null : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
    if (!response.ok) throw await errorOf(response);
    if (response.status === 204) return undefined as T;
    return response.json() as Promise<T>;
  }

  /** Who the token (or noauth) acts for; null when the daemon needs a token and none was sent. */
  session(): Promise<Session | null> {
    return this.request<{ session: Session | null }>('GET', '/web/session').then((body) => body.session);
  }

  async inventory(admin: boolean): Promise<Inventory> {
    const list = <T>(kind: Kind, key: string) => this.request<Record<string, T[]>>('GET', COLLECTION[kind]).then((body) => body[key] ?? []);
    const [ports, services, flows, mirrors, agents] = await Promise.all([
      list<Port>('port', 'ports'),
      list<TapService>('tap_service', 'tap_services'),
      list<TapFlow>('tap_flow', 'tap_flows'),
      list<TapMirror>('tap_mirror', 'tap_mirrors'),
      admin ? this.request<{ agents: Agent[] }>('GET', '/v2.0/agents').then((body) => body.agents) : Promise.resolve(null),
    ]);
    return { ports, tap_services: services, tap_flows: flows, tap_mirrors: mirrors, agents };
  }

  create(kind: Kind, attributes: Record<string, unknown>): Promise<Record<string, { id: string }>> {
    return this.request('POST', COLLECTION[kind], { [kind]: attributes });
  }

  delete(kind: Kind, id: string): Promise<void> {
    return this.request('DELETE', `${COLLECTION[kind]}/${encodeURIComponent(id)}`);
  }

  /**
   * Follows GET /v2.0/taas/stats/stream until signal aborts or the stream
   * ends (resolves) or fails (rejects), calling onReport for each report.
   */
  async stream(intervalSeconds: number, signal: AbortSignal, onReport: (report: StatsReport) => void): Promise<void> {
    const response = await fetch(`/v2.0/taas/stats/stream?interval=${intervalSeconds}`, {
      headers: this.headers({ accept: 'text/event-stream' }),
      credentials: 'omit',
      cache: 'no-store',
      signal,
    });
    if (!response.ok) throw await errorOf(response);
    if (!response.body) throw new ApiError(0, 'the stats stream has no body');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const event of parser.push(value)) {
        if (event.event !== 'stats') continue;
        const parsed = JSON.parse(event.data) as { stats?: StatsReport };
        if (parsed.stats) onReport(parsed.stats);
      }
    }
  }
}
