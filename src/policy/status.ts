// `walvault status`: what an operator or a monitoring system asks on the database host. The archive
// side (pg_wal's .ready/.done files, the background pusher, walvault's own record), the repository
// side (newest segment per timeline, with `window` the restorable windows verify --quick finds) and
// the live side (pg_stat_archiver); thresholds turn it into a check. The JSON keys are documented in
// src/policy/status.md and are stable: add keys, never rename or remove them.
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import type { Backend } from '../backend/types.js';
import { Deadline } from '../core/deadline.js';
import { processLives } from '../core/process.js';
import { classify, nameOfKey, parseSegmentName } from '../wal/names.js';
import { readStatusRecord, type SideRecord } from './status-record.js';

/** Options of gatherStatus; the CLI maps its flags onto these. */
export interface StatusOptions {
  /** The data directory (its pg_wal is read); absent: no archive side. */
  pgdata?: string;
  /** The spool (default <pgdata>/pg_wal/walvault). */
  spoolDir?: string;
  /** Opens the repository (a failure to open is reported like a failure to list); absent: no repository side. */
  openBackend?: () => Promise<Backend>;
  /** The repository as given, for the report. */
  repo?: string;
  /** Also compute the restorable windows of the newest backups (verify --quick: lists and stats every object). */
  window?: boolean;
  /** Query pg_stat_archiver over this connection (libpq string or URL; '' = libpq environment). */
  connection?: string;
  /** Deadline of each storage operation and of the database query, in milliseconds. */
  timeoutMs: number;
  thresholds: Thresholds;
  /** The clock (tests). */
  now?: Date;
}

/** Limits that make status fail (exit 14) when crossed; each one only when given. */
export interface Thresholds {
  /** Files waiting to be archived (.ready). */
  maxReadyFiles?: number;
  /** Bytes of the files waiting to be archived. */
  maxReadyBytes?: number;
  /** Seconds the oldest waiting file has waited (the archive lag). */
  maxLagSeconds?: number;
  /** Seconds since the last archive or restore failure walvault recorded: a more recent failure crosses it. */
  maxFailureAgeSeconds?: number;
  /** Seconds since the newest segment in the repository was stored. */
  maxRepoAgeSeconds?: number;
}

/** A recorded outcome as status shows it. */
export interface EventView {
  file: string;
  time: string;
  ageSeconds: number;
  exitCode: number;
  message: string;
  kind: string | null;
}

/** One side's record as status shows it. */
export interface RecordView {
  lastSuccess: EventView | null;
  lastFailure: EventView | null;
  counters: { successes: number; failures: number; skipped: number; missing: number };
}

/** The background pusher as the spool shows it (see readPusherState). */
export interface PusherState {
  running: boolean;
  pid: number | null;
  /** The state its pid file names (src/policy/SPOOL.md): starting, pushing, idle, stopping; "stopped" when no live process holds the lock. */
  state: 'starting' | 'pushing' | 'idle' | 'stopping' | 'stopped';
  /** Files a live process is storing right now. */
  claims: string[];
  /** Markers of pushed files PostgreSQL has not asked for yet, or not swept since. */
  markers: number;
}

/** The archive side: pg_wal and the spool. */
export interface ArchiveSide {
  pgdata: string;
  spool: string;
  ready: { files: number; bytes: number; oldestFile: string | null; oldestSince: string | null; lagSeconds: number };
  lastDone: { file: string; time: string } | null;
  pusher: PusherState;
  /** --only-if-exists: the switch file was missing at the last archive call (since when), else null. */
  switchOffSince: string | null;
  /** When walvault's record in this spool began (counters count from here); null before the first record. */
  recordSince: string | null;
  archive: RecordView;
  restore: RecordView;
}

/** The repository side. */
export interface RepositorySide {
  repository: string;
  timelines: Array<{ timeline: number; newestFile: string; storedAt: string; ageSeconds: number; segments: number }>;
  /** With --window: the newest backups and how far each can be recovered (from verify --quick). */
  backups: Array<{ file: string; label: string; stopTime: string | null; restorable: boolean; windows: Array<{ timeline: number; untilLsn: string; lastSegment: string; lastSegmentArchivedAt: string | null; latest: boolean }> }> | null;
  /** The newest complete base backup taken by walvault backup (its completion marker), or null when there is none. */
  newestBackup?: { id: string; completedAt: string; ageSeconds: number; stopWal: string; size: number; storedSize: number } | null;
}

/** pg_stat_archiver and the server's role. */
export interface ServerSide {
  inRecovery: boolean;
  archivedCount: number;
  lastArchivedWal: string | null;
  lastArchivedTime: string | null;
  failedCount: number;
  lastFailedWal: string | null;
  lastFailedTime: string | null;
  statsReset: string | null;
}

/** A threshold that was crossed, with the measured value. */
export interface Alert {
  threshold: 'max-ready-files' | 'max-ready-bytes' | 'max-lag' | 'max-failure-age' | 'max-repo-age';
  limit: number;
  value: number;
  message: string;
}

/** The whole report; text, --json and --prometheus render this. */
export interface StatusReport {
  /** Version of this layout (stable keys; new keys may appear). */
  version: 1;
  time: string;
  archive: ArchiveSide | null;
  repository: RepositorySide | null;
  server: ServerSide | null;
  /** Parts that could not be read, one line each (the side is then null or partial). */
  errors: string[];
  alerts: Alert[];
  /** Every part asked for was read. */
  up: boolean;
  /** up and no threshold crossed. */
  ok: boolean;
}

const ageOf = (now: Date, time: Date | string): number => Math.max(0, Math.round((now.getTime() - new Date(time).getTime()) / 100) / 10);


/**
 * The background pusher's state from what the spool holds: its lock (pid file, "PID" or "PID starting"),
 * claim files in archive.work naming live processes, markers in archive/. The one place that reads them
 * for status: when the pusher writes a state file of its own, only this function changes.
 */
export async function readPusherState(spoolDir: string): Promise<PusherState> {
  // The lock: "PID STATE ID" (SPOOL.md, "Files"); ID names the marker folder archive.ID of its options.
  const text = await nodeFs.readFile(path.join(spoolDir, 'archive.pid'), 'utf8').catch(() => '');
  const [pidText, stateText, id] = text.trim().split(/\s+/);
  const pid = pidText !== undefined && /^[1-9][0-9]*$/.test(pidText) ? Number(pidText) : null;
  const running = pid !== null && (await processLives(pid));
  const claims: string[] = [];
  for (const name of (await nodeFs.readdir(path.join(spoolDir, 'archive.work')).catch(() => [] as string[])).sort()) {
    // Claims are "PID ID"; FILE.takeover.PID tokens in the same folder are no claims.
    if (name.includes('.takeover.')) continue;
    const claimer = Number.parseInt(await nodeFs.readFile(path.join(spoolDir, 'archive.work', name), 'utf8').catch(() => ''), 10);
    if (Number.isInteger(claimer) && (await processLives(claimer))) claims.push(name);
  }
  const markerFolder = id !== undefined && /^[0-9a-f]+$/.test(id) ? `archive.${id}` : null;
  const markers = markerFolder === null ? 0 : (await nodeFs.readdir(path.join(spoolDir, markerFolder)).catch(() => [] as string[])).length;
  const states = ['starting', 'pushing', 'idle', 'stopping'] as const;
  const state = running ? (states.find((known) => known === stateText) ?? 'pushing') : 'stopped';
  return { running, pid: running ? pid : null, state, claims, markers };
}

/** A side's record with ages, in the report's key names. */
function recordView(record: SideRecord, now: Date): RecordView {
  const view = (event: SideRecord['lastSuccess']): EventView | null =>
    event === null ? null : { file: event.file, time: event.time, ageSeconds: ageOf(now, event.time), exitCode: event.exitCode, message: event.message, kind: event.kind ?? null };
  return {
    lastSuccess: view(record.lastSuccess),
    lastFailure: view(record.lastFailure),
    counters: { successes: record.counters.success, failures: record.counters.failure, skipped: record.counters.skipped, missing: record.counters.missing },
  };
}

/** The archive side from a data directory. Throws when pg_wal cannot be read. */
async function archiveSide(pgdata: string, spoolDir: string, now: Date): Promise<ArchiveSide> {
  const walDir = path.join(pgdata, 'pg_wal');
  const statusDirectory = path.join(walDir, 'archive_status');
  const names = await nodeFs.readdir(statusDirectory);
  let files = 0;
  let bytes = 0;
  let oldest: { file: string; time: Date } | null = null;
  let lastDone: { file: string; time: Date } | null = null;
  for (const name of names.sort()) {
    const dot = name.lastIndexOf('.');
    const file = name.slice(0, dot);
    const suffix = name.slice(dot);
    if (suffix !== '.ready' && suffix !== '.done') continue;
    const info = await nodeFs.stat(path.join(statusDirectory, name)).catch(() => null);
    if (info === null) continue; // archived (or removed) while we looked
    if (suffix === '.ready') {
      const size = await nodeFs.stat(path.join(walDir, file)).then((wal) => wal.size, () => 0);
      files += 1;
      bytes += size;
      if (oldest === null || info.mtime < oldest.time) oldest = { file, time: info.mtime };
    } else if (lastDone === null || info.mtime > lastDone.time || (info.mtime.getTime() === lastDone.time.getTime() && file > lastDone.file)) {
      lastDone = { file, time: info.mtime };
    }
  }
  const record = readStatusRecord(spoolDir);
  const switchOff = await nodeFs.readFile(path.join(spoolDir, 'status', 'switch-off'), 'utf8').catch(() => null);
  return {
    pgdata,
    spool: spoolDir,
    ready: { files, bytes, oldestFile: oldest?.file ?? null, oldestSince: oldest?.time.toISOString() ?? null, lagSeconds: oldest === null ? 0 : ageOf(now, oldest.time) },
    lastDone: lastDone === null ? null : { file: lastDone.file, time: lastDone.time.toISOString() },
    pusher: await readPusherState(spoolDir),
    switchOffSince: switchOff === null ? null : switchOff.trim(),
    recordSince: record.since,
    archive: recordView(record.archive, now),
    restore: recordView(record.restore, now),
  };
}

/** Runs `work` under its own deadline. */
async function withDeadline<T>(timeoutMs: number, what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const deadline = new Deadline(timeoutMs, what);
  try {
    return await deadline.race(work(deadline.signal));
  } finally {
    deadline.dispose();
  }
}

/** The repository side: one listing, the newest segment per timeline; with `window`, verify --quick's backups. */
async function repositorySide(backend: Backend, options: StatusOptions, now: Date): Promise<RepositorySide> {
  const newest = new Map<number, { file: string; storedAt: Date; segments: number }>();
  let newestMarker: string | null = null;
  await withDeadline(options.timeoutMs * 10, `listing repository "${backend.describe('')}"`, async (signal) => {
    for await (const entry of backend.list('', { signal })) {
      if (entry.temp) continue;
      if (/^backups\/[^/]+\/complete$/.test(entry.key) && (newestMarker === null || entry.key > newestMarker)) newestMarker = entry.key;
      const name = nameOfKey(entry.key);
      if (classify(name) !== 'segment') continue;
      const timeline = parseSegmentName(name)!.timeline;
      const known = newest.get(timeline);
      if (known === undefined) newest.set(timeline, { file: name, storedAt: entry.modified, segments: 1 });
      else {
        known.segments += 1;
        if (name > known.file) Object.assign(known, { file: name, storedAt: entry.modified });
      }
    }
  });
  let backups: RepositorySide['backups'] = null;
  if (options.window === true) {
    const { verifyArchive } = await import('./verify.js');
    const report = await verifyArchive(backend, { quick: true, timeoutMs: options.timeoutMs });
    backups = report.backups
      .slice()
      .sort((a, b) => (a.stopSegment < b.stopSegment ? 1 : a.stopSegment > b.stopSegment ? -1 : 0))
      .slice(0, 3)
      .map((backup) => ({ file: backup.file, label: backup.label, stopTime: backup.stopTime, restorable: backup.restorable, windows: backup.windows }));
  }
  let newestBackup: NonNullable<RepositorySide['newestBackup']> | null = null;
  if (newestMarker !== null) {
    const { readMarker } = await import('./backup-repo.js');
    const id = (newestMarker as string).split('/')[1]!;
    const marker = await withDeadline(options.timeoutMs, `reading "${backend.describe(newestMarker)}"`, (signal) => readMarker(backend, id, { signal }));
    if (marker !== null) newestBackup = { id, completedAt: marker.completedAt, ageSeconds: ageOf(now, marker.completedAt), stopWal: marker.stopWal, size: marker.size, storedSize: marker.storedSize };
  }
  return {
    repository: options.repo ?? backend.describe(''),
    timelines: [...newest.entries()]
      .sort(([a], [b]) => a - b)
      .map(([timeline, known]) => ({ timeline, newestFile: known.file, storedAt: known.storedAt.toISOString(), ageSeconds: ageOf(now, known.storedAt), segments: known.segments })),
    backups,
    newestBackup,
  };
}

/** pg_stat_archiver over one connection (the pg client is loaded only here). */
async function serverSide(connection: string, timeoutMs: number): Promise<ServerSide> {
  const [{ default: pg }, { connectionConfig }] = await Promise.all([import('pg'), import('./check.js')]);
  const client = new pg.Client({ ...connectionConfig(connection === '' ? undefined : connection), application_name: 'walvault status', connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const result = await client.query<Record<string, string | null>>(
      `select pg_is_in_recovery()::text as in_recovery, archived_count::text, last_archived_wal, last_archived_time::text, failed_count::text, last_failed_wal, last_failed_time::text, stats_reset::text
         from pg_stat_archiver`,
    );
    const row = result.rows[0] ?? {};
    const time = (value: string | null | undefined): string | null => (value === null || value === undefined ? null : new Date(value).toISOString());
    return {
      inRecovery: row.in_recovery === 'true',
      archivedCount: Number(row.archived_count ?? 0),
      lastArchivedWal: row.last_archived_wal ?? null,
      lastArchivedTime: time(row.last_archived_time),
      failedCount: Number(row.failed_count ?? 0),
      lastFailedWal: row.last_failed_wal ?? null,
      lastFailedTime: time(row.last_failed_time),
      statsReset: time(row.stats_reset),
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The thresholds crossed by a report. */
export function crossedThresholds(report: Pick<StatusReport, 'archive' | 'repository'>, thresholds: Thresholds): Alert[] {
  const alerts: Alert[] = [];
  const check = (threshold: Alert['threshold'], limit: number | undefined, value: number | null, message: (value: number, limit: number) => string): void => {
    if (limit === undefined || value === null || value <= limit) return;
    alerts.push({ threshold, limit, value, message: message(value, limit) });
  };
  const archive = report.archive;
  if (archive !== null) {
    check('max-ready-files', thresholds.maxReadyFiles, archive.ready.files, (value, limit) => `${value} files wait to be archived (limit ${limit})`);
    check('max-ready-bytes', thresholds.maxReadyBytes, archive.ready.bytes, (value, limit) => `${value} bytes wait to be archived (limit ${limit})`);
    check('max-lag', thresholds.maxLagSeconds, archive.ready.lagSeconds, (value, limit) => `"${archive.ready.oldestFile}" has waited ${value} s to be archived (limit ${limit} s)`);
    if (thresholds.maxFailureAgeSeconds !== undefined) {
      const failures = [archive.archive.lastFailure, archive.restore.lastFailure].filter((event): event is EventView => event !== null);
      const latest = failures.sort((a, b) => a.ageSeconds - b.ageSeconds)[0];
      if (latest !== undefined && latest.ageSeconds < thresholds.maxFailureAgeSeconds) {
        alerts.push({ threshold: 'max-failure-age', limit: thresholds.maxFailureAgeSeconds, value: latest.ageSeconds, message: `"${latest.file}" failed ${latest.ageSeconds} s ago (less than ${thresholds.maxFailureAgeSeconds} s): ${latest.message}` });
      }
    }
  }
  if (report.repository !== null && thresholds.maxRepoAgeSeconds !== undefined) {
    const newest = report.repository.timelines.map((timeline) => timeline.ageSeconds).sort((a, b) => a - b)[0] ?? null;
    check('max-repo-age', thresholds.maxRepoAgeSeconds, newest ?? Number.POSITIVE_INFINITY, (value, limit) =>
      Number.isFinite(value) ? `the newest segment in the repository was stored ${value} s ago (limit ${limit} s)` : 'the repository holds no segment',
    );
  }
  return alerts;
}

/** Gathers the report; never throws for a part that cannot be read (it goes to `errors` and `up` is false). */
export async function gatherStatus(options: StatusOptions): Promise<StatusReport> {
  const now = options.now ?? new Date();
  const errors: string[] = [];
  const attempt = async <T>(what: string, work: () => Promise<T>): Promise<T | null> => {
    try {
      return await work();
    } catch (error) {
      errors.push(`${what}: ${(error as Error).message}`);
      return null;
    }
  };
  const [archive, repository, server] = await Promise.all([
    options.pgdata === undefined ? null : attempt(`cannot read "${path.join(options.pgdata, 'pg_wal', 'archive_status')}"`, () => archiveSide(options.pgdata!, options.spoolDir ?? path.join(options.pgdata!, 'pg_wal', 'walvault'), now)),
    options.openBackend === undefined ? null : attempt(`cannot read repository "${options.repo ?? ''}"`, async () => repositorySide(await options.openBackend!(), options, now)),
    options.connection === undefined ? null : attempt('cannot read pg_stat_archiver', () => serverSide(options.connection!, options.timeoutMs)),
  ]);
  const alerts = crossedThresholds({ archive, repository }, options.thresholds);
  const up = errors.length === 0;
  return { version: 1, time: now.toISOString(), archive, repository, server, errors, alerts, up, ok: up && alerts.length === 0 };
}
