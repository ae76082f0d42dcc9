import { describe, expect, it } from 'vitest';

import { Engine } from '../../src/engine/engine.js';
import { runCli } from '../helpers/cli.js';

describe('tapas mirror tunnel options: usage errors (exit 2)', () => {
  const mirror = (...args: string[]) => runCli(['mirror', '-s', 'eth0', '-d', 'IN', ...args]);

  it('wants exactly one destination', async () => {
    const none = await mirror();
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('give exactly one destination');
    const two = await mirror('--to', 'eth1', '--gre', '192.0.2.1', '--key', '1');
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('give exactly one destination');
  });

  it('wants a key with --gre, a session (0-1023) with --erspan, and IP addresses', async () => {
    expect((await mirror('--gre', '192.0.2.1')).stderr).toContain('--gre needs --key K');
    expect((await mirror('--erspan', '192.0.2.1')).stderr).toContain('--erspan needs --session S');
    const session = await mirror('--erspan', '192.0.2.1', '--session', '1024');
    expect(session.code).toBe(2);
    expect(session.stderr).toContain('--session must be an integer from 0 to 1023');
    const address = await mirror('--gre', 'collector.example', '--key', '1');
    expect(address.code).toBe(2);
    expect(address.stderr).toContain('IPv4 or IPv6 address');
    const mixed = await mirror('--erspan', '192.0.2.1', '--session', '1', '--key', '5');
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('--key goes with --gre');
  });

  it('documents the tunnel options and the OpenStack index rule in --help', async () => {
    const help = await runCli(['mirror', '--help']);
    expect(help.stdout).toContain('--erspan <IP[@NETNS]>');
    expect(help.stdout).toMatch(/102 -> 0x102/);
  });
});

describe('tunnel sinks in a plan', () => {
  it('refuses an ERSPAN session above 1023, an index above 20 bits and a missing remote', async () => {
    const engine = new Engine();
    try {
      const plan = (sink: object) => ({ sources: [], sinks: [{ id: 't', ...sink }], rules: [] }) as never;
      await expect(engine.apply(plan({ kind: 'erspan', remoteIp: '192.0.2.1', session: 1024 }))).rejects.toThrow(/session/);
      await expect(engine.apply(plan({ kind: 'erspan', remoteIp: '192.0.2.1', session: 1, index: 0x100000 }))).rejects.toThrow(/index/);
      // Readable but not runnable: that sink is refused, the rest of the plan would run.
      const stats = await engine.apply(plan({ kind: 'gre', remoteIp: '', key: 1 }));
      expect(stats.sinks[0]).toMatchObject({ id: 't', ok: false, reason: expect.stringMatching(/remote/) });
    } finally {
      await engine.close();
    }
  });

  it('reports an unusable remote as the sink\'s failure reason', async () => {
    const engine = new Engine();
    try {
      const stats = await engine.apply({ sources: [], sinks: [{ id: 't', kind: 'gre', remoteIp: 'not-an-ip', key: 1 }], rules: [] });
      expect(stats.sinks[0]).toMatchObject({ id: 't', ok: false, reason: "remote 'not-an-ip' is not an IPv4 or IPv6 address" });
    } finally {
      await engine.close();
    }
  });
});
