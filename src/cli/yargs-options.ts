// The yargs view of OPTION_TABLE: `walvault <command>` parses with it, and archive/restore load it only to print --help (yargs costs ~100 ms to load).
import yargs, { type Argv, type Options } from 'yargs';
import { WalvaultError } from '../core/errors.js';
import { OPTION_TABLE, type Program } from './options.js';
import { loadConfigFile } from './parse.js';

/** Refuses command-line flags that are not options of this program (environment variables are not checked). */
function checkFlags(args: readonly string[], program: Program, extraFlags: readonly string[]): void {
  const known = new Set(['help', 'version', ...extraFlags.flatMap((name) => [name, `no-${name}`]), ...OPTION_TABLE.filter((spec) => spec.programs.includes(program)).flatMap((spec) => [spec.name, `no-${spec.name}`])]);
  for (const arg of args) {
    if (arg === '--') break;
    if (!arg.startsWith('--')) continue;
    const name = arg.slice(2).split('=')[0] ?? '';
    if (!known.has(name)) throw new WalvaultError('usage', `unknown option "--${name}"`, { hint: 'see --help for the options' });
  }
}

/** Adds the program's options to a yargs instance. */
export function defineOptions(parser: Argv, program: Program): Argv {
  for (const spec of OPTION_TABLE) {
    const option: Options = { type: spec.type, describe: spec.description, hidden: !spec.programs.includes(program) };
    if (spec.default !== undefined) option.default = spec.default;
    if (spec.choices !== undefined) option.choices = spec.choices;
    if (spec.name === 'config') continue;
    parser.option(spec.name, option);
  }
  return parser.config('config', 'JSON file with option values (keys as the long option names)', loadConfigFile);
}

/** A yargs parser set up the walvault way: env prefix, no number parsing of file names, errors thrown. */
export function createParser(args: readonly string[], program: Program, usage: string, extraFlags: readonly string[] = []): Argv {
  checkFlags(args, program, extraFlags);
  const parser = yargs([...args])
    .scriptName(program === 'walvault' ? 'walvault' : `walvault-${program}`)
    .usage(usage)
    .env('WALVAULT')
    .parserConfiguration({ 'parse-positional-numbers': false, 'parse-numbers': false })
    .exitProcess(false)
    .version(false)
    .help(true)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((message, error) => {
      if (error instanceof WalvaultError) throw error;
      throw new WalvaultError('usage', (message ?? error?.message ?? 'invalid command line').replace(/\n/g, ' '), { hint: 'see --help for the usage' });
    });
  return defineOptions(parser, program);
}

/** What --help shows for walvault-archive / walvault-restore. */
export interface HelpPage {
  program: 'archive' | 'restore';
  usage: string;
  /** The default command's description and its positionals with their descriptions. */
  describe: string;
  positionals: ReadonlyArray<{ name: string; describe: string }>;
}

/** Prints the --help page of walvault-archive / walvault-restore (yargs formats it). */
export async function printHelp(page: HelpPage): Promise<void> {
  const command = `$0 ${page.positionals.map((positional) => `<${positional.name}>`).join(' ')}`;
  await createParser(['--help'], page.program, page.usage)
    .command(command, page.describe, (builder) => {
      for (const positional of page.positionals) builder.positional(positional.name, { type: 'string', describe: positional.describe });
      return builder;
    })
    .parseAsync();
}
