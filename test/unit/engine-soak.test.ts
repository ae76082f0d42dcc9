/**
 * The C++ engine under real traffic with AddressSanitizer and UBSan
 * (native/checks/engine_soak.cc): plans re-applied, sinks swapped and
 * interfaces deleted under the workers' feet, in a private network namespace
 * of its own. A memory error or undefined behaviour fails it, and so do
 * counters that do not add up. (TSan: cmake -DTAPAS_SANITIZE=thread, by hand.)
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

import { netnsAvailable, netnsSkipReason } from '../helpers/netns.js';

const run = promisify(execFile);
const NATIVE = new URL('../../native', import.meta.url).pathname;
const BUILD = `${NATIVE}/build/asan`;

describe.skipIf(!netnsAvailable)(`engine soak under ASan/UBSan (${netnsSkipReason})`, () => {
  it('survives plan changes and vanishing interfaces under traffic, and its counters add up', async () => {
    await run('cmake', ['-S', NATIVE, '-B', BUILD, '-DTAPAS_SANITIZE=address', '-DCMAKE_BUILD_TYPE=RelWithDebInfo']);
    await run('cmake', ['--build', BUILD, '--target', 'engine_soak', '-j2'], { maxBuffer: 16 << 20 });
    const { stdout, stderr } = await run(`${BUILD}/engine_soak`, ['4'], { maxBuffer: 16 << 20 });
    expect(stderr).not.toMatch(/ERROR: AddressSanitizer|runtime error|CHECK\(/);
    expect(stdout).toContain('engine soak passed');
    const captured = Number(/(\d+) captured/.exec(stdout)?.[1]);
    expect(captured).toBeGreaterThan(1000);
  }, 300_000);
});
