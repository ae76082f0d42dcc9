/**
 * Runs the C++ checks of the tunnel headers and the libFuzzer target of the
 * parser (native/fuzz/run.sh) for a bounded time: FUZZ_SECONDS, 20 by
 * default. A crash, a sanitizer report or a failed round trip fails the test.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const RUN_FUZZ = new URL('../../native/fuzz/run.sh', import.meta.url).pathname;
const seconds = Number(process.env.FUZZ_SECONDS ?? 20);

function hasClang(): boolean {
  try {
    execFileSync('clang++', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// In CI scripts/setup.sh installs clang; there the test must run.
describe.skipIf(!hasClang() && process.env.CI !== 'true')('tunnel parser fuzzing (needs clang and libclang-rt-14-dev)', () => {
  it(`finds no crash in ${seconds} s of libFuzzer, after the C++ checks pass`, async () => {
    const { stdout } = await run(RUN_FUZZ, [String(seconds)], { maxBuffer: 16 << 20 });
    expect(stdout).toContain('encap checks passed');
    const executions = Number(/stat::number_of_executed_units:\s*(\d+)/.exec(stdout)?.[1]);
    expect(executions).toBeGreaterThan(1000);
    expect(stdout).not.toMatch(/ERROR|SUMMARY/);
  }, (seconds + 240) * 1000);
});
