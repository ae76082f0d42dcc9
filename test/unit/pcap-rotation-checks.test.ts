/**
 * The C++ checks of PcapRotation's edges that the CLI cannot reach
 * (native/checks/pcap_rotation_checks.cc: a frame larger than -C alone in a
 * file, -W's ring names and removals, -G by frame time, pcapng sizes), built
 * with AddressSanitizer and UBSan. A failed CHECK, a memory error or undefined
 * behaviour fails the test.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const NATIVE = new URL('../../native', import.meta.url).pathname;
// Its own build tree: test files run side by side, and engine-soak configures native/build/asan.
const BUILD = `${NATIVE}/build/checks`;

describe('pcap rotation checks (C++)', () => {
  it('pass, with no sanitizer report', async () => {
    await run('cmake', ['-S', NATIVE, '-B', BUILD, '-DTAPAS_SANITIZE=address', '-DCMAKE_BUILD_TYPE=RelWithDebInfo']);
    await run('cmake', ['--build', BUILD, '--target', 'pcap_rotation_checks', '-j2'], { maxBuffer: 16 << 20 });
    const { stdout, stderr } = await run(`${BUILD}/pcap_rotation_checks`, [], { maxBuffer: 16 << 20 });
    expect(stderr).not.toMatch(/ERROR: AddressSanitizer|runtime error|CHECK\(/);
    expect(stdout).toContain('pcap rotation checks passed');
  }, 300_000);
});
