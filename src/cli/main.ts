/**
 * The `tapas` command line. Each command lives in its own file and registers
 * itself here. Exit codes: 0 ok, 1 error (the server's or the system's
 * message is printed), 2 usage error.
 */
import { Command, CommanderError } from 'commander';

import { compileFilter } from '../engine/engine.js';
import { useFilterCompiler } from '../model/formats.js';
import { registerAgent } from './agent-command.js';
import { addClientOptions } from './client.js';
import { registerCollect } from './collect.js';
import { registerCompletion } from './completion.js';
import { registerHosts } from './hosts.js';
import { registerMirror } from './mirror.js';
import { registerResources } from './resources.js';
import { registerServe } from './serve-command.js';
import { registerStats } from './stats.js';
import { EXIT_USAGE, UsageError } from './errors.js';

const program = new Command('tapas')
  .description('Tap-as-a-Service for a plain Linux host: mirror the traffic of a VM or container port')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

// --filter is compiled by libpcap here too, so that a bad expression exits 2
// before anything is sent; loaded only when a filter is given, and left to
// the server when this process cannot load the addon.
useFilterCompiler((expression) => {
  try {
    return compileFilter(expression);
  } catch {
    return null;
  }
});

registerMirror(program);
registerCollect(program);
registerServe(program);
registerAgent(program);
addClientOptions(program);
registerResources(program);
registerHosts(program);
registerStats(program);
registerCompletion(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version are "errors" to commander; everything else is a usage error.
    process.exit(error.exitCode === 0 ? 0 : EXIT_USAGE);
  }
  if (error instanceof UsageError) {
    console.error(`tapas: ${error.message}`);
    process.exit(EXIT_USAGE);
  }
  console.error(`tapas: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
