// Parallel push-ahead: while PostgreSQL archives one file at a time, a background worker stores the following .ready segments and leaves durable-success markers.
//
// Guarantees (see README, "Performance"):
// - A marker is created only after archiveFile() resolved, i.e. after the backend said the object is
//   durable (fsync + link + directory fsync on POSIX, a completed PUT on S3). A kill -9 at any point
//   leaves at most an object without a marker (the next request finds it identical and succeeds).
// - A marker is a hard link to the pushed WAL file itself, so "same device and inode" proves the
//   file PostgreSQL asks about is the file that was pushed: a replaced or recycled file never
//   matches, and the link keeps the inode from being reused while the marker exists.
// - Nothing is queued in memory and nothing is dropped: the worker reads what to push from
//   pg_wal/archive_status, and every file is still archived by PostgreSQL's own request if the
//   worker is slow, stopped, killed, or the spool is deleted.
// - Only plain segments and `.backup` files (a base backup's small label, which no other server
//   reads to choose anything) are pushed ahead. `.history` and `.partial` files are archived
//   synchronously when PostgreSQL asks for them, and nothing is pushed while a `.history` file is
//   waiting: PostgreSQL archives history files first, and a new timeline's history must reach the
//   repository before its segments (another server picks its new timeline ID from the archive).
// - Markers, claims and the worker carry the fingerprint of the options they were made with; only
//   calls with the same fingerprint trust them. Every spool file: src/policy/SPOOL.md.
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../backend/types.js';
import { monotonicMs } from '../core/clock.js';
import { Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { processAlive } from '../core/process.js';
import { classify, validateFileName } from '../wal/names.js';
import { archiveFile, type ArchiveRequest, type ArchiveResult } from './archive.js';
import { PusherMachine, type PusherEvent } from './pusher-machine.js';
import { askWorkerToStop, claimFile, ensureDirectory, noteWorkerState, openSpool, readWorker, releaseFile, removeEntries, reserveWorkerLock, spoolPaths, stopRequested, takeWorkerLock, watchServer, workerAlive, type SpoolPaths } from './spool.js';

/** Settings of the push-ahead machinery. */
export interface PushAheadOptions {
  /** Spool folder (default pg_wal/walvault); must be on pg_wal's filesystem (markers are hard links). */
  spoolDir: string;
  /** How many following .ready segments may be pushed ahead of PostgreSQL's requests (0: off). */
  pushAhead: number;
  /** How many pushes run at once. */
  parallel: number;
  /** The fingerprint of the effective options (see fingerprint in spool.ts): markers and the worker carry it. */
  id: string;
  /** The config file the settings were read from, if any: a pusher stops once its content changes. */
  configFile?: string;
}

/** True when `marker` is a hard link to the file at `walPath` (same device and inode). */
async function sameFile(walPath: string, marker: string): Promise<boolean> {
  const [a, b] = await Promise.all([nodeFs.stat(walPath).catch(() => null), nodeFs.stat(marker).catch(() => null)]);
  return a !== null && b !== null && a.dev === b.dev && a.ino === b.ino;
}

/** Makes `marker` a hard link to `walPath`, replacing a stale marker. */
async function placeMarker(walPath: string, marker: string): Promise<void> {
  try {
    await nodeFs.link(walPath, marker);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    await nodeFs.unlink(marker);
    await nodeFs.link(walPath, marker);
  }
}

/**
 * Wakes the sh launcher that waits for `fileName`'s marker (src/cli/fast-path-archive.sh writes
 * "PID NAME" to archive.waiter before it waits) instead of leaving it to notice at the end of its
 * 50 ms sleep. SIGWINCH, whose default action is to be ignored: should that pid belong to another
 * process by now, it is not harmed. Not SIGURG: PostgreSQL's archiver runs archive_command with SIGURG
 * ignored, and a shell cannot trap a signal ignored when it started. Best effort: the launcher polls anyway.
 */
async function wakeWaiter(paths: SpoolPaths, fileName: string): Promise<void> {
  const line = await nodeFs.readFile(paths.waiter, 'utf8').catch(() => '');
  const [pid, name] = line.trim().split(' ');
  if (name !== fileName || pid === undefined || !/^[1-9][0-9]*$/.test(pid)) return;
  try {
    process.kill(Number(pid), 'SIGWINCH');
  } catch {
    // gone already
  }
}

/** The claim file of a file being archived (SPOOL.md, "archive.work/NAME"). */
const claimPath = (paths: SpoolPaths, fileName: string): string => path.join(paths.work, fileName);

/**
 * Claims a file for this process (exclusive create, or the takeover of a dead process's claim: see
 * claimFile): two pushers never push one file twice, and a pusher leaves a file a request archives.
 */
function claimIfFree(paths: SpoolPaths, fileName: string): Promise<boolean> {
  return claimFile(claimPath(paths, fileName), `${process.pid} ${paths.id}\n`);
}

/** Removes our claim. */
async function unclaim(paths: SpoolPaths, fileName: string): Promise<void> {
  await releaseFile(claimPath(paths, fileName));
}

/** Pid of the live process (not this one) that claimed a file, or null; `sameOptions`: only a claimer with this fingerprint counts. */
async function liveClaimer(paths: SpoolPaths, fileName: string, sameOptions = false): Promise<number | null> {
  const text = await nodeFs.readFile(claimPath(paths, fileName), 'utf8').catch(() => '');
  const [pidText, id] = text.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid === process.pid || !processAlive(pid)) return null;
  return sameOptions && id !== paths.id ? null : pid;
}

/** Names with a .ready status file, sorted the way PostgreSQL archives them (oldest first). */
async function readyFiles(walDir: string): Promise<string[]> {
  const names = await nodeFs.readdir(path.join(walDir, 'archive_status')).catch(() => [] as string[]);
  return names.filter((name) => name.endsWith('.ready')).map((name) => name.slice(0, -'.ready'.length)).sort();
}

/**
 * archive_command with push-ahead: answers from a marker when the file was already pushed, waits for
 * a worker that is pushing it right now, else archives it here; starts the background worker when
 * more segments are waiting. Never answers success for a file that is not durable in the repository.
 */
export async function archiveWithPushAhead(request: ArchiveRequest, options: PushAheadOptions, start: () => number | undefined): Promise<ArchiveResult> {
  const started = monotonicMs();
  const fileName = validateFileName(request.fileName);
  const paths = spoolPaths(options.spoolDir, 'archive', options.id);
  const walDir = path.dirname(request.sourcePath);
  // Only markers made under this very fingerprint answer (SPOOL.md, "archive.ID/NAME").
  const marker = path.join(paths.entries, fileName);
  // The spool is created only when a pusher is started: archiving one file at a time leaves no trace.
  let trusted = await nodeFs.stat(paths.entries).then(() => true, () => false);

  const answered = (how: string): ArchiveResult => {
    request.log.info(`"${fileName}" ${how}; it is durable in the repository (${Math.round(monotonicMs() - started)} ms)`);
    return { outcome: 'already-archived', key: '', location: options.spoolDir, bytes: 0, durationMs: monotonicMs() - started };
  };
  if (trusted) {
    if (await sameFile(request.sourcePath, marker)) return answered('was pushed ahead');
    // A worker is pushing this very file: wait for its marker (or for it to give up) instead of racing it.
    while ((await liveClaimer(paths, fileName, true)) !== null && request.deadline.remaining() > 1000) {
      await sleep(5);
      if (await sameFile(request.sourcePath, marker)) return answered('was pushed ahead (waited for the background push)');
    }
  }

  const segment = classify(fileName) === 'segment';
  let startWorker = false;
  if (segment && options.pushAhead > 0) {
    const waiting = (await readyFiles(walDir)).some((name) => name > fileName && pushable(name));
    startWorker = waiting && !(trusted && (await workerAlive(paths)));
    // A worker for other options (a changed config file, another archive_command) serves nobody now: it is asked to stop.
    const other = startWorker ? await readWorker(paths) : null;
    if (other !== null && other.id !== options.id && processAlive(other.pid)) {
      await askWorkerToStop(paths, other.pid).catch(() => undefined);
      startWorker = false;
    }
  }
  if (startWorker) {
    try {
      await openSpool(paths);
      // A server that archives no longer needs restore leftovers from its own recovery.
      await removeEntries(options.spoolDir, 'restore');
      trusted = true;
    } catch (error) {
      startWorker = false;
      request.log.warn(`spool "${options.spoolDir}" is not usable (${(error as Error).message}); archiving without push-ahead; HINT: check --spool`);
    }
  }
  // Claim first, so a worker (started now or running) leaves this file to us; held by a live pusher of
  // other options, it is archived here all the same (storing is idempotent).
  const claimed = trusted && (await claimIfFree(paths, fileName).catch(() => false));
  let workerPid: number | undefined;
  if (startWorker) {
    // The worker needs a few hundred ms to load: requests arriving meanwhile must see it as running.
    workerPid = start();
    if (workerPid !== undefined) await reserveWorkerLock(paths, workerPid);
  }
  // While the worker loads (a Node start, ~0.1 s), this process, loaded already, pushes the following
  // files. On POSIX it starts alongside its own file (measured: the first push-ahead began ~40 ms
  // earlier than when it waited for it), its own file counting against --parallel. A backend that
  // holds each segment in memory for one request (S3) starts after it: alongside, the S3 request
  // peaked at 108 MiB instead of 92. Its own file's outcome is what it reports; helping never changes that.
  let ownFailed = false;
  const alongside = request.backend.metaTiming.when === 'after-body';
  const help = (parallel: number): Promise<void> | undefined =>
    workerPid === undefined
      ? undefined
      : pushWhileWorkerStarts(request, { ...options, parallel }, walDir, workerPid, () => ownFailed).catch((error: unknown) =>
          request.log.warn(`pushing ahead while the background pusher starts failed: ${(error as Error).message}`),
        );
  const helping = alongside ? help(Math.max(1, options.parallel - 1)) : undefined;
  let result: ArchiveResult;
  try {
    result = await archiveFile(request);
  } catch (error) {
    ownFailed = true;
    throw error;
  } finally {
    if (claimed) await unclaim(paths, fileName);
    await helping;
  }
  if (!alongside) await help(options.parallel);
  return result;
}

/** Files the pushers may store ahead of PostgreSQL's request: segments and backup history (label) files. */
function pushable(name: string): boolean {
  const kind = classify(name);
  return kind === 'segment' || kind === 'backup';
}

/** Longest time the process that started the worker keeps pushing while the worker loads. */
const HELP_MAX_MS = 1500;

/**
 * The worker just started needs ~0.1 s or more to load; this process is loaded already. It pushes the
 * following segments too, alongside its own file or once that is stored (see archiveWithPushAhead),
 * with the same claims, markers and limits as the worker, until the worker has taken its lock over
 * (or its own file failed), then finishes what it started and exits. PostgreSQL waits for this process meanwhile, but its next requests then find
 * those files pushed.
 */
async function pushWhileWorkerStarts(request: ArchiveRequest, options: PushAheadOptions, walDir: string, workerPid: number, ownFailed: () => boolean): Promise<void> {
  const paths = spoolPaths(options.spoolDir, 'archive', options.id);
  // Helping must never make this request late: its pushes get half of what is left of its deadline.
  const budget = request.deadline.remaining();
  if (budget < 4 * HELP_MAX_MS) return;
  const until = monotonicMs() + HELP_MAX_MS;
  const starting = async (): Promise<boolean> => {
    const worker = await readWorker(paths);
    return worker !== null && worker.pid === workerPid && worker.state === 'starting' && processAlive(workerPid);
  };
  // The helper holds no lock and has no pid file: its machine begins in `pushing` and tells nobody.
  await pushLoop(
    paths,
    {
      ...options,
      backend: request.backend,
      walDir,
      after: request.fileName,
      request: (fileName, deadline) => ({ ...request, sourcePath: path.join(walDir, fileName), fileName, deadline }),
      timeoutMs: budget / 2,
      idleMs: 0,
      log: request.log,
    },
    { pushed: [], failed: [], locked: false },
    new PusherMachine(undefined, 'pushing'),
    async () => (ownFailed() || monotonicMs() > until || !(await starting()) ? 'the background pusher took over' : null),
  );
}

/** What the background pusher needs. */
export interface PusherOptions extends PushAheadOptions {
  backend: Backend;
  /** pg_wal (the directory of %p). */
  walDir: string;
  /** Builds the archive request for one file (encoding, inspect hook) with the given deadline. */
  request: (fileName: string, deadline: Deadline) => ArchiveRequest;
  /** The file whose request started the worker: it and older files are left to PostgreSQL's requests. */
  after: string;
  /**
   * `after` itself is pushed too, first: the sh launcher started this worker in place of a Node
   * process for that request, and answers it from its marker. It does not count against pushAhead:
   * PostgreSQL is asking for it now.
   */
  pushAfterToo?: boolean;
  /** Milliseconds each push may take. */
  timeoutMs: number;
  /** Exit after this long with nothing to push. */
  idleMs?: number;
  /** Poll interval for new .ready files. */
  pollMs?: number;
  log: Logger;
}

/** What the worker watches to end once there is nothing to serve. */
interface PusherWatch {
  /** Why the server it serves is gone (see watchServer), or null. */
  server: () => Promise<string | null>;
  /** The config file's content when the worker started (null: none). */
  config: string | null;
}

/** A config file's content, or null. */
async function configContent(file: string | undefined): Promise<string | null> {
  return file === undefined ? null : nodeFs.readFile(file, 'utf8').catch(() => null);
}

/** Summary of a pusher run, for logs and tests. */
export interface PusherSummary {
  pushed: string[];
  failed: string[];
  locked: boolean;
}

/**
 * The background worker: pushes .ready segments in name order, `parallel` at a time and at most
 * `pushAhead` beyond what PostgreSQL has acknowledged, marking each one durable. Stops at the first
 * failure (PostgreSQL's own requests then retry and report it) and after `idleMs` without work.
 * Its states and their transitions: PUSHER_STATES (pusher-machine.ts); each state entered is written to
 * the pid file, whose removal is the entry into `stopped`.
 */
export async function runPusher(options: PusherOptions): Promise<PusherSummary> {
  const paths = spoolPaths(options.spoolDir, 'archive', options.id);
  const summary: PusherSummary = { pushed: [], failed: [], locked: false };
  await openSpool(paths);
  let release: (() => Promise<void>) | null = null;
  const machine = new PusherMachine(async (state, from) => {
    // Leaving `starting`, the lock was just taken with the new state in it (takeWorkerLock).
    if (from === 'starting') return;
    if (state === 'stopped') await release?.();
    else await noteWorkerState(paths, state);
  });
  release = await takeWorkerLock(paths, machine.target('lock-taken'));
  if (release === null) {
    await machine.fire('lock-held');
    summary.locked = true;
    return summary;
  }
  await machine.fire('lock-taken');
  try {
    await pushLoop(paths, options, summary, machine, undefined, { server: watchServer(), config: await configContent(options.configFile) });
  } finally {
    // An exception stops the loop in any state: the lock still goes through `stopping`.
    if (machine.state !== 'stopping') await machine.fire('stop-asked');
    await machine.fire('settled');
  }
  return summary;
}

/** What one run of the push loop keeps between scans (data only: its control state is the machine's). */
interface PushRun {
  /** Pushes in flight, by file name. */
  inflight: Map<string, Promise<void>>;
  /** Names this run has pushed: a scan that read the markers just before a push finished must not push it again. */
  pushedHere: Set<string>;
  /** A push failed: no new ones start, and the run stops once those in flight settle. */
  failed: boolean;
  /** When the last push ended or started (monotonic ms): the idle time counts from here. */
  idleSince: number;
  /** Pushes ended (stored, failed or given up), counted once each has left `inflight`. */
  ended: number;
  /** The last scan's .ready set and `ended`: an unchanged one skips reading the spool. */
  lastScan: string;
  /** When the stop conditions were last checked (monotonic ms). */
  lastWatch: number;
}

/**
 * Pushes .ready segments after `options.after` until the machine reaches `stopping` (idle, a failure,
 * or a stop condition: `watch` for the worker, `stop` for the request that helps while the worker
 * loads), then waits for the pushes it started. Run by the worker (holding the lock) and briefly by the
 * process starting it. Each turn: check the stop conditions, scan and launch pushes, fire the event the
 * scan found, wait for what the state waits for (PUSHER_STATES).
 */
async function pushLoop(paths: SpoolPaths, options: PusherOptions, summary: PusherSummary, machine: PusherMachine, stop?: () => Promise<string | null>, watch?: PusherWatch): Promise<void> {
  const run: PushRun = { inflight: new Map(), pushedHere: new Set(), failed: false, idleSince: monotonicMs(), ended: 0, lastScan: '', lastWatch: 0 };
  const pollMs = options.pollMs ?? 10;
  try {
    while (machine.state === 'pushing' || machine.state === 'idle') {
      const reason = (await stop?.()) ?? (await stopReason(paths, options, run, watch));
      if (reason !== null) {
        if (watch !== undefined) options.log.info(`background pusher stops: ${reason}; PostgreSQL's requests archive the rest`);
        await machine.fire('stop-asked');
        break;
      }
      await machine.fire(await scanAndLaunch(paths, options, summary, run, watch));
      if (machine.state === 'pushing') await Promise.race([...run.inflight.values(), sleep(pollMs)]);
      else if (machine.state === 'idle') await sleep(pollMs);
    }
  } finally {
    await Promise.allSettled(run.inflight.values());
  }
}

/** Why the worker must stop serving now (checked every 100 ms), or null; never for the helper (no `watch`). */
async function stopReason(paths: SpoolPaths, options: PusherOptions, run: PushRun, watch: PusherWatch | undefined): Promise<string | null> {
  if (watch === undefined || monotonicMs() - run.lastWatch < 100) return null;
  run.lastWatch = monotonicMs();
  if (await stopRequested(paths)) return 'a request with other options asked it to stop';
  const gone = await watch.server();
  if (gone !== null) return gone;
  // Its settings (codec, keys, repository) came from the config file: pushing on after it changed would store files with the old ones.
  if (options.configFile !== undefined && (await configContent(options.configFile)) !== watch.config) return `config file "${options.configFile}" changed`;
  return null;
}

/**
 * One scan: reads archive_status (and, when that or the counts changed, the spool: claims and markers,
 * sweeping acknowledged markers), launches pushes up to `parallel` and `pushAhead`, and says which
 * event that is for the machine.
 */
async function scanAndLaunch(paths: SpoolPaths, options: PusherOptions, summary: PusherSummary, run: PushRun, watch: PusherWatch | undefined): Promise<PusherEvent> {
  const idleMs = options.idleMs ?? 1500;
  const { inflight } = run;
  // The request's own file when this worker pushes it too: PostgreSQL is asking for it, so it is not ahead.
  const own = options.pushAfterToo === true ? options.after : undefined;
  const queued = (name: string): boolean => name > options.after || name === own;
  const settled = (): PusherEvent => {
    if (inflight.size > 0) return 'work';
    if (run.failed) return 'failed';
    return monotonicMs() - run.idleSince > idleMs ? 'idle-timeout' : 'drained';
  };

  const ready = await readyFiles(options.walDir);
  // Rescan the spool only when the .ready set changed or a push ended: polling stays cheap. Counted
  // once the push has left `inflight`, so the rescan sees its slot free (counting when it was stored,
  // a scan in between found the slot still taken and the next found nothing new: the run went idle).
  const scan = `${ready.join(',')}|${run.ended}`;
  if (scan === run.lastScan) return settled();
  run.lastScan = scan;
  const readySet = new Set(ready);
  // Files another live pusher is storing count against the limit too (briefly two pushers run, see
  // pushWhileWorkerStarts). Claims are read before markers: a pusher places its marker before it
  // drops its claim, so a file finishing in between is seen as one or the other, never as neither.
  const claimedElsewhere = new Set<string>();
  for (const name of await nodeFs.readdir(paths.work).catch(() => [] as string[])) {
    if (readySet.has(name) && name > options.after && !inflight.has(name) && (await liveClaimer(paths, name)) !== null) claimedElsewhere.add(name);
  }
  // Sweep: a marker whose .ready is gone has been acknowledged; drop it (it pins the inode).
  const markers = await nodeFs.readdir(paths.entries).catch(() => [] as string[]);
  // The files ahead, by name, taken once for the whole scan: markers, claims of other pushers, this
  // worker's pushes in flight. Counted live, a push of ours ending while the loop below awaits would
  // leave `inflight` after the markers were read, counted nowhere: one launch past the limit.
  const ahead = new Set<string>();
  for (const name of markers) {
    if (readySet.has(name)) {
      if (name !== own) ahead.add(name);
    } else if (!inflight.has(name)) await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
  }
  const markerSet = new Set(markers);
  for (const name of claimedElsewhere) ahead.add(name);
  for (const name of inflight.keys()) if (name !== own) ahead.add(name);
  let launched = 0;
  if (!run.failed && !ready.some((name) => classify(name) === 'history')) {
    for (const name of ready) {
      if (inflight.size >= options.parallel || ahead.size >= options.pushAhead) break;
      if (!pushable(name) || inflight.has(name) || run.pushedHere.has(name) || !queued(name)) continue;
      if (markerSet.has(name) && (await sameFile(path.join(options.walDir, name), path.join(paths.entries, name)))) continue;
      // Claimed by another pusher since the claims were read (the request that started the worker
      // pushes too while it loads): it counts against the limit from now on, or both pushers would
      // go one past it.
      if ((await liveClaimer(paths, name)) !== null) {
        if (name !== own) ahead.add(name);
        continue;
      }
      const job = pushOne(paths, options, summary, run, watch, name).finally(() => {
        inflight.delete(name);
        run.ended += 1;
      });
      inflight.set(name, job);
      if (name !== own) ahead.add(name);
      launched += 1;
    }
  }
  if (launched > 0 || inflight.size > 0) run.idleSince = monotonicMs();
  return settled();
}

/** Stores one file, then places its marker and wakes a launcher waiting for it; a failure stops the run (run.failed). */
async function pushOne(paths: SpoolPaths, options: PusherOptions, summary: PusherSummary, run: PushRun, watch: PusherWatch | undefined, fileName: string): Promise<void> {
  const walPath = path.join(options.walDir, fileName);
  const deadline = new Deadline(options.timeoutMs, `pushing "${fileName}" ahead`);
  let claimed = false;
  try {
    // Checked again right before each push, not only every 100 ms (stopReason): a segment made ready
    // after the config file changed must be stored with the new settings (codec, keys, repository),
    // which this worker does not have. The loop's next check stops it.
    if (watch !== undefined && options.configFile !== undefined && (await configContent(options.configFile)) !== watch.config) return;
    claimed = await claimIfFree(paths, fileName);
    if (!claimed) return; // another pusher took it between our scan and now
    // Or pushed it in full since our scan (the helping request and the worker scan the same files): a
    // pusher places its marker before it drops its claim, so with the claim ours, its marker is there
    // to see. Stored again, the file would be found identical and counted a second time (status).
    if (await sameFile(walPath, path.join(paths.entries, fileName))) return;
    // Nobody waits for this push: it may copy with blocking calls (see OpContext.blockingCopy).
    await archiveFile({ ...options.request(fileName, deadline), blockingCopy: true });
    await ensureDirectory(paths.entries);
    await placeMarker(walPath, path.join(paths.entries, fileName));
    await wakeWaiter(paths, fileName);
    summary.pushed.push(fileName);
    run.pushedHere.add(fileName);
  } catch (error) {
    run.failed = true;
    summary.failed.push(fileName);
    const text = error instanceof WalvaultError ? error.oneLine() : (error as Error).message;
    options.log.warn(`push-ahead of "${fileName}" failed, leaving it to PostgreSQL's own request: ${text}`);
  } finally {
    deadline.dispose();
    if (claimed) await unclaim(paths, fileName);
    run.idleSince = monotonicMs();
  }
}
