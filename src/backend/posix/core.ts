// The POSIX storage core shared by the local and NFS backends: atomic, durable create-if-absent with link(2).
import { constants as fsConstants, createWriteStream, stat as statCallback, type Stats } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { openWriteback, type Writeback } from './writeback.js';
import { ChunkReader } from '../chunk-reader.js';
import { raceAbort } from '../../core/deadline.js';
import { fromSystemError, WalvaultError } from '../../core/errors.js';
import { returnCopyBuffer, takeCopyBuffer } from '../../core/buffers.js';
import { STREAM_CHUNK } from '../../core/hash.js';
import { giveBackConsumed } from '../../core/owned.js';
import { processLives } from '../../core/process.js';
import { isPullBody, type Backend, type LargePutResult, type ListEntry, type ObjectMeta, type OpContext, type PullBody, type PutBody, type PutMeta, type PutResult, type StatResult, type StoredObject } from '../types.js';

/** The filesystem calls the core makes; tests replace some of them to inject NFS-style faults. */
export interface PosixOps {
  link(existingPath: string, newPath: string): Promise<void>;
  rename(oldPath: string, newPath: string): Promise<void>;
  unlink(target: string): Promise<void>;
  fsyncPath(target: string): Promise<void>;
  /** fdatasync of a file being written (the early flushes of a stored body where `writeback` gives null, see EARLY_FLUSH_BYTES). */
  datasync(handle: nodeFs.FileHandle): Promise<void>;
  /** Opens a file being written for early writeback (./writeback.ts), or null: early flushes use `datasync` then. */
  writeback(filePath: string): Writeback | null;
}

/** Settings that make the POSIX core a local or an NFS backend. */
export interface PosixSettings {
  /** Backend name reported in messages: 'local' or 'nfs'. */
  kind: string;
  /** Absolute path of the repository root; it must exist. */
  root: string;
  /** Mode of archived files (default 0o600: the archive holds every row of the database). */
  fileMode?: number;
  /** Mode of directories walvault creates (default 0o700). */
  dirMode?: number;
  /**
   * Filesystem types (as /proc/self/mountinfo names them, e.g. 'nfs', 'nfs4', 'fuse.s3fs') the root
   * must be on; undefined skips the check. Guards against writing into a bare mountpoint.
   */
  requiredFsTypes?: readonly string[];
  /** Replaces filesystem calls (fault injection in tests). */
  ops?: Partial<PosixOps>;
  /** Host name used in temp file names (default: os.hostname()). */
  host?: string;
}

/** Marks walvault's own files: '~' never occurs in a WAL file name, so these can't be mistaken for archived files. */
const INTERNAL = '~';
const META_SUFFIX = '~meta';
const TEMP_MARK = '~tmp~';
/** Temp files from other hosts older than this are considered abandoned. */
const FOREIGN_TEMP_MAX_AGE_MS = 24 * 3600 * 1000;

const defaultOps: PosixOps = {
  link: (existingPath, newPath) => nodeFs.link(existingPath, newPath),
  rename: (oldPath, newPath) => nodeFs.rename(oldPath, newPath),
  unlink: (target) => nodeFs.unlink(target),
  fsyncPath: async (target) => {
    const handle = await nodeFs.open(target, fsConstants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  datasync: (handle) => handle.datasync(),
  writeback: openWriteback,
};

const isCode = (error: unknown, ...codes: string[]): boolean => codes.includes((error as NodeJS.ErrnoException | undefined)?.code ?? '');

/** fs.stat through the callback API: node:fs/promises costs ~1.3 ms to load, on calls that may need nothing else of it. */
function statOf(target: string): Promise<Stats> {
  return new Promise((resolve, reject) => statCallback(target, (error, info) => (error === null ? resolve(info) : reject(error))));
}

/**
 * A folder's identity across its lifetime: device, inode and birth time (an inode number alone is
 * reused at once by ext4 for a folder removed and made again). Undefined where the filesystem keeps
 * no birth time (NFS): such folders are never taken as already synced.
 */
function folderIdentity(info: Stats): string | undefined {
  return info.birthtimeMs > 0 ? `${info.dev}:${info.ino}:${info.birthtimeMs}` : undefined;
}


/** Finds the filesystem type of the mount holding `target`, from /proc/self/mountinfo. */
export async function filesystemTypeOf(target: string): Promise<{ type: string; mountPoint: string } | null> {
  let text: string;
  try {
    text = await nodeFs.readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return null;
  }
  const real = await nodeFs.realpath(target);
  let best: { type: string; mountPoint: string } | null = null;
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-');
    if (separator < 0 || fields.length < separator + 2) continue;
    const mountPoint = (fields[4] ?? '').replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
    const type = fields[separator + 1] ?? '';
    const inside = mountPoint === '/' || real === mountPoint || real.startsWith(`${mountPoint}/`);
    if (inside && (best === null || mountPoint.length >= best.mountPoint.length)) best = { type, mountPoint };
  }
  return best;
}

/** Writes `length` bytes of `data` at `position` (a write may take fewer bytes than asked). */
async function writeAllAt(handle: nodeFs.FileHandle, data: Buffer, length: number, position: number): Promise<void> {
  let offset = 0;
  while (offset < length) {
    const { bytesWritten } = await handle.write(data, offset, length - offset, position + offset);
    offset += bytesWritten;
  }
}

/**
 * Bytes written between two early flushes of a file being stored. Linux starts writing dirty pages
 * back only after seconds or under memory pressure, so without these the final fsync of a 16 MiB
 * segment would wait for all 16 MiB while the CPU idles; with them the disk writes the file while
 * the next chunks are read, hashed and copied (in-process, 32 segments 2 at a time: 32.8 segments/s
 * without, 57.9 with; see README.md in this folder). They change nothing about durability: the file is
 * fsynced as a whole afterwards, before it gets its name.
 */
export const EARLY_FLUSH_BYTES = 2 << 20;

/** The blocking copy running now (or resolved): the next one starts when it has ended. */
let lastBlockingCopy: Promise<void> = Promise.resolve();

/** Waits for this process's blocking copies before ours; resolves to the function ending our turn. */
async function blockingCopyTurn(): Promise<() => void> {
  let release!: () => void;
  const ours = new Promise<void>((resolve) => {
    release = resolve;
  });
  const before = lastBlockingCopy;
  lastBlockingCopy = before.then(() => ours);
  await before;
  return release;
}

/**
 * Copies a pulled body into a file through reused buffers: while one chunk is written, the next is
 * pulled (read and hashed by the caller). No per-chunk allocation, so no garbage to collect. Every
 * EARLY_FLUSH_BYTES the writeback of what was written starts (see ./writeback.ts; an fdatasync started
 * in the background, not awaited until the copy ends, where that is not available).
 */
async function copyPulled(handle: nodeFs.FileHandle, body: PullBody, ctx: OpContext, ops: PosixOps, filePath: string): Promise<number> {
  const { signal } = ctx;
  const buffers = [takeCopyBuffer(), takeCopyBuffer()];
  let clean = false;
  /** Bytes written so far; all of them once the copy has ended. */
  let position = 0;
  const flushes: Promise<void>[] = [];
  /** Opened at the first early flush: a file under EARLY_FLUSH_BYTES (a history file) loads no WASI. */
  let writeback: Writeback | null | undefined;
  let unflushed = 0;
  /** Starts the early flush of the `length` bytes before `end`, once `written` (their write) resolved. */
  const flushEarly = (end: number, length: number, written: Promise<void>): void => {
    if (writeback === undefined) writeback = ops.writeback(filePath);
    const opened = writeback;
    const flush = opened !== null ? written.then(() => opened.start(end - length, length)) : written.then(() => ops.datasync(handle));
    // Awaited below; until then a failure must not count as unhandled.
    flush.catch(() => undefined);
    flushes.push(flush);
    unflushed = 0;
  };
  try {
    if (ctx.blockingCopy === true && body.pullSync !== undefined) {
      // A background pusher: reads and hashes with blocking calls (in-process, 32 segments 3 at a time:
      // 71.0 segments/s against 58.8 with a thread-pool round trip per read), while each chunk's write
      // runs on the thread pool, three buffers in turn, so the copy uses both cores.
      // One such copy at a time, first come first served: the others' fsyncs, links and sidecars go on
      // meanwhile, instead of all of them copying in turns and then all waiting for the disk together.
      buffers.push(takeCopyBuffer());
      const writes: (Promise<void> | undefined)[] = buffers.map(() => undefined);
      const release = await blockingCopyTurn();
      try {
        for (let turn = 0; ; turn = (turn + 1) % buffers.length) {
          if (signal.aborted) throw signal.reason;
          const buffer = buffers[turn] as Buffer;
          // This buffer's previous write has ended before it is filled again.
          await writes[turn];
          const filled = body.pullSync(buffer);
          if (filled === 0) break;
          const write = writeAllAt(handle, buffer, filled, position);
          // Awaited before the buffer's next use or at the end; until then a failure must not count as unhandled.
          write.catch(() => undefined);
          writes[turn] = write;
          position += filled;
          unflushed += filled;
          if (unflushed >= EARLY_FLUSH_BYTES) flushEarly(position, unflushed, write);
        }
        await Promise.all(writes);
      } finally {
        release();
        // The handle is closed after this returns: no write may still be using it.
        await Promise.allSettled(writes);
      }
      clean = true;
      return position;
    }
    let [current, next] = buffers as [Buffer, Buffer];
    let filled = await body.pull(current);
    while (filled > 0) {
      if (signal.aborted) throw signal.reason;
      const written = writeAllAt(handle, current, filled, position);
      written.catch(() => undefined);
      const [, pulled] = await Promise.all([written, body.pull(next)]);
      position += filled;
      unflushed += filled;
      if (unflushed >= EARLY_FLUSH_BYTES) flushEarly(position, unflushed, written);
      [current, next] = [next, current];
      filled = pulled;
    }
    clean = true;
  } finally {
    // The handle is closed after this returns: no flush may still be using it. A flush that failed
    // fails the copy (the final fsync would very likely fail too, but need not say so on every system).
    const settled = await Promise.allSettled(flushes);
    writeback?.close();
    const failure = settled.find((outcome) => outcome.status === 'rejected');
    // After a failure a read or write may still be using a buffer: leave those to the collector.
    if (clean) for (const buffer of buffers) returnCopyBuffer(buffer);
    if (clean && failure !== undefined) throw (failure as PromiseRejectedResult).reason;
  }
  return position;
}

/** A Backend over a POSIX directory tree; see PosixSettings for what differs between local and NFS. */
export class PosixBackend implements Backend {
  readonly kind: string;
  /** The sidecar is written after the data: callers hash while storing (one read of the source). */
  readonly metaTiming = { when: 'after-body' } as const;
  readonly metaBoundToBody = false;
  readonly root: string;
  private readonly fileMode: number;
  private readonly dirMode: number;
  private readonly ops: PosixOps;
  private readonly configuredHost: string | undefined;
  private hostName: string | undefined;
  private readonly requiredFsTypes: readonly string[] | undefined;
  private ready: Promise<void> | undefined;
  /**
   * Folders whose entry this process has made durable (it fsynced their parent itself), with the
   * identity the folder had when it did (folderIdentity): a folder found again with that identity needs
   * no second sync of its parent. Never inherited from another process (found is no proof, see createDirectory).
   */
  private readonly durableFolders = new Map<string, string>();
  /** Folders being created by ensureDirectory now (until their entries are durable). */
  private readonly creating = new Map<string, Promise<void>>();

  constructor(settings: PosixSettings) {
    this.kind = settings.kind;
    this.root = settings.root;
    this.fileMode = settings.fileMode ?? 0o600;
    this.dirMode = settings.dirMode ?? 0o700;
    this.ops = { ...defaultOps, ...settings.ops };
    this.configuredHost = settings.host;
    this.requiredFsTypes = settings.requiredFsTypes;
  }

  /** Host name in temp file names, looked up on first need (a call that writes nothing does not load node:os). */
  private get host(): string {
    this.hostName ??= (this.configuredHost ?? hostname()).replace(/[^A-Za-z0-9.-]/g, '_');
    return this.hostName;
  }

  describe(key: string): string {
    return path.join(this.root, ...key.split('/'));
  }

  /** Checks once per process that the root exists, is a directory, and (NFS) sits on the expected filesystem. */
  private ensureReady(ctx: OpContext): Promise<void> {
    this.ready ??= this.checkRoot();
    return raceAbort(this.ready, ctx.signal);
  }

  private async checkRoot(): Promise<void> {
    let info;
    try {
      info = await statOf(this.root);
    } catch (error) {
      if (isCode(error, 'ENOENT')) {
        throw new WalvaultError('usage', `repository directory "${this.root}" does not exist`, {
          hint: `create it (mkdir -m 700 "${this.root}" && chown postgres "${this.root}") or fix --repo`,
        });
      }
      throw fromSystemError(error, 'access repository directory', this.root);
    }
    if (!info.isDirectory()) {
      throw new WalvaultError('usage', `repository "${this.root}" is not a directory`, { hint: 'point --repo at a directory' });
    }
    if (this.requiredFsTypes !== undefined) {
      const found = await filesystemTypeOf(this.root);
      if (found === null) {
        throw new WalvaultError('mount', `cannot tell which filesystem "${this.root}" is on (/proc/self/mountinfo unreadable)`, {
          hint: 'run on Linux with /proc mounted, or use a local repository (--repo=/dir)',
        });
      }
      if (!this.requiredFsTypes.includes(found.type)) {
        throw new WalvaultError('mount', `repository "${this.root}" is on a "${found.type}" filesystem (mounted at "${found.mountPoint}"), not ${this.requiredFsTypes.map((type) => `"${type}"`).join(' or ')}`, {
          hint: 'mount the NFS export there (the mount may have dropped), or list the filesystem type in --nfs-fstypes if this is intended',
        });
      }
    }
  }

  /**
   * Creates the folders a key needs, making each new directory entry durable in its parent. Calls for
   * a folder this process is creating right now wait for that creation: the pusher's parallel stores
   * start together, and one that found the folder already made (EEXIST, or access() right after the
   * mkdir) must not report its file durable before the folder's own entry is.
   */
  private ensureDirectory(directory: string): Promise<void> {
    const pending = this.creating.get(directory);
    if (pending !== undefined) return pending;
    const creation = this.createDirectory(directory).finally(() => this.creating.delete(directory));
    this.creating.set(directory, creation);
    return creation;
  }

  private async createDirectory(directory: string): Promise<void> {
    const parent = path.dirname(directory);
    const inside = parent !== directory && (parent.startsWith(this.root + path.sep) || parent === this.root);
    let identity: string | undefined;
    let exists = true;
    try {
      identity = folderIdentity(await statOf(directory));
    } catch {
      exists = false;
    }
    if (!inside) return;
    // Made durable by this process before, and still that very folder: its parents were synced before it.
    if (identity !== undefined && this.durableFolders.get(directory) === identity) return;
    if (parent !== this.root) await this.ensureDirectory(parent);
    if (!exists) {
      try {
        await nodeFs.mkdir(directory, { mode: this.dirMode });
        await nodeFs.chmod(directory, this.dirMode);
      } catch (error) {
        if (!isCode(error, 'EEXIST')) throw fromSystemError(error, 'create directory', directory);
      }
    }
    // The folder as it is before the sync below: that sync makes its entry durable (or a newer one's,
    // which then has another identity and is synced again next time).
    const seen = exists ? identity : await statOf(directory).then(folderIdentity, () => undefined);
    // Whoever created the folder (another process, maybe still before its own fsync) is no proof that its
    // entry is durable: the parent is synced here too, found or made (durability is not tracked across processes).
    await this.ops.fsyncPath(parent).catch((error: unknown) => {
      throw fromSystemError(error, 'sync directory', parent);
    });
    // The pusher stores every segment of a timeline into one folder: its parents are synced once per process, not per file.
    if (seen !== undefined) this.durableFolders.set(directory, seen);
  }

  private tempPath(finalPath: string): string {
    // Math.random, not crypto.randomBytes (node:crypto costs ~2.7 ms to load): the suffix only keeps a
    // reused pid from meeting an old temp file, and the file is created exclusively (wx) anyway.
    const suffix = Math.floor(Math.random() * 0x1_0000_0000).toString(16).padStart(8, '0');
    return `${finalPath}${TEMP_MARK}${this.host}~${process.pid}~${suffix}`;
  }

  async putIfAbsent(key: string, body: PutBody, meta: PutMeta, ctx: OpContext): Promise<PutResult> {
    await this.ensureReady(ctx);
    const finalPath = this.describe(key);
    const directory = path.dirname(finalPath);
    const metaPath = `${finalPath}${META_SUFFIX}`;
    await raceAbort(this.ensureDirectory(directory), ctx.signal);
    await this.removeStaleTemps(finalPath);
    const temp = this.tempPath(finalPath);
    let metaTemp: string | undefined;
    try {
      const bytes = await raceAbort(this.writeBody(temp, body, ctx), ctx.signal);
      // The body has ended: the caller's hash of it is complete (or the source changed and this throws).
      const recorded = typeof meta === 'function' ? meta() : meta;
      metaTemp = this.tempPath(metaPath);
      // The data and the sidecar are flushed at the same time (two fsyncs in flight, not one after the
      // other). Durability is unchanged: the data is durable before link(2) gives it its name, the
      // sidecar before rename(2) gives it its name, and one fsync of the directory (which holds both
      // names) follows both, before success is reported. A crash between link and rename leaves the
      // data without sidecar, as before (stat reports meta null; a re-archive compares contents).
      await raceAbort(Promise.all([this.ops.fsyncPath(temp), this.writeMetaTemp(metaTemp, metaPath, recorded)]), ctx.signal);
      this.dropFromCache(temp, bytes);
      const created = await raceAbort(this.linkExclusive(temp, finalPath), ctx.signal);
      if (created) {
        await raceAbort(this.renameMeta(metaTemp, metaPath), ctx.signal);
        metaTemp = undefined;
        await raceAbort(this.ops.fsyncPath(directory), ctx.signal);
      }
      return { created };
    } catch (error) {
      if (ctx.signal.aborted && ctx.signal.reason instanceof WalvaultError) throw ctx.signal.reason;
      throw fromSystemError(error, 'write', temp);
    } finally {
      await this.ops.unlink(temp).catch(() => undefined);
      if (metaTemp !== undefined) await this.ops.unlink(metaTemp).catch(() => undefined);
    }
  }

  /**
   * A stream of unknown length (a base backup's tar) into a temp file: written through one stream (its
   * highWaterMark bounds memory), flushed with the early writeback as it grows, fsynced, then linked
   * into place only if the key is absent, and the directory fsynced. No sidecar: the manifest describes it.
   */
  async putLarge(key: string, body: Readable, ctx: OpContext): Promise<LargePutResult> {
    await this.ensureReady(ctx);
    const finalPath = this.describe(key);
    const directory = path.dirname(finalPath);
    await raceAbort(this.ensureDirectory(directory), ctx.signal);
    await this.removeStaleTemps(finalPath);
    if (await nodeFs.lstat(finalPath).then(() => true, () => false)) {
      body.destroy();
      throw new WalvaultError('mismatch', `"${finalPath}" already exists; nothing was changed`, { hint: 'a backup id is never reused: remove the leftover or take a new backup' });
    }
    const temp = this.tempPath(finalPath);
    // An abort ends a body that waits for its producer, too (the loop below checks only between chunks).
    const onAbort = (): void => {
      body.destroy(ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted'));
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    if (ctx.signal.aborted) onAbort();
    try {
      const handle = await nodeFs.open(temp, 'wx', this.fileMode);
      let position = 0;
      try {
        await handle.chmod(this.fileMode);
        const writeback = this.ops.writeback(temp);
        let flushed = 0;
        try {
          // The tar stream goes on reading while a chunk is written (two chunks of a backup, see tarOfTree).
          const chunks = new ChunkReader(body, 512 * 1024);
          for (let chunk = await chunks.next(); chunk !== undefined; chunk = await chunks.next()) {
            if (ctx.signal.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted');
            await writeAllAt(handle, chunk, chunk.length, position);
            // Written: a chunk its writer handed over goes back to it (core/owned.ts).
            giveBackConsumed(chunk);
            position += chunk.length;
            // Start the writeback of what was written every few MiB, and drop what is flushed: a backup of
            // many GiB must neither pile up dirty pages for one long fsync nor push the database out of the cache.
            if (writeback !== null && position - flushed >= 8 * EARLY_FLUSH_BYTES) {
              writeback.start(flushed, position - flushed);
              flushed = position;
            }
          }
          await handle.datasync();
          writeback?.drop();
        } finally {
          writeback?.close();
        }
      } finally {
        await handle.close();
      }
      const created = await raceAbort(this.linkExclusive(temp, finalPath), ctx.signal);
      if (!created) throw new WalvaultError('mismatch', `"${finalPath}" already exists; nothing was changed`, { hint: 'a backup id is never reused: remove the leftover or take a new backup' });
      await raceAbort(this.ops.fsyncPath(directory), ctx.signal);
      return { storedSize: position };
    } catch (error) {
      body.destroy();
      if (ctx.signal.aborted && ctx.signal.reason instanceof WalvaultError) throw ctx.signal.reason;
      throw fromSystemError(error, 'write', temp);
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      await this.ops.unlink(temp).catch(() => undefined);
    }
  }

  /**
   * Writes a body to a new temp file with the configured mode (PostgreSQL runs us with umask 0077 or
   * 0027, so the mode is set explicitly). A pulled body is copied through two reused buffers, reading
   * the next chunk while the previous one is written. Resolves to the number of bytes written.
   */
  private async writeBody(temp: string, body: PutBody, ctx: OpContext): Promise<number> {
    if (!Buffer.isBuffer(body) && !isPullBody(body)) {
      const out = createWriteStream(temp, { flags: 'wx', mode: this.fileMode });
      await pipeline(body, out, { signal: ctx.signal });
      await nodeFs.chmod(temp, this.fileMode);
      return out.bytesWritten;
    }
    const handle = await nodeFs.open(temp, 'wx', this.fileMode);
    try {
      await handle.chmod(this.fileMode);
      if (!Buffer.isBuffer(body)) return await copyPulled(handle, body, ctx, this.ops, temp);
      await writeAllAt(handle, body, body.length, 0);
      return body.length;
    } finally {
      await handle.close();
    }
  }

  /**
   * Drops a stored file's pages from the page cache once it is durable (all its pages are clean then).
   * Nothing reads an archived file soon, and keeping it cached would push the database's own pages out
   * of memory, as PostgreSQL itself avoids for WAL it no longer needs (XLogFileClose). It also makes
   * the next file's writes cheaper: they reuse the pages just freed instead of fresh ones. On this
   * VM (Firecracker, free page reporting) fresh pages cost a fault in the host on first touch:
   * measured, 32 files of 16 MiB written, fsynced and dropped took 0.11-0.14 s of write() calls
   * against 0.67-1.48 s with the early writeback alone (see README.md in this folder). Files under
   * EARLY_FLUSH_BYTES are left alone (a history file: a few pages; it loads no WASI). Where the early
   * writeback is not available (`writeback` gives null, as on NFS), nothing is dropped.
   */
  private dropFromCache(filePath: string, bytes: number): void {
    if (bytes < EARLY_FLUSH_BYTES) return;
    const writeback = this.ops.writeback(filePath);
    if (writeback === null) return;
    try {
      writeback.drop();
    } finally {
      writeback.close();
    }
  }

  /**
   * link(2) creates the final name only if it does not exist, unlike rename(2), which would replace it.
   * Over NFS a retransmitted LINK whose first reply was lost reports EEXIST although it succeeded:
   * if the final name is the same inode as our temp file, the file is ours.
   */
  private async linkExclusive(temp: string, finalPath: string): Promise<boolean> {
    try {
      await this.ops.link(temp, finalPath);
      return true;
    } catch (error) {
      if (!isCode(error, 'EEXIST')) throw fromSystemError(error, 'create', finalPath);
      const [ours, existing] = await Promise.all([nodeFs.lstat(temp), nodeFs.lstat(finalPath).catch(() => null)]);
      return existing !== null && existing.ino === ours.ino && existing.dev === ours.dev;
    }
  }

  /** Writes the metadata sidecar atomically (temp, fsync, rename); only the winner of the link writes it. */
  private async writeMeta(finalPath: string, meta: ObjectMeta): Promise<void> {
    const metaPath = `${finalPath}${META_SUFFIX}`;
    const temp = this.tempPath(metaPath);
    try {
      await this.writeMetaTemp(temp, metaPath, meta);
      await this.renameMeta(temp, metaPath);
    } catch (error) {
      await this.ops.unlink(temp).catch(() => undefined);
      throw error;
    }
  }

  /** Writes the sidecar's content to its temp file and makes it durable (not yet under its name). */
  private async writeMetaTemp(temp: string, metaPath: string, meta: ObjectMeta): Promise<void> {
    try {
      await nodeFs.writeFile(temp, `${JSON.stringify({ version: 1, ...meta })}\n`, { flag: 'wx', mode: this.fileMode });
      await this.ops.fsyncPath(temp);
    } catch (error) {
      throw fromSystemError(error, 'write metadata', metaPath);
    }
  }

  /** Gives a durable sidecar temp file its name (the caller fsyncs the directory). */
  private async renameMeta(temp: string, metaPath: string): Promise<void> {
    try {
      await this.ops.rename(temp, metaPath);
    } catch (error) {
      throw fromSystemError(error, 'write metadata', metaPath);
    }
  }

  /**
   * Removes temp files a killed walvault left for this name: on this host when their process is gone,
   * from other hosts when they are a day old. Live writers' temp files are never touched.
   */
  private async removeStaleTemps(finalPath: string): Promise<void> {
    const directory = path.dirname(finalPath);
    const prefixes = [`${path.basename(finalPath)}${TEMP_MARK}`, `${path.basename(finalPath)}${META_SUFFIX}${TEMP_MARK}`];
    let entries: string[];
    try {
      entries = await nodeFs.readdir(directory);
    } catch {
      return;
    }
    for (const entry of entries) {
      const prefix = prefixes.find((candidate) => entry.startsWith(candidate));
      if (prefix === undefined) continue;
      const [host, pidText] = entry.slice(prefix.length).split('~');
      const pid = Number(pidText);
      const full = path.join(directory, entry);
      let stale = false;
      if (host === this.host) {
        stale = Number.isInteger(pid) && pid !== process.pid && !(await processLives(pid));
      } else {
        const info = await nodeFs.stat(full).catch(() => null);
        stale = info !== null && Date.now() - info.mtimeMs > FOREIGN_TEMP_MAX_AGE_MS;
      }
      if (stale) await this.ops.unlink(full).catch(() => undefined);
    }
  }

  async stat(key: string, ctx: OpContext): Promise<StatResult> {
    await this.ensureReady(ctx);
    const finalPath = this.describe(key);
    try {
      const info = await raceAbort(nodeFs.stat(finalPath), ctx.signal);
      const meta = await raceAbort(this.readMeta(finalPath), ctx.signal);
      return { exists: true, storedSize: info.size, meta, modified: info.mtime };
    } catch (error) {
      if (isCode(error, 'ENOENT', 'ENOTDIR')) return { exists: false };
      if (ctx.signal.aborted && ctx.signal.reason instanceof WalvaultError) throw ctx.signal.reason;
      throw fromSystemError(error, 'look up', finalPath);
    }
  }

  private async readMeta(finalPath: string): Promise<ObjectMeta | null> {
    let text: string;
    try {
      text = await nodeFs.readFile(`${finalPath}${META_SUFFIX}`, 'utf8');
    } catch (error) {
      if (isCode(error, 'ENOENT')) return null;
      throw error;
    }
    try {
      const parsed = JSON.parse(text) as Partial<ObjectMeta>;
      if (typeof parsed.contentHash !== 'string' || typeof parsed.contentSize !== 'number') throw new Error('fields missing');
      return { contentHash: parsed.contentHash, contentSize: parsed.contentSize, codec: parsed.codec ?? 'none', encryption: parsed.encryption ?? 'none' };
    } catch {
      throw new WalvaultError('corrupt', `metadata file "${finalPath}${META_SUFFIX}" is not valid`, {
        hint: 'run walvault verify; restore the file from another copy of the archive',
      });
    }
  }

  async read(key: string, ctx: OpContext): Promise<StoredObject | null> {
    await this.ensureReady(ctx);
    const finalPath = this.describe(key);
    try {
      // Found at all? Asked through the callback API first, so that "not found" (PostgreSQL probes
      // for history files at every recovery start) does not load node:fs/promises.
      await raceAbort(statOf(finalPath), ctx.signal);
      const handle = await raceAbort(nodeFs.open(finalPath, 'r'), ctx.signal);
      try {
        const [info, meta] = await raceAbort(Promise.all([handle.stat(), this.readMeta(finalPath)]), ctx.signal);
        const body = handle.createReadStream({ highWaterMark: STREAM_CHUNK, signal: ctx.signal });
        return { body, storedSize: info.size, meta };
      } catch (error) {
        await handle.close();
        throw error;
      }
    } catch (error) {
      if (isCode(error, 'ENOENT', 'ENOTDIR')) return null;
      if (ctx.signal.aborted && ctx.signal.reason instanceof WalvaultError) throw ctx.signal.reason;
      throw fromSystemError(error, 'read', finalPath);
    }
  }

  async persist(key: string, meta: ObjectMeta | null, ctx: OpContext): Promise<void> {
    await this.ensureReady(ctx);
    const finalPath = this.describe(key);
    const directory = path.dirname(finalPath);
    try {
      await raceAbort(this.ops.fsyncPath(finalPath), ctx.signal);
      if (meta !== null && (await raceAbort(this.readMeta(finalPath), ctx.signal)) === null) {
        await raceAbort(this.writeMeta(finalPath, meta), ctx.signal);
      }
      await raceAbort(this.ops.fsyncPath(directory), ctx.signal);
      if (directory !== this.root) await raceAbort(this.ops.fsyncPath(path.dirname(directory)), ctx.signal);
    } catch (error) {
      if (ctx.signal.aborted && ctx.signal.reason instanceof WalvaultError) throw ctx.signal.reason;
      throw fromSystemError(error, 'sync', finalPath);
    }
  }

  async *list(prefix: string, ctx: OpContext): AsyncIterable<ListEntry> {
    await this.ensureReady(ctx);
    const start = prefix === '' ? this.root : this.describe(prefix.replace(/\/$/, ''));
    const walk = async function* (this: PosixBackend, directory: string): AsyncGenerator<ListEntry> {
      let entries;
      try {
        entries = await raceAbort(nodeFs.readdir(directory, { withFileTypes: true }), ctx.signal);
      } catch (error) {
        if (isCode(error, 'ENOENT', 'ENOTDIR')) return;
        throw fromSystemError(error, 'list', directory);
      }
      for (const entry of entries) {
        const full = path.join(directory, entry.name);
        if (entry.isDirectory()) {
          yield* walk.call(this, full);
          continue;
        }
        if (entry.name.endsWith(META_SUFFIX) && !entry.name.includes(TEMP_MARK)) continue;
        const info = await nodeFs.stat(full).catch(() => null);
        if (info === null) continue;
        const key = path.relative(this.root, full).split(path.sep).join('/');
        yield { key, storedSize: info.size, modified: info.mtime, temp: entry.name.includes(INTERNAL) };
      }
    };
    yield* walk.call(this, start);
  }

  async delete(key: string, ctx: OpContext): Promise<void> {
    await this.ensureReady(ctx);
    const finalPath = this.describe(key);
    for (const target of [finalPath, `${finalPath}${META_SUFFIX}`]) {
      await raceAbort(this.ops.unlink(target), ctx.signal).catch((error: unknown) => {
        if (!isCode(error, 'ENOENT')) throw fromSystemError(error, 'delete', target);
      });
    }
    await raceAbort(this.ops.fsyncPath(path.dirname(finalPath)), ctx.signal).catch(() => undefined);
  }

  async readText(key: string, ctx: OpContext): Promise<string | null> {
    await this.ensureReady(ctx);
    const target = this.describe(key);
    try {
      return await raceAbort(nodeFs.readFile(target, 'utf8'), ctx.signal);
    } catch (error) {
      if (isCode(error, 'ENOENT')) return null;
      throw fromSystemError(error, 'read', target);
    }
  }

  async writeText(key: string, text: string, ctx: OpContext, options: { ifAbsent?: boolean } = {}): Promise<boolean> {
    await this.ensureReady(ctx);
    const target = this.describe(key);
    const directory = path.dirname(target);
    await raceAbort(this.ensureDirectory(directory), ctx.signal);
    const temp = this.tempPath(target);
    try {
      await raceAbort(nodeFs.writeFile(temp, text, { flag: 'wx', mode: this.fileMode }), ctx.signal);
      await raceAbort(this.ops.fsyncPath(temp), ctx.signal);
      if (options.ifAbsent === true) {
        if (!(await raceAbort(this.linkExclusive(temp, target), ctx.signal))) return false;
      } else {
        await raceAbort(this.ops.rename(temp, target), ctx.signal);
      }
      await raceAbort(this.ops.fsyncPath(directory), ctx.signal);
      return true;
    } catch (error) {
      if (ctx.signal.aborted && ctx.signal.reason instanceof WalvaultError) throw ctx.signal.reason;
      throw fromSystemError(error, 'write', target);
    } finally {
      await this.ops.unlink(temp).catch(() => undefined);
    }
  }
}
