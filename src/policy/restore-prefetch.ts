// Restore prefetch: while PostgreSQL replays segment N, a background worker fetches N+1..N+K into the spool, verified, so each request is a rename.
//
// - Files reach their final spool name only after the whole content was written, fsynced and found
//   to match the hash recorded at archive time; partial downloads live under another folder.
// - The spool sits on the data directory's filesystem (default pg_wal/walvault), so the hand-over to
//   %p is a rename: PostgreSQL never sees a partial file.
// - A request on another timeline discards what was fetched for the old one; the spool is bounded
//   by bytes (in-flight downloads included); the worker stops at the end of the archive and when
//   PostgreSQL stops asking, removing what it fetched and nobody took.
import { createWriteStream } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { HashingStream } from '../core/hash.js';
import type { Logger } from '../core/log.js';
import { classify, isValidSegmentSize, objectKey, parseSegmentName, segmentFileName, segmentNumber, validateFileName } from '../wal/names.js';
import { restoreFile, type RestoreRequest, type RestoreResult } from './restore.js';
import { decodeStored } from './stored.js';
import { clearDirectory, openSpool, spoolPaths, takeWorkerLock, workerAlive, type SpoolPaths } from './spool.js';

/** Settings of restore prefetch. */
export interface PrefetchOptions {
  /** Spool folder (default pg_wal/walvault); must be on the filesystem of %p for an atomic hand-over. */
  spoolDir: string;
  /** How many segments after the requested one to fetch ahead (0: off). */
  prefetch: number;
  /** How many downloads run at once. */
  parallel: number;
  /** Upper bound of the spool's size in bytes, downloads in flight included. */
  maxBytes: number;
  /** The spool owner line (see spoolIdentity). */
  identity: string;
}

/** The cursor file: the last segment PostgreSQL asked for and the segment size. */
function cursorFile(paths: SpoolPaths): string {
  return path.join(paths.root, 'restore.cursor');
}

/** Removes prefetched files PostgreSQL will not ask for any more: other timelines, or before `current`. */
async function discardStale(paths: SpoolPaths, current: string, log: Logger): Promise<void> {
  const timeline = current.slice(0, 8);
  const names = await nodeFs.readdir(paths.entries).catch(() => [] as string[]);
  let dropped = 0;
  for (const name of names) {
    if (name.slice(0, 8) !== timeline || name < current) {
      await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
      dropped += 1;
    }
  }
  if (dropped > 0) log.debug(`discarded ${dropped} prefetched file(s) that recovery no longer needs (timeline ${timeline})`);
}

/**
 * restore_command with prefetch: hands over a prefetched file with a rename, or restores it here;
 * then records where recovery is and starts the background prefetcher if it is not running.
 */
export async function restoreWithPrefetch(request: RestoreRequest, options: PrefetchOptions, start: () => void): Promise<RestoreResult> {
  const started = performance.now();
  const fileName = validateFileName(request.fileName);
  const paths = spoolPaths(options.spoolDir, 'restore');
  const segment = classify(fileName) === 'segment';
  // The spool is only read here; it is created when a prefetcher is started, so a recovery that
  // needs one file leaves nothing behind in pg_wal.
  const owner = segment ? await nodeFs.readFile(paths.owner, 'utf8').catch(() => null) : null;
  if (owner !== null && owner.replace(/\n$/, '') === options.identity) {
    await discardStale(paths, fileName, request.log).catch(() => undefined);
    try {
      const info = await nodeFs.stat(path.join(paths.entries, fileName));
      await nodeFs.rename(path.join(paths.entries, fileName), request.targetPath);
      await noteCursor(paths, fileName, info.size).catch(() => undefined);
      if (!(await workerAlive(paths))) start();
      const durationMs = performance.now() - started;
      request.log.info(`restored "${fileName}" to "${request.targetPath}" (${info.size} bytes, prefetched and verified, ${Math.round(durationMs)} ms)`);
      return { bytes: info.size, location: options.spoolDir, durationMs, verified: true };
    } catch {
      // not prefetched (or taken meanwhile): restore it here
    }
  }
  const result = await restoreFile(request);
  if (!segment || options.prefetch === 0 || !isValidSegmentSize(result.bytes)) return result;
  try {
    if (owner !== null && (await workerAlive(paths))) {
      await noteCursor(paths, fileName, result.bytes);
    } else if (await nextIsArchived(request, fileName, result.bytes)) {
      await openSpool(paths, options.identity);
      await discardStale(paths, fileName, request.log);
      await noteCursor(paths, fileName, result.bytes);
      start();
    }
  } catch (error) {
    request.log.warn(`spool "${options.spoolDir}" is not usable (${(error as Error).message}); restoring without prefetch; HINT: check --spool`);
  }
  return result;
}

/** True when the segment after `fileName` is in the repository: only then is a prefetcher worth starting. */
async function nextIsArchived(request: RestoreRequest, fileName: string, segmentSize: number): Promise<boolean> {
  const id = parseSegmentName(fileName);
  if (id === null) return false;
  const next = segmentFileName(id.timeline, segmentNumber(id, segmentSize) + 1n, segmentSize);
  const info = await request.backend.stat(objectKey(next), { signal: request.deadline.signal }).catch(() => null);
  return info !== null && info.exists;
}

/** Records the segment PostgreSQL is at, for the worker. */
async function noteCursor(paths: SpoolPaths, fileName: string, segmentSize: number): Promise<void> {
  const temp = `${cursorFile(paths)}.${process.pid}`;
  await nodeFs.writeFile(temp, `${fileName} ${segmentSize}\n`);
  await nodeFs.rename(temp, cursorFile(paths));
}

/** Reads the cursor file. */
async function readCursor(paths: SpoolPaths): Promise<{ name: string; segmentSize: number } | null> {
  const text = await nodeFs.readFile(cursorFile(paths), 'utf8').catch(() => null);
  const match = text === null ? null : /^([0-9A-F]{24}) (\d+)$/.exec(text.trim());
  if (!match || match[1] === undefined) return null;
  const segmentSize = Number(match[2]);
  return isValidSegmentSize(segmentSize) ? { name: match[1], segmentSize } : null;
}

/** What the background prefetcher needs. */
export interface PrefetcherOptions extends PrefetchOptions {
  backend: Backend;
  decode: DecodeOptions;
  timeoutMs: number;
  /** Exit after PostgreSQL has asked for nothing new for this long. */
  idleMs?: number;
  pollMs?: number;
  log: Logger;
}

/** Summary of a prefetcher run, for logs and tests. */
export interface PrefetcherSummary {
  fetched: string[];
  missing: string[];
  corrupt: string[];
  locked: boolean;
}

/** Fetches one archived file into the spool: temp file, hash check, fsync, then its final name. Returns false when not archived. */
async function fetchIntoSpool(options: PrefetcherOptions, paths: SpoolPaths, fileName: string, deadline: Deadline): Promise<'fetched' | 'missing' | 'corrupt'> {
  const object = await options.backend.read(objectKey(fileName), { signal: deadline.signal });
  if (object === null) return 'missing';
  const decoded = await decodeStored(object, options.decode);
  const hasher = await HashingStream.create({ headLimit: 0 });
  const temp = path.join(paths.work, `${fileName}.${process.pid}`);
  try {
    await deadline.race(pipeline(decoded.content, hasher, createWriteStream(temp, { mode: 0o600 })));
    await deadline.race(decoded.finished);
    const meta = decoded.meta;
    if (meta !== null && (meta.contentHash !== hasher.digest() || meta.contentSize !== hasher.bytes)) {
      options.log.warn(`prefetched "${fileName}" does not match its recorded hash ${meta.contentHash} (got ${hasher.digest()}); discarded, the request will report it`);
      await nodeFs.unlink(temp).catch(() => undefined);
      return 'corrupt';
    }
    const handle = await nodeFs.open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await nodeFs.rename(temp, path.join(paths.entries, fileName));
    return 'fetched';
  } catch (error) {
    await nodeFs.unlink(temp).catch(() => undefined);
    throw error;
  }
}

/**
 * The background worker: keeps the `prefetch` segments after PostgreSQL's position in the spool,
 * `parallel` downloads at a time, within `maxBytes`. Follows the position through the cursor file and
 * through files disappearing from the spool (taken by the launcher); stops at the end of the archive
 * once PostgreSQL stops asking, on a failure, or after `idleMs` without progress.
 */
export async function runPrefetcher(options: PrefetcherOptions): Promise<PrefetcherSummary> {
  const paths = spoolPaths(options.spoolDir, 'restore');
  const summary: PrefetcherSummary = { fetched: [], missing: [], corrupt: [], locked: false };
  await openSpool(paths, options.identity);
  const release = await takeWorkerLock(paths);
  if (release === null) {
    summary.locked = true;
    return summary;
  }
  const idleMs = options.idleMs ?? 30_000;
  const pollMs = options.pollMs ?? 10;
  const placed = new Set<string>();
  const inflight = new Map<string, Promise<void>>();
  const missingAt = new Map<string, number>();
  let failed = false;
  let position = await readCursor(paths);
  let lastProgress = performance.now();

  const fetchOne = async (fileName: string): Promise<void> => {
    const deadline = new Deadline(options.timeoutMs, `prefetching "${fileName}"`);
    try {
      const outcome = await fetchIntoSpool(options, paths, fileName, deadline);
      if (outcome === 'fetched') {
        placed.add(fileName);
        summary.fetched.push(fileName);
      } else if (outcome === 'missing') {
        missingAt.set(fileName, performance.now());
        summary.missing.push(fileName);
      } else {
        // Never handed over; the request for it restores it in the foreground, which reports the corruption.
        summary.corrupt.push(fileName);
        missingAt.set(fileName, performance.now());
      }
    } catch (error) {
      failed = true;
      const text = error instanceof WalvaultError ? error.oneLine() : (error as Error).message;
      options.log.warn(`prefetch of "${fileName}" failed, leaving it to PostgreSQL's own request: ${text}`);
    } finally {
      deadline.dispose();
    }
  };

  try {
    while (position !== null) {
      const noted = await readCursor(paths);
      if (noted !== null && (noted.name > position.name || noted.name.slice(0, 8) !== position.name.slice(0, 8))) {
        position = noted;
        lastProgress = performance.now();
      }
      // Files taken by the launcher (renamed to %p) move the position too.
      for (const name of [...placed]) {
        if (inflight.has(name)) continue;
        const present = await nodeFs.stat(path.join(paths.entries, name)).then(() => true, () => false);
        if (!present) {
          placed.delete(name);
          if (name.slice(0, 8) === position.name.slice(0, 8) && name > position.name) {
            position = { name, segmentSize: position.segmentSize };
            lastProgress = performance.now();
          }
        }
      }
      if (failed && inflight.size === 0) break;
      const id = parseSegmentName(position.name);
      if (id === null) break;
      const timeline = position.name.slice(0, 8);
      for (const name of [...placed]) {
        if (name.slice(0, 8) !== timeline || name <= position.name) {
          await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
          placed.delete(name);
        }
      }
      const base = segmentNumber(id, position.segmentSize);
      const budget = Math.floor(options.maxBytes / position.segmentSize);
      if (!failed) {
        for (let step = 1; step <= options.prefetch; step += 1) {
          if (inflight.size >= options.parallel || placed.size + inflight.size >= budget) break;
          const name = segmentFileName(id.timeline, base + BigInt(step), position.segmentSize);
          const missingSince = missingAt.get(name);
          if (missingSince !== undefined) {
            if (performance.now() - missingSince < 1000) break; // the end of the archive (for now)
            missingAt.delete(name);
          }
          if (placed.has(name) || inflight.has(name)) continue;
          inflight.set(name, fetchOne(name).finally(() => inflight.delete(name)));
        }
      }
      if (inflight.size === 0 && performance.now() - lastProgress > idleMs) break;
      if (inflight.size >= options.parallel) await Promise.race(inflight.values());
      else await sleep(pollMs);
    }
  } finally {
    await Promise.allSettled(inflight.values());
    for (const name of placed) await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
    await clearDirectory(paths.work);
    // Leave no trace in pg_wal once recovery stops asking: the spool is created again when needed.
    await nodeFs.unlink(cursorFile(paths)).catch(() => undefined);
    await nodeFs.rmdir(paths.work).catch(() => undefined);
    if (await nodeFs.rmdir(paths.entries).then(() => true, () => false)) await nodeFs.unlink(paths.owner).catch(() => undefined);
    await release();
    await nodeFs.rmdir(paths.root).catch(() => undefined);
  }
  return summary;
}
