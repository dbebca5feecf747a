// The one command-line parser of walvault, driven by OPTION_TABLE: walvault-archive, walvault-restore,
// every `walvault` subcommand, and `walvault check` reading the server's archive_command/restore_command.
// Flags > WALVAULT_* environment > JSON config file > defaults, as the table documents.
//
// Not node:util's parseArgs: it only splits words into string/boolean tokens, so every rule here
// (numbers, choices, refusing a flag given twice, `--quiet false`, the environment and config layers,
// one-line errors with a HINT and "did you mean") would sit on top of it anyway; its strict mode throws
// Node's own messages and its loose mode takes `--repo --quiet` as repo="--quiet"; and it loads two
// more internal modules into every call PostgreSQL makes.
import { readFileSync } from 'node:fs';
import { WalvaultError } from '../core/errors.js';
import { defaultOf, OPTION_TABLE, type Command, type OptionSpec } from './options.js';

/** What one command line takes besides the table's options. */
export interface CommandLineSpec {
  program: Command;
  /** Names of the positional arguments, all required (e.g. ['path', 'name'] for %p %f). */
  positionals: readonly string[];
  /** Hidden string-valued flags (the background worker's), accepted on the command line only. */
  extraFlags?: readonly string[];
}

/** A parsed command line: option values under their long names (kebab-case and camelCase) and the positionals by name. */
export interface ParsedCommandLine {
  /** True when --help or -h was given: nothing else was checked, the caller prints the help. */
  help: boolean;
  /** True when --version was given (and not --help). */
  version: boolean;
  raw: Record<string, unknown>;
}

/** How each command is called, for messages and help. */
export const COMMAND_NAMES: Readonly<Record<Command, string>> = {
  archive: 'walvault-archive',
  restore: 'walvault-restore',
  verify: 'walvault verify',
  check: 'walvault check',
  cleanup: 'walvault cleanup',
  status: 'walvault status',
  backup: 'walvault backup',
  'restore-backup': 'walvault restore-backup',
};

/** The camelCase form of a kebab-case name (what the config file may also use, and the S3 options read). */
export const camel = (name: string): string => name.replace(/-([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());

/** The environment variable of an option: WALVAULT_ and the name in capitals with underscores. */
export const envName = (name: string): string => `WALVAULT_${name.toUpperCase().replace(/-/g, '_')}`;

/** Every WALVAULT_* variable an option reads (what a cache of a call's outcome must take into account). */
export function optionEnvironmentNames(): string[] {
  return OPTION_TABLE.filter((spec) => spec.flagOnly !== true).map((spec) => envName(spec.name));
}

const helpHint = (program: Command): { hint: string } => ({ hint: `see ${COMMAND_NAMES[program]} --help for the options` });

/** A boolean from its spelled form; undefined when it is neither true nor false. */
function booleanValue(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (value === 'true') return true;
  if (value === 'false') return false;
  return undefined;
}

/**
 * Converts a value from the command line, the environment or the config file to its option's type.
 * Numbers that do not parse stay strings, so the option's own check quotes what was given.
 */
function convert(spec: OptionSpec, value: unknown, where: string, program: Command): unknown {
  switch (spec.type) {
    case 'boolean': {
      const parsed = booleanValue(value);
      if (parsed === undefined) throw new WalvaultError('usage', `invalid ${where} "${String(value)}": expected true or false`, helpHint(program));
      return parsed;
    }
    case 'number': {
      if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
      return value;
    }
    default:
      return value;
  }
}

/** Refuses a value outside the option's choices (every value of a repeatable option). */
function checkChoices(spec: OptionSpec, value: unknown, where: string): void {
  if (spec.choices === undefined || value === undefined) return;
  for (const entry of Array.isArray(value) ? value : [value]) {
    if (!spec.choices.includes(String(entry))) {
      throw new WalvaultError('usage', `invalid ${where} "${String(entry)}": expected one of ${spec.choices.join(', ')}`, { hint: `fix ${where}` });
    }
  }
}

/** Edit distance of two short words (insertions, deletions, substitutions, adjacent swaps). */
function distance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

/** The known name closest to a mistyped one, when it is close enough to be the likely intent. */
export function closestName(written: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const found = distance(written.toLowerCase(), candidate);
    if (found < bestDistance) {
      best = candidate;
      bestDistance = found;
    }
  }
  return bestDistance <= Math.max(1, Math.min(3, Math.floor(written.length / 3))) ? best : undefined;
}

/** The refusal of a flag this command does not take: another command's option, a near miss, or neither. */
function unknownOption(written: string, program: Command, known: readonly string[]): WalvaultError {
  const message = `unknown option "${written}"`;
  const name = written.replace(/^-+/, '').replace(/^no-/, '');
  const elsewhere = OPTION_TABLE.find((spec) => spec.name === name);
  if (elsewhere !== undefined) {
    const owners = elsewhere.programs.map((command) => COMMAND_NAMES[command]).join(', ');
    return new WalvaultError('usage', message, { hint: `--${name} is an option of ${owners}, not of ${COMMAND_NAMES[program]}` });
  }
  const near = written.startsWith('--') ? closestName(written.slice(2), known) : undefined;
  if (near !== undefined) return new WalvaultError('usage', message, { hint: `did you mean --${near}?` });
  return new WalvaultError('usage', message, helpHint(program));
}

/** Reads and validates the JSON config file: unknown keys are a usage error, as a typo would otherwise be silently ignored. */
export function loadConfigFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new WalvaultError('usage', `cannot read config file "${file}": ${(error as Error).message}`, { hint: 'fix --config / WALVAULT_CONFIG or the file (JSON object of long option names)' });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new WalvaultError('usage', `config file "${file}" is not a JSON object`, { hint: 'write {"repo": "/path/to/archive", ...}' });
  }
  const settable = OPTION_TABLE.filter((spec) => spec.flagOnly !== true);
  const known = new Set(settable.flatMap((spec) => [spec.name, camel(spec.name)]));
  for (const key of Object.keys(parsed)) {
    if (known.has(key)) continue;
    const near = closestName(key, settable.map((spec) => spec.name));
    throw new WalvaultError('usage', `config file "${file}" has unknown option "${key}"`, {
      hint: near === undefined ? `known options: ${settable.map((spec) => spec.name).join(', ')}` : `did you mean "${near}"?`,
    });
  }
  return parsed as Record<string, unknown>;
}

/** True when the command line asks for --help or -h (before any other check, so help always prints). */
export function wantsHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === '--') return false;
    if (arg === '--help' || arg === '-h') return true;
  }
  return false;
}

/** The flags and positionals of a command line, before the environment, the config file and defaults. */
export interface CommandLineWords {
  /** Option values by long name, converted to the option's type (a list for repeatable ones). */
  flags: Map<string, unknown>;
  positionals: string[];
  help: boolean;
  version: boolean;
}

/**
 * Splits a command line into this command's flags and its positionals. Throws WalvaultError('usage')
 * for an unknown flag (naming the close one, or the command it belongs to), a missing value, a flag
 * given twice and a value outside its choices. `walvault check` reads the server's commands with it too.
 */
export function readCommandLine(args: readonly string[], spec: Omit<CommandLineSpec, 'positionals'>): CommandLineWords {
  const program = spec.program;
  const byName = new Map<string, OptionSpec>();
  for (const option of OPTION_TABLE) if (option.programs.includes(program)) byName.set(option.name, option);
  for (const name of spec.extraFlags ?? []) byName.set(name, { name, type: 'string', description: '', programs: [program] });
  const visible = [...byName.keys()].filter((name) => !(spec.extraFlags ?? []).includes(name));

  const flags = new Map<string, unknown>();
  const positionals: string[] = [];
  let help = false;
  let version = false;
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index] ?? '';
    if (arg === '--') {
      positionals.push(...args.slice(index + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    if (arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw unknownOption(arg, program, visible);
    const equals = arg.indexOf('=');
    const written = equals < 0 ? arg.slice(2) : arg.slice(2, equals);
    if (written === 'help' || written === 'version') {
      if (written === 'help') help = true;
      else version = true;
      continue;
    }
    const negated = written.startsWith('no-') && !byName.has(written);
    const name = negated ? written.slice(3) : written;
    const option = byName.get(name);
    if (option === undefined || (negated && option.type !== 'boolean')) throw unknownOption(`--${written}`, program, visible);
    let value: unknown;
    if (negated) {
      if (equals >= 0) throw new WalvaultError('usage', `option "--${written}" takes no value`, helpHint(program));
      value = false;
    } else if (equals >= 0) {
      value = arg.slice(equals + 1);
    } else if (option.type === 'boolean') {
      // `--quiet false`: the next word is taken only when it is true or false.
      const next = args[index + 1];
      value = next === 'true' || next === 'false' ? next : true;
      if (value === next) index += 1;
    } else {
      const next = args[index + 1];
      if (next === undefined || next.startsWith('--')) throw new WalvaultError('usage', `option "--${name}" needs a value`, { hint: `write --${name}=${option.placeholder ?? 'VALUE'}` });
      value = next;
      index += 1;
    }
    if (option.repeatable === true) {
      const list = (flags.get(name) as unknown[] | undefined) ?? [];
      flags.set(name, [...list, value]);
      continue;
    }
    if (flags.has(name)) throw new WalvaultError('usage', `option "--${name}" is given more than once`, { hint: `keep one --${name}` });
    const converted = convert(option, value, `--${name}`, program);
    checkChoices(option, converted, `--${name}`);
    flags.set(name, converted);
  }
  return { flags, positionals, help, version };
}

/**
 * Parses a command line of any walvault command. Throws WalvaultError('usage') for what
 * readCommandLine refuses, a missing argument, an unexpected one (subcommands take none), and a bad
 * config file. Every table option but the flag-only ones is read from the environment and the config
 * file, even those this command ignores (one config file serves all executables); defaults come from
 * the table, backend-dependent ones decided by the repository's scheme.
 */
export function parseCommandLine(args: readonly string[], spec: CommandLineSpec, env: NodeJS.ProcessEnv = process.env): ParsedCommandLine {
  const { flags, positionals, help, version } = readCommandLine(args, spec);
  if (help || version) return { help, version: version && !help, raw: { help } };

  const configPath = flags.get('config') ?? env[envName('config')];
  const config = typeof configPath === 'string' && configPath !== '' ? loadConfigFile(configPath) : {};
  const raw: Record<string, unknown> = { _: positionals.slice(spec.positionals.length) };
  const unset: OptionSpec[] = [];
  for (const option of OPTION_TABLE) {
    if (option.flagOnly === true && !option.programs.includes(spec.program)) continue;
    let value: unknown;
    let where = `--${option.name}`;
    if (flags.has(option.name)) {
      value = flags.get(option.name);
    } else if (option.flagOnly === true) {
      value = undefined;
    } else if (env[envName(option.name)] !== undefined) {
      where = envName(option.name);
      value = env[where];
      if (option.type === 'boolean' && value === '') value = undefined;
    } else if (config[option.name] !== undefined || config[camel(option.name)] !== undefined) {
      value = config[option.name] ?? config[camel(option.name)];
      where = `"${option.name}" in config file "${String(configPath)}"`;
    }
    if (value === undefined || value === null) {
      unset.push(option);
      continue;
    }
    if (!flags.has(option.name) && !Array.isArray(value)) value = convert(option, value, where, spec.program);
    checkChoices(option, value, where);
    raw[option.name] = value;
    if (camel(option.name) !== option.name) raw[camel(option.name)] = value;
  }
  for (const option of unset) {
    const value = defaultOf(option, spec.program, raw.repo);
    if (value === undefined) continue;
    raw[option.name] = value;
    if (camel(option.name) !== option.name) raw[camel(option.name)] = value;
  }
  for (const name of spec.extraFlags ?? []) {
    if (flags.has(name)) raw[name] = flags.get(name);
  }

  if (positionals.length < spec.positionals.length) {
    const wanted = spec.positionals.map((name) => `<${name}>`).join(' ');
    throw new WalvaultError('usage', `missing arguments: expected ${wanted}, got ${positionals.length === 0 ? 'none' : positionals.map((word) => `"${word}"`).join(' ')}`, {
      hint: `see ${COMMAND_NAMES[spec.program]} --help for the usage`,
    });
  }
  if (spec.positionals.length === 0 && positionals.length > 0) {
    throw new WalvaultError('usage', `unexpected argument "${positionals[0]}"`, { hint: `${COMMAND_NAMES[spec.program]} takes options only; see its --help` });
  }
  spec.positionals.forEach((name, index) => {
    raw[name] = positionals[index];
  });
  return { help, version, raw };
}

/** What --help shows for one command besides its options. */
export interface HelpPage {
  program: Command;
  /** One line: what the command does. */
  describe: string;
  /** The positionals with their descriptions (archive and restore). */
  positionals: ReadonlyArray<{ name: string; describe: string }>;
  /** Lines printed under the usage line (e.g. the postgresql.conf setting). */
  examples?: readonly string[];
}

/**
 * The command line of a command: the parsed values, or null after printing the --help page or the
 * version (both load their code only then).
 */
export async function parseOrPrintHelp(args: readonly string[], page: HelpPage & { extraFlags?: readonly string[] }): Promise<Record<string, unknown> | null> {
  const { help, version, raw } = parseCommandLine(args, { program: page.program, positionals: page.positionals.map((positional) => positional.name), extraFlags: page.extraFlags });
  if (!help && !version) return raw;
  const { formatHelp, readVersion } = await import('./help.js');
  process.stdout.write(help ? formatHelp(page) : `${readVersion()}\n`);
  return null;
}
