import { spawn, type ChildProcess } from 'node:child_process';

export const TAPAS = new URL('../../bin/tapas', import.meta.url).pathname;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (bin/tapas → dist/) to completion. */
export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {}): Promise<CliResult> {
  const child = startCli(args, options);
  return finished(child);
}

export function startCli(args: string[], options: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {}): ChildProcess {
  const [command, ...rest] = [...(options.prefix ?? []), TAPAS, ...args];
  return spawn(command!, rest, { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function finished(child: ChildProcess): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** Resolves once the child has written text to stderr (tapas mirror announces it runs). */
export function stderrContains(child: ChildProcess, text: string, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no '${text}' on stderr: ${seen}`)), timeoutMs);
    child.stderr?.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}
