// Restore prefetch: while PostgreSQL replays segment N, a background worker fetches N+1..N+K into the spool, verified, so each request is a rename.
//
// - Files reach their final spool name only after the whole content was written, fsynced and found
//   to match the hash recorded at archive time; partial downloads live under another folder.
// - The spool sits on the data directory's filesystem (default pg_wal/walvault), so the hand-over to
//   %p is a rename: PostgreSQL never sees a partial file.
// - A request on another timeline discards what was fetched for the old one; the spool is bounded
//   by bytes (in-flight downloads included); the worker stops at the end of the archive and when
//   PostgreSQL stops asking, removing what it fetched and nobody took.
// - While the worker runs, the launcher does not start Node for a file that is not in the spool: it
//   posts a request and the worker answers it with a lookup in the repository started after it saw the
//   request (the file, verified, in the spool; "missing" only when the repository says so; or "error").
// Every spool file, its format, writers, readers and lifetime: src/policy/SPOOL.md.
import { createWriteStream, existsSync } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { monotonicMs } from '../core/clock.js';
import { Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { HashingStream } from '../core/hash.js';
import type { Logger } from '../core/log.js';
import { classify, isValidSegmentSize, objectKey, parseSegmentName, segmentFileName, segmentNumber, validateFileName } from '../wal/names.js';
import { restoreFile, type RestoreRequest, type RestoreResult } from './restore.js';
import { decodeStored } from './stored.js';
import { clearDirectory, ensureDirectory, noteWorkerState, openSpool, processAlive, spoolPaths, stopRequested, takeWorkerLock, watchServer, workerAlive, type SpoolPaths } from './spool.js';

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
  /** The fingerprint of the effective options (see fingerprint in spool.ts): prefetched files and the worker carry it. */
  id: string;
}

/** Folder of the launcher's requests to the running worker of this fingerprint (SPOOL.md, "restore.ID.ask"). */
export function askDirectory(paths: SpoolPaths): string {
  return `${paths.entries}.ask`;
}

/** True while the data directory (the working directory) is in recovery: only then is a prefetcher worth starting. */
function inRecovery(): boolean {
  return existsSync('recovery.signal') || existsSync('standby.signal');
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
    // Only the prefetch window (segments); a file fetched for a request is the worker's to clean up.
    if (classify(name) === 'segment' && (name.slice(0, 8) !== timeline || name < current)) {
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
export async function restoreWithPrefetch(request: RestoreRequest, options: PrefetchOptions, start: () => void): Promise<RestoreResult & { prefetching: boolean }> {
  const started = monotonicMs();
  const fileName = validateFileName(request.fileName);
  const paths = spoolPaths(options.spoolDir, 'restore', options.id);
  const segment = classify(fileName) === 'segment';
  // The spool is only read here; it is created when a prefetcher is started, so a recovery that
  // needs one file leaves nothing behind in pg_wal. Only files fetched under this very fingerprint answer.
  const owned = segment && (await nodeFs.stat(paths.entries).then(() => true, () => false));
  const recovering = inRecovery();
  if (owned) {
    await discardStale(paths, fileName, request.log).catch(() => undefined);
    try {
      const info = await nodeFs.stat(path.join(paths.entries, fileName));
      await nodeFs.rename(path.join(paths.entries, fileName), request.targetPath);
      await noteCursor(paths, fileName, info.size).catch(() => undefined);
      let prefetching = await workerAlive(paths);
      if (!prefetching && recovering) {
        start();
        prefetching = true;
      }
      const durationMs = monotonicMs() - started;
      request.log.info(`restored "${fileName}" to "${request.targetPath}" (${info.size} bytes, prefetched and verified, ${Math.round(durationMs)} ms)`);
      return { bytes: info.size, location: options.spoolDir, durationMs, verified: true, prefetching };
    } catch {
      // not prefetched (or taken meanwhile): restore it here
    }
  }
  if (!segment) {
    const prefetching = await startForRecovery(request, options, paths, start);
    return { ...(await restoreFile(request)), prefetching };
  }
  const result = await restoreFile(request);
  // A restore run by hand (no recovery.signal or standby.signal here) starts no worker.
  if (options.prefetch === 0 || !isValidSegmentSize(result.bytes) || !recovering) return { ...result, prefetching: false };
  let prefetching = false;
  try {
    if (owned && (await workerAlive(paths))) {
      await noteCursor(paths, fileName, result.bytes);
      prefetching = true;
    } else if (await nextIsArchived(request, fileName, result.bytes)) {
      await openSpool(paths);
      await discardStale(paths, fileName, request.log);
      await noteCursor(paths, fileName, result.bytes);
      start();
      prefetching = true;
    }
  } catch (error) {
    request.log.warn(`spool "${options.spoolDir}" is not usable (${(error as Error).message}); restoring without prefetch; HINT: check --spool`);
  }
  return { ...result, prefetching };
}

/**
 * PostgreSQL's first request of a recovery is a timeline history file (RECOVERYHISTORY, with
 * recovery.signal or standby.signal in the data directory), and the first segment follows at once:
 * the worker is started here, so its own start overlaps this request and it serves the next ones.
 * Without a segment request it stops after a third of its idle time, removing the spool.
 */
async function startForRecovery(request: RestoreRequest, options: PrefetchOptions, paths: SpoolPaths, start: () => void): Promise<boolean> {
  if (options.prefetch === 0 || path.basename(request.targetPath) !== 'RECOVERYHISTORY' || !inRecovery()) return false;
  try {
    if (await workerAlive(paths)) return true;
    await openSpool(paths);
    start();
    return true;
  } catch (error) {
    request.log.warn(`spool "${options.spoolDir}" is not usable (${(error as Error).message}); restoring without prefetch; HINT: check --spool`);
    return false;
  }
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
  /**
   * How a request is answered "missing": only when a freshly opened repository says so too (a function
   * opening it as a new walvault-restore process would: a POSIX backend checks its root once per
   * instance, so in a long-running worker a dropped mount or a moved directory reads as "missing");
   * or 'stateless' for a backend whose every lookup is a new request to the store (S3: a 404 is the
   * store's answer now). Without it, never: such requests go to walvault-restore.
   */
  freshLookup?: (() => Promise<Backend>) | 'stateless';
  /** Exit after PostgreSQL has asked for nothing new for this long. */
  idleMs?: number;
  pollMs?: number;
  log: Logger;
}

/**
 * The background prefetcher's states, written to the pid file on each transition (SPOOL.md):
 * starting (reserved by whoever started it) -> serving <-> idle -> stopping (then the file goes).
 */
export type PrefetcherState = 'starting' | 'serving' | 'idle' | 'stopping';

/** Summary of a prefetcher run, for logs and tests. */
export interface PrefetcherSummary {
  fetched: string[];
  missing: string[];
  corrupt: string[];
  locked: boolean;
}

/** Outcome of one download into the spool. */
type SpoolFetch = { outcome: 'fetched'; bytes: number } | { outcome: 'missing' | 'corrupt' };

/** Fetches one archived file into the spool: temp file, hash check, fsync, then its final name. */
async function fetchIntoSpool(options: PrefetcherOptions, paths: SpoolPaths, fileName: string, deadline: Deadline): Promise<SpoolFetch> {
  const object = await options.backend.read(objectKey(fileName), { signal: deadline.signal });
  if (object === null) return { outcome: 'missing' };
  const decoded = await decodeStored(object, options.decode);
  const hasher = await HashingStream.create();
  const temp = path.join(paths.work, `${fileName}.${process.pid}`);
  try {
    await deadline.race(pipeline(decoded.content, hasher, createWriteStream(temp, { mode: 0o600 })));
    await deadline.race(decoded.finished);
    const meta = decoded.meta;
    if (meta !== null && (meta.contentHash !== hasher.digest() || meta.contentSize !== hasher.bytes)) {
      options.log.warn(`prefetched "${fileName}" does not match its recorded hash ${meta.contentHash} (got ${hasher.digest()}); discarded, the request will report it`);
      await nodeFs.unlink(temp).catch(() => undefined);
      return { outcome: 'corrupt' };
    }
    const handle = await nodeFs.open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await nodeFs.rename(temp, path.join(paths.entries, fileName));
    return { outcome: 'fetched', bytes: hasher.bytes };
  } catch (error) {
    await nodeFs.unlink(temp).catch(() => undefined);
    throw error;
  }
}

/** A request the launcher posted (restore.ask/NAME.PID). */
interface Ask {
  /** File name in the ask folder. */
  file: string;
  /** Wanted WAL file name. */
  name: string;
  /** The launcher's shell; the request is void once it is gone. */
  pid: number;
  /** Being served or served: never answered twice. */
  taken: boolean;
}

/** Parses an ask file name (NAME.PID); null for anything else (temp files start with a dot). */
function parseAsk(file: string): Ask | null {
  const match = /^([0-9A-Za-z.]+)\.(\d+)$/.exec(file);
  if (match === null || match[1] === undefined || file.startsWith('.')) return null;
  return { file, name: match[1], pid: Number(match[2]), taken: false };
}

/**
 * The background worker: keeps the `prefetch` segments after PostgreSQL's position in the spool,
 * `parallel` downloads at a time, within `maxBytes`, and answers the launcher's requests for anything
 * else (see the file comment). Follows the position through the cursor file, the requests, and files
 * disappearing from the spool (taken by the launcher); stops on a failure, or after `idleMs` without
 * progress or requests (a third of that when it never learnt a position).
 */
export async function runPrefetcher(options: PrefetcherOptions): Promise<PrefetcherSummary> {
  const paths = spoolPaths(options.spoolDir, 'restore', options.id);
  const asksDir = askDirectory(paths);
  const summary: PrefetcherSummary = { fetched: [], missing: [], corrupt: [], locked: false };
  await openSpool(paths);
  const release = await takeWorkerLock(paths, 'serving');
  if (release === null) {
    summary.locked = true;
    return summary;
  }
  const idleMs = options.idleMs ?? 30_000;
  const pollMs = options.pollMs ?? 10;
  const placed = new Set<string>();
  const inflight = new Map<string, Promise<void>>();
  const missingAt = new Map<string, number>();
  const asks = new Map<string, Ask>();
  /** Files fetched for a request: kept until the request is gone, whatever the window does. */
  const pinned = new Set<string>();
  let failed = false;
  let position = await readCursor(paths);
  let lastNoted = position === null ? '' : `${position.name} ${position.segmentSize}`;
  let lastProgress = monotonicMs();

  const fetchOne = async (fileName: string): Promise<void> => {
    const deadline = new Deadline(options.timeoutMs, `prefetching "${fileName}"`);
    try {
      const { outcome } = await fetchIntoSpool(options, paths, fileName, deadline);
      if (outcome === 'fetched') {
        placed.add(fileName);
        summary.fetched.push(fileName);
      } else if (outcome === 'missing') {
        missingAt.set(fileName, monotonicMs());
        summary.missing.push(fileName);
      } else {
        // Never handed over; the request for it restores it in the foreground, which reports the corruption.
        summary.corrupt.push(fileName);
        missingAt.set(fileName, monotonicMs());
      }
    } catch (error) {
      failed = true;
      const text = error instanceof WalvaultError ? error.oneLine() : (error as Error).message;
      options.log.warn(`prefetch of "${fileName}" failed, leaving it to PostgreSQL's own request: ${text}`);
    } finally {
      deadline.dispose();
    }
  };

  /** Registers a download under its name until it settles (a later download of the same name keeps its own entry). */
  const track = (name: string, work: Promise<void>): void => {
    const entry: Promise<void> = work.finally(() => {
      if (inflight.get(name) === entry) inflight.delete(name);
    });
    inflight.set(name, entry);
  };
  /** True while a launcher waits for that name: the window must not discard it. */
  const asked = (name: string): boolean => pinned.has(name) || [...asks.values()].some((ask) => ask.name === name);

  /** Replaces the ask file's content with the answer (temp file + rename: the launcher never reads half a line). */
  const answer = async (ask: Ask, text: string): Promise<void> => {
    const temp = path.join(asksDir, `.${ask.file}.${process.pid}`);
    await nodeFs.writeFile(temp, `${text}\n`);
    await nodeFs.rename(temp, path.join(asksDir, ask.file));
  };

  const inSpool = (name: string): Promise<boolean> => nodeFs.stat(path.join(paths.entries, name)).then(() => true, () => false);

  /** True when `name`, just found missing, may be answered so (see PrefetcherOptions.freshLookup); any failure is false. */
  const confirmMissing = async (name: string): Promise<boolean> => {
    const freshLookup = options.freshLookup;
    if (freshLookup === 'stateless') return true;
    if (freshLookup === undefined) return false;
    const deadline = new Deadline(options.timeoutMs, `looking up "${name}" for PostgreSQL's request`);
    try {
      const fresh = await deadline.race(freshLookup());
      const info = await fresh.stat(objectKey(name), { signal: deadline.signal });
      return !info.exists;
    } catch (error) {
      const text = error instanceof WalvaultError ? error.oneLine() : (error as Error).message;
      options.log.warn(`looking up "${name}" for PostgreSQL's request failed, leaving it to walvault-restore: ${text}`);
      return false;
    } finally {
      deadline.dispose();
    }
  };

  /**
   * PostgreSQL asking for segment X (and X being archived) means it is at X: the window follows, also
   * onto another timeline. A missing X moves nothing (the end of the archive: nothing to fetch past it).
   */
  const follow = (name: string, bytes: number): void => {
    if (classify(name) !== 'segment') return;
    if (position !== null && name.slice(0, 8) === position.name.slice(0, 8) && name <= position.name) return;
    const segmentSize = isValidSegmentSize(bytes) ? bytes : (position?.segmentSize ?? 0);
    position = { name, segmentSize };
    lastProgress = monotonicMs();
  };

  /** Serves one request: the file in the spool, or an answer; every outcome is decided by a lookup started after the request was seen. */
  const serve = async (ask: Ask): Promise<void> => {
    try {
      await answer(ask, 'fetching');
      const running = inflight.get(ask.name);
      if (running !== undefined) await running;
      // Fetched by the window (before or after the request): that copy was verified like any other.
      // Fetched for an earlier request of the same name and not taken (PostgreSQL asked again): still verified.
      if (pinned.has(ask.name) && (await inSpool(ask.name))) return;
      if (placed.has(ask.name) && (await inSpool(ask.name))) {
        placed.delete(ask.name);
        pinned.add(ask.name);
        follow(ask.name, position?.segmentSize ?? 0);
        return;
      }
      const deadline = new Deadline(options.timeoutMs, `fetching "${ask.name}" for PostgreSQL's request`);
      const work = fetchIntoSpool(options, paths, ask.name, deadline).finally(() => deadline.dispose());
      track(ask.name, work.then(() => undefined, () => undefined));
      const fetched = await work;
      const outcome = fetched.outcome;
      if (fetched.outcome === 'fetched') {
        pinned.add(ask.name);
        summary.fetched.push(ask.name);
        follow(ask.name, fetched.bytes);
      } else if (outcome === 'missing' && (await confirmMissing(ask.name))) {
        summary.missing.push(ask.name);
        await answer(ask, `missing "${ask.name}" not found in "${options.backend.describe(objectKey(ask.name))}"`);
      } else if (outcome === 'missing') {
        // Archived meanwhile, or the fresh look failed: walvault-restore decides.
        await answer(ask, 'error');
      } else {
        summary.corrupt.push(ask.name);
        await answer(ask, 'error');
      }
    } catch (error) {
      // The launcher starts Node for it, which retries and reports under --on-error.
      const text = error instanceof WalvaultError ? error.oneLine() : (error as Error).message;
      options.log.warn(`fetching "${ask.name}" for PostgreSQL's request failed, leaving it to walvault-restore: ${text}`);
      await answer(ask, 'error').catch(() => undefined);
    }
  };

  /** Reads new requests, drops those whose launcher is gone (and what was fetched only for them). */
  const readAsks = async (): Promise<void> => {
    const files = await nodeFs.readdir(asksDir).catch(() => [] as string[]);
    const present = new Set(files);
    for (const file of asks.keys()) {
      if (!present.has(file)) asks.delete(file);
    }
    for (const file of files) {
      const ask = asks.get(file) ?? parseAsk(file);
      if (ask === null) continue;
      if (!processAlive(ask.pid)) {
        await nodeFs.unlink(path.join(asksDir, file)).catch(() => undefined);
        asks.delete(file);
        continue;
      }
      if (ask.taken) continue;
      asks.set(file, ask);
      ask.taken = true;
      lastProgress = monotonicMs();
      let valid = true;
      try {
        validateFileName(ask.name);
      } catch {
        valid = false;
      }
      if (!valid) {
        await answer(ask, 'error').catch(() => undefined);
        continue;
      }
      void serve(ask);
    }
    for (const name of [...pinned]) {
      if ([...asks.values()].some((ask) => ask.name === name)) continue;
      pinned.delete(name);
      if (!placed.has(name)) await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
    }
  };

  // The worker's state machine (SPOOL.md, "restore.pid"): each transition is written to the pid file.
  let state: PrefetcherState = 'serving';
  const enter = async (next: PrefetcherState): Promise<void> => {
    if (next === state) return;
    state = next;
    await noteWorkerState(paths, next);
  };
  const server = watchServer();
  let lastWatch = 0;
  /** Why this worker has nothing left to serve (checked every 100 ms), or null. */
  const stopReason = async (): Promise<string | null> => {
    if (monotonicMs() - lastWatch < 100) return null;
    lastWatch = monotonicMs();
    if (await stopRequested(paths)) return 'a request with other options asked it to stop';
    const gone = await server();
    if (gone !== null) return gone;
    // PostgreSQL removes recovery.signal / standby.signal when recovery ends (promotion); a worker is only
    // ever started while one of them is there (inRecovery), so none there means nothing left to serve.
    if (!inRecovery()) return 'recovery has ended';
    return null;
  };

  try {
    await ensureDirectory(asksDir);
    for (;;) {
      const reason = await stopReason();
      if (reason !== null) {
        options.log.info(`background prefetcher stops: ${reason}`);
        break;
      }
      // The cursor (written by walvault-restore in the foreground) counts when it changed: requests move the position too.
      const noted = await readCursor(paths);
      const notedText = noted === null ? '' : `${noted.name} ${noted.segmentSize}`;
      if (noted !== null && notedText !== lastNoted && (position === null || noted.name > position.name || noted.name.slice(0, 8) !== position.name.slice(0, 8))) {
        position = noted;
        lastProgress = monotonicMs();
      }
      lastNoted = notedText;
      if (noted !== null && position !== null && position.segmentSize === 0) position = { name: position.name, segmentSize: noted.segmentSize };
      await readAsks();
      // Files taken by the launcher (renamed to %p) move the position too.
      for (const name of [...placed]) {
        if (inflight.has(name) || asked(name)) continue;
        if (!(await inSpool(name))) {
          placed.delete(name);
          if (position !== null && name.slice(0, 8) === position.name.slice(0, 8) && name > position.name) {
            position = { name, segmentSize: position.segmentSize };
            lastProgress = monotonicMs();
          }
        }
      }
      if (failed && inflight.size === 0) break;
      const id = position === null ? null : parseSegmentName(position.name);
      if (position !== null && id !== null && position.segmentSize > 0) {
        const timeline = position.name.slice(0, 8);
        for (const name of [...placed]) {
          if (asked(name)) continue;
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
              if (monotonicMs() - missingSince < 1000) break; // the end of the archive (for now)
              missingAt.delete(name);
            }
            if (placed.has(name) || inflight.has(name)) continue;
            track(name, fetchOne(name));
          }
        }
      }
      await enter(inflight.size > 0 || asks.size > 0 ? 'serving' : 'idle');
      const limit = position === null ? idleMs / 3 : idleMs;
      if (inflight.size === 0 && asks.size === 0 && monotonicMs() - lastProgress > limit) break;
      // Wake up for the next request at once rather than after a download: requests come every few ms.
      await sleep(pollMs);
    }
  } finally {
    await Promise.allSettled(inflight.values());
    for (const name of new Set([...placed, ...pinned])) await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
    await clearDirectory(paths.work);
    // Requests still open get no answer: their launchers see the worker gone and start Node.
    await clearDirectory(asksDir);
    await nodeFs.rmdir(asksDir).catch(() => undefined);
    // Leave no trace in pg_wal once recovery stops asking: the spool is created again when needed.
    await nodeFs.unlink(cursorFile(paths)).catch(() => undefined);
    await nodeFs.rmdir(paths.work).catch(() => undefined);
    await nodeFs.rmdir(paths.entries).catch(() => undefined);
    await noteWorkerState(paths, 'stopping');
    await release();
    await nodeFs.rmdir(paths.root).catch(() => undefined);
  }
  return summary;
}
