// The body of walvault-restore (src/cli/walvault-restore.ts runs it; the start-up bundle links it in directly).
// PostgreSQL starts this once per WAL file: import only what every call needs; the rest loads when used.
import { EXIT_CODES } from '../core/errors.js';
import { asRestoreFailure, resolveOnError, type OnErrorMode } from '../policy/restore.js';
import { restoreCommand, WORKER_FLAG } from './fast.js';
import type { CommandContext } from './main.js';
import { installOutcomeHooks } from './outcome.js';
import { parseOrPrintHelp } from './parse.js';
import { decodeOptions, openRepository } from './settings.js';

/** The walvault-restore command: parses the command line, opens the repository and runs the policy; returns the exit code. */
export async function restoreMain(context: CommandContext): Promise<number> {
  // Every failure, even a bad option, goes through --on-error: in archive recovery an ordinary nonzero
  // exit would END recovery early. Until options are parsed, assume the default (auto).
  let onError = resolveOnError('auto', process.cwd());
  const setPolicy = (mode: 'missing' | 'abort'): void => {
    onError = mode;
    context.crashExitCode = mode === 'abort' ? EXIT_CODES['abort-recovery'] : EXIT_CODES['not-found'];
  };
  setPolicy(onError);
  try {
    const args = process.argv.slice(2);
    const raw = await parseOrPrintHelp(args, {
      program: 'restore',
      usage: "$0 [options] <name> <path>\n\nrestore_command = 'walvault-restore --repo=URL %f %p'",
      describe: 'restore the archived <name> (%f) to <path> (%p)',
      positionals: [
        { name: 'name', describe: 'WAL file name (%f)' },
        { name: 'path', describe: 'where to write it (%p)' },
      ],
      extraFlags: [WORKER_FLAG],
    });
    if (raw === null) return 0;
    installOutcomeHooks('restore', raw, context);
    setPolicy(resolveOnError(String(raw['on-error']) as OnErrorMode, process.cwd()));
    const { options, deadline, backend } = await openRepository(context, raw, 'walvault-restore', `restoring "${String(raw.name)}"`);
    await restoreCommand(args, options, {
      backend,
      fileName: String(raw.name),
      targetPath: String(raw.path),
      decode: await decodeOptions(options),
      onError,
      deadline,
      log: context.log,
    });
    deadline.dispose();
    return 0;
  } catch (error) {
    throw asRestoreFailure(error, onError);
  }
}
