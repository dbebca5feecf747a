#!/usr/bin/env node
// restore_command entry point: walvault-restore [options] <name> <path>
import { openBackend } from '../backend/registry.js';
import { Deadline } from '../core/deadline.js';
import { EXIT_CODES } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { asRestoreFailure, resolveOnError, restoreFile, type OnErrorMode } from '../policy/restore.js';
import { runCommand } from './main.js';
import { backendSettings, decodeOptions } from './settings.js';
import { commonOptions, createParser } from './options.js';

runCommand('walvault-restore', async (context) => {
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
    const parser = createParser(args, 'restore', "$0 [options] <name> <path>\n\nrestore_command = 'walvault-restore --repo=URL %f %p'")
      .command('$0 <name> <path>', 'restore the archived <name> (%f) to <path> (%p)', (command) =>
        command.positional('name', { type: 'string', describe: 'WAL file name (%f)' }).positional('path', { type: 'string', describe: 'where to write it (%p)' }),
      );
    const raw = (await parser.parseAsync()) as Record<string, unknown>;
    if (raw.help === true) return 0;
    setPolicy(resolveOnError(String(raw['on-error']) as OnErrorMode, process.cwd()));
    const options = commonOptions(raw, 'walvault-restore');
    context.log = createLogger('walvault-restore', options.verbosity);
    const deadline = new Deadline(options.timeoutMs, `restoring "${String(raw.name)}"`);
    const backend = await deadline.race(openBackend(options.repo, backendSettings(options, context.log)));
    await restoreFile({
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
});
