// The last step before a backup is marked complete: every WAL file it needs (the backup history file
// and the segments from start to stop), waited for in the repository and read back in full.
import type { Backend, OpContext } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { WalvaultError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { objectKey } from '../wal/names.js';
import { readAndCheck } from './verify-read.js';
import { classifyEntry, type Finding } from './verify.js';

/**
 * How long a WAL file that reads as damaged is read again before the backup fails. Some stores show an
 * object while it is still being written (s3rver serves the part written so far; AWS S3, Ceph RGW and
 * the local backends never do: they publish whole objects), so the first read right after the archiver
 * started storing the stop segment can see a truncated file. A second read that is intact proves the
 * stored file intact, since the archive never overwrites; a file still damaged after this long fails
 * the backup, as any damaged file does.
 */
export const DAMAGED_REREAD_MS = 10_000;

export interface BackupWalCheck {
  /** Backup id, for messages. */
  id: string;
  /** File names in the order to check them (history file first). */
  names: string[];
  /** The server's system identifier: a segment of another cluster fails the backup. */
  systemIdentifier: string;
  decode: DecodeOptions;
  /** --wal-timeout in ms: how long from the call a file may take to arrive before it fails the backup. */
  timeoutMs: number;
  /** How long a damaged file is read again (default DAMAGED_REREAD_MS; tests shorten it). */
  damagedRereadMs?: number;
  /** Runs one storage operation under the per-operation deadline. */
  withDeadline: <T>(what: string, work: (ctx: OpContext) => Promise<T>) => Promise<T>;
  log?: Logger;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for each file, then reads it back; throws 'timeout' for one that never arrives, 'corrupt' for one that stays damaged. */
export async function awaitBackupWal(backend: Backend, check: BackupWalCheck): Promise<void> {
  const waitUntil = Date.now() + check.timeoutMs;
  let pollMs = 10;
  for (const name of check.names) {
    for (;;) {
      const found = await check.withDeadline(`looking up "${name}"`, (ctx) => backend.stat(objectKey(name), ctx));
      if (found.exists) break;
      if (Date.now() > waitUntil) {
        throw new WalvaultError('timeout', `WAL file "${name}" that backup "${check.id}" needs did not reach repository "${backend.describe('')}" within ${Math.round(check.timeoutMs / 1000)} s; the backup is not marked complete`, {
          hint: 'check that archive_command archives into this repository (walvault check) and pg_stat_archiver; then take a new backup',
        });
      }
      // Archiving the stop segment and the history file takes two archive_command runs (tens to
      // hundreds of ms): look again soon, then every 100 ms (a stat; a HEAD on S3).
      await sleep(pollMs);
      pollMs = Math.min(100, pollMs * 2);
    }
    const rereadUntil = Date.now() + (check.damagedRereadMs ?? DAMAGED_REREAD_MS);
    let rereadMs = 50;
    for (;;) {
      const errors = await readErrors(backend, name, check);
      if (errors.length === 0) break;
      if (Date.now() + rereadMs > rereadUntil) {
        throw new WalvaultError('corrupt', `WAL file "${name}" that backup "${check.id}" needs is not usable: ${errors.map((finding) => finding.message).join('; ')}; the backup is not marked complete`, {
          hint: errors[0]!.hint ?? 'run walvault verify; then take a new backup',
        });
      }
      (check.log ?? silentLogger).debug(`"${name}" is not usable yet (${errors[0]!.message}): reading it again in ${rereadMs} ms`);
      await sleep(rereadMs);
      rereadMs = Math.min(1000, rereadMs * 2);
    }
  }
}

/** Reads one file in full and returns what makes it unusable (nothing: intact, of this cluster). */
async function readErrors(backend: Backend, name: string, check: BackupWalCheck): Promise<Finding[]> {
  const findings: Finding[] = [];
  const item = classifyEntry({ key: objectKey(name), storedSize: 0, modified: new Date(), temp: false });
  await check.withDeadline(`checking "${name}"`, (ctx) => readAndCheck(backend, item, check.decode, ctx, (finding) => findings.push(finding)));
  const errors = findings.filter((finding) => finding.severity === 'error');
  if (item.header !== null && item.header.systemIdentifier !== check.systemIdentifier) {
    errors.push({ severity: 'error', code: 'foreign', message: `"${name}" belongs to database system ${item.header.systemIdentifier}, this server is ${check.systemIdentifier}` });
  }
  return errors;
}
