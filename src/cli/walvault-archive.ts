#!/usr/bin/env node
// archive_command entry point: walvault-archive [options] <path> <name>
import { guardCluster } from '../policy/cluster-guard.js';
import { archiveCommand, WORKER_FLAG } from './fast.js';
import { runCommand } from './main.js';
import { createParser } from './options.js';
import { decodeOptions, encodeOptions, openRepository } from './settings.js';

runCommand('walvault-archive', async (context) => {
  const args = process.argv.slice(2);
  const parser = createParser(args, 'archive', "$0 [options] <path> <name>\n\narchive_command = 'walvault-archive --repo=URL %p %f'", [WORKER_FLAG])
    .command('$0 <path> <name>', 'archive the file at <path> (%p) under <name> (%f)', (command) =>
      command.positional('path', { type: 'string', describe: 'file to archive (%p)' }).positional('name', { type: 'string', describe: 'WAL file name (%f)' }),
    );
  const raw = (await parser.parseAsync()) as Record<string, unknown>;
  if (raw.help === true) return 0;
  const { options, deadline, backend } = await openRepository(context, raw, 'walvault-archive', `archiving "${String(raw.name)}"`);
  await archiveCommand(args, options, {
    backend,
    sourcePath: String(raw.path),
    fileName: String(raw.name),
    encode: await encodeOptions(options),
    decode: await decodeOptions(options),
    deadline,
    log: context.log,
    inspect: async (source) => {
      await guardCluster(backend, { fileName: source.fileName, firstBytes: source.head, forceNewCluster: raw['force-new-cluster'] === true, ctx: { signal: deadline.signal }, log: context.log });
    },
  });
  deadline.dispose();
  return 0;
});
