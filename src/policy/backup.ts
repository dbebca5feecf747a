// `walvault backup`: a base backup through the low-level API on one connection, streamed as tar
// through the repository's codec and encryption, then its WAL waited for and checked, then the
// completion marker. The layout and the order of writes are in BACKUP.md.
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Backend, OpContext } from '../backend/types.js';
import { createEncoder, type DecodeOptions, type EncodeOptions } from '../codec/index.js';
import { BufferPool, releaseCopyBuffers } from '../core/buffers.js';
import { underDeadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { formatHash, HashingStream, loadXxhash, paceMajorCollections } from '../core/hash.js';
import { silentLogger, type Logger } from '../core/log.js';
import { handOver } from '../core/owned.js';
import { formatLsn, parseLsn, segmentFileName } from '../wal/names.js';
import { tarEnd, tarHeader, padding, type TarEntry } from './backup-tar.js';
import { awaitBackupWal } from './backup-wal.js';
import { backupKey, backupLabelOf, MARKER_NAME, newBackupId, writeManifest, type BackupManifest, type BackupMarker, type ManifestFile, type ManifestObject } from './backup-repo.js';
import { connectionConfig } from './check.js';

/** Options of takeBackup; the CLI maps its flags onto these. */
export interface BackupOptions {
  /** libpq connection string or URL; undefined: the libpq environment. */
  connection?: string;
  /** Compression and encryption of the tar objects and the manifest (as archive's). */
  encode: EncodeOptions;
  /** Keys to read back encrypted WAL when checking it (WAL may be encrypted to keys the backup is not). */
  decode: DecodeOptions;
  /** pg_backup_start's fast: an immediate checkpoint instead of a spread one (default true). */
  fastCheckpoint?: boolean;
  /** How long to wait for the WAL from start to stop to reach the repository (default 300 s). */
  walTimeoutMs?: number;
  /** Deadline of each small storage operation (default 120 s). */
  timeoutMs?: number;
  /** Progress of the copy, for a terminal. */
  onProgress?: (progress: { bytes: number; files: number; current: string }) => void;
  log?: Logger;
}

/** What a finished backup reports. */
export interface BackupResult {
  id: string;
  manifest: BackupManifest;
  size: number;
  storedSize: number;
  durationMs: number;
}

/** Contents of these directories (top level of the data directory) are left out; the directories stay (PostgreSQL docs, 26.3.3). */
const EMPTY_DIRECTORIES = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);
/** Files left out at the top level. */
const SKIPPED_TOP_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'backup_manifest', 'backup_label.old', 'tablespace_map.old']);
/** File name extensions of the codecs, as their command-line tools write them. */
const FILE_EXTENSIONS: Readonly<Record<string, string>> = { gzip: 'gz', lz4: 'lz4', zstd: 'zst' };
/** Chunk size of file reads: each chunk in flight (the read ahead, the stream's buffers, each stage's) is a pooled buffer of this size. */
const READ_CHUNK = 256 * 1024;
/** Bytes the tar stream holds ready for its consumer (besides the one read in flight, see tarOfTree). */
const READ_AHEAD = 2 * READ_CHUNK;
/** Read buffers given back by the stream's last reader: those in flight are the read ahead, the
 * stream's buffers and the one each stage works on, so a few more than READ_AHEAD's are kept idle. */
const readBuffers = new BufferPool(READ_CHUNK, 8);

/** Whether an entry anywhere in the tree is a temporary or cache file the docs say to skip. */
function isSkippedAnywhere(name: string): boolean {
  return name.startsWith('pgsql_tmp') || name === 'pg_internal.init';
}

/** A tree walked into tar entries: relative paths, with the root's own name stripped. */
async function* walkTree(root: string, options: { top: boolean; onEntry: (relative: string) => void }): AsyncGenerator<{ relative: string; full: string; stat: import('node:fs').Stats }> {
  const stack: string[] = [''];
  while (stack.length > 0) {
    const relative = stack.pop()!;
    let names: string[];
    try {
      names = (await nodeFs.readdir(path.join(root, relative))).sort();
    } catch (error) {
      // A directory dropped while we walk (a database dropped during the backup): WAL replay removes it too.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    const subdirectories: string[] = [];
    for (const name of names) {
      const childRelative = relative === '' ? name : `${relative}/${name}`;
      if (isSkippedAnywhere(name)) continue;
      if (options.top && relative === '' && SKIPPED_TOP_FILES.has(name)) continue;
      const full = path.join(root, childRelative);
      let stat: import('node:fs').Stats;
      try {
        stat = await nodeFs.lstat(full);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      options.onEntry(childRelative);
      if (options.top && relative === '' && name === 'pg_wal' && stat.isSymbolicLink()) {
        // pg_wal on another disk: a plain empty directory in the backup, as pg_basebackup does.
        yield { relative: childRelative, full, stat: await nodeFs.stat(full) };
        continue;
      }
      if (options.top && relative === 'pg_tblspc' && stat.isSymbolicLink()) continue; // tablespace_map recreates these
      yield { relative: childRelative, full, stat };
      if (stat.isDirectory() && !(options.top && relative === '' && EMPTY_DIRECTORIES.has(name))) subdirectories.push(childRelative);
    }
    for (const subdirectory of subdirectories.reverse()) stack.push(subdirectory);
  }
}

/** State of one tar being produced: totals and the manifest's file list. */
export interface TarProgress {
  files: ManifestFile[];
  bytes: number;
}

/**
 * Produces the tar of a tree. A file's size is taken when it is opened and exactly that many bytes are
 * written: a file that grows is cut at that size, one that shrinks is padded with zeros, one that is
 * gone before it is opened is left out (what pg_basebackup does; WAL replay from the start location
 * repairs all three, since every page changed after the start is in the WAL as a full-page image).
 * Exported for the test that changes files between the chunks it yields.
 */
export async function* tarOfTree(root: string, options: { top: boolean; progress: TarProgress; onProgress: (current: string) => void; trailer?: () => Promise<Array<TarEntry & { data?: Buffer }>> }): AsyncGenerator<Buffer> {
  const { create64 } = await loadXxhash();
  for await (const { relative, full, stat } of walkTree(root, { top: options.top, onEntry: () => undefined })) {
    const base = { path: relative, mode: stat.mode & 0o7777, mtime: Math.floor(stat.mtimeMs / 1000), uid: stat.uid, gid: stat.gid };
    if (stat.isDirectory()) {
      yield tarHeader({ ...base, type: 'directory', size: 0 });
      continue;
    }
    if (stat.isSymbolicLink()) {
      const target = await nodeFs.readlink(full).catch(() => null);
      if (target !== null) yield tarHeader({ ...base, type: 'symlink', size: 0, linkTarget: target });
      continue;
    }
    if (!stat.isFile()) continue;
    let handle: nodeFs.FileHandle;
    try {
      handle = await nodeFs.open(full, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    try {
      const size = (await handle.stat()).size;
      yield tarHeader({ ...base, type: 'file', size });
      const hasher = create64();
      let done = 0;
      // One read ahead: the next chunk is read (in libuv's thread pool) while this one is hashed,
      // compressed and written. Offsets stay sequential: the next read starts where this one ended.
      // Each chunk is read into a pooled buffer and handed over (core/owned.ts): the stream's last
      // reader gives it back once it has copied it out, so a backup's reads leave no garbage.
      const readAt = async (position: number): Promise<Buffer> => {
        const buffer = readBuffers.take();
        const wanted = Math.min(READ_CHUNK, size - position);
        const { bytesRead } = await handle.read(buffer, 0, wanted, position);
        // Shrunk while we read: zeros up to the size the header announced.
        const chunk = bytesRead === 0 ? buffer.fill(0, 0, wanted).subarray(0, wanted) : buffer.subarray(0, bytesRead);
        return handOver(chunk, () => readBuffers.give(buffer));
      };
      // Marked handled at once: a read that fails while this generator waits at a yield must not be an
      // unhandled rejection (the process would end); it is thrown here when the loop awaits it.
      const started = (position: number): Promise<Buffer> => {
        const read = readAt(position);
        read.catch(() => undefined);
        return read;
      };
      let next: Promise<Buffer> | undefined = size > 0 ? started(0) : undefined;
      try {
        while (next !== undefined) {
          const part = await next;
          done += part.length;
          next = done < size ? started(done) : undefined;
          hasher.update(part);
          options.progress.bytes += part.length;
          yield part;
        }
      } finally {
        // Abandoned (the pipeline failed): the read in flight must end before the handle closes.
        await next?.catch(() => undefined);
      }
      const pad = padding(size);
      if (pad > 0) yield Buffer.alloc(pad);
      options.progress.files.push({ path: relative, size, hash: formatHash(hasher.digest()), mtime: base.mtime });
      options.onProgress(relative);
    } finally {
      await handle.close();
    }
  }
  if (options.trailer !== undefined) {
    for (const entry of await options.trailer()) {
      const data = entry.data ?? Buffer.alloc(0);
      yield tarHeader({ ...entry, size: data.length });
      if (data.length > 0) {
        yield data;
        yield Buffer.alloc(padding(data.length));
      }
      options.progress.files.push({ path: entry.path, size: data.length, hash: formatHash(create64().update(data).digest()), mtime: entry.mtime });
    }
  }
  yield tarEnd();
}

/**
 * Streams a tar through the encoder into the repository under `key` (backend.putLarge: bounded memory
 * whatever the size).
 */
async function storeStream(backend: Backend, key: string, source: AsyncGenerator<Buffer>, encode: EncodeOptions, ctx: OpContext): Promise<Omit<ManifestObject, 'name' | 'files' | 'key'>> {
  const encoder = await createEncoder(encode);
  const original = await HashingStream.create();
  // Without compression or encryption the stored bytes are the tar: one hash serves both.
  const stored = encoder.transforms.length === 0 ? original : await HashingStream.create();
  const flow = pipeline([Readable.from(source, { objectMode: false, highWaterMark: READ_AHEAD }), ...(stored === original ? [original] : [original, ...encoder.transforms, stored])], { signal: ctx.signal });
  const put = backend.putLarge(key, stored, ctx);
  const [, result] = await Promise.all([flow.catch((error: unknown) => { stored.destroy(error as Error); throw error; }), put]);
  return { size: original.bytes, hash: original.digest(), storedSize: result.storedSize, storedHash: stored.digest() };
}

/**
 * A backup is one long stream, and the codec pool (off by default) starts only for two streams at
 * once: WALVAULT_CODEC_THREADS=N (N > 0) lets the backup's one stream use it, its ordered 1 MiB jobs
 * (two in flight) then running on this thread and a worker. Not by default: measured on a 1.5 GiB
 * pgbench cluster (2 cores), lz4 took 2.82 s with one worker and 2.71 s without (the main thread's
 * reads, hashes and writes are the limit, lz4 on this data runs at ~2 GB/s), while the worker added
 * 10-35 MiB of peak RSS (its own malloc arena, isolate and WASM heaps).
 */
async function useCodecThreads(): Promise<void> {
  const override = process.env.WALVAULT_CODEC_THREADS;
  if (override === undefined || override === '0') return;
  const { configureCodecPool } = await import('../codec/pool.js');
  configureCodecPool({ minStreams: 1 });
}

/**
 * Frees what the tar streams kept idle for reuse (read and copy buffers, zstd contexts) once they are
 * stored: the WAL is read back next, and its reads would otherwise peak on top of all that.
 */
async function releaseStreamMemory(encode: EncodeOptions): Promise<void> {
  readBuffers.release();
  releaseCopyBuffers();
  if (encode.compress === 'zstd') (await import('../codec/zstd.js')).closeIdleZstdLanes();
}

/** See paceMajorCollections (core/hash.ts): the peak it adds (4-5 MiB) against the CPU it saves (30-50%). */
const BACKUP_MAJOR_MARGIN = 8 * 1024 * 1024;

/** Fields of a backup_label. */
function labelField(label: string, key: string): string {
  const line = label.split('\n').find((candidate) => candidate.startsWith(`${key}: `));
  if (line === undefined) throw new WalvaultError('internal', `backup_label from pg_backup_stop has no "${key}" line`);
  return line.slice(key.length + 2);
}

/** Takes a base backup into the repository (see the file comment); throws a WalvaultError on any failure, leaving no marker. */
export async function takeBackup(backend: Backend, options: BackupOptions): Promise<BackupResult> {
  const started = Date.now();
  const log = options.log ?? silentLogger;
  const timeoutMs = options.timeoutMs ?? 120_000;
  // Gigabytes through one process: dead buffers may pile up 8 MiB before a major collection (hash.ts).
  paceMajorCollections(BACKUP_MAJOR_MARGIN);
  const withDeadline = <T>(what: string, work: (ctx: OpContext) => Promise<T>): Promise<T> => underDeadline(timeoutMs, what, work);
  const id = newBackupId(new Date(started));
  const { default: pg } = await import('pg');
  const client = new pg.Client({ ...connectionConfig(options.connection), application_name: 'walvault backup' });
  try {
    await client.connect();
  } catch (error) {
    throw new WalvaultError('usage', `cannot connect to PostgreSQL: ${(error as Error).message}`, { hint: 'pass --db with a connection string or URL, or set PGHOST, PGPORT, PGUSER, PGDATABASE as for psql' });
  }
  // A connection lost mid-backup aborts the backup on the server; the next query then fails with it.
  client.on('error', (error) => log.warn(`connection error: ${error.message}`));
  let backupStarted = false;
  try {
    const query = async (sql: string, params: unknown[] = []): Promise<Array<Record<string, string | null>>> => (await client.query(sql, params)).rows as Array<Record<string, string | null>>;
    const [info] = await query(`select current_setting('server_version') as version, current_setting('server_version_num') as num, current_setting('data_directory') as datadir,
      (select setting from pg_settings where name = 'wal_segment_size') as segsize, current_setting('archive_mode') as archive_mode, pg_is_in_recovery()::text as recovery,
      (select system_identifier::text from pg_control_system()) as sysid`);
    if (Number(info!.num) < 150000) {
      throw new WalvaultError('usage', `PostgreSQL ${info!.version} is not supported by walvault backup (15 or later: pg_backup_start/pg_backup_stop)`, { hint: 'use pg_basebackup -X none, or the low-level API by hand (see the README)' });
    }
    if (info!.recovery === 'true') throw new WalvaultError('usage', 'the server is a standby: walvault backup takes backups of a primary', { hint: 'run it against the primary, or use pg_basebackup on the standby' });
    if (info!.archive_mode === 'off') throw new WalvaultError('usage', 'archive_mode = off: the WAL a backup needs would never reach the repository', { hint: "set archive_mode = on and archive_command = 'walvault-archive --repo=URL %p %f', restart, then run walvault check" });
    const dataDirectory = info!.datadir!;
    const segmentSize = Number(info!.segsize);
    try {
      await nodeFs.access(dataDirectory, nodeFs.constants.R_OK | nodeFs.constants.X_OK);
      await nodeFs.access(path.join(dataDirectory, 'global'), nodeFs.constants.R_OK | nodeFs.constants.X_OK);
    } catch {
      throw new WalvaultError('usage', `cannot read the data directory "${dataDirectory}" the server reports`, { hint: 'run walvault backup on the database host as root or as the server\'s OS user (sudo -u postgres walvault backup ...)' });
    }
    const tablespaces = (await query("select oid::text as oid, spcname as name, pg_tablespace_location(oid) as location from pg_tablespace where spcname not in ('pg_default', 'pg_global') order by oid")).map((row) => ({
      oid: row.oid!,
      name: row.name!,
      location: row.location!,
    }));
    const label = backupLabelOf(id);
    await query('select pg_backup_start($1, $2)', [label, options.fastCheckpoint ?? true]);
    backupStarted = true;
    log.info(`backup "${id}" started (pg_backup_start); copying "${dataDirectory}"${tablespaces.length > 0 ? ` and ${tablespaces.length} tablespace(s)` : ''}`);

    const progress = { bytes: 0, files: 0, current: '' };
    const report = (current: string): void => {
      progress.files += 1;
      progress.current = current;
      options.onProgress?.({ ...progress });
    };
    const objects: ManifestObject[] = [];
    const suffix = `${options.encode.compress === 'none' ? '' : `.${FILE_EXTENSIONS[options.encode.compress] ?? options.encode.compress}`}${(options.encode.recipients ?? []).length > 0 ? '.age' : ''}`;
    const storeCtx: OpContext = { signal: new AbortController().signal };
    if (options.encode.compress !== 'none' || (options.encode.recipients ?? []).length > 0) await useCodecThreads();
    for (const tablespace of tablespaces) {
      const key = backupKey(id, `${tablespace.oid}.tar${suffix}`);
      const state: TarProgress = { files: [], bytes: 0 };
      const stream = tarOfTree(tablespace.location, { top: false, progress: state, onProgress: report });
      const stored = await storeStream(backend, key, stream, options.encode, storeCtx);
      objects.push({ name: tablespace.oid, key, location: tablespace.location, ...stored, files: state.files });
      progress.bytes += state.bytes;
    }
    // base.tar last: backup_label and tablespace_map from pg_backup_stop go at its end.
    let stop: { lsn: string; labelfile: string; spcmapfile: string; stopWal: string } | undefined;
    const baseKey = backupKey(id, `base.tar${suffix}`);
    const baseState: TarProgress = { files: [], bytes: 0 };
    const trailer = async (): Promise<Array<TarEntry & { data?: Buffer }>> => {
      // wait_for_archive => false: the server's own wait polls its archiver once a second (do_pg_backup_stop
      // sleeps 1 s between checks), a second lost on every backup. The stop still switches to a new WAL
      // segment and writes the backup history file; the wait below checks that every file from start to
      // stop is in the repository and intact, which is more than the server's wait (archive_command
      // returned 0) would prove.
      const [row] = await query('select lsn::text as lsn, labelfile, spcmapfile, pg_walfile_name(lsn) as stop_wal from pg_backup_stop(wait_for_archive => false)');
      backupStarted = false;
      stop = { lsn: row!.lsn!, labelfile: row!.labelfile!, spcmapfile: row!.spcmapfile ?? '', stopWal: row!.stop_wal! };
      const mtime = Math.floor(Date.now() / 1000);
      const entries: Array<TarEntry & { data?: Buffer }> = [{ path: 'backup_label', type: 'file', mode: 0o600, size: 0, mtime, data: Buffer.from(stop.labelfile, 'utf8') }];
      if (stop.spcmapfile !== '') entries.push({ path: 'tablespace_map', type: 'file', mode: 0o600, size: 0, mtime, data: Buffer.from(stop.spcmapfile, 'utf8') });
      return entries;
    };
    const baseStream = tarOfTree(dataDirectory, { top: true, progress: baseState, onProgress: report, trailer });
    const baseStored = await storeStream(backend, baseKey, baseStream, options.encode, storeCtx);
    objects.unshift({ name: 'base', key: baseKey, ...baseStored, files: baseState.files });
    await releaseStreamMemory(options.encode);
    if (stop === undefined) throw new WalvaultError('internal', 'pg_backup_stop was never called');
    const finished = stop;
    const labelfile = finished.labelfile;
    const startLsn = parseLsn(labelField(labelfile, 'START WAL LOCATION').split(' ')[0]!);
    const startWal = /\(file ([0-9A-F]{24})\)/.exec(labelField(labelfile, 'START WAL LOCATION'))![1]!;
    const timeline = Number(labelField(labelfile, 'START TIMELINE'));
    const stopLsn = parseLsn(finished.lsn);
    const historyFile = `${startWal}.${(startLsn % BigInt(segmentSize)).toString(16).toUpperCase().padStart(8, '0')}.backup`;
    log.info(`pg_backup_stop: WAL ${formatLsn(startLsn)} .. ${formatLsn(stopLsn)} ("${startWal}" .. "${finished.stopWal}"); waiting for it in the repository`);

    // The WAL from start to stop, in the repository and intact: without it the backup is useless.
    const [sysid] = [info!.sysid!];
    const startSegno = startLsn / BigInt(segmentSize);
    const stopSegno = (stopLsn === 0n ? 0n : stopLsn - 1n) / BigInt(segmentSize);
    const needed: string[] = [historyFile];
    for (let segno = startSegno; segno <= stopSegno; segno += 1n) needed.push(segmentFileName(timeline, segno, segmentSize));
    await awaitBackupWal(backend, { id, names: needed, systemIdentifier: sysid, decode: options.decode, timeoutMs: options.walTimeoutMs ?? 300_000, withDeadline, log });

    const manifest: BackupManifest = {
      version: 1,
      id,
      label,
      system: { identifier: sysid, serverVersion: info!.version!, serverVersionNum: Number(info!.num), segmentSize },
      dataDirectory,
      start: { lsn: formatLsn(startLsn), wal: startWal, timeline, time: labelField(labelfile, 'START TIME') },
      stop: { lsn: formatLsn(stopLsn), wal: finished.stopWal, timeline, time: new Date().toISOString() },
      backupHistoryFile: historyFile,
      codec: options.encode.compress,
      encryption: (options.encode.recipients ?? []).length > 0 ? 'age' : 'none',
      backupLabel: labelfile,
      tablespaceMap: finished.spcmapfile,
      tablespaces,
      objects,
    };
    const manifestHash = await withDeadline('storing the manifest', (ctx) => writeManifest(backend, manifest, options.encode, ctx));
    const size = objects.reduce((sum, object) => sum + object.size, 0);
    const storedSize = objects.reduce((sum, object) => sum + object.storedSize, 0);
    const marker: BackupMarker = { version: 1, id, completedAt: new Date().toISOString(), manifestHash, startWal, stopWal: finished.stopWal, stopLsn: formatLsn(stopLsn), timeline, size, storedSize };
    const written = await withDeadline('writing the completion marker', (ctx) => backend.writeText(backupKey(id, MARKER_NAME), `${JSON.stringify(marker)}\n`, ctx, { ifAbsent: true }));
    if (!written) throw new WalvaultError('mismatch', `completion marker of backup "${id}" already exists`, { hint: 'a backup id is never reused: take a new backup' });
    return { id, manifest, size, storedSize, durationMs: Date.now() - started };
  } catch (error) {
    if (error instanceof WalvaultError) throw error;
    const message = (error as Error).message;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === '42501') {
      throw new WalvaultError('usage', `the database role may not take a backup: ${message}`, {
        hint: 'connect as a superuser, or GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean) and the role pg_read_all_settings to it',
        cause: error,
      });
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new WalvaultError('usage', `cannot read the data directory: ${message}`, { hint: 'run walvault backup as root or as the server\'s OS user (sudo -u postgres walvault backup ...)', cause: error });
    }
    throw new WalvaultError('backend', `backup failed: ${message}`, { hint: 'nothing was marked complete; fix the cause and take a new backup (walvault cleanup removes the leftover)', cause: error });
  } finally {
    // A backup left running on a live connection would hold its WAL back: the connection's end aborts it.
    if (backupStarted) log.warn('the backup was interrupted; pg_backup_stop was not called (closing the connection aborts it on the server)');
    await client.end().catch(() => undefined);
  }
}
