// The command-line parser of walvault-archive and walvault-restore, driven by OPTION_TABLE: a few
// hundred lines of ours instead of yargs (~100 ms to load), because PostgreSQL starts these once per
// WAL file. Flags > WALVAULT_* environment > JSON config file > defaults, as the table documents.
import { readFileSync } from 'node:fs';
import { WalvaultError } from '../core/errors.js';
import { OPTION_TABLE, type OptionSpec, type Program } from './options.js';
import type { HelpPage } from './yargs-options.js';

/** What one executable takes besides the table's options. */
export interface CommandLineSpec {
  program: Program;
  /** Names of the positional arguments, all required (e.g. ['path', 'name'] for %p %f). */
  positionals: readonly string[];
  /** Hidden string-valued flags (the background worker's), accepted on the command line only. */
  extraFlags?: readonly string[];
}

/** A parsed command line: option values under their long names (kebab-case and camelCase) and the positionals by name. */
export interface ParsedCommandLine {
  /** True when --help was given: nothing else was checked, the caller prints the help. */
  help: boolean;
  raw: Record<string, unknown>;
}

/** The camelCase form of a kebab-case name (what the config file may also use, and the S3 options read). */
export const camel = (name: string): string => name.replace(/-([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());

/** The environment variable of an option: WALVAULT_ and the name in capitals with underscores. */
export const envName = (name: string): string => `WALVAULT_${name.toUpperCase().replace(/-/g, '_')}`;

const usageHint = { hint: 'see --help for the options' };

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
function convert(spec: OptionSpec, value: unknown, where: string): unknown {
  switch (spec.type) {
    case 'boolean': {
      const parsed = booleanValue(value);
      if (parsed === undefined) throw new WalvaultError('usage', `invalid ${where} "${String(value)}": expected true or false`, usageHint);
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
  const known = new Set(OPTION_TABLE.flatMap((spec) => [spec.name, camel(spec.name)]));
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new WalvaultError('usage', `config file "${file}" has unknown option "${key}"`, { hint: `known options: ${OPTION_TABLE.map((spec) => spec.name).join(', ')}` });
  }
  return parsed as Record<string, unknown>;
}

/** True when the command line asks for --help (before any other check, so help always prints). */
export function wantsHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === '--') return false;
    if (arg === '--help') return true;
  }
  return false;
}

/**
 * Parses a walvault-archive / walvault-restore command line. Throws WalvaultError('usage') for an
 * unknown flag, a missing value or argument, a flag given twice, a value outside its choices, and a
 * bad config file. Every table option is read from the environment and the config file, even those
 * this program ignores (one config file serves all executables); the command line takes only this
 * program's options and the hidden extra flags.
 */
export function parseCommandLine(args: readonly string[], spec: CommandLineSpec, env: NodeJS.ProcessEnv = process.env): ParsedCommandLine {
  const byName = new Map<string, OptionSpec>();
  for (const option of OPTION_TABLE) if (option.programs.includes(spec.program)) byName.set(option.name, option);
  for (const name of spec.extraFlags ?? []) byName.set(name, { name, type: 'string', description: '', programs: [spec.program] });

  const flags = new Map<string, unknown>();
  const positionals: string[] = [];
  let help = false;
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
    if (!arg.startsWith('--')) throw new WalvaultError('usage', `unknown option "${arg}"`, usageHint);
    const equals = arg.indexOf('=');
    const written = equals < 0 ? arg.slice(2) : arg.slice(2, equals);
    if (written === 'help') {
      help = true;
      continue;
    }
    const negated = written.startsWith('no-') && !byName.has(written);
    const name = negated ? written.slice(3) : written;
    const option = byName.get(name);
    if (option === undefined) throw new WalvaultError('usage', `unknown option "--${written}"`, usageHint);
    let value: unknown;
    if (negated) {
      if (equals >= 0) throw new WalvaultError('usage', `option "--${written}" takes no value`, usageHint);
      value = false;
    } else if (equals >= 0) {
      value = arg.slice(equals + 1);
    } else if (option.type === 'boolean') {
      // `--quiet false` as yargs read it: the next word is taken only when it is true or false.
      const next = args[index + 1];
      value = next === 'true' || next === 'false' ? next : true;
      if (value === next) index += 1;
    } else {
      const next = args[index + 1];
      if (next === undefined || next.startsWith('--')) throw new WalvaultError('usage', `option "--${name}" needs a value`, { hint: `write --${name}=VALUE` });
      value = next;
      index += 1;
    }
    if (option.type === 'array' || option.repeatable === true) {
      const list = (flags.get(name) as unknown[] | undefined) ?? [];
      flags.set(name, [...list, value]);
      continue;
    }
    if (flags.has(name)) throw new WalvaultError('usage', `option "--${name}" is given more than once`, { hint: `keep one --${name}` });
    flags.set(name, negated ? value : convert(option, value, `--${name}`));
  }
  if (help) return { help, raw: { help } };

  const configPath = flags.get('config') ?? env[envName('config')];
  const config = typeof configPath === 'string' && configPath !== '' ? loadConfigFile(configPath) : {};
  const raw: Record<string, unknown> = { _: positionals.slice(spec.positionals.length) };
  for (const option of OPTION_TABLE) {
    let value: unknown;
    let where = `--${option.name}`;
    if (flags.has(option.name)) {
      value = flags.get(option.name);
    } else if (env[envName(option.name)] !== undefined) {
      where = envName(option.name);
      value = env[where];
      if (option.type === 'boolean' && value === '') value = undefined;
    } else if (config[option.name] !== undefined || config[camel(option.name)] !== undefined) {
      value = config[option.name] ?? config[camel(option.name)];
      where = `"${option.name}" in config file "${String(configPath)}"`;
    }
    if (value === undefined || value === null) value = option.default;
    else if (value !== false || option.type === 'boolean') value = Array.isArray(value) ? value : convert(option, value, where);
    checkChoices(option, value, where);
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
      hint: 'see --help for the usage',
    });
  }
  spec.positionals.forEach((name, index) => {
    raw[name] = positionals[index];
  });
  return { help, raw };
}

/**
 * The command line of walvault-archive / walvault-restore: the parsed values, or null after printing
 * the --help page (yargs formats it and is loaded only then).
 */
export async function parseOrPrintHelp(args: readonly string[], page: HelpPage & { extraFlags?: readonly string[] }): Promise<Record<string, unknown> | null> {
  const { help, raw } = parseCommandLine(args, { program: page.program, positionals: page.positionals.map((positional) => positional.name), extraFlags: page.extraFlags });
  if (!help) return raw;
  const { printHelp } = await import('./yargs-options.js');
  await printHelp(page);
  return null;
}
