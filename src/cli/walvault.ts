#!/usr/bin/env node
// Operator entry point: walvault <command> [options] (verify, check, cleanup, status, backup, restore-backup, exit-codes).
import yargs from 'yargs';
import { EXIT_CODE_MEANINGS, EXIT_CODES, WalvaultError, type ErrorKind } from '../core/errors.js';
import { COMMANDS } from './commands/index.js';
import { formatTopHelp, readVersion } from './help.js';
import { runCommand } from './main.js';
import { OPTION_TABLE } from './options.js';
import { closestName, parseOrPrintHelp } from './parse.js';

/** Where the command word is: the first word that is neither an option nor an option's value (options may come first: walvault --repo /srv/wal verify). */
function commandIndex(args: readonly string[]): number {
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index]!;
    if (!arg.startsWith('-')) return index;
    const takesValue = arg.startsWith('--') && !arg.includes('=') && OPTION_TABLE.some((spec) => spec.name === arg.slice(2) && spec.type !== 'boolean');
    if (takesValue) index += 1;
  }
  return -1;
}

const EXIT_CODES_COMMAND = { name: 'exit-codes', describe: 'list the exit codes of every walvault program and what each means' };

runCommand('walvault', async (context) => {
  const args = process.argv.slice(2);
  const summaries = [...COMMANDS.map((command) => ({ name: command.command, describe: command.describe })), EXIT_CODES_COMMAND];
  const at = commandIndex(args);
  const name = at < 0 ? undefined : args[at];
  const rest = at < 0 ? args : [...args.slice(0, at), ...args.slice(at + 1)];
  if (name === undefined || name === 'help') {
    if (rest.includes('--version')) process.stdout.write(`${readVersion()}\n`);
    else process.stdout.write(formatTopHelp(summaries));
    return 0;
  }
  // yargs routes the command word to its command; each command's options are then read by the option
  // table's parser (parse.ts), the one that also reads archive_command and restore_command, so an
  // option means the same wherever it is written. The chosen command runs after routing, outside yargs,
  // so its errors reach runCommand unchanged.
  let chosen: (() => Promise<number>) | undefined;
  const router = yargs([name]).scriptName('walvault').help(false).version(false).exitProcess(false).strictCommands();
  for (const command of COMMANDS) {
    router.command(command.command, command.describe, {}, () => {
      chosen = async () => {
        const raw = await parseOrPrintHelp(rest, { program: command.command, describe: command.describe, positionals: [] });
        return raw === null ? 0 : command.run(raw, context);
      };
    });
  }
  router.command(EXIT_CODES_COMMAND.name, EXIT_CODES_COMMAND.describe, {}, () => {
    chosen = async () => {
      for (const [kind, code] of Object.entries(EXIT_CODES)) process.stdout.write(`${String(code).padStart(3)}  ${kind.padEnd(17)} ${EXIT_CODE_MEANINGS[kind as ErrorKind]}\n`);
      return 0;
    };
  });
  router.command('*', false, {}, () => {
    const near = closestName(name, summaries.map((entry) => entry.name));
    chosen = () => Promise.reject(new WalvaultError('usage', `unknown command "${name}"`, { hint: near === undefined ? 'run walvault --help for the commands' : `did you mean walvault ${near}?` }));
  });
  await router.parseAsync();
  if (chosen === undefined) throw new WalvaultError('internal', `no command was chosen for "${name}"`);
  return chosen();
});
