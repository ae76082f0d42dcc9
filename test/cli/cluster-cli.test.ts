import { describe, expect, it } from 'vitest';

import { runCli } from '../helpers/cli.js';

/** The cluster-mode commands' usage: explained in --help, refused before anything starts (exit 2). */
describe('tapas agent, serve --etcd and host list on the command line', () => {
  it('explains the agent, the etcd options and the host list in --help', async () => {
    const agent = await runCli(['agent', '--help']);
    expect(agent.code).toBe(0);
    for (const text of ['--underlay-ip', '--etcd <url,...>', '--etcd-prefix', '--etcd-user', '--etcd-cert', '--lease-ttl', 'no agent on host', 'docs/cluster.md']) {
      expect(agent.stdout).toContain(text);
    }
    const serve = await runCli(['serve', '--help']);
    expect(serve.stdout).toContain('Cluster mode (--etcd URL[,URL...])');
    const hosts = await runCli(['host', 'list', '--help']);
    expect(hosts.code).toBe(0);
    expect(hosts.stdout).toContain('GET /v2.0/agents');
    const port = await runCli(['port', 'create', '--help']);
    expect(port.stdout.replace(/\s+/g, ' ')).toContain('required in cluster mode');
  });

  it('refuses an agent without etcd, without an underlay address, or with a bad one (exit 2)', async () => {
    const cases: Array<[string[], string]> = [
      [['agent', '--host', 'a', '--underlay-ip', '192.0.2.1'], 'tapas agent needs --etcd'],
      [['agent', '--host', 'a', '--etcd', 'http://127.0.0.1:1'], 'needs --underlay-ip'],
      [['agent', '--host', 'a', '--etcd', 'http://127.0.0.1:1', '--underlay-ip', 'host-a'], "invalid --underlay-ip 'host-a'"],
      [['agent', '--host', 'a', '--etcd', 'ftp://x', '--underlay-ip', '192.0.2.1'], 'invalid --etcd'],
      [['agent', '--host', 'a', '--etcd', 'http://127.0.0.1:1', '--underlay-ip', '192.0.2.1', '--lease-ttl', '1'], '--lease-ttl must be 2 to 3600'],
      [['agent', '--host', 'a', '--etcd', 'http://127.0.0.1:1', '--underlay-ip', '192.0.2.1', '--etcd-user', 'u'], '--etcd-user needs --etcd-password'],
      [['serve', '--etcd', 'not a url'], 'invalid --etcd'],
      [['serve', '--etcd-user', 'u'], 'need --etcd'],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args, { env: { TAPAS_ETCD_PASSWORD: '' } });
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toContain(message);
    }
  });
});
