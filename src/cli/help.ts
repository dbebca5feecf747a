// --help and --version, printed from OPTION_TABLE: loaded only when asked for (archive and restore are
// started once per WAL file and never need it).
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { ALL_COMMANDS, defaultOf, OPTION_TABLE, type Command, type OptionSpec } from './options.js';
import { COMMAND_NAMES, envName, type HelpPage } from './parse.js';

/** The width help wraps its descriptions at. */
const WIDTH = 100;

/** Wraps `text` into lines of at most `width` characters, each after `indent` spaces (the first line's indent is the caller's). */
function wrap(text: string, indent: number, width = WIDTH): string {
  const words = text.split(' ');
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line !== '' && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

/** How an option is written in help: --name=PLACEHOLDER, or --name for a boolean. */
function flagText(spec: OptionSpec): string {
  if (spec.type === 'boolean') return `--${spec.name}`;
  return `--${spec.name}=${spec.choices !== undefined ? spec.choices.join('|') : (spec.placeholder ?? 'VALUE')}`;
}

/** The default as help states it, backend-dependent ones included; undefined when there is none worth saying. */
function defaultText(spec: OptionSpec, command: Command): string | undefined {
  const value = defaultOf(spec, command);
  if (value === undefined || value === false) return undefined;
  const s3 = spec.s3DefaultFor?.[command];
  return s3 === undefined ? String(value) : `${String(value)}; s3://: ${String(s3)}`;
}

/** One option's help entry. */
function optionLines(spec: OptionSpec, command: Command, column: number): string {
  const notes: string[] = [];
  const fallback = defaultText(spec, command);
  if (fallback !== undefined) notes.push(`default ${fallback}`);
  if (spec.repeatable === true) notes.push('repeatable');
  const text = `${spec.requiredFor?.includes(command) === true ? 'required: ' : ''}${spec.describeFor?.[command] ?? spec.description}${notes.length === 0 ? '' : ` (${notes.join(', ')})`}`;
  const flag = `  ${flagText(spec)}`;
  if (flag.length + 2 > column) return `${flag}\n${' '.repeat(column)}${wrap(text, column)}`;
  return `${flag.padEnd(column)}${wrap(text, column)}`;
}

/** The options of a command, grouped: its own first, then those every command shares, then S3's. */
function optionGroups(command: Command): Array<[string, OptionSpec[]]> {
  const mine = OPTION_TABLE.filter((spec) => spec.programs.includes(command));
  const shared = (spec: OptionSpec): boolean => ALL_COMMANDS.every((other) => spec.programs.includes(other));
  const s3 = (spec: OptionSpec): boolean => spec.name.startsWith('s3-');
  const own = mine.filter((spec) => !shared(spec) && !s3(spec));
  return [
    ['Options', [...mine.filter((spec) => spec.requiredFor?.includes(command) === true), ...own]],
    ['Common options', mine.filter((spec) => shared(spec) && !s3(spec) && spec.requiredFor?.includes(command) !== true)],
    ['S3 options (s3:// repositories)', mine.filter(s3)],
  ];
}

/** The paragraph every help page ends with: where else options come from, and the exit codes. */
function footer(command: Command | 'walvault'): string {
  const example = command === 'archive' ? 'push-ahead' : command === 'restore' ? 'prefetch' : 'timeout';
  // The top page names no flags: each command's page lists its own flag-only options.
  const flagOnly = command === 'walvault' ? [] : OPTION_TABLE.filter((spec) => spec.flagOnly === true && spec.programs.includes(command)).map((spec) => `--${spec.name}`);
  const except = command === 'walvault' ? "Every option but a command's flag-only ones (its --help names them)" : flagOnly.length === 0 ? 'Every option' : `Every option but ${flagOnly.join(', ')}`;
  return wrap(
    `${except} can also be set as a WALVAULT_* environment variable (--${example}: ${envName(example)}) or as a key of the JSON file named by --config or WALVAULT_CONFIG ("${example}": ...); a flag wins over the environment, the environment over the file. Exit codes: walvault exit-codes.`,
    0,
  );
}

/** The --help page of one command. */
export function formatHelp(page: HelpPage): string {
  const command = page.program;
  const name = COMMAND_NAMES[command];
  const usage = `Usage: ${name} [options]${page.positionals.map((positional) => ` <${positional.name}>`).join('')}`;
  const lines = [usage, '', wrap(page.describe, 0)];
  if (page.examples !== undefined && page.examples.length > 0) lines.push('', ...page.examples.map((line) => `  ${line}`));
  if (page.positionals.length > 0) {
    lines.push('', 'Arguments:');
    const column = Math.max(...page.positionals.map((positional) => positional.name.length)) + 6;
    for (const positional of page.positionals) lines.push(`  <${positional.name}>`.padEnd(column) + positional.describe);
  }
  const groups = optionGroups(command);
  const column = Math.min(34, Math.max(...groups.flatMap(([, specs]) => specs.map((spec) => flagText(spec).length))) + 4);
  for (const [title, specs] of groups) {
    if (specs.length === 0) continue;
    lines.push('', `${title}:`, ...specs.map((spec) => optionLines(spec, command, column)));
    if (title === 'Common options') lines.push('  -h, --help'.padEnd(column) + 'show this help', '  --version'.padEnd(column) + 'print the version');
  }
  lines.push('', footer(command));
  return `${lines.join('\n')}\n`;
}

/** A `walvault` subcommand as the top-level help lists it. */
export interface CommandSummary {
  name: string;
  describe: string;
}

/** The help of `walvault` itself (also what it prints with no command). */
export function formatTopHelp(commands: readonly CommandSummary[]): string {
  const column = Math.max(...commands.map((entry) => entry.name.length)) + 4;
  const lines = [
    'Usage: walvault <command> [options]',
    '',
    'Checks and maintains a walvault repository. PostgreSQL itself runs walvault-archive (archive_command)',
    'and walvault-restore (restore_command); see walvault-archive --help and walvault-restore --help.',
    '',
    'Commands:',
    ...commands.map((entry) => `  ${entry.name.padEnd(column)}${wrap(entry.describe, column + 2)}`),
    '',
    'walvault <command> --help lists the options of a command; --repo=URL is required by all of them but status.',
    '  -h, --help   show this help',
    '  --version    print the version',
    '',
    footer('walvault'),
  ];
  return `${lines.join('\n')}\n`;
}

/** The installed version, from the package.json two folders above the running script (dist/cli/...). */
export function readVersion(): string {
  try {
    const script = realpathSync(process.argv[1] ?? '');
    const manifest = JSON.parse(readFileSync(path.join(path.dirname(script), '..', '..', 'package.json'), 'utf8')) as { name?: string; version?: string };
    return `${manifest.name ?? 'walvault'} ${manifest.version ?? 'unknown'}`;
  } catch {
    return 'walvault (version unknown: package.json not found beside the program)';
  }
}
