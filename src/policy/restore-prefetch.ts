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
// - Recovery from a slow repository (S3: 20-60 ms a request) pays that latency only where a "not found"
//   must be answered (the end of the archive, the new timeline's history probes): the window starts at
//   backup_label's segment before any segment request (the first request fetches that segment itself
//   while the worker loads), the next timelines' history files are fetched ahead, the last segment is
//   kept for its second request after "redo done", and the worker serves the end of recovery's requests
//   for a second after the signal files went (state `ending`). Files found are safe to fetch early
//   (an archived file never changes); a "not found" never comes from anything fetched before the request.
// - While a request is served (PostgreSQL blocked), the window's other downloads pause between chunks,
//   so a bound server or machine spends itself on the file asked for (restore-priority.ts).
// The states and transitions of the worker: prefetcher-states.ts.
// Every spool file, its format, writers, readers and lifetime: src/policy/SPOOL.md.
import { createWriteStream, existsSync, watch, type FSWatcher } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Backend } from '../backend/types.js';
import { admissionQueued, onAdmissionQueued } from '../codec/admission.js';
import type { DecodeOptions } from '../codec/index.js';
import { monotonicMs } from '../core/clock.js';
import { Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { HashingStream } from '../core/hash.js';
import type { Logger } from '../core/log.js';
import { processAlive } from '../core/process.js';
import { classify, isValidSegmentSize, objectKey, parseSegmentName, segmentFileName, segmentNumber, validateFileName } from '../wal/names.js';
import { restoreFile, type RestoreRequest, type RestoreResult } from './restore.js';
import { decodeStored } from './stored.js';
import { DownloadPriority, HOLD_MAX_MS, HoldStream, holdsWindowDownloads, type Hold } from './restore-priority.js';
import { ENDING_GRACE_MS, nextState, PrefetcherMachine, type PrefetcherEvent } from './prefetcher-states.js';
import { clearDirectory, ensureDirectory, noteWorkerState, openSpool, spoolPaths, stopRequested, takeWorkerLock, watchServer, workerAlive, type SpoolPaths } from './spool.js';

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
    const worker = await startForRecovery(request, options, paths, start);
    const prefetching = worker !== 'none';
    // The recovery's first segment, while this process has the repository open and the worker it started loads.
    const first = worker === 'started' ? fetchStartSegment(request, paths) : Promise.resolve();
    try {
      return { ...(await restoreFile(request)), prefetching };
    } finally {
      await first;
    }
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
async function startForRecovery(request: RestoreRequest, options: PrefetchOptions, paths: SpoolPaths, start: () => void): Promise<'started' | 'running' | 'none'> {
  if (options.prefetch === 0 || path.basename(request.targetPath) !== 'RECOVERYHISTORY' || !inRecovery()) return 'none';
  try {
    if (await workerAlive(paths)) return 'running';
    await openSpool(paths);
    start();
    return 'started';
  } catch (error) {
    request.log.warn(`spool "${options.spoolDir}" is not usable (${(error as Error).message}); restoring without prefetch; HINT: check --spool`);
    return 'none';
  }
}

/**
 * At the first request of a recovery from a base backup (a history file; see startForRecovery), the
 * segment backup_label starts at is fetched into the spool too, verified like the worker's downloads,
 * in parallel with the request's own lookup: PostgreSQL asks for it next, while the worker just
 * started is still loading. Best effort: on any failure the worker or the request fetches it.
 */
async function fetchStartSegment(request: RestoreRequest, paths: SpoolPaths): Promise<void> {
  try {
    const hint = await startHint();
    const id = hint === null ? null : parseSegmentName(hint.name);
    if (hint === null || id === null) return;
    const name = segmentFileName(id.timeline, segmentNumber(id, hint.segmentSize) + 1n, hint.segmentSize);
    if (await nodeFs.stat(path.join(paths.entries, name)).then(() => true, () => false)) return;
    await fetchIntoSpool({ backend: request.backend, decode: request.decode, log: request.log }, paths, name, request.deadline);
  } catch {
    // the worker or PostgreSQL's request for it fetches it
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

/**
 * Where a recovery from a base backup starts, before PostgreSQL asked for any segment: backup_label in
 * the data directory (the working directory) names the segment of its START WAL LOCATION, and the LSN
 * gives the segment size (the one size at which that LSN lies in that segment). Returned as the segment
 * before it, so that the window starts with it. A guess only: the first segment PostgreSQL asks for
 * replaces it (Prefetcher.hinted); null when there is no backup_label or it says nothing clear.
 */
export async function startHint(directory = '.'): Promise<{ name: string; segmentSize: number } | null> {
  const text = await nodeFs.readFile(path.join(directory, 'backup_label'), 'utf8').catch(() => null);
  const match = text === null ? null : /^START WAL LOCATION: ([0-9A-F]+)\/([0-9A-F]+) \(file ([0-9A-F]{24})\)$/m.exec(text);
  if (match === null) return null;
  const lsn = (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
  const file = match[3]!;
  const id = parseSegmentName(file);
  if (id === null) return null;
  for (let size = 1 << 20; size <= 1 << 30; size *= 2) {
    const number = lsn / BigInt(size);
    if (number === 0n || segmentFileName(id.timeline, number, size) !== file) continue;
    return { name: segmentFileName(id.timeline, number - 1n, size), segmentSize: size };
  }
  return null;
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

/** The prefetcher's states and events (the table is in prefetcher-states.ts). */
export type { PrefetcherEvent, PrefetcherState } from './prefetcher-states.js';

/** Summary of a prefetcher run, for logs and tests. */
export interface PrefetcherSummary {
  fetched: string[];
  missing: string[];
  corrupt: string[];
  locked: boolean;
}

/** Outcome of one download into the spool. */
type SpoolFetch = { outcome: 'fetched'; bytes: number } | { outcome: 'missing' | 'corrupt' };

/** Fetches one archived file into the spool: temp file, hash check, fsync, then its final name. `hold`: see HoldStream. */
async function fetchIntoSpool(options: Pick<PrefetcherOptions, 'backend' | 'decode' | 'log'>, paths: SpoolPaths, fileName: string, deadline: Deadline, hold?: Hold): Promise<SpoolFetch> {
  const object = await options.backend.read(objectKey(fileName), { signal: deadline.signal });
  if (object === null) return { outcome: 'missing' };
  const decoded = await decodeStored(object, options.decode);
  const hasher = await HashingStream.create();
  const temp = path.join(paths.work, `${fileName}.${process.pid}`);
  try {
    const sink = createWriteStream(temp, { mode: 0o600 });
    await deadline.race(hold === undefined ? pipeline(decoded.content, hasher, sink) : pipeline(decoded.content, new HoldStream(hold), hasher, sink));
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
 * disappearing from the spool (taken by the launcher). Its states and transitions are the table in
 * prefetcher-states.ts (SPOOL.md, "Workers").
 */
export async function runPrefetcher(options: PrefetcherOptions): Promise<PrefetcherSummary> {
  return new Prefetcher(options).run();
}

/** One prefetcher process: what it holds in the spool, what is in flight, and its state machine. */
class Prefetcher {
  readonly paths: SpoolPaths;
  readonly asksDir: string;
  readonly summary: PrefetcherSummary = { fetched: [], missing: [], corrupt: [], locked: false };
  readonly machine: PrefetcherMachine;
  readonly idleMs: number;
  readonly pollMs: number;
  /** Files fetched by the window, in the spool under their final name. */
  readonly placed = new Set<string>();
  /** Downloads in flight, by name. */
  readonly inflight = new Map<string, Promise<void>>();
  /** When the window last found a name missing (the end of the archive, for now). */
  readonly missingAt = new Map<string, number>();
  /** Open requests of the launcher, by ask file name. */
  readonly asks = new Map<string, Ask>();
  /** Files fetched for a request: kept until the request is gone, whatever the window does. */
  readonly pinned = new Set<string>();
  /** A download failed: no new ones; the worker stops once those in flight settled. */
  failed = false;
  /** The segment PostgreSQL is at and the segment size; null until the first segment request. */
  position: { name: string; segmentSize: number } | null = null;
  /** The position is a guess from backup_label (see startHint): the first real one replaces it, wherever it is. */
  hinted = false;
  /** Verified copies of the segment before the end of the archive, kept for PostgreSQL's second request (see keepCopy), by name. */
  readonly copies = new Map<string, string>();
  /** Copies moved into the spool for that second request (removed once the position passed them). */
  readonly kept = new Set<string>();
  /** History files fetched ahead (see prefetchHistories). */
  readonly histories = new Set<string>();
  /** When recovery was seen ended (the state `ending`). */
  endedAt = 0;
  /** While a request is served, the window's other downloads hold (restore-priority.ts), never while a decoder waits for an admission. */
  readonly priority = new DownloadPriority(HOLD_MAX_MS, () => !admissionQueued());
  stopWatchingAdmission: () => void = () => undefined;
  /** Wakes the loop before its poll interval (a new request in the ask folder). */
  wake: (() => void) | null = null;
  watcher: FSWatcher | null = null;
  /** The cursor file's content when last read (it moves the position only when it changes). */
  lastNoted = '';
  /** When the position last moved or a request came. */
  lastProgress = monotonicMs();
  readonly server = watchServer();
  lastWatch = 0;

  constructor(readonly options: PrefetcherOptions) {
    this.paths = spoolPaths(options.spoolDir, 'restore', options.id);
    this.asksDir = askDirectory(this.paths);
    this.idleMs = options.idleMs ?? 30_000;
    this.pollMs = options.pollMs ?? 10;
    this.machine = new PrefetcherMachine((state) => noteWorkerState(this.paths, state));
  }

  /** starting -> serving (or -> stopping when another worker holds the lock), the loop, then the clean-up of `stopping`. */
  async run(): Promise<PrefetcherSummary> {
    const { paths, options, machine } = this;
    await openSpool(paths);
    // The pid file is written with the state the machine enters (SPOOL.md, "restore.pid").
    const release = await takeWorkerLock(paths, nextState('starting', 'locked'));
    if (release === null) {
      this.summary.locked = true;
      await machine.fire('lock-held');
      return this.summary;
    }
    await machine.fire('locked');
    this.position = await readCursor(paths);
    this.lastNoted = this.position === null ? '' : `${this.position.name} ${this.position.segmentSize}`;
    if (this.position === null) {
      this.position = await startHint();
      this.hinted = this.position !== null;
    }
    this.lastProgress = monotonicMs();
    // A decoder starting to wait for an admission frees the held downloads (restore-priority.ts).
    this.stopWatchingAdmission = onAdmissionQueued(() => this.priority.releaseHolds());
    try {
      await ensureDirectory(this.asksDir);
      // A new request wakes the loop at once (inotify); the poll interval stays the bound.
      try {
        this.watcher = watch(this.asksDir, () => this.wake?.());
        this.watcher.on('error', () => undefined);
      } catch {
        // polling only
      }
      const timeline = this.position?.name.slice(0, 8) ?? null;
      if (timeline !== null) void this.prefetchHistories(Number.parseInt(timeline, 16));
      while (!machine.stopping) {
        const stop = await this.stopEvent();
        if (stop !== null) {
          options.log.info(`background prefetcher ${stop.event === 'recovery-ended' ? 'ends' : 'stops'}: ${stop.reason}`);
          if (stop.event === 'recovery-ended') this.endedAt = monotonicMs();
          if ((await machine.fire(stop.event)) === 'stopping') break;
        }
        await this.step();
        if (this.failed && this.inflight.size === 0) {
          await machine.fire('failed');
          break;
        }
        const busy = this.inflight.size > 0 || this.asks.size > 0;
        const state = await machine.fire(busy ? 'busy' : 'quiet');
        const limit = this.position === null ? this.idleMs / 3 : this.idleMs;
        if (state === 'idle' && monotonicMs() - this.lastProgress > limit) {
          await machine.fire('idle-timeout');
          break;
        }
        // The end of recovery's requests are answered (or, whatever happens, after ten times the grace).
        const ended = monotonicMs() - this.endedAt;
        if (state === 'ending' && ((!busy && ended > ENDING_GRACE_MS) || ended > 10 * ENDING_GRACE_MS)) {
          await machine.fire('grace-over');
          break;
        }
        // Wake up for the next request at once rather than after a download: requests come every few ms.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.pollMs);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
      }
    } finally {
      await this.cleanUp(release);
    }
    return this.summary;
  }

  /** Why this worker has nothing left to serve (checked every 100 ms), as the machine's event, or null. */
  async stopEvent(): Promise<{ event: PrefetcherEvent; reason: string } | null> {
    if (monotonicMs() - this.lastWatch < 100) return null;
    this.lastWatch = monotonicMs();
    if (await stopRequested(this.paths)) return { event: 'stop-asked', reason: 'a request with other options asked it to stop' };
    const gone = await this.server();
    if (gone !== null) return { event: 'server-gone', reason: gone };
    // PostgreSQL removes recovery.signal / standby.signal when recovery ends (promotion); a worker is only
    // ever started while one of them is there (inRecovery), so none there means nothing left to serve.
    if (this.machine.state !== 'ending' && !inRecovery()) return { event: 'recovery-ended', reason: 'recovery has ended' };
    return null;
  }

  /** One pass of serving/idle: the cursor, the requests, the files taken, then the window. */
  async step(): Promise<void> {
    const { paths, options } = this;
    // The cursor (written by walvault-restore in the foreground) counts when it changed: requests move the position too.
    const noted = await readCursor(paths);
    const notedText = noted === null ? '' : `${noted.name} ${noted.segmentSize}`;
    const position = this.position;
    if (noted !== null && notedText !== this.lastNoted && (position === null || this.hinted || noted.name > position.name || noted.name.slice(0, 8) !== position.name.slice(0, 8))) {
      this.position = noted;
      this.hinted = false;
      this.lastProgress = monotonicMs();
    }
    this.lastNoted = notedText;
    if (noted !== null && this.position !== null && this.position.segmentSize === 0) this.position = { name: this.position.name, segmentSize: noted.segmentSize };
    await this.readAsks();
    // Files taken by the launcher (renamed to %p) move the position too.
    for (const name of [...this.placed]) {
      if (this.inflight.has(name) || this.asked(name)) continue;
      if (!(await this.inSpool(name))) {
        this.placed.delete(name);
        const at = this.position;
        if (at !== null && (this.hinted || (name.slice(0, 8) === at.name.slice(0, 8) && name > at.name))) {
          this.position = { name, segmentSize: at.segmentSize };
          this.hinted = false;
          this.lastProgress = monotonicMs();
        }
        await this.restoreCopy(name);
      }
    }
    if (this.failed && this.inflight.size === 0) return;
    const at = this.position;
    const id = at === null ? null : parseSegmentName(at.name);
    if (at === null || id === null || at.segmentSize === 0) return;
    const timeline = at.name.slice(0, 8);
    for (const name of [...this.placed]) {
      if (this.asked(name)) continue;
      if (name.slice(0, 8) !== timeline || (name <= at.name && !this.hinted)) {
        await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
        this.placed.delete(name);
      }
    }
    // A copy kept for the second request of the last segment goes once recovery moved on.
    for (const name of [...this.kept]) {
      if (name.slice(0, 8) === timeline && name >= at.name) continue;
      if (!this.asked(name)) await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
      this.kept.delete(name);
    }
    for (const [name, copy] of [...this.copies]) {
      if (name.slice(0, 8) === timeline && name >= at.name) continue;
      await nodeFs.unlink(copy).catch(() => undefined);
      this.copies.delete(name);
    }
    if (this.failed || this.machine.state === 'ending') return;
    const base = segmentNumber(id, at.segmentSize);
    const budget = Math.floor(options.maxBytes / at.segmentSize);
    for (let step = 1; step <= options.prefetch; step += 1) {
      if (this.inflight.size >= options.parallel || this.placed.size + this.inflight.size >= budget) break;
      const name = segmentFileName(id.timeline, base + BigInt(step), at.segmentSize);
      const missingSince = this.missingAt.get(name);
      if (missingSince !== undefined) {
        if (monotonicMs() - missingSince < 1000) {
          // The end of the archive (for now): PostgreSQL will read the segment before it twice.
          await this.keepCopy(segmentFileName(id.timeline, base + BigInt(step - 1), at.segmentSize));
          break;
        }
        this.missingAt.delete(name);
      }
      if (this.placed.has(name) || this.inflight.has(name)) continue;
      // Already there under its final name (fetched by the first request, or by a worker before this one): verified.
      if (await this.inSpool(name)) {
        this.placed.add(name);
        continue;
      }
      this.track(name, this.fetchOne(name));
    }
  }

  /** The clean-up of `stopping`: what nobody took, partial downloads, requests, the cursor, then the lock. */
  async cleanUp(release: () => Promise<void>): Promise<void> {
    const { paths } = this;
    this.watcher?.close();
    this.stopWatchingAdmission();
    await Promise.allSettled(this.inflight.values());
    for (const name of new Set([...this.placed, ...this.pinned, ...this.kept, ...this.histories])) await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
    await clearDirectory(paths.work);
    // Requests still open get no answer: their launchers see the worker gone and start Node.
    await clearDirectory(this.asksDir);
    await nodeFs.rmdir(this.asksDir).catch(() => undefined);
    // Leave no trace in pg_wal once recovery stops asking: the spool is created again when needed.
    await nodeFs.unlink(cursorFile(paths)).catch(() => undefined);
    await nodeFs.rmdir(paths.work).catch(() => undefined);
    await nodeFs.rmdir(paths.entries).catch(() => undefined);
    // Written by the transition that ended the loop; again here in case the loop ended by an exception.
    await noteWorkerState(paths, 'stopping');
    await release();
    await nodeFs.rmdir(paths.root).catch(() => undefined);
  }

  /**
   * PostgreSQL reads the last segment of the archive twice: once in replay, and again after "redo done"
   * (to find the end of WAL), after the request past the end was answered "not found". The launcher's
   * rename takes the prefetched file away, so the second request would pay a download: a copy (never a
   * hard link: PostgreSQL may recycle the file it was given and write into it) is made while the file
   * is still in the spool, verified as it is, and moved into the spool once the first request took it.
   */
  async keepCopy(name: string): Promise<void> {
    if (this.copies.has(name) || this.kept.has(name) || !this.placed.has(name)) return;
    const copy = path.join(this.paths.work, `${name}.again.${process.pid}`);
    try {
      await nodeFs.copyFile(path.join(this.paths.entries, name), copy);
      this.copies.set(name, copy);
    } catch {
      // taken meanwhile: the second request is served by a download
      await nodeFs.unlink(copy).catch(() => undefined);
    }
  }

  /** The first request took `name`: its kept copy (if any) takes its place in the spool for the second. */
  async restoreCopy(name: string): Promise<void> {
    const copy = this.copies.get(name);
    if (copy === undefined) return;
    this.copies.delete(name);
    try {
      await nodeFs.rename(copy, path.join(this.paths.entries, name));
      this.kept.add(name);
    } catch {
      await nodeFs.unlink(copy).catch(() => undefined);
    }
  }

  /**
   * The history files PostgreSQL probes with recovery_target_timeline = 'latest' (the next timelines
   * after the one recovery starts on), fetched in parallel with the first segments: those archived are
   * handed over from the spool like segments (history files never change once archived). Nothing is
   * remembered of those missing: a "not found" is only ever answered from a lookup made after the
   * request (serve).
   */
  async prefetchHistories(timeline: number): Promise<void> {
    for (let next = timeline + 1; next < timeline + 16 && !this.machine.stopping; next += 1) {
      const name = `${next.toString(16).toUpperCase().padStart(8, '0')}.history`;
      if (this.inflight.has(name) || this.asked(name)) return;
      const deadline = new Deadline(this.options.timeoutMs, `prefetching "${name}"`);
      let found = false;
      const work = fetchIntoSpool(this.options, this.paths, name, deadline).then(
        (outcome) => {
          found = outcome.outcome === 'fetched';
          if (found) this.histories.add(name);
        },
        () => undefined,
      );
      this.track(name, work.finally(() => deadline.dispose()));
      await work;
      if (!found) return;
    }
  }

  /** A download for the window: the outcome lands in placed / missingAt, a failure stops new downloads. */
  async fetchOne(fileName: string): Promise<void> {
    const { options, summary } = this;
    const deadline = new Deadline(options.timeoutMs, `prefetching "${fileName}"`);
    const started = monotonicMs();
    try {
      const hold = holdsWindowDownloads(options.backend.kind) ? () => this.priority.holdFor(fileName) : undefined;
      const { outcome } = await fetchIntoSpool(options, this.paths, fileName, deadline, hold);
      options.log.debug(`prefetch of "${fileName}": ${outcome} in ${Math.round(monotonicMs() - started)} ms (${this.inflight.size} in flight)`);
      if (outcome === 'fetched') {
        this.placed.add(fileName);
        summary.fetched.push(fileName);
      } else if (outcome === 'missing') {
        this.missingAt.set(fileName, monotonicMs());
        summary.missing.push(fileName);
      } else {
        // Never handed over; the request for it restores it in the foreground, which reports the corruption.
        summary.corrupt.push(fileName);
        this.missingAt.set(fileName, monotonicMs());
      }
    } catch (error) {
      this.failed = true;
      options.log.warn(`prefetch of "${fileName}" failed, leaving it to PostgreSQL's own request: ${errorText(error)}`);
    } finally {
      deadline.dispose();
    }
  }

  /** Registers a download under its name until it settles (a later download of the same name keeps its own entry). */
  track(name: string, work: Promise<void>): void {
    const entry: Promise<void> = work.finally(() => {
      if (this.inflight.get(name) === entry) this.inflight.delete(name);
    });
    this.inflight.set(name, entry);
  }

  /** True while a launcher waits for that name: the window must not discard it. */
  asked(name: string): boolean {
    return this.pinned.has(name) || [...this.asks.values()].some((ask) => ask.name === name);
  }

  /** Replaces the ask file's content with the answer (temp file + rename: the launcher never reads half a line). */
  async answer(ask: Ask, text: string): Promise<void> {
    const temp = path.join(this.asksDir, `.${ask.file}.${process.pid}`);
    await nodeFs.writeFile(temp, `${text}\n`);
    await nodeFs.rename(temp, path.join(this.asksDir, ask.file));
  }

  inSpool(name: string): Promise<boolean> {
    return nodeFs.stat(path.join(this.paths.entries, name)).then(
      () => true,
      () => false,
    );
  }

  /** True when `name`, just found missing, may be answered so (see PrefetcherOptions.freshLookup); any failure is false. */
  async confirmMissing(name: string): Promise<boolean> {
    const { options } = this;
    const freshLookup = options.freshLookup;
    if (freshLookup === 'stateless') return true;
    if (freshLookup === undefined) return false;
    const deadline = new Deadline(options.timeoutMs, `looking up "${name}" for PostgreSQL's request`);
    try {
      const fresh = await deadline.race(freshLookup());
      const info = await fresh.stat(objectKey(name), { signal: deadline.signal });
      return !info.exists;
    } catch (error) {
      options.log.warn(`looking up "${name}" for PostgreSQL's request failed, leaving it to walvault-restore: ${errorText(error)}`);
      return false;
    } finally {
      deadline.dispose();
    }
  }

  /**
   * PostgreSQL asking for segment X (and X being archived) means it is at X: the window follows, also
   * onto another timeline. A missing X moves nothing (the end of the archive: nothing to fetch past it).
   */
  follow(name: string, bytes: number): void {
    if (classify(name) !== 'segment') return;
    const at = this.position;
    if (at !== null && !this.hinted && name.slice(0, 8) === at.name.slice(0, 8) && name <= at.name) return;
    const segmentSize = isValidSegmentSize(bytes) ? bytes : (at?.segmentSize ?? 0);
    this.position = { name, segmentSize };
    this.hinted = false;
    this.lastProgress = monotonicMs();
  }

  /** Serves one request: the file in the spool, or an answer; every outcome is decided by a lookup started after the request was seen. */
  async serve(ask: Ask): Promise<void> {
    await this.priority.urgently(ask.name, () => this.serveNow(ask));
  }

  /** serve, while the window's other downloads hold (restore-priority.ts). */
  async serveNow(ask: Ask): Promise<void> {
    const { options, summary } = this;
    try {
      await this.answer(ask, 'fetching');
      const running = this.inflight.get(ask.name);
      if (running !== undefined) await running;
      // Fetched by the window (before or after the request): that copy was verified like any other.
      // Fetched for an earlier request of the same name and not taken (PostgreSQL asked again): still verified.
      if (this.pinned.has(ask.name) && (await this.inSpool(ask.name))) return;
      // Fetched ahead (a history file) or kept for a second request, and not taken yet: served the same way.
      if ((this.histories.has(ask.name) || this.kept.has(ask.name)) && (await this.inSpool(ask.name))) {
        this.histories.delete(ask.name);
        this.kept.delete(ask.name);
        this.pinned.add(ask.name);
        return;
      }
      if (this.placed.has(ask.name) && (await this.inSpool(ask.name))) {
        this.placed.delete(ask.name);
        this.pinned.add(ask.name);
        this.follow(ask.name, this.position?.segmentSize ?? 0);
        return;
      }
      const deadline = new Deadline(options.timeoutMs, `fetching "${ask.name}" for PostgreSQL's request`);
      const work = fetchIntoSpool(options, this.paths, ask.name, deadline).finally(() => deadline.dispose());
      this.track(
        ask.name,
        work.then(
          () => undefined,
          () => undefined,
        ),
      );
      const fetched = await work;
      if (fetched.outcome === 'fetched') {
        this.pinned.add(ask.name);
        summary.fetched.push(ask.name);
        this.follow(ask.name, fetched.bytes);
      } else if (fetched.outcome === 'missing' && (await this.confirmMissing(ask.name))) {
        summary.missing.push(ask.name);
        await this.answer(ask, `missing "${ask.name}" not found in "${options.backend.describe(objectKey(ask.name))}"`);
      } else if (fetched.outcome === 'missing') {
        // Archived meanwhile, or the fresh look failed: walvault-restore decides.
        await this.answer(ask, 'error');
      } else {
        summary.corrupt.push(ask.name);
        await this.answer(ask, 'error');
      }
    } catch (error) {
      // The launcher starts Node for it, which retries and reports under --on-error.
      options.log.warn(`fetching "${ask.name}" for PostgreSQL's request failed, leaving it to walvault-restore: ${errorText(error)}`);
      await this.answer(ask, 'error').catch(() => undefined);
    }
  }

  /** Reads new requests, drops those whose launcher is gone (and what was fetched only for them). */
  async readAsks(): Promise<void> {
    const files = await nodeFs.readdir(this.asksDir).catch(() => [] as string[]);
    const present = new Set(files);
    for (const file of this.asks.keys()) {
      if (!present.has(file)) this.asks.delete(file);
    }
    for (const file of files) {
      const ask = this.asks.get(file) ?? parseAsk(file);
      if (ask === null) continue;
      if (!processAlive(ask.pid)) {
        await nodeFs.unlink(path.join(this.asksDir, file)).catch(() => undefined);
        this.asks.delete(file);
        continue;
      }
      if (ask.taken) continue;
      this.asks.set(file, ask);
      ask.taken = true;
      this.lastProgress = monotonicMs();
      let valid = true;
      try {
        validateFileName(ask.name);
      } catch {
        valid = false;
      }
      if (!valid) {
        await this.answer(ask, 'error').catch(() => undefined);
        continue;
      }
      void this.serve(ask);
    }
    for (const name of [...this.pinned]) {
      if ([...this.asks.values()].some((ask) => ask.name === name)) continue;
      this.pinned.delete(name);
      if (!this.placed.has(name)) await nodeFs.unlink(path.join(this.paths.entries, name)).catch(() => undefined);
    }
  }
}

/** An error as one line for a warning. */
function errorText(error: unknown): string {
  return error instanceof WalvaultError ? error.oneLine() : (error as Error).message;
}
