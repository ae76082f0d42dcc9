/**
 * A real etcd (Debian's etcd-server) for tests: its own temporary data
 * directory, free ports on loopback or inside a test namespace, killed in
 * teardown. It can be stopped and started again on the same ports and data
 * (an etcd restart), and a TcpProxy in front of it can cut one client off.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  /** Serve clients over TLS and require client certificates (their CN is the etcd user). */
  tls?: { ca: string; cert: string; key: string; root: { cert: string; key: string } };
}

/**
 * A CA, a server certificate for 127.0.0.1 and client certificates (CN =
 * each name), made with openssl in dir. Returns the file paths.
 */
export function makeCertificates(dir: string, clients: string[]): { ca: string; server: { cert: string; key: string }; clients: Record<string, { cert: string; key: string }> } {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=tapas test CA');
  const issue = (name: string, extensions: string) => {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`,
      '-days', '2', '-extfile', `${name}.ext`);
    return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  };
  const server = issue('etcd-server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  const issued: Record<string, { cert: string; key: string }> = {};
  for (const client of clients) issued[client] = issue(client, 'extendedKeyUsage=clientAuth\n');
  return { ca: join(dir, 'ca.crt'), server, clients: issued };
}

export class EtcdServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stderr = '';
  readonly dir: string;

  private constructor(private readonly options: Required<Omit<EtcdOptions, 'netns' | 'tls'>> & Pick<EtcdOptions, 'netns' | 'tls'>) {
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

  private get scheme(): string {
    return this.options.tls ? 'https' : 'http';
  }

  get url(): string {
    return `${this.scheme}://${this.options.ip}:${this.options.port}`;
  }

  /** Where etcdctl reaches it, from the namespace it runs in. */
  get localUrl(): string {
    return `${this.scheme}://127.0.0.1:${this.options.port}`;
  }

  /** etcdctl in etcd's namespace (with TLS: as the client certificate `root`); returns its output. */
  ctl(args: string[], user?: string): string {
    const tls = this.options.tls;
    const credentials = tls ? [`--cacert=${tls.ca}`, `--cert=${tls.root.cert}`, `--key=${tls.root.key}`] : [];
    const command = ['etcdctl', `--endpoints=${this.localUrl}`, ...credentials, ...(user ? [`--user=${user}`] : []), ...args];
    const full = this.options.netns ? ['ip', 'netns', 'exec', this.options.netns, ...command] : command;
    return execFileSync(full[0]!, full.slice(1), { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  }

  private async launch(): Promise<void> {
    const { ip, port, peerPort, tls } = this.options;
    const scheme = this.scheme;
    const clientUrls = ip === '127.0.0.1' ? `${scheme}://127.0.0.1:${port}` : `${scheme}://${ip}:${port},${scheme}://127.0.0.1:${port}`;
    const args = [
      '--name', 'test', '--data-dir', join(this.dir, 'data'),
      '--listen-client-urls', clientUrls, '--advertise-client-urls', `${scheme}://${ip}:${port}`,
      ...(tls ? ['--cert-file', tls.cert, '--key-file', tls.key, '--trusted-ca-file', tls.ca, '--client-cert-auth'] : []),
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
