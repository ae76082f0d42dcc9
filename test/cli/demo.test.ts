import { execFileSync, spawn } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import { finished } from '../helpers/cli.js';
import { netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const DEMO = new URL('../../scripts/demo.sh', import.meta.url).pathname;

const demoNamespaces = (pid: number) => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  .split('\n').filter((line) => line.startsWith(`tapas-demo-${pid}-`));

/** `npm run demo`, as the README's quick start runs it, non-interactive. */
describe.skipIf(!netnsAvailable)(`the demo (${netnsSkipReason})`, () => {
  it('runs to the end: the monitor sees vm1\'s pings, the collector vm2\'s in ERSPAN, tapas stats counts them; nothing is left behind', async () => {
    const child = spawn('bash', [DEMO], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TAPAS_ENDPOINT: '' } });
    const { code, stdout, stderr } = await finished(child);
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).not.toContain('\x1b[');

    const section = (title: string) => stdout.split('\n== ').find((part) => part.startsWith(title)) ?? '';
    // The monitor's tcpdump: three requests from vm1 and three replies to it.
    const monitor = section('What the monitor received');
    expect(monitor.match(/198\.18\.0\.1 > 198\.18\.0\.2: ICMP echo request/g)).toHaveLength(3);
    expect(monitor.match(/198\.18\.0\.2 > 198\.18\.0\.1: ICMP echo reply/g)).toHaveLength(3);
    // tshark at the collector: ERSPAN v1 (type II), session 102 for what vm2 sent, 101 for what it received, index as hex digits.
    const tunnel = section('The tunnel as tshark decodes it');
    expect(tunnel).toMatch(/198\.19\.0\.1 +198\.19\.0\.2 +1 +102 +0x102 +\d+ +Echo \(ping\) request/);
    expect(tunnel).toMatch(/198\.19\.0\.1 +198\.19\.0\.2 +1 +101 +0x101 +\d+ +Echo \(ping\) reply/);
    const inner = section('The frames inside');
    expect(inner.match(/198\.18\.0\.2 > 198\.18\.0\.1: ICMP echo request/g)).toHaveLength(3);
    // tapas stats: both rows ACTIVE with packets counted and a rate.
    const stats = section('tapas stats');
    for (const kind of ['tap flow   \\| vm1-both', 'tap mirror \\| vm2-erspan']) {
      const row = new RegExp(`\\| ${kind} +\\|[^|]+\\|[^|]+\\| ACTIVE +\\| (\\d+) +\\| ([\\d.]+) [k]?pkt/s +\\|`).exec(stats);
      expect(row, `${kind} in\n${stats}`).not.toBeNull();
      expect(Number(row![1])).toBeGreaterThan(0);
      expect(Number(row![2])).toBeGreaterThan(0);
    }
    expect(stdout).toMatch(/== Done: 6 ICMP packets of vm1 on the monitor, \d+ ERSPAN packets of vm2 at the collector/);
    // Torn down: no namespace, no daemon of this run left.
    expect(demoNamespaces(child.pid!)).toEqual([]);
  }, 180_000);

  it('tears everything down on Ctrl-C', async () => {
    const child = spawn('bash', [DEMO], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, TAPAS_ENDPOINT: '' } });
    const result = finished(child);
    let seen = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo did not reach the tap flow: ${seen}`)), 120_000);
      child.stdout!.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes('tap flow create')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    expect(demoNamespaces(child.pid!)).toHaveLength(5);
    // Ctrl-C reaches the whole foreground process group.
    process.kill(-child.pid!, 'SIGINT');
    const { code, stdout } = await result;
    expect(code).toBe(130);
    expect(stdout).toContain('interrupted: tearing down');
    expect(demoNamespaces(child.pid!)).toEqual([]);
    // The daemon it started is gone too.
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(seen)![1]!;
    await expect(fetch(`${url}/v2.0/ports`)).rejects.toThrow();
  }, 180_000);
});
