/**
 * A real etcd (Debian's etcd-server) for tests: its own temporary data
 * directory, free ports on loopback or inside a test namespace, killed in
 * teardown. It can be stopped and started again on the same ports and data
 * (an etcd restart), and a TcpProxy in front of it can cut one client off.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Whether etcd is installed here; in CI it must be (scripts/packages.txt). */
export const etcdAvailable = existsSync('/usr/bin/etcd') || process.env.CI === 'true';
export const etcdSkipReason = 'needs etcd (Debian etcd-server; scripts/setup.sh installs it, CI always has it)';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface EtcdOptions {
  /** Namespace to run in (`ip netns exec`); omitted: the test's own, on loopback. */
  netns?: string;
  /** The address clients reach it on (default 127.0.0.1); it listens on loopback too. */
  ip?: string;
  port?: number;
  peerPort?: number;
}

export class EtcdServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stderr = '';
  readonly dir: string;

  private constructor(private readonly options: Required<Omit<EtcdOptions, 'netns'>> & { netns?: string }) {
    this.dir = mkdtempSync(join(tmpdir(), 'tapas-etcd-'));
  }

  static async start(options: EtcdOptions = {}): Promise<EtcdServer> {
    const server = new EtcdServer({
      ...options,
      ip: options.ip ?? '127.0.0.1',
      port: options.port ?? await freePort(),
      peerPort: options.peerPort ?? await freePort(),
    });
    await server.launch();
    return server;
  }

  get url(): string {
    return `http://${this.options.ip}:${this.options.port}`;
  }

  /** Where etcdctl reaches it, from the namespace it runs in. */
  get localUrl(): string {
    return `http://127.0.0.1:${this.options.port}`;
  }

  /** etcdctl in etcd's namespace; returns its output. */
  ctl(args: string[], user?: string): string {
    const command = ['etcdctl', `--endpoints=${this.localUrl}`, ...(user ? [`--user=${user}`] : []), ...args];
    const full = this.options.netns ? ['ip', 'netns', 'exec', this.options.netns, ...command] : command;
    return execFileSync(full[0]!, full.slice(1), { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  }

  private async launch(): Promise<void> {
    const { ip, port, peerPort } = this.options;
    const clientUrls = ip === '127.0.0.1' ? `http://127.0.0.1:${port}` : `http://${ip}:${port},http://127.0.0.1:${port}`;
    const args = [
      '--name', 'test', '--data-dir', join(this.dir, 'data'),
      '--listen-client-urls', clientUrls, '--advertise-client-urls', `http://${ip}:${port}`,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `test=http://127.0.0.1:${peerPort}`,
      // Short elections: a restarted single member leads at once.
      '--heartbeat-interval', '50', '--election-timeout', '500',
    ];
    const command = this.options.netns ? ['ip', ['netns', 'exec', this.options.netns, 'etcd', ...args]] as const : ['etcd', args] as const;
    const child = spawn(command[0], [...command[1]], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    this.stderr = '';
    this.exited = new Promise((resolve) => child.on('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`etcd did not start within 20 s: ${this.stderr.slice(-2000)}`)), 20_000);
      child.stderr!.on('data', (chunk: Buffer) => {
        this.stderr += chunk.toString();
        if (this.stderr.length > 200_000) this.stderr = this.stderr.slice(-100_000);
        if (this.stderr.includes('ready to serve client requests')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`etcd exited with ${code}: ${this.stderr.slice(-2000)}`));
      });
    });
  }

  /** kill -9, keeping its data: `start()` brings the same store back. */
  async kill(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.exited;
    this.child = undefined;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A TCP forwarder on loopback in front of etcd: `cut()` drops every connection and refuses new ones until `resume()`. */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  private constructor(readonly port: number, private readonly target: { host: string; port: number }) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(await freePort(), target);
    await proxy.resume();
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async resume(): Promise<void> {
    if (this.server) return;
    const server = createServer((incoming) => {
      const outgoing = connect(this.target.port, this.target.host);
      for (const socket of [incoming, outgoing]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {
          incoming.destroy();
          outgoing.destroy();
        });
      }
      incoming.pipe(outgoing);
      outgoing.pipe(incoming);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
