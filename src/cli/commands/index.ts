// The `walvault <command>` subcommands; each lives in its own file and is listed here. Their options
// are rows of OPTION_TABLE (src/cli/options.ts) naming the subcommand in `programs`.
import type { CommandContext } from '../main.js';
import type { Command } from '../options.js';
import { backupCommand } from './backup.js';
import { checkCommand } from './check.js';
import { cleanupCommand } from './cleanup.js';
import { restoreBackupCommand } from './restore-backup.js';
import { statusCommand } from './status.js';
import { verifyCommand } from './verify.js';

/** A subcommand of `walvault`: its name, one line for help, and a run function returning the exit code. */
export interface WalvaultCommand {
  command: Exclude<Command, 'archive' | 'restore'>;
  describe: string;
  run(raw: Record<string, unknown>, context: CommandContext): Promise<number>;
}

/** Every subcommand, in the order --help lists them. */
export const COMMANDS: WalvaultCommand[] = [verifyCommand, checkCommand, cleanupCommand, statusCommand, backupCommand, restoreBackupCommand];
