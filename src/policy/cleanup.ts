// `walvault cleanup`: removes archived WAL no backup needs any more; never history files, never WAL a kept backup needs.
import type { Backend, OpContext } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { underDeadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { forEachLimited } from '../core/pool.js';
import { parseBackupHistory, parseServerTime, type BackupHistory } from '../wal/backup-history.js';
import { classify, isValidSegmentSize, nameOfKey, objectKey, parseSegmentName, segmentFileName, segmentNumber, WAL_PREFIX } from '../wal/names.js';
import { readRepoDocument } from './cluster-guard.js';
import { openDecoded } from './stored.js';
import { backupKey, listBackups, MANIFEST_NAME, MARKER_NAME, type ListedBackup } from './backup-repo.js';

/** Options of cleanupArchive; at least one of before / keepBackups. */
export interface CleanupOptions {
  /**
   * Remove segments (every timeline) older than this one by segment number, like pg_archivecleanup:
   * usable as archive_cleanup_command with %r. A .partial or .backup name counts as its segment.
   */
  before?: string;
  /** Keep the WAL of the newest N complete backups (by their backup history files); remove what is older. */
  keepBackups?: number;
  /** List what would be removed; remove nothing. */
  dryRun?: boolean;
  /** Deadline of each storage operation (default 120 s; the listing gets ten times as long). */
  timeoutMs?: number;
  /** Deletions at the same time (default 6). */
  concurrency?: number;
  /** Keys for reading encrypted backup history files. */
  decode?: DecodeOptions;
  /** Leftovers (temp entries: an interrupted upload or write) older than this are removed; default LEFTOVER_GRACE_MS. */
  leftoverGraceMs?: number;
  /** With keepBackups: base backups without a completion marker older than this many hours are removed (default 24). */
  incompleteGraceHours?: number;
  /** The clock (tests). */
  now?: Date;
  log?: Logger;
}

/**
 * Age after which cleanup removes a leftover temporary file or unfinished multipart upload: a live
 * base-backup upload of one archive must never be cut off (5 TiB, S3's largest object, takes 15 h at
 * 100 MiB/s), and a leftover costs only storage meanwhile.
 */
export const LEFTOVER_GRACE_MS = 7 * 24 * 3600 * 1000;

/** A backup kept (or skipped) by --keep-backups. */
export interface CleanupBackup {
  file: string;
  label: string;
  startSegment: string;
  complete: boolean;
}

/** What cleanup removed (or, with dryRun, would remove). */
export interface CleanupReport {
  repository: string;
  dryRun: boolean;
  /** Everything older than this segment (by segment number, on every timeline) was removed; null without a cutoff. */
  cutoff: string | null;
  /** Backups --keep-backups kept, newest first. */
  keptBackups: CleanupBackup[];
  /** Backups skipped because WAL between their start and stop is missing (never counted as kept). */
  incompleteBackups: CleanupBackup[];
  /** File names removed, oldest first. */
  removed: string[];
  removedBytes: number;
  /** Files left in the repository (WAL only). */
  remaining: number;
  /** Leftovers of interrupted uploads or writes older than the grace period, removed (or, with dryRun, to remove). */
  leftovers: string[];
  /** Base backups (walvault backup) removed, or with dryRun to be removed: older than the kept ones, or incomplete past the grace period. */
  removedBaseBackups: string[];
}

const position = (name: string): string => name.slice(8, 24);

/** Removes old WAL from a repository (see CleanupOptions); returns what it did. */
export async function cleanupArchive(backend: Backend, options: CleanupOptions): Promise<CleanupReport> {
  const log = options.log ?? silentLogger;
  const timeoutMs = options.timeoutMs ?? 120_000;
  if (options.before === undefined && options.keepBackups === undefined) {
    throw new WalvaultError('usage', 'cleanup needs --before SEGMENT or --keep-backups N', {
      hint: "e.g. archive_cleanup_command = 'walvault cleanup --repo=URL --before %r', or walvault cleanup --keep-backups 2",
    });
  }
  const beforeKind = options.before === undefined ? null : classify(options.before);
  if (beforeKind === 'other' || beforeKind === 'history') {
    throw new WalvaultError('usage', `--before "${options.before}" is not a WAL segment name`, { hint: 'give a segment name such as 000000010000000000000010 (archive_cleanup_command passes it as %r)' });
  }
  if (options.keepBackups !== undefined && (!Number.isInteger(options.keepBackups) || options.keepBackups < 1)) {
    throw new WalvaultError('usage', `invalid --keep-backups "${options.keepBackups}": expected a whole number of at least 1`, { hint: 'e.g. --keep-backups 2' });
  }
  const withDeadline = <T>(what: string, work: (ctx: OpContext) => Promise<T>, factor = 1): Promise<T> => underDeadline(timeoutMs * factor, what, work);

  const leftovers: string[] = [];
  const leftoverBefore = Date.now() - (options.leftoverGraceMs ?? LEFTOVER_GRACE_MS);
  const entries = await withDeadline(
    `listing repository "${backend.describe('')}"`,
    async (ctx) => {
      const found: Array<{ key: string; name: string; size: number }> = [];
      // The whole repository: leftovers of interrupted base-backup uploads live outside the WAL.
      for await (const entry of backend.list('', ctx)) {
        if (entry.temp) {
          if (entry.modified.getTime() < leftoverBefore) leftovers.push(entry.key);
          continue;
        }
        const name = nameOfKey(entry.key);
        if (entry.key.startsWith(WAL_PREFIX) && classify(name) !== 'other' && objectKey(name) === entry.key) found.push({ key: entry.key, name, size: entry.storedSize });
      }
      return found;
    },
    10,
  );
  const present = new Set(entries.map((entry) => entry.name));

  let cutoff: string | null = options.before === undefined ? null : position(options.before);
  let cutoffName: string | null = options.before === undefined ? null : options.before.slice(0, 24);
  const keptBackups: CleanupBackup[] = [];
  const incompleteBackups: CleanupBackup[] = [];
  let baseBackups: ListedBackup[] = [];
  if (options.keepBackups !== undefined) {
    baseBackups = await withDeadline(`listing the base backups of "${backend.describe('')}"`, (ctx) => listBackups(backend, ctx), 10);
    const segmentSize = await segmentSizeOf(backend, entries, withDeadline);
    const backups: BackupHistory[] = [];
    for (const entry of entries.filter((candidate) => classify(candidate.name) === 'backup')) {
      const text = await withDeadline(`reading "${backend.describe(entry.key)}"`, (ctx) => readBackupText(backend, entry.key, options.decode ?? {}, ctx));
      if (text === null) continue;
      try {
        backups.push(parseBackupHistory(entry.name, text));
      } catch (error) {
        log.warn(`${(error as Error).message}; it is not counted as a backup`);
      }
    }
    sortNewestFirst(backups);
    for (const backup of backups) {
      // A backup of walvault backup counts only with its completion marker (an interrupted one has a history file too, if pg_backup_stop ran).
      const walvaultId = /^walvault backup (\S+)$/.exec(backup.label)?.[1];
      const marked = walvaultId === undefined || baseBackups.some((base) => base.id === walvaultId && base.complete);
      const summary = { file: backup.fileName, label: backup.label, startSegment: backup.startSegment, complete: marked && isComplete(backup, present, segmentSize) };
      if (!summary.complete) {
        incompleteBackups.push(summary);
        log.warn(`backup "${backup.label}" ("${backup.fileName}") ${marked ? 'is missing WAL between its start and stop' : 'has no completion marker'}; it is not counted as one of the ${options.keepBackups} kept backups`);
        continue;
      }
      if (keptBackups.length < options.keepBackups) keptBackups.push(summary);
    }
    if (keptBackups.length === 0) {
      throw new WalvaultError('usage', `no complete backup in repository "${backend.describe('')}": --keep-backups cannot tell which WAL is needed; nothing was removed`, {
        hint: 'take a base backup first (its backup history file tells what WAL it needs), or use --before SEGMENT',
      });
    }
    const oldestKept = [...keptBackups].sort((a, b) => (position(a.startSegment) < position(b.startSegment) ? -1 : 1))[0]!.startSegment;
    if (cutoff === null || position(oldestKept) < cutoff) {
      cutoff = position(oldestKept);
      cutoffName = oldestKept;
    }
  }

  const removedBaseBackups = options.keepBackups === undefined ? [] : await removeBaseBackups(backend, baseBackups, { kept: keptBackups, cutoff, options, withDeadline });
  const doomed = cutoff === null ? [] : entries.filter((entry) => isRemovable(entry.name, cutoff!));
  // Backup history files go first: an interrupted cleanup must never leave one pointing at removed WAL.
  doomed.sort((a, b) => {
    const rank = (name: string): number => (classify(name) === 'backup' ? 0 : 1);
    return rank(a.name) - rank(b.name) || (position(a.name) < position(b.name) ? -1 : position(a.name) > position(b.name) ? 1 : 0);
  });
  if (options.dryRun !== true) {
    const backupFiles = doomed.filter((entry) => classify(entry.name) === 'backup');
    const rest = doomed.filter((entry) => classify(entry.name) !== 'backup');
    for (const group of [backupFiles, rest]) {
      await forEachLimited(group, Math.max(1, options.concurrency ?? 6), async (entry) => {
        await withDeadline(`removing "${backend.describe(entry.key)}"`, (ctx) => backend.delete(entry.key, ctx));
        log.debug(`removed "${backend.describe(entry.key)}"`);
      });
    }
    await forEachLimited(leftovers, Math.max(1, options.concurrency ?? 6), async (key) => {
      await withDeadline(`removing the leftover "${backend.describe(key)}"`, (ctx) => backend.delete(key, ctx));
      log.debug(`removed the leftover "${backend.describe(key)}"`);
    });
  }
  const removed = doomed.map((entry) => entry.name).sort((a, b) => (position(a) < position(b) ? -1 : position(a) > position(b) ? 1 : a < b ? -1 : 1));
  return {
    repository: backend.describe(''),
    dryRun: options.dryRun === true,
    cutoff: cutoffName,
    keptBackups,
    incompleteBackups,
    removed,
    removedBytes: doomed.reduce((sum, entry) => sum + entry.size, 0),
    remaining: entries.length - (options.dryRun === true ? 0 : doomed.length),
    leftovers: leftovers.sort(),
    removedBaseBackups,
  };
}

/**
 * Removes base backups that are neither kept nor newer than the cutoff, and folders without a marker
 * older than the grace period. The marker goes first, then the manifest: an interrupted removal leaves
 * an incomplete backup (ignored by restore, removed by the next cleanup), never a complete-looking one.
 */
async function removeBaseBackups(
  backend: Backend,
  baseBackups: readonly ListedBackup[],
  context: { kept: readonly CleanupBackup[]; cutoff: string | null; options: CleanupOptions; withDeadline: <T>(what: string, work: (ctx: OpContext) => Promise<T>) => Promise<T> },
): Promise<string[]> {
  const { options, withDeadline } = context;
  const keptIds = new Set(context.kept.map((backup) => /^walvault backup (\S+)$/.exec(backup.label)?.[1]).filter((id) => id !== undefined));
  const graceMs = (options.incompleteGraceHours ?? 24) * 3600 * 1000;
  const now = (options.now ?? new Date()).getTime();
  const removed: string[] = [];
  for (const backup of baseBackups) {
    if (keptIds.has(backup.id)) continue;
    let doomed: boolean;
    if (backup.complete) {
      const marker = await withDeadline(`reading the marker of backup "${backup.id}"`, (ctx) => backend.readText(backupKey(backup.id, MARKER_NAME), ctx));
      const startWal = marker === null ? null : ((JSON.parse(marker) as { startWal?: string }).startWal ?? null);
      doomed = context.cutoff !== null && startWal !== null && position(startWal) < context.cutoff;
    } else doomed = now - backup.newest.getTime() > graceMs;
    if (!doomed) continue;
    removed.push(backup.id);
    if (options.dryRun === true) continue;
    const order = (key: string): number => (key.endsWith(`/${MARKER_NAME}`) ? 0 : key.endsWith(`/${MANIFEST_NAME}`) ? 1 : 2);
    for (const key of [...backup.keys].sort((a, b) => order(a) - order(b))) {
      await withDeadline(`removing "${backend.describe(key)}"`, (ctx) => backend.delete(key, ctx));
    }
    options.log?.debug(`removed base backup "${backup.id}"`);
  }
  return removed;
}

/**
 * Segments and .partial files older than the cutoff go, and backup history files whose backup starts
 * before it (that backup can no longer be restored). Timeline history files always stay.
 */
function isRemovable(name: string, cutoff: string): boolean {
  const kind = classify(name);
  if (kind !== 'segment' && kind !== 'partial' && kind !== 'backup') return false;
  return position(name) < cutoff;
}

/** Whether every segment from a backup's start to its stop is in the repository (by name). */
function isComplete(backup: BackupHistory, present: ReadonlySet<string>, segmentSize: number): boolean {
  const start = segmentNumber(parseSegmentName(backup.startSegment)!, segmentSize);
  const stopLsn = backup.stopLsn === 0n ? 0n : backup.stopLsn - 1n;
  const stop = stopLsn / BigInt(segmentSize);
  for (let segno = start; segno <= stop; segno += 1n) {
    const onStart = segmentFileName(backup.startTimeline, segno, segmentSize);
    const onStop = segmentFileName(backup.stopTimeline, segno, segmentSize);
    if (!present.has(onStart) && !present.has(onStop)) return false;
  }
  return true;
}

/** wal_segment_size of the repository: recorded in walvault.json, else the original size of a stored segment. */
async function segmentSizeOf(
  backend: Backend,
  entries: ReadonlyArray<{ key: string; name: string; size: number }>,
  withDeadline: <T>(what: string, work: (ctx: OpContext) => Promise<T>) => Promise<T>,
): Promise<number> {
  const document = await withDeadline('reading walvault.json', (ctx) => readRepoDocument(backend, ctx)).catch(() => null);
  if (document !== null && isValidSegmentSize(document.cluster.segmentSize)) return document.cluster.segmentSize;
  for (const entry of entries.filter((candidate) => classify(candidate.name) === 'segment').slice(0, 3)) {
    const stat = await withDeadline(`looking up "${backend.describe(entry.key)}"`, (ctx) => backend.stat(entry.key, ctx));
    const size = stat.exists ? (stat.meta?.contentSize ?? stat.storedSize) : 0;
    if (isValidSegmentSize(size)) return size;
  }
  throw new WalvaultError('usage', `cannot tell the WAL segment size of repository "${backend.describe('')}"`, {
    hint: 'archive at least one segment with walvault first, or use --before SEGMENT',
  });
}

/** Reads a (small) backup history file as text through the decoder. */
async function readBackupText(backend: Backend, key: string, decode: DecodeOptions, ctx: OpContext): Promise<string | null> {
  const decoded = await openDecoded(backend, key, decode, ctx);
  if (decoded === null) return null;
  const chunks: Buffer[] = [];
  for await (const chunk of decoded.content) chunks.push(chunk as Buffer);
  await decoded.finished;
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Orders backups newest first by START TIME when every file has a readable one (LSNs of different
 * timelines do not order backups: a timeline forked from an old point restarts at lower LSNs), else by start LSN.
 */
function sortNewestFirst(backups: BackupHistory[]): void {
  const times = new Map(backups.map((backup) => [backup, parseServerTime(backup.startTime)]));
  const byTime = [...times.values()].every((time) => time !== null);
  backups.sort((a, b) => {
    if (byTime) {
      const difference = times.get(b)!.getTime() - times.get(a)!.getTime();
      if (difference !== 0) return difference;
    }
    return a.startLsn > b.startLsn ? -1 : a.startLsn < b.startLsn ? 1 : 0;
  });
}
