// The body of walvault-restore (src/cli/walvault-restore.ts runs it; the start-up bundle links it in directly).
// PostgreSQL starts this once per WAL file: import only what every call needs; the rest loads when used.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { EXIT_CODES, WalvaultError } from '../core/errors.js';
import { asRestoreFailure, resolveOnError, type OnErrorMode } from '../policy/restore.js';
import { checkFileArguments, SETTING_LINE } from './arguments.js';
import { restoreCommand, WORKER_FLAG } from './fast.js';
import type { CommandContext } from './main.js';
import { installOutcomeHooks } from './outcome.js';
import { parseOrPrintHelp } from './parse.js';
import { decodeOptions, openRepository } from './settings.js';

/**
 * Where walvault-restore runs, as far as --on-error=auto can tell: PostgreSQL runs restore_command in
 * its data directory, where recovery.signal or standby.signal says recovery is in progress; with
 * neither there and a terminal on stdin, someone runs it by hand and a failure is reported as what it
 * is, with its own exit code (there is no recovery to stop). Called only after a failure (node:tty
 * loads then).
 */
async function restoreSetting(): Promise<'recovery' | 'by-hand' | 'unknown'> {
  const dataDirectory = process.cwd();
  if (existsSync(path.join(dataDirectory, 'recovery.signal')) || existsSync(path.join(dataDirectory, 'standby.signal'))) return 'recovery';
  const { isatty } = await import('node:tty');
  return isatty(0) ? 'by-hand' : 'unknown';
}

/** The failure under the --on-error wrapping (what a run by hand reports); routine "not found" stays as it is. */
function underlyingFailure(error: unknown): unknown {
  let failure = error;
  while (failure instanceof WalvaultError && !failure.routine && (failure.kind === 'abort-recovery' || failure.kind === 'not-found') && failure.cause instanceof WalvaultError) failure = failure.cause;
  return failure;
}

/** The walvault-restore command: parses the command line, opens the repository and runs the policy; returns the exit code. */
export async function restoreMain(context: CommandContext): Promise<number> {
  // Every failure, even a bad option, goes through --on-error: in archive recovery an ordinary nonzero
  // exit would END recovery early. Until options are parsed, assume the default (auto).
  let mode: OnErrorMode = 'auto';
  let onError = resolveOnError(mode, process.cwd());
  const setPolicy = (resolved: 'missing' | 'abort'): void => {
    onError = resolved;
    context.crashExitCode = resolved === 'abort' ? EXIT_CODES['abort-recovery'] : EXIT_CODES['not-found'];
  };
  setPolicy(onError);
  try {
    const args = process.argv.slice(2);
    const raw = await parseOrPrintHelp(args, {
      program: 'restore',
      describe: 'Restores the archived WAL file <name> to <path>, verified against the hash recorded when it was archived; exit 1 when it is not archived. PostgreSQL runs it as restore_command:',
      examples: [SETTING_LINE.restore],
      positionals: [
        { name: 'name', describe: 'WAL file name (%f)' },
        { name: 'path', describe: 'where to write it (%p)' },
      ],
      extraFlags: [WORKER_FLAG],
    });
    if (raw === null) return 0;
    installOutcomeHooks('restore', raw, context);
    mode = String(raw['on-error']) as OnErrorMode;
    setPolicy(resolveOnError(mode, process.cwd()));
    checkFileArguments('restore', { name: String(raw.name), path: String(raw.path) });
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
    if (error instanceof WalvaultError && error.routine) throw error;
    // Without a terminal and a signal file it may still be PostgreSQL (an unusual setup): the safe answer stands.
    const failure = underlyingFailure(error);
    if (mode === 'auto' && failure instanceof WalvaultError && (await restoreSetting()) === 'by-hand') {
      context.crashExitCode = EXIT_CODES.internal;
      throw failure;
    }
    throw asRestoreFailure(error, onError);
  }
}
