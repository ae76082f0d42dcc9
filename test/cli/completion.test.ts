import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DaemonProcess } from '../api/daemon-process.js';
import { runCli, TAPAS } from '../helpers/cli.js';

const run = promisify(execFile);
const ABSENT_NS = `tapas-completion-absent-${process.pid}`;

/**
 * `tapas completion bash`, sourced into a real bash and asked what it
 * completes, the way bash asks it (COMP_WORDS, COMP_CWORD, COMPREPLY).
 */
describe('tapas completion bash', () => {
  let daemon: DaemonProcess;
  let dir: string;
  let script: string;

  beforeAll(async () => {
    daemon = await DaemonProcess.start();
    const api = daemon.client();
    await api.port('vm-one', 'cpvm1', ABSENT_NS);
    await api.port('vm-two', 'cpvm2', ABSENT_NS);
    const monitor = await api.port('monitor', 'cpmon0', ABSENT_NS);
    await api.create('/v2.0/taas/tap_services', { tap_service: { name: 'ts-alpha', port_id: monitor.id } });
    dir = mkdtempSync(join(tmpdir(), 'tapas-completion-'));
    const generated = await runCli(['completion', 'bash']);
    expect(generated.code, generated.stderr).toBe(0);
    script = join(dir, 'tapas.bash');
    writeFileSync(script, generated.stdout);
  });

  afterAll(async () => {
    await daemon?.stop();
    daemon?.removeState();
    rmSync(dir, { recursive: true, force: true });
  });

  /** What bash would offer after the words (the last one is the word being completed). */
  async function complete(...words: string[]): Promise<string[]> {
    const { stdout } = await run('bash', ['-c',
      'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _tapas; printf "%s\\n" "${COMPREPLY[@]}"',
      'complete', script, TAPAS, ...words], { env: { ...process.env, TAPAS_ENDPOINT: daemon.url, TAPAS_TOKEN: '' } });
    return stdout.split('\n').filter((line) => line !== '').sort();
  }

  it('registers itself for tapas and passes bash -n', async () => {
    await run('bash', ['-n', script]);
    const { stdout } = await run('bash', ['-c', 'source "$1"; complete -p tapas', 'check', script]);
    expect(stdout.trim()).toBe('complete -o default -F _tapas tapas');
  });

  it('completes commands and subcommands at every level', async () => {
    expect(await complete('')).toEqual(['agent', 'collect', 'completion', 'host', 'mirror', 'port', 'serve', 'stats', 'tap']);
    expect(await complete('ta')).toEqual(['tap']);
    expect(await complete('tap', '')).toEqual(['flow', 'mirror', 'service']);
    expect(await complete('tap', 'flow', '')).toEqual(['create', 'delete', 'list', 'show', 'update']);
    expect(await complete('--endpoint', 'http://127.0.0.1:1', 'tap', 'se')).toEqual(['service']);
  });

  it('completes the options of the command being typed, and the global ones', async () => {
    expect(await complete('tap', 'flow', 'create', '--d')).toEqual(['--description', '--direction']);
    expect(await complete('tap', 'mirror', 'create', '--')).toEqual(expect.arrayContaining(['--directions', '--remote-ip', '--mirror-type', '--endpoint', '--token']));
    expect(await complete('--e')).toEqual(['--endpoint']);
  });

  it('completes the choices of an option', async () => {
    expect(await complete('tap', 'flow', 'create', '--direction', '')).toEqual(['BOTH', 'IN', 'OUT']);
    expect(await complete('tap', 'mirror', 'create', '--mirror-type', '')).toEqual(['erspanv1', 'erspanv2', 'gre', 'vxlan']);
    expect(await complete('port', 'list', '-f', 'j')).toEqual(['json']);
  });

  it('completes resource names from the running daemon', async () => {
    expect(await complete('tap', 'service', 'show', '')).toEqual(['ts-alpha']);
    expect(await complete('port', 'delete', 'vm')).toEqual(['vm-one', 'vm-two']);
    expect(await complete('tap', 'flow', 'create', '--port', 'm')).toEqual(['monitor']);
    expect(await complete('tap', 'flow', 'create', '--port', 'vm-one', '--tap-service', '')).toEqual(['ts-alpha']);
  });
});
