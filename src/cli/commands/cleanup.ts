// `walvault cleanup`: parse flags, run the cleanup policy, print what was (or would be) removed.
import { openBackend } from '../../backend/registry.js';
import { underDeadline } from '../../core/deadline.js';
import { createLogger } from '../../core/log.js';
import { cleanupArchive, type CleanupReport } from '../../policy/cleanup.js';
import { formatBytes } from '../../policy/verify-text.js';
import { commonOptions, countOption, numberOption } from '../options.js';
import { backendSettings, decodeOptions } from '../settings.js';
import type { WalvaultCommand } from './index.js';

/** The text cleanup prints: one summary line, then (with --dry-run or --verbose) the files. */
export function formatCleanupReport(report: CleanupReport, options: { listFiles: boolean }): string {
  const lines: string[] = [];
  for (const backup of report.keptBackups) lines.push(`keeping backup "${backup.label}" (${backup.file}) and the WAL from ${backup.startSegment} on`);
  for (const backup of report.incompleteBackups) lines.push(`not counted: backup "${backup.label}" (${backup.file}) is missing WAL between its start and stop`);
  const verb = report.dryRun ? 'would remove' : 'removed';
  for (const id of report.removedBaseBackups ?? []) lines.push(`${verb} base backup ${id}`);
  if (report.cutoff === null || report.removed.length === 0) {
    lines.push(`nothing to remove from "${report.repository}"${report.cutoff === null ? '' : ` (nothing older than ${report.cutoff})`}`);
  } else {
    lines.push(`${verb} ${report.removed.length} file${report.removed.length === 1 ? '' : 's'} (${formatBytes(report.removedBytes)}) older than ${report.cutoff} from "${report.repository}": ${report.removed[0]} .. ${report.removed[report.removed.length - 1]}`);
    if (options.listFiles) for (const name of report.removed) lines.push(`  ${verb} ${name}`);
  }
  if (report.leftovers.length > 0) {
    lines.push(`${verb} ${report.leftovers.length} leftover${report.leftovers.length === 1 ? '' : 's'} of interrupted uploads or writes (older than 7 days)`);
    if (options.listFiles) for (const key of report.leftovers) lines.push(`  ${verb} ${key}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The cleanup subcommand. */
export const cleanupCommand: WalvaultCommand = {
  command: 'cleanup',
  describe: "remove archived WAL older than a segment (archive_cleanup_command = 'walvault cleanup --repo=URL --before %r') or not needed by the newest N backups",
  async run(raw, context) {
    const options = commonOptions(raw);
    context.log = createLogger('walvault', options.verbosity);
    const backend = await underDeadline(options.timeoutMs, 'opening the repository', () => openBackend(options.repo, backendSettings(options)));
    const report = await cleanupArchive(backend, {
      before: typeof raw.before === 'string' ? raw.before : undefined,
      keepBackups: numberOption(raw, 'keep-backups'),
      dryRun: raw['dry-run'] === true,
      timeoutMs: options.timeoutMs,
      concurrency: countOption(raw, 'parallel', { minimum: 1, maximum: 64 }),
      decode: await decodeOptions(options),
      incompleteGraceHours: numberOption(raw, 'incomplete-grace'),
      log: context.log,
    });
    if (raw.json === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else if (options.verbosity !== 'quiet' || report.dryRun) process.stdout.write(formatCleanupReport(report, { listFiles: report.dryRun || options.verbosity === 'verbose' }));
    return 0;
  },
};
