// The `walvault <command>` subcommands; each lives in its own file and is listed here.
import type { Argv } from 'yargs';
import type { CommandContext } from '../main.js';
import { checkCommand } from './check.js';
import { cleanupCommand } from './cleanup.js';
import { statusCommand } from './status.js';
import { verifyCommand } from './verify.js';

/** A subcommand of `walvault`: its own options and a run function returning the exit code. */
export interface WalvaultCommand {
  /** yargs command string, e.g. 'verify' or 'cleanup'. */
  command: string;
  describe: string;
  /** Adds the subcommand's own options. */
  builder?: (parser: Argv) => Argv;
  /** Long option names this subcommand accepts (for the unknown-flag check). */
  flags?: readonly string[];
  run(raw: Record<string, unknown>, context: CommandContext): Promise<number>;
}

/** Every subcommand, in the order --help lists them. */
export const COMMANDS: WalvaultCommand[] = [verifyCommand, checkCommand, cleanupCommand, statusCommand];
