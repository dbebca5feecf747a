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
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../backend/types.js';
import { monotonicMs } from '../core/clock.js';
import { Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { classify, validateFileName } from '../wal/names.js';
import { archiveFile, type ArchiveRequest, type ArchiveResult } from './archive.js';
import { clearDirectory, ensureDirectory, openSpool, processAlive, readPid, reserveWorkerLock, spoolPaths, takeWorkerLock, workerAlive, type SpoolPaths } from './spool.js';

/** Settings of the push-ahead machinery. */
export interface PushAheadOptions {
  /** Spool folder (default pg_wal/walvault); must be on pg_wal's filesystem (markers are hard links). */
  spoolDir: string;
  /** How many following .ready segments may be pushed ahead of PostgreSQL's requests (0: off). */
  pushAhead: number;
  /** How many pushes run at once. */
  parallel: number;
  /** The spool owner line (see spoolIdentity). */
  identity: string;
  /** The config file the settings were read from, if any: a pusher stops once it changes. */
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

/** Writes a claim (our pid) for a file being archived, so the worker and requests don't push it twice. */
async function claim(paths: SpoolPaths, fileName: string): Promise<void> {
  await nodeFs.writeFile(path.join(paths.work, fileName), `${process.pid}\n`);
}

/**
 * Claims a file for a pusher only if no live process has claimed it (exclusive create): two pushers
 * (the worker and the process that started it, see pushWhileWorkerStarts) never push one file twice.
 */
async function claimIfFree(paths: SpoolPaths, fileName: string): Promise<boolean> {
  const file = path.join(paths.work, fileName);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      await nodeFs.writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if ((await liveClaimer(paths, fileName)) !== null) return false;
      // A claim left by a dead process (kill -9): take it over.
      await nodeFs.unlink(file).catch(() => undefined);
    }
  }
  return false;
}

/** Removes our claim. */
async function unclaim(paths: SpoolPaths, fileName: string): Promise<void> {
  await nodeFs.unlink(path.join(paths.work, fileName)).catch(() => undefined);
}

/** Pid of the live process that claimed a file, or null. */
async function liveClaimer(paths: SpoolPaths, fileName: string): Promise<number | null> {
  const pid = await readPid(path.join(paths.work, fileName));
  return pid !== null && pid !== process.pid && processAlive(pid) ? pid : null;
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
  const paths = spoolPaths(options.spoolDir, 'archive');
  const walDir = path.dirname(request.sourcePath);
  const marker = path.join(paths.entries, fileName);
  // The spool is created only when a pusher is started: archiving one file at a time leaves no trace.
  const owner = await nodeFs.readFile(paths.owner, 'utf8').catch(() => null);
  let trusted = owner !== null && owner.replace(/\n$/, '') === options.identity;

  const answered = (how: string): ArchiveResult => {
    request.log.info(`"${fileName}" ${how}; it is durable in the repository (${Math.round(monotonicMs() - started)} ms)`);
    return { outcome: 'already-archived', key: '', location: options.spoolDir, bytes: 0, durationMs: monotonicMs() - started };
  };
  if (trusted) {
    if (await sameFile(request.sourcePath, marker)) return answered('was pushed ahead');
    // A worker is pushing this very file: wait for its marker (or for it to give up) instead of racing it.
    while ((await liveClaimer(paths, fileName)) !== null && request.deadline.remaining() > 1000) {
      await sleep(5);
      if (await sameFile(request.sourcePath, marker)) return answered('was pushed ahead (waited for the background push)');
    }
  }

  const segment = classify(fileName) === 'segment';
  let startWorker = false;
  if (segment && options.pushAhead > 0) {
    const waiting = (await readyFiles(walDir)).some((name) => name > fileName && pushable(name));
    startWorker = waiting && !(trusted && (await workerAlive(paths)));
  }
  if (startWorker) {
    try {
      await openSpool(paths, options.identity);
      // A server that archives no longer needs restore leftovers from its own recovery.
      await clearDirectory(path.join(options.spoolDir, 'restore'));
      trusted = true;
    } catch (error) {
      startWorker = false;
      request.log.warn(`spool "${options.spoolDir}" is not usable (${(error as Error).message}); archiving without push-ahead; HINT: check --spool`);
    }
  }
  // Claim first, so a worker (started now or running) leaves this file to us.
  if (trusted) await claim(paths, fileName).catch(() => undefined);
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
    if (trusted) await unclaim(paths, fileName);
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
  const paths = spoolPaths(options.spoolDir, 'archive');
  // Helping must never make this request late: its pushes get half of what is left of its deadline.
  const budget = request.deadline.remaining();
  if (budget < 4 * HELP_MAX_MS) return;
  const until = monotonicMs() + HELP_MAX_MS;
  const starting = async (): Promise<boolean> => {
    const text = await nodeFs.readFile(paths.pidFile, 'utf8').catch(() => '');
    return text.trim() === `${workerPid} starting` && processAlive(workerPid);
  };
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
    async () => ownFailed() || monotonicMs() > until || !(await starting()),
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
 */
export async function runPusher(options: PusherOptions): Promise<PusherSummary> {
  const paths = spoolPaths(options.spoolDir, 'archive');
  const summary: PusherSummary = { pushed: [], failed: [], locked: false };
  await openSpool(paths, options.identity);
  const release = await takeWorkerLock(paths);
  if (release === null) {
    summary.locked = true;
    return summary;
  }
  try {
    await pushLoop(paths, options, summary);
  } finally {
    await release();
  }
  return summary;
}

/**
 * Pushes .ready segments after `options.after` until idle, a failure, or `stop` says so; waits for
 * the pushes it started. Run by the worker (holding the lock) and briefly by the process starting it.
 */
async function pushLoop(paths: SpoolPaths, options: PusherOptions, summary: PusherSummary, stop?: () => Promise<boolean>): Promise<void> {
  const idleMs = options.idleMs ?? 1500;
  const pollMs = options.pollMs ?? 10;
  const inflight = new Map<string, Promise<void>>();
  let failed = false;
  let idleSince = monotonicMs();
  // Names this worker has pushed: a scan that read the markers just before a push finished must not push it again.
  const pushedHere = new Set<string>();
  // The request's own file when this worker pushes it too: PostgreSQL is asking for it, so it is not ahead.
  const own = options.pushAfterToo === true ? options.after : undefined;
  const queued = (name: string): boolean => name > options.after || name === own;
  const inflightAhead = (): number => inflight.size - (own !== undefined && inflight.has(own) ? 1 : 0);

  const pushOne = async (fileName: string): Promise<void> => {
    const walPath = path.join(options.walDir, fileName);
    const deadline = new Deadline(options.timeoutMs, `pushing "${fileName}" ahead`);
    let claimed = false;
    try {
      claimed = await claimIfFree(paths, fileName);
      if (!claimed) return; // another pusher took it between our scan and now
      // Nobody waits for this push: it may copy with blocking calls (see OpContext.blockingCopy).
      await archiveFile({ ...options.request(fileName, deadline), blockingCopy: true });
      await ensureDirectory(paths.entries);
      await placeMarker(walPath, path.join(paths.entries, fileName));
      await wakeWaiter(paths, fileName);
      summary.pushed.push(fileName);
      pushedHere.add(fileName);
    } catch (error) {
      failed = true;
      summary.failed.push(fileName);
      const text = error instanceof WalvaultError ? error.oneLine() : (error as Error).message;
      options.log.warn(`push-ahead of "${fileName}" failed, leaving it to PostgreSQL's own request: ${text}`);
    } finally {
      deadline.dispose();
      if (claimed) await unclaim(paths, fileName);
      idleSince = monotonicMs();
    }
  };

  // This process read its settings (codec, keys, repository) from the config file after it started:
  // once the file is newer than that, pushing on would store files with the old settings.
  const settingsChanged = async (): Promise<boolean> => {
    if (options.configFile === undefined) return false;
    const info = await nodeFs.stat(options.configFile).catch(() => null);
    return info === null || info.mtimeMs >= performance.timeOrigin;
  };

  try {
    let lastScan = '';
    for (;;) {
      if (stop !== undefined && (await stop())) break;
      if (await settingsChanged()) {
        options.log.info(`config file "${options.configFile}" changed; pushing stops, PostgreSQL's requests archive with the new settings`);
        break;
      }
      const ready = await readyFiles(options.walDir);
      // Rescan the spool only when the .ready set changed or a push finished: polling stays cheap.
      const scan = `${ready.join(',')}|${summary.pushed.length}|${summary.failed.length}`;
      if (scan === lastScan && inflight.size > 0) {
        await Promise.race([...inflight.values(), sleep(pollMs)]);
        continue;
      }
      if (scan === lastScan && !failed) {
        if (monotonicMs() - idleSince > idleMs) break;
        await sleep(pollMs);
        continue;
      }
      lastScan = scan;
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
      let ahead = 0;
      for (const name of markers) {
        if (readySet.has(name)) ahead += name === own ? 0 : 1;
        else if (!inflight.has(name)) await nodeFs.unlink(path.join(paths.entries, name)).catch(() => undefined);
      }
      const markerSet = new Set(markers);
      for (const name of claimedElsewhere) if (markerSet.has(name)) claimedElsewhere.delete(name);
      ahead += claimedElsewhere.size;
      let launched = 0;
      if (!failed && !ready.some((name) => classify(name) === 'history')) {
        for (const name of ready) {
          if (inflight.size >= options.parallel || ahead + inflightAhead() >= options.pushAhead) break;
          if (!pushable(name) || inflight.has(name) || pushedHere.has(name) || !queued(name)) continue;
          if (markerSet.has(name) && (await sameFile(path.join(options.walDir, name), path.join(paths.entries, name)))) continue;
          // Claimed by another pusher since `ahead` was counted (the request that started the worker
          // pushes too while it loads): it counts against the limit from now on, or both pushers would
          // go one past it.
          if ((await liveClaimer(paths, name)) !== null) {
            if (!claimedElsewhere.has(name) && name !== own) ahead += 1;
            continue;
          }
          const job = pushOne(name).finally(() => inflight.delete(name));
          inflight.set(name, job);
          launched += 1;
        }
      }
      if (launched > 0 || inflight.size > 0) idleSince = monotonicMs();
      if (inflight.size === 0 && (failed || monotonicMs() - idleSince > idleMs)) break;
      if (inflight.size >= options.parallel) await Promise.race(inflight.values());
      else await sleep(pollMs);
    }
  } finally {
    await Promise.allSettled(inflight.values());
  }
}
