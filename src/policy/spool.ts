// The spool shared by walvault's background workers and the bin/ launchers: its location, its owner line, worker locks.
import { spawn } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';

/** Which side of the spool: archive markers or restore prefetch. */
export type SpoolSide = 'archive' | 'restore';

/** Environment variables that take part in the spool identity, in the order the launchers write them. */
const IDENTITY_ENV: Record<SpoolSide, readonly string[]> = {
  archive: ['WALVAULT_REPO', 'WALVAULT_CONFIG', 'WALVAULT_SPOOL', 'WALVAULT_PUSH_AHEAD'],
  restore: ['WALVAULT_REPO', 'WALVAULT_CONFIG', 'WALVAULT_SPOOL', 'WALVAULT_PREFETCH'],
};

/**
 * The line a spool's owner file holds: the options (all arguments but %p/%f) and the environment
 * variables that choose the repository. The sh launchers compute the same line and only trust the
 * spool when it matches, so files pushed for another repository or with other options never answer.
 */
export function spoolIdentity(side: SpoolSide, args: readonly string[], env: NodeJS.ProcessEnv = process.env): string {
  const options = args.slice(0, Math.max(0, args.length - 2)).filter((arg) => !arg.startsWith('--internal-worker'));
  return `v1${options.map((arg) => ` ${arg}`).join('')}|${IDENTITY_ENV[side].map((name) => env[name] ?? '').join('|')}`;
}

/** Default spool: a `walvault` folder beside the WAL file (pg_wal/walvault), on pg_wal's filesystem and skipped by base backups. */
export function defaultSpoolDir(walPath: string): string {
  return path.join(path.dirname(walPath), 'walvault');
}

/** Paths inside a spool for one side. */
export interface SpoolPaths {
  root: string;
  /** Finished entries: archive markers (hard links) or verified prefetched files. */
  entries: string;
  /** The identity line the launchers compare. */
  owner: string;
  /** Lock/pid file of the background worker. */
  pidFile: string;
  /** In-flight claims (archive) or partial downloads (restore). */
  work: string;
  /** "PID NAME" of the sh launcher waiting for NAME's archive marker (archive side; see wakeWaiter). */
  waiter: string;
}

/** Paths of one side of a spool. */
export function spoolPaths(root: string, side: SpoolSide): SpoolPaths {
  return {
    root,
    entries: path.join(root, side),
    owner: path.join(root, `${side}.owner`),
    pidFile: path.join(root, `${side}.pid`),
    work: path.join(root, `${side}.work`),
    waiter: path.join(root, `${side}.waiter`),
  };
}

/**
 * Creates the spool folders and makes sure the owner line is `identity`. When it was another
 * (other repository or options), the finished entries are removed first: they vouch for nothing now.
 */
export async function openSpool(paths: SpoolPaths, identity: string): Promise<void> {
  for (const directory of [paths.root, paths.entries, paths.work]) await ensureDirectory(directory);
  const current = await nodeFs.readFile(paths.owner, 'utf8').catch(() => null);
  if (current !== null && current.replace(/\n$/, '') === identity) return;
  if (current !== null) await clearDirectory(paths.entries);
  const temp = `${paths.owner}.${process.pid}`;
  await nodeFs.writeFile(temp, `${identity}\n`, { mode: 0o600 });
  await nodeFs.rename(temp, paths.owner);
}

/**
 * Creates one directory level (its parent must exist). Never recursive: a recursive mkdir of a
 * relative path spins forever in Node when the working directory was deleted under a worker.
 */
export async function ensureDirectory(directory: string): Promise<void> {
  try {
    await nodeFs.mkdir(directory, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/** Removes every file in a directory (not the directory). */
export async function clearDirectory(directory: string): Promise<void> {
  const names = await nodeFs.readdir(directory).catch(() => [] as string[]);
  await Promise.all(names.map((name) => nodeFs.unlink(path.join(directory, name)).catch(() => undefined)));
}

/** True when a process with that pid exists (signal 0 probes without sending anything). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pid recorded in a pid/claim file, or null. */
export async function readPid(file: string): Promise<number | null> {
  const text = await nodeFs.readFile(file, 'utf8').catch(() => null);
  if (text === null) return null;
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) ? pid : null;
}

/** True when the side's worker is running. */
export async function workerAlive(paths: SpoolPaths): Promise<boolean> {
  const pid = await readPid(paths.pidFile);
  return pid !== null && processAlive(pid);
}

/** Release function of a worker lock this process holds. */
function releaseOwn(paths: SpoolPaths): () => Promise<void> {
  return async () => {
    if ((await readPid(paths.pidFile)) === process.pid) await nodeFs.unlink(paths.pidFile).catch(() => undefined);
  };
}

/**
 * Takes the worker lock (exclusive create of the pid file); a lock left by a dead worker (kill -9)
 * is taken over. Returns a release function, or null when a live worker holds it.
 */
export async function takeWorkerLock(paths: SpoolPaths): Promise<(() => Promise<void>) | null> {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      await nodeFs.writeFile(paths.pidFile, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return releaseOwn(paths);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = await readPid(paths.pidFile);
      // Reserved for us by the process that started us (reserveWorkerLock, or startWorker's pidFile):
      // the lock is ours; rewritten as plain "PID" (no longer "starting").
      if (holder === process.pid) {
        const temp = `${paths.pidFile}.${process.pid}`;
        await nodeFs.writeFile(temp, `${process.pid}\n`, { mode: 0o600 });
        await nodeFs.rename(temp, paths.pidFile);
        return releaseOwn(paths);
      }
      if (holder !== null && processAlive(holder)) return null;
      await nodeFs.unlink(paths.pidFile).catch(() => undefined);
    }
  }
  return null;
}

/**
 * Writes a just-started worker's pid into the lock file (if no one holds it) as "PID starting", so
 * that requests arriving while it loads see a live worker instead of starting a second one (and the
 * sh launcher waits a little longer for it); the worker finds the lock reserved for itself and
 * rewrites it as "PID". A worker that dies before taking over leaves a dead pid: taken over.
 */
export async function reserveWorkerLock(paths: SpoolPaths, pid: number): Promise<void> {
  await nodeFs.writeFile(paths.pidFile, `${pid} starting\n`, { flag: 'wx', mode: 0o600 }).catch(() => undefined);
}

/**
 * The pusher the sh launcher started for this request's file (src/cli/fast-path-archive.sh passes its pid
 * in WALVAULT_STARTED_PUSHER; the request runs when that pusher did not answer in time), when it still
 * runs: the request then starts none of its own. The variable is removed, so that nothing this process
 * starts inherits it.
 */
export function launcherStartedWorker(): number | undefined {
  const text = process.env.WALVAULT_STARTED_PUSHER;
  delete process.env.WALVAULT_STARTED_PUSHER;
  const pid = Number(text);
  return text !== undefined && /^[1-9][0-9]*$/.test(text) && processAlive(pid) ? pid : undefined;
}

/**
 * Starts this program again, detached, as a background worker with the same options. Its log lines
 * go to the same stderr (PostgreSQL's log); it outlives this process, which PostgreSQL waits for.
 */
export function startWorker(kind: 'push' | 'prefetch', args: readonly string[], options: { pidFile?: string } = {}): number | undefined {
  const script = process.argv[1];
  if (script === undefined) return undefined;
  // fd 3 is the launcher's status pipe: the worker must not hold it open (the launcher reads it to EOF).
  const env = { ...process.env };
  delete env.WALVAULT_LAUNCHER_STATUS_FD;
  const child = spawn(process.execPath, [...process.execArgv, script, `--internal-worker=${kind}`, ...args.filter((arg) => !arg.startsWith('--internal-worker'))], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit', 'ignore'],
    cwd: process.cwd(),
    env,
  });
  child.on('error', () => undefined);
  child.unref();
  // With `pidFile`, the worker's pid is recorded at once (when no live worker holds it), so the launcher
  // waits for the starting worker (a Node start, ~0.1-0.5 s) instead of starting Node itself meanwhile.
  if (options.pidFile !== undefined && child.pid !== undefined) {
    try {
      const holder = Number.parseInt(readFileSync(options.pidFile, 'utf8'), 10);
      if (processAlive(holder)) return child.pid;
    } catch {
      // no pid file: ours to write
    }
    try {
      const temp = `${options.pidFile}.${process.pid}`;
      writeFileSync(temp, `${child.pid}\n`, { mode: 0o600 });
      renameSync(temp, options.pidFile);
    } catch {
      // the worker takes its lock itself
    }
  }
  return child.pid;
}
