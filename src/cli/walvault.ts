#!/usr/bin/env node
// Operator entry point: walvault <command> [options] (verify, check, cleanup).
import { EXIT_CODE_MEANINGS, EXIT_CODES, WalvaultError, type ErrorKind } from '../core/errors.js';
import { COMMANDS } from './commands/index.js';
import { runCommand } from './main.js';
import { createParser } from './yargs-options.js';

runCommand('walvault', async (context) => {
  const args = process.argv.slice(2);
  const extraFlags = COMMANDS.flatMap((command) => command.flags ?? []);
  let parser = createParser(args, 'walvault', '$0 <command> [options]', extraFlags);
  let exitCode = 0;
  for (const command of COMMANDS) {
    parser = parser.command(command.command, command.describe, command.builder ?? ((y) => y), async (argv) => {
      exitCode = await command.run(argv as Record<string, unknown>, context);
    });
  }
  parser = parser.command('exit-codes', 'list the exit codes of all walvault commands', (y) => y, () => {
    for (const [kind, code] of Object.entries(EXIT_CODES)) process.stdout.write(`${String(code).padStart(3)}  ${kind.padEnd(17)} ${EXIT_CODE_MEANINGS[kind as ErrorKind]}\n`);
  });
  const raw = (await parser.demandCommand(1, 'name a command').parseAsync()) as Record<string, unknown>;
  if (raw.help === true) return 0;
  const name = String((raw._ as unknown[])[0] ?? '');
  if (name !== 'exit-codes' && !COMMANDS.some((command) => command.command.split(' ')[0] === name)) {
    throw new WalvaultError('usage', `unknown command "${name}"`, { hint: 'run walvault --help for the commands' });
  }
  return exitCode;
});
