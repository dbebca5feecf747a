// `walvault verify`, base-backup phase: every backups/<id>/ folder: its completion marker, manifest,
// stored objects (present, sizes; full mode: the hash of the stored bytes) and the WAL it needs (from
// the backup history file the WAL phases already judged). See BACKUP.md for the layout.
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Backend, OpContext } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { WalvaultError } from '../core/errors.js';
import { HashingStream } from '../core/hash.js';
import { BACKUP_PREFIX, isBackupId, MARKER_NAME, readManifest, readMarker, timeOfBackupId } from './backup-repo.js';
import type { BackupReport, Finding } from './verify.js';

/** One base backup of walvault's own, as verify reports it. */
export interface BaseBackupReport {
  id: string;
  /** The completion marker is there (restore, cleanup and status take only these). */
  complete: boolean;
  /** Complete, every object intact and every WAL file from start to stop present. */
  restorable: boolean;
  startedAt: string;
  completedAt: string | null;
  startWal: string | null;
  stopWal: string | null;
  stopLsn: string | null;
  /** Bytes of the tars and as stored. */
  size: number | null;
  storedSize: number;
  objects: number;
}

/** Checks the base backups among the listed keys; adds findings; newest first. */
export async function checkBaseBackups(
  backend: Backend,
  listed: ReadonlyArray<{ key: string; storedSize: number; temp: boolean }>,
  context: {
    quick: boolean;
    decode: DecodeOptions;
    historyReports: readonly BackupReport[];
    add: (finding: Finding) => void;
    withDeadline: <T>(what: string, work: (ctx: OpContext) => Promise<T>) => Promise<T>;
  },
): Promise<BaseBackupReport[]> {
  const { add } = context;
  const folders = new Map<string, Map<string, number>>();
  for (const entry of listed) {
    if (!entry.key.startsWith(BACKUP_PREFIX)) continue;
    const [id, name] = entry.key.slice(BACKUP_PREFIX.length).split('/');
    if (id === undefined || name === undefined || !isBackupId(id)) continue;
    // A folder holding only temporary files (a backup killed while writing) is still an incomplete backup.
    const objects = folders.get(id) ?? new Map<string, number>();
    if (!entry.temp) objects.set(entry.key, entry.storedSize);
    folders.set(id, objects);
  }
  const reports: BaseBackupReport[] = [];
  for (const [id, objects] of [...folders.entries()].sort(([a], [b]) => (a < b ? 1 : -1))) {
    const report: BaseBackupReport = { id, complete: false, restorable: false, startedAt: timeOfBackupId(id).toISOString(), completedAt: null, startWal: null, stopWal: null, stopLsn: null, size: null, storedSize: [...objects.values()].reduce((sum, size) => sum + size, 0), objects: objects.size };
    reports.push(report);
    if (!objects.has(`${BACKUP_PREFIX}${id}/${MARKER_NAME}`)) {
      add({ severity: 'warning', code: 'backup-not-complete', file: `${BACKUP_PREFIX}${id}/`, message: `base backup "${id}" has no completion marker (interrupted, or still running); restore-backup never uses it`, hint: 'walvault cleanup --keep-backups N removes it once it is older than --incomplete-grace' });
      continue;
    }
    report.complete = true;
    const problems: string[] = [];
    let keyProblem: WalvaultError | null = null;
    try {
      const marker = await context.withDeadline(`reading the marker of backup "${id}"`, (ctx) => readMarker(backend, id, ctx));
      const manifest = await context.withDeadline(`reading the manifest of backup "${id}"`, (ctx) => readManifest(backend, id, marker!, context.decode, ctx));
      Object.assign(report, { completedAt: marker!.completedAt, startWal: manifest.start.wal, stopWal: manifest.stop.wal, stopLsn: manifest.stop.lsn, size: marker!.size });
      for (const object of manifest.objects) {
        const stored = objects.get(object.key);
        if (stored === undefined) {
          problems.push(`"${backend.describe(object.key)}" is missing`);
          continue;
        }
        if (stored !== object.storedSize) {
          problems.push(`"${backend.describe(object.key)}" holds ${stored} bytes, the manifest says ${object.storedSize}`);
          continue;
        }
        if (context.quick) continue;
        const hash = await context.withDeadline(`reading "${backend.describe(object.key)}"`, async (ctx) => {
          const opened = await backend.read(object.key, { ...ctx });
          if (opened === null) return null;
          const hasher = await HashingStream.create();
          await pipeline([opened.body, hasher, new Writable({ write: (_chunk, _encoding, callback) => callback() })], { signal: ctx.signal });
          return hasher.digest();
        });
        if (hash !== object.storedHash) problems.push(`"${backend.describe(object.key)}" does not match the hash of the stored bytes in the manifest`);
      }
      const history = context.historyReports.find((candidate) => candidate.file === manifest.backupHistoryFile);
      if (history === undefined) problems.push(`its backup history file "${manifest.backupHistoryFile}" is not in the repository`);
      else if (!history.restorable) problems.push(`WAL it needs is missing or damaged (see "${manifest.backupHistoryFile}")`);
    } catch (error) {
      if (error instanceof WalvaultError && error.kind === 'key') keyProblem = error;
      problems.push(error instanceof WalvaultError ? error.message : (error as Error).message);
    }
    if (problems.length > 0 && keyProblem !== null) {
      add({ severity: 'error', code: 'base-backup', file: `${BACKUP_PREFIX}${id}/`, message: `base backup "${id}" cannot be checked: ${keyProblem.message}`, hint: `${keyProblem.hint ?? 'pass the age identity that can decrypt it'} (walvault verify --decrypt-identity-file FILE)` });
    } else if (problems.length > 0) {
      add({ severity: 'error', code: 'base-backup', file: `${BACKUP_PREFIX}${id}/`, message: `base backup "${id}" cannot be restored: ${problems.join('; ')}`, hint: 'take a new backup (walvault backup); restore-backup refuses this one' });
    } else report.restorable = true;
  }
  return reports;
}
