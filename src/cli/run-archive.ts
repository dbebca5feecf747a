// The body of walvault-archive (src/cli/walvault-archive.ts runs it; the start-up bundle links it in directly).
// PostgreSQL starts this once per WAL file: import only what every call needs; the rest loads when used.
import { archiveCommand, WORKER_FLAG } from './fast.js';
import type { CommandContext } from './main.js';
import { parseOrPrintHelp } from './parse.js';
import { decodeOptions, encodeOptions, openRepository } from './settings.js';

/** The walvault-archive command: parses the command line, opens the repository and runs the policy; returns the exit code. */
export async function archiveMain(context: CommandContext): Promise<number> {
  const args = process.argv.slice(2);
  const raw = await parseOrPrintHelp(args, {
    program: 'archive',
    usage: "$0 [options] <path> <name>\n\narchive_command = 'walvault-archive --repo=URL %p %f'",
    describe: 'archive the file at <path> (%p) under <name> (%f)',
    positionals: [
      { name: 'path', describe: 'file to archive (%p)' },
      { name: 'name', describe: 'WAL file name (%f)' },
    ],
    extraFlags: [WORKER_FLAG],
  });
  if (raw === null) return 0;
  const { options, deadline, backend } = await openRepository(context, raw, 'walvault-archive', `archiving "${String(raw.name)}"`);
  await archiveCommand(args, options, {
    backend,
    sourcePath: String(raw.path),
    fileName: String(raw.name),
    encode: await encodeOptions(options),
    decode: await decodeOptions(options),
    deadline,
    log: context.log,
    inspect: async (source, ctx) => {
      const { guardCluster } = await import('../policy/cluster-guard.js');
      await guardCluster(backend, { fileName: source.fileName, firstBytes: source.head, forceNewCluster: raw['force-new-cluster'] === true, ctx, log: context.log });
    },
  });
  deadline.dispose();
  return 0;
}
