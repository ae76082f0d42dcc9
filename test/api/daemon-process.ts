/**
 * A real `tapas serve` for tests: the compiled CLI in its own process, on
 * 127.0.0.1 with an ephemeral port, its store in a temporary directory.
 * Requests go over real HTTP.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const MAIN = new URL('../../dist/cli/main.js', import.meta.url).pathname;

export interface DaemonOptions {
  stateDir?: string;
  args?: string[];
  /** Namespace to run the daemon in (`ip netns exec`); omitted: the test's own. */
  netns?: string;
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export class DaemonProcess {
  private exitCode: number | null | undefined;
  private readonly exited: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    /** Every JSON log line the daemon printed so far. */
    readonly logs: LogLine[],
    private readonly output: { stderr: string },
    readonly stateDir: string,
    readonly url: string,
    exited: Promise<number | null>,
  ) {
    this.exited = exited.then((code) => {
      this.exitCode = code;
      return code;
    });
  }

  /** Starts the daemon and resolves once it listens (or rejects with what it printed). */
  static async start(options: DaemonOptions = {}): Promise<DaemonProcess> {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npx tsc -p tsconfig.json\` (scripts/setup.sh does) first`);
    const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'tapas-state-'));
    const args = [MAIN, 'serve', '--listen', '127.0.0.1:0', '--state-dir', stateDir, '--agent-interval', '200', ...(options.args ?? [])];
    const command = options.netns ? ['ip', ['netns', 'exec', options.netns, process.execPath, ...args]] as const : [process.execPath, args] as const;
    const child = spawn(command[0], [...command[1]], { stdio: ['ignore', 'pipe', 'pipe'] });
    const logs: LogLine[] = [];
    const output = { stderr: '' };
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      let buffered = '';
      const timer = setTimeout(() => reject(new Error(`the daemon did not start within 20 s: ${output.stderr}`)), 20_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          try {
            const entry = JSON.parse(line) as LogLine;
            logs.push(entry);
            if (entry.msg === 'listening' && typeof entry.url === 'string') {
              clearTimeout(timer);
              resolve(entry.url);
            }
          } catch {
            // not a log line
          }
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => { output.stderr += chunk.toString(); });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the daemon exited with ${code} before listening: ${output.stderr}`));
      });
    });
    const daemon = new DaemonProcess(child, logs, output, stateDir, url, exited);
    return daemon;
  }

  get stderr(): string {
    return this.output.stderr;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** SIGTERM and wait: resolves with the exit code. */
  async stop(timeoutMs = 10_000): Promise<number | null> {
    if (!this.running) return this.exitCode ?? null;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /** kill -9: no chance to flush or clean up anything. */
  async crash(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  waitForExit(): Promise<number | null> {
    return this.exited;
  }

  removeState(): void {
    rmSync(this.stateDir, { recursive: true, force: true });
  }

  /** A client bound to this daemon, optionally with a token or a project header. */
  client(headers: Record<string, string> = {}): ApiClient {
    return new ApiClient(this.url, headers);
  }
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export class ApiClient {
  constructor(readonly url: string, readonly headers: Record<string, string> = {}) {}

  async request<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse<T>> {
    const init: RequestInit = { method, headers: { ...this.headers, ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
    }
    const response = await fetch(`${this.url}${path}`, init);
    const text = await response.text();
    let parsed: unknown = text;
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        // leave the text
      }
    }
    return { status: response.status, body: parsed as T, headers: response.headers };
  }

  get<T = any>(path: string) { return this.request<T>('GET', path); }
  post<T = any>(path: string, body: unknown) { return this.request<T>('POST', path, body); }
  put<T = any>(path: string, body: unknown) { return this.request<T>('PUT', path, body); }
  delete<T = any>(path: string) { return this.request<T>('DELETE', path); }

  /** POSTs and insists on 201: for setting up what a test is not about. */
  async create<T = any>(path: string, body: unknown): Promise<T> {
    const response = await this.post(path, body);
    if (response.status !== 201) throw new Error(`POST ${path} -> ${response.status}: ${JSON.stringify(response.body)}`);
    const [value] = Object.values(response.body as Record<string, T>);
    return value!;
  }

  async port(name: string, ifname: string, netns?: string, extra: Record<string, unknown> = {}): Promise<any> {
    return this.create('/v2.0/ports', { port: { name, 'binding:profile': netns ? { interface: ifname, netns } : { interface: ifname }, ...extra } });
  }
}

/** Polls a GET until check accepts the body, or fails after timeoutMs showing the last body. */
export async function until<T = any>(client: ApiClient, path: string, check: (body: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const response = await client.get<T>(path);
    last = response.body;
    if (response.status === 200 && check(response.body)) return response.body;
    if (Date.now() > deadline) throw new Error(`timed out waiting on ${path}; last answer: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
