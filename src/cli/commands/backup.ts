// `walvault backup`: parse flags, take a base backup into the repository (src/policy/backup.ts), print a one-line summary.
import { openBackend } from '../../backend/registry.js';
import { underDeadline } from '../../core/deadline.js';
import { createLogger, formatDuration } from '../../core/log.js';
import { takeBackup } from '../../policy/backup.js';
import { formatBytes } from '../../policy/verify-text.js';
import { commonOptions, countOption, stringOption } from '../options.js';
import { backendSettings, decodeOptions, encodeOptions } from '../settings.js';
import type { WalvaultCommand } from './index.js';

/** Draws the copy's progress on a terminal's stderr; silent when stderr is not a TTY. */
function copyProgress(stream: NodeJS.WriteStream, enabled: boolean): { update(bytes: number, files: number): void; clear(): void } {
  if (!enabled || !stream.isTTY) return { update() {}, clear() {} };
  let last = 0;
  const started = Date.now();
  return {
    update(bytes, files) {
      const now = Date.now();
      if (now - last < 250) return;
      last = now;
      const rate = bytes / Math.max(0.001, (now - started) / 1000);
      stream.write(`\rbackup: ${formatBytes(bytes)} in ${files} files, ${formatBytes(rate)}/s `);
    },
    clear() {
      stream.write('\r\x1b[K');
    },
  };
}

/** The backup subcommand. */
export const backupCommand: WalvaultCommand = {
  command: 'backup',
  describe: 'take a base backup of the server (--db) into --repo: pg_backup_start, the data directory and tablespaces as tar through --compress/--encrypt-*, pg_backup_stop, then its WAL checked in the repository before it is marked complete',
  async run(raw, context) {
    const options = commonOptions(raw);
    context.log = createLogger('walvault', options.verbosity);
    const backend = await underDeadline(options.timeoutMs, 'opening the repository', () => openBackend(options.repo, backendSettings(options, context.log)));
    const walTimeout = countOption(raw, 'wal-timeout', { minimum: 1 });
    const progress = copyProgress(process.stderr, raw.json !== true && options.verbosity !== 'quiet');
    const result = await takeBackup(backend, {
      connection: stringOption(raw, 'db'),
      encode: await encodeOptions(options),
      decode: await decodeOptions(options),
      fastCheckpoint: raw['fast-checkpoint'] !== false,
      walTimeoutMs: walTimeout * 1000,
      timeoutMs: options.timeoutMs,
      onProgress: ({ bytes, files }) => progress.update(bytes, files),
      log: context.log,
    }).finally(() => progress.clear());
    const { manifest } = result;
    if (raw.json === true) {
      process.stdout.write(`${JSON.stringify({ id: result.id, size: result.size, storedSize: result.storedSize, durationMs: result.durationMs, start: manifest.start, stop: manifest.stop, objects: manifest.objects.map(({ files, ...object }) => ({ ...object, files: files.length })) }, null, 2)}\n`);
    } else {
      process.stdout.write(
        `backup ${result.id} complete: ${formatBytes(result.size)} (stored ${formatBytes(result.storedSize)}${manifest.codec === 'none' ? '' : `, ${manifest.codec}`}${manifest.encryption === 'none' ? '' : ', encrypted'}) in ${formatDuration(result.durationMs)}, WAL ${manifest.start.wal} .. ${manifest.stop.wal} (${manifest.start.lsn} .. ${manifest.stop.lsn}, timeline ${manifest.start.timeline})\n`,
      );
    }
    return 0;
  },
};
