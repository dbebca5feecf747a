// What `walvault status` reports as "walvault saw it": the last success and failure of archive and
// restore, and counters since the record began, kept in <spool>/status/ (see status.md).
// On the per-file path: plain synchronous node:fs calls, no fsync, no process, nothing loaded.
import { appendFileSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Which program's record. */
export type RecordSide = 'archive' | 'restore';

/** How one call ended, as far as the record is concerned. */
export type OutcomeKind = 'success' | 'failure' | 'skipped' | 'missing';

/** One recorded outcome: the file, when, the exit code and the one-line message walvault logged. */
export interface OutcomeEvent {
  file: string;
  /** ISO 8601, UTC. */
  time: string;
  exitCode: number;
  message: string;
  /** Error kind from src/core/errors.ts for failures ('backend', 'timeout'...); absent for successes. */
  kind?: string;
}

/** The status folder inside a spool. */
export function statusDir(spoolDir: string): string {
  return path.join(spoolDir, 'status');
}

/** Counter files grow one byte per event: their size is the count (an append is atomic, a read-modify-write is not). */
const counterFile = (dir: string, side: RecordSide, outcome: OutcomeKind): string => path.join(dir, `${side}.${outcome}.count`);

/** The last event of a kind, one JSON line, replaced by rename. */
const lastFile = (dir: string, side: RecordSide, outcome: 'success' | 'failure'): string => path.join(dir, `${side}.last-${outcome}`);

/** Where a record may go when the spool folder does not exist yet. */
export interface RecordPlace {
  /**
   * Create the spool folder for it (archive; restore with --on-failure, whose interval needs the
   * state). Otherwise the record goes only into a spool that exists (restore: the prefetcher's,
   * during a recovery): a restore outside a recovery, or with --prefetch=0, leaves no trace in pg_wal.
   */
  createSpool: boolean;
}

/**
 * Creates the status folder (and, with createSpool, the spool above it; one level each: never
 * recursive, see spool.ts ensureDirectory) with its `created` stamp; an existing folder is left as it is.
 * Throws ENOENT when the spool is missing and may not be created.
 */
export function ensureStatusDir(spoolDir: string, place: RecordPlace = { createSpool: true }): void {
  const dir = statusDir(spoolDir);
  for (const directory of place.createSpool ? [spoolDir, dir] : [dir]) {
    try {
      mkdirSync(directory, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  try {
    writeFileSync(path.join(dir, 'created'), `${new Date().toISOString()}\n`, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/**
 * Records one outcome: appends a byte to its counter and, for a success or failure, replaces the
 * "last" record (write to a temporary name, rename: a reader sees the old or the new line, never half).
 * The folder is created at the first record (see RecordPlace). Best effort: a record that cannot be
 * written never changes what the call answers PostgreSQL.
 */
export function recordOutcome(spoolDir: string, side: RecordSide, outcome: OutcomeKind, event: OutcomeEvent, place: RecordPlace = { createSpool: true }): void {
  const dir = statusDir(spoolDir);
  const count = (): void => appendFileSync(counterFile(dir, side, outcome), '.', { mode: 0o600 });
  try {
    try {
      count();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      ensureStatusDir(spoolDir, place);
      count();
    }
    if (outcome !== 'success' && outcome !== 'failure') return;
    const target = lastFile(dir, side, outcome);
    const temp = `${target}.${process.pid}`;
    writeFileSync(temp, `${JSON.stringify(event)}\n`, { mode: 0o600 });
    renameSync(temp, target);
  } catch {
    // the status record is for people and monitoring: archiving goes on without it
  }
}

/** What the record holds for one side. */
export interface SideRecord {
  lastSuccess: OutcomeEvent | null;
  lastFailure: OutcomeEvent | null;
  counters: Record<OutcomeKind, number>;
}

/** Everything recorded in a spool's status folder. */
export interface StatusRecord {
  /** When the record began (the status folder was created); null when nothing was recorded yet. */
  since: string | null;
  archive: SideRecord;
  restore: SideRecord;
}

/** Reads a "last" record; null when absent or unreadable. */
function readLast(file: string): OutcomeEvent | null {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as OutcomeEvent;
    return typeof parsed.file === 'string' && typeof parsed.time === 'string' ? parsed : null;
  } catch {
    return null;
  }
}

/** A counter's value: the size of its file (0 when absent). */
function readCounter(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Reads the status record of a spool (empty when there is none). */
export function readStatusRecord(spoolDir: string): StatusRecord {
  const dir = statusDir(spoolDir);
  let since: string | null = null;
  try {
    since = readFileSync(path.join(dir, 'created'), 'utf8').trim() || null;
  } catch {
    since = null;
  }
  const side = (name: RecordSide): SideRecord => ({
    lastSuccess: readLast(lastFile(dir, name, 'success')),
    lastFailure: readLast(lastFile(dir, name, 'failure')),
    counters: {
      success: readCounter(counterFile(dir, name, 'success')),
      failure: readCounter(counterFile(dir, name, 'failure')),
      skipped: readCounter(counterFile(dir, name, 'skipped')),
      missing: readCounter(counterFile(dir, name, 'missing')),
    },
  });
  return { since, archive: side('archive'), restore: side('restore') };
}
