// The body of walvault-archive (src/cli/walvault-archive.ts runs it; the start-up bundle links it in directly).
// PostgreSQL starts this once per WAL file: import only what every call needs; the rest loads when used.
import { checkFileArguments, SETTING_LINE } from './arguments.js';
import { archiveCommand, WORKER_FLAG } from './fast.js';
import type { CommandContext } from './main.js';
import { archiveSwitch, installOutcomeHooks } from './outcome.js';
import { parseOrPrintHelp } from './parse.js';
import { decodeOptions, encodeOptions, openRepository } from './settings.js';

/** The walvault-archive command: parses the command line, opens the repository and runs the policy; returns the exit code. */
export async function archiveMain(context: CommandContext): Promise<number> {
  const args = process.argv.slice(2);
  const raw = await parseOrPrintHelp(args, {
    program: 'archive',
    describe: 'Archives the WAL file at <path> under <name>, durably, refusing to overwrite a different file of that name. PostgreSQL runs it as archive_command:',
    examples: [SETTING_LINE.archive],
    positionals: [
      { name: 'path', describe: 'file to archive (%p)' },
      { name: 'name', describe: 'its WAL file name (%f)' },
    ],
    extraFlags: [WORKER_FLAG],
  });
  if (raw === null) return 0;
  checkFileArguments('archive', { name: String(raw.name), path: String(raw.path) });
  const outcome = installOutcomeHooks('archive', raw, context);
  const onlyIfExists = archiveSwitch(raw, outcome, context.log);
  if (onlyIfExists?.skipRequest() === true) return 0;
  const { options, deadline, backend } = await openRepository(context, raw, 'walvault-archive', `archiving "${String(raw.name)}"`);
  await archiveCommand(args, options, {
    backend,
    sourcePath: String(raw.path),
    fileName: String(raw.name),
    encode: await encodeOptions(options),
    decode: await decodeOptions(options),
    deadline,
    log: context.log,
    onArchived: outcome.onArchived,
    inspect: async (source, ctx) => {
      onlyIfExists?.beforeStore(source.fileName);
      const { guardCluster } = await import('../policy/cluster-guard.js');
      await guardCluster(backend, { fileName: source.fileName, firstBytes: source.head, forceNewCluster: raw['force-new-cluster'] === true, ctx, log: context.log });
    },
  });
  deadline.dispose();
  return 0;
}
