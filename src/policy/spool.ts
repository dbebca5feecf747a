// The spool shared by walvault's background workers and the sh launchers: fingerprints, the launcher
// records, paths, worker locks and claims. Every file named here is described in src/policy/SPOOL.md,
// the one protocol both sides follow; nothing else describes it.
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { WalvaultError } from '../core/errors.js';
import { processAlive } from '../core/process.js';

/** Which side of the spool: archive markers or restore prefetch. */
export type SpoolSide = 'archive' | 'restore';

/** Folder beside %p (in pg_wal) that holds the launcher records, whatever --spool says (SPOOL.md, "Records"). */
export const RECORD_DIR = 'walvault';

/** Variables the launcher itself sets or that only choose how Node starts: never part of a fingerprint. */
const LAUNCHER_VARIABLES = new Set(['WALVAULT_LAUNCHER_STATUS_FD', 'WALVAULT_STARTED_PUSHER', 'WALVAULT_NODE', 'WALVAULT_NO_BUNDLE']);

/** True for a variable that may change what walvault stores or reads (SPOOL.md, "Fingerprint"). */
export function fingerprintVariable(name: string): boolean {
  return (name.startsWith('WALVAULT_') || name.startsWith('AWS_') || name === 'HOME') && !LAUNCHER_VARIABLES.has(name);
}

/** Options that only say how one call logs or which file it is about: not part of a fingerprint. */
const PER_CALL = new Set(['_', 'path', 'name', 'internal-worker', 'internalWorker', 'quiet', 'verbose']);

/** 64 bits of FNV-1a (two lanes) as hex: no node:crypto on the request path (~3 ms to load); nothing adversarial is hashed. */
function fnv64(text: string): string {
  let a = 0x811c9dc5;
  let b = 0xcbf29ce4;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    a = Math.imul(a ^ code, 0x01000193) >>> 0;
    b = Math.imul(b ^ code ^ (index & 0xff), 0x01000193) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

/**
 * The fingerprint of a call's effective options (SPOOL.md, "Fingerprint"): the resolved option values
 * (flags, WALVAULT_* variables and the config file's content, merged), every WALVAULT_*, AWS_* and HOME
 * variable, and the working directory. Markers, prefetched files and workers carry it: a request trusts
 * only spool files made under its own fingerprint, and a worker serves only requests with its own.
 */
export function fingerprint(side: SpoolSide, raw: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  const options = Object.keys(raw)
    .filter((key) => !PER_CALL.has(key))
    .sort()
    .map((key) => [key, raw[key]]);
  const variables = Object.keys(env)
    .filter(fingerprintVariable)
    .sort()
    .map((name) => [name, env[name]]);
  return fnv64(JSON.stringify([side, cwd, options, variables]));
}

/** Default spool: the `walvault` folder beside the WAL file (pg_wal/walvault), on pg_wal's filesystem and skipped by base backups. */
export function defaultSpoolDir(walPath: string): string {
  return path.join(path.dirname(walPath), RECORD_DIR);
}

/** The launcher record of one side, beside %p (SPOOL.md, "Records"). */
export function recordFile(walPath: string, side: SpoolSide): string {
  return path.join(path.dirname(walPath), RECORD_DIR, `${side}.record.sh`);
}

/** Paths inside a spool for one side and one fingerprint. */
export interface SpoolPaths {
  root: string;
  /** The fingerprint these paths belong to. */
  id: string;
  /** Finished entries of this fingerprint: archive markers (hard links) or verified prefetched files. */
  entries: string;
  /** Lock/pid file of the side's background worker: "PID STATE ID". */
  pidFile: string;
  /** In-flight claims (archive) or partial downloads (restore). */
  work: string;
  /** "PID NAME" of the sh launcher waiting for NAME's archive marker (archive side; see wakeWaiter). */
  waiter: string;
  /** "PID" of a worker a request with other options asked to stop. */
  stop: string;
}

/** Paths of one side of a spool for fingerprint `id`. */
export function spoolPaths(root: string, side: SpoolSide, id: string): SpoolPaths {
  return {
    root,
    id,
    entries: path.join(root, `${side}.${id}`),
    pidFile: path.join(root, `${side}.pid`),
    work: path.join(root, `${side}.work`),
    waiter: path.join(root, `${side}.waiter`),
    stop: path.join(root, `${side}.stop`),
  };
}

/**
 * Refuses a spool on another filesystem than the WAL directory: markers are hard links to pg_wal's
 * files and prefetched files reach %p with a rename, neither of which crosses filesystems.
 */
export async function checkSpoolFilesystem(spoolDir: string, walDir: string): Promise<void> {
  const wal = await nodeFs.stat(walDir).catch(() => null);
  // The spool itself, else the folder it would be created in.
  const spool = (await nodeFs.stat(spoolDir).catch(() => null)) ?? (await nodeFs.stat(path.dirname(spoolDir)).catch(() => null));
  if (wal === null || spool === null || wal.dev === spool.dev) return;
  throw new WalvaultError('usage', `spool "${spoolDir}" is on another filesystem than "${walDir}"`, {
    hint: 'put --spool on the filesystem of pg_wal (markers are hard links, prefetched files are renamed into place), or leave it unset (pg_wal/walvault)',
  });
}

/** Removes a side's entry folders (and, restore, their request folders) of every fingerprint but `keep`. */
export async function removeEntries(root: string, side: SpoolSide, keep?: string): Promise<void> {
  for (const name of await nodeFs.readdir(root).catch(() => [] as string[])) {
    const match = /^(archive|restore)\.([0-9a-f]{16})(\.ask)?$/.exec(name);
    if (match === null || match[1] !== side || match[2] === keep) continue;
    await clearDirectory(path.join(root, name));
    await nodeFs.rmdir(path.join(root, name)).catch(() => undefined);
  }
}

/** Creates the spool folders of one fingerprint; the entries of other fingerprints are removed (they vouch for nothing now). */
export async function openSpool(paths: SpoolPaths): Promise<void> {
  await ensureDirectory(paths.root);
  const side = path.basename(paths.entries).startsWith('archive.') ? 'archive' : 'restore';
  await removeEntries(paths.root, side, paths.id);
  await ensureDirectory(paths.entries);
  await ensureDirectory(paths.work);
}

/** Asks the side's worker `pid` (running for other options) to stop at its next check (SPOOL.md, "stop"). */
export async function askWorkerToStop(paths: SpoolPaths, pid: number): Promise<void> {
  await writeAtomically(paths.stop, `${pid}\n`);
}

/** True when a request asked this worker to stop. */
export async function stopRequested(paths: SpoolPaths): Promise<boolean> {
  return (await readPid(paths.stop)) === process.pid;
}

/**
 * Watches the server a worker serves, from its working directory (PostgreSQL runs archive_command and
 * restore_command in the data directory): returns why it is gone (the data directory was deleted; the
 * postmaster.pid seen at the start is gone or names a dead process), or null. A worker started where
 * no postmaster.pid is (a command run by hand, a test) watches the directory only.
 */
export function watchServer(): () => Promise<string | null> {
  const directory = process.cwd();
  const postmaster = (): number | null => {
    try {
      const pid = Number.parseInt(readFileSync(path.join(directory, 'postmaster.pid'), 'utf8'), 10);
      return Number.isInteger(pid) ? pid : null;
    } catch {
      return null;
    }
  };
  const server = postmaster();
  return async () => {
    if ((await nodeFs.stat(directory).catch(() => null)) === null) return `its data directory "${directory}" is gone`;
    if (server === null) return null;
    const now = postmaster();
    if (now !== server || !processAlive(server)) return `the server it served (pid ${server}) has stopped`;
    return null;
  };
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

/** A worker's pid file: "PID STATE ID" (SPOOL.md). */
export interface WorkerLine {
  pid: number;
  state: string;
  id: string;
}

/** Reads a pid/claim file's first line; null when it is absent or unreadable. */
async function readLine(file: string): Promise<string | null> {
  const text = await nodeFs.readFile(file, 'utf8').catch(() => null);
  return text === null ? null : (text.split('\n')[0] ?? '');
}

/** Pid recorded in a pid/claim file, or null. */
export async function readPid(file: string): Promise<number | null> {
  const line = await readLine(file);
  const pid = line === null ? Number.NaN : Number.parseInt(line, 10);
  return Number.isInteger(pid) ? pid : null;
}

/** The side's worker line, or null. */
export async function readWorker(paths: SpoolPaths): Promise<WorkerLine | null> {
  const line = await readLine(paths.pidFile);
  if (line === null) return null;
  const [pid, state, id] = line.split(' ');
  const number = Number(pid);
  return Number.isInteger(number) ? { pid: number, state: state ?? '', id: id ?? '' } : null;
}

/** True when the side's worker is running for this fingerprint (a worker for other options serves nobody here). */
export async function workerAlive(paths: SpoolPaths): Promise<boolean> {
  const worker = await readWorker(paths);
  return worker !== null && worker.id === paths.id && processAlive(worker.pid);
}

/** Writes a file through a temp file and a rename: readers see the old or the new content, never half. */
export async function writeAtomically(file: string, text: string): Promise<void> {
  const temp = `${path.dirname(file)}/.${path.basename(file)}.${process.pid}`;
  await nodeFs.writeFile(temp, text, { mode: 0o600 });
  await nodeFs.rename(temp, file);
}

/**
 * Takes over `file`, whose content `stale` names a dead process, for this process (content `mine`).
 * Never check-then-act: the right to replace that very content is won by the exclusive create of
 * `FILE.takeover.PID` (PID = the dead holder); only its winner replaces the file, after checking it
 * still holds `stale`; a token left by a winner that died is itself taken over the same way.
 */
export async function takeOver(file: string, stale: string, mine: string, depth = 0): Promise<boolean> {
  const deadPid = Number.parseInt(stale, 10);
  if (!Number.isInteger(deadPid) || depth > 3) return false;
  const token = `${file}.takeover.${deadPid}`;
  try {
    await nodeFs.writeFile(token, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return false;
    const holder = await readLine(token);
    const holderPid = holder === null ? Number.NaN : Number.parseInt(holder, 10);
    if (holder === null || holderPid === process.pid || processAlive(holderPid)) return false;
    if (!(await takeOver(token, holder, `${process.pid}\n`, depth + 1))) return false;
  }
  try {
    if ((await readLine(file)) !== stale.split('\n')[0]) return false;
    await writeAtomically(file, mine);
    return true;
  } finally {
    await nodeFs.unlink(token).catch(() => undefined);
  }
}

/**
 * Claims `file` for this process: exclusive create, or the takeover of a claim whose process is dead.
 * False when a live process holds it.
 */
export async function claimFile(file: string, content: string): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      await nodeFs.writeFile(file, content, { flag: 'wx', mode: 0o600 });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holder = await readLine(file);
    if (holder === null) continue; // released meanwhile: create again
    const pid = Number.parseInt(holder, 10);
    if (pid === process.pid) return true;
    if (processAlive(pid)) return false;
    if (await takeOver(file, holder, content)) return true;
  }
  return false;
}

/** Removes `file` if this process holds it (only a live holder removes its own file: SPOOL.md). */
export async function releaseFile(file: string): Promise<void> {
  if ((await readPid(file)) === process.pid) await nodeFs.unlink(file).catch(() => undefined);
}

/**
 * Takes the worker lock for fingerprint `paths.id` (SPOOL.md, "pid"): exclusive create; a lock reserved
 * for this very process by whoever started it ("PID starting ID") is ours; one left by a dead worker is
 * taken over (takeOver). Returns a release function, or null when a live worker holds it.
 */
export async function takeWorkerLock(paths: SpoolPaths, state = 'running'): Promise<(() => Promise<void>) | null> {
  const mine = `${process.pid} ${state} ${paths.id}\n`;
  const release = (): Promise<void> => releaseFile(paths.pidFile);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    if (await claimFile(paths.pidFile, mine)) {
      // Ours already (reserved for us): rewrite it with our fingerprint and state.
      await writeAtomically(paths.pidFile, mine);
      return release;
    }
    const holder = await readWorker(paths);
    if (holder !== null && processAlive(holder.pid)) return null;
  }
  return null;
}

/** Rewrites the pid file of the lock this process holds with its current state (SPOOL.md: workers' states). */
export async function noteWorkerState(paths: SpoolPaths, state: string): Promise<void> {
  if ((await readPid(paths.pidFile)) === process.pid) await writeAtomically(paths.pidFile, `${process.pid} ${state} ${paths.id}\n`).catch(() => undefined);
}

/**
 * Writes a just-started worker's pid into the lock file (exclusive create: never over another) as
 * "PID starting ID", so that requests arriving while it loads see a live worker instead of starting a
 * second one; the worker finds the lock reserved for itself and rewrites it.
 */
export async function reserveWorkerLock(paths: SpoolPaths, pid: number): Promise<void> {
  await nodeFs.writeFile(paths.pidFile, `${pid} starting ${paths.id}\n`, { flag: 'wx', mode: 0o600 }).catch(() => undefined);
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
 * glibc's malloc arenas for a background worker (MALLOC_ARENA_MAX, unless the environment sets it; other
 * C libraries ignore it; the sh launcher's wv_start_worker sets the same). By default every thread that
 * allocates gets an arena of its own, up to 8 per core: libuv's threads (node:zlib's zstd, reads,
 * writes) and codec worker threads each keep freed memory in theirs. Measured: the pusher's code path
 * with Node 24's own zstd, 32 segments of 16 MiB 5 at a time, peak RSS 102-103 MiB with the default,
 * 88 MiB with 2, at the same speed.
 */
export const WORKER_MALLOC_ARENAS = '2';

/**
 * Starts this program again, detached, as a background worker with the same options. Its log lines
 * go to the same stderr (PostgreSQL's log); it outlives this process, which PostgreSQL waits for.
 */
export function startWorker(kind: 'push' | 'prefetch', args: readonly string[], options: { paths?: SpoolPaths; env?: NodeJS.ProcessEnv } = {}): number | undefined {
  const script = process.argv[1];
  if (script === undefined) return undefined;
  // fd 3 is the launcher's status pipe: the worker must not hold it open (the launcher reads it to EOF).
  const env = { ...(options.env ?? process.env) };
  delete env.WALVAULT_LAUNCHER_STATUS_FD;
  delete env.WALVAULT_STARTED_PUSHER;
  env.MALLOC_ARENA_MAX ??= WORKER_MALLOC_ARENAS;
  const child = spawn(process.execPath, [...process.execArgv, script, `--internal-worker=${kind}`, ...args.filter((arg) => !arg.startsWith('--internal-worker'))], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit', 'ignore'],
    cwd: process.cwd(),
    env,
  });
  child.on('error', () => undefined);
  child.unref();
  // With `paths`, the worker's pid is recorded at once (exclusive create: never over another worker's),
  // so the launcher waits for the starting worker instead of starting Node itself meanwhile.
  if (options.paths !== undefined && child.pid !== undefined) {
    try {
      writeFileSync(options.paths.pidFile, `${child.pid} starting ${options.paths.id}\n`, { flag: 'wx', mode: 0o600 });
    } catch {
      // held (a live worker, or a dead one's: the new worker takes it over itself)
    }
  }
  return child.pid;
}

/** What the launcher needs from a record (SPOOL.md, "Records"). */
export interface LaunchRecord {
  side: SpoolSide;
  /** The fingerprint the spool files for these options carry. */
  id: string;
  /** Lines "KEY VALUE" the launcher reads after a match: paths and switches Node decided. */
  values: ReadonlyArray<readonly [string, string]>;
  /** The arguments before the last two (%p %f / %f %p), verbatim. */
  args: readonly string[];
  /** The config file read, if any. */
  configFile?: string;
}

/**
 * Writes the record that lets the launcher answer the next calls with these options without Node
 * (SPOOL.md, "Records"). Only what this process read is recorded (`envRead`: every variable it looked
 * up, set or not, plus every fingerprint variable set); no record when a value cannot be written on
 * one line, or the config file changed after this process started (what was parsed might not be
 * what is recorded).
 */
export async function writeLaunchRecord(file: string, record: LaunchRecord, envRead: Iterable<string>, env: NodeJS.ProcessEnv): Promise<boolean> {
  // Shell assignments the launcher sources with `.` (dash reads a sourced file in blocks; its `read`
  // builtin takes one byte per system call). Every value single-quoted; only wv_r_* and wv_v_* names.
  const lines = ['wv_r_format=3', `wv_v_id=${shellQuote(record.id)}`];
  for (const [key, value] of record.values) {
    if (!/^[a-z]+$/.test(key)) return false;
    lines.push(`wv_v_${key}=${shellQuote(value)}`);
  }
  lines.push(`wv_r_cwd=${shellQuote(shellDirectory())}`, `wv_r_n=${record.args.length}`);
  record.args.forEach((arg, index) => lines.push(`wv_r_a${index + 1}=${shellQuote(arg)}`));
  const names = new Set([...envRead, ...Object.keys(env).filter(fingerprintVariable)]);
  const set: string[] = [];
  const unset: string[] = [];
  for (const name of [...names].sort()) {
    if (LAUNCHER_VARIABLES.has(name) || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) continue;
    const value = env[name];
    if (value === undefined) unset.push(name);
    else {
      set.push(name);
      lines.push(`wv_r_e${set.length}=${shellQuote(value)}`);
    }
  }
  lines.push(`wv_r_set='${set.join(' ')}'`, `wv_r_unset='${unset.join(' ')}'`);
  if (record.configFile !== undefined) {
    // One open file: its status and content are of the same file. A stat of the path and a read of it
    // again could straddle an editor's rename, and record the new content under the old fingerprint
    // (found by test/scenario/restore-prefetch-chaos.test.ts: a request with the config file naming A
    // was answered with B's copy from the spool).
    const handle = await nodeFs.open(record.configFile, 'r').catch(() => null);
    const before = handle === null ? null : await handle.stat({ bigint: true }).catch(() => null);
    const content = handle === null ? null : await handle.readFile('utf8').catch(() => null);
    await handle?.close().catch(() => undefined);
    // ctime cannot be set back by anyone: a file unchanged since before this process started is the one it parsed.
    const started = BigInt(Math.floor(performance.timeOrigin * 1e6)) - 1_000_000n;
    if (before === null || content === null || before.ctimeNs >= started || before.mtimeNs >= started) return false;
    const configLines = content.split('\n');
    if (configLines[configLines.length - 1] === '') configLines.pop();
    if (configLines.some((line) => line.includes('\r'))) return false;
    lines.push(`wv_r_config=${shellQuote(record.configFile)}`, `wv_r_lines=${configLines.length}`);
    configLines.forEach((line, index) => lines.push(`wv_r_l${index + 1}=${shellQuote(line)}`));
  } else {
    lines.push("wv_r_config=-", 'wv_r_lines=0');
  }
  lines.push('wv_r_end=3');
  if (lines.some((line) => line.includes('\n') || line.includes('\r') || line.includes('\0'))) return false;
  try {
    await ensureDirectory(path.dirname(file));
    await writeAtomically(file, `${lines.join('\n')}\n`);
    return true;
  } catch {
    return false;
  }
}

/** A word for sh: single-quoted, a quote inside as '\\''. */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, "'\\''")}'`;
}

/**
 * The working directory as the launcher's shell sees it ($PWD): PWD when it names this very directory
 * (a path through a symlink), else the real path. A mismatch only costs a Node start.
 */
function shellDirectory(): string {
  const cwd = process.cwd();
  const pwd = process.env.PWD;
  if (pwd === undefined || pwd === cwd) return cwd;
  try {
    const [a, b] = [statSync(pwd), statSync(cwd)];
    return a.dev === b.dev && a.ino === b.ino ? pwd : cwd;
  } catch {
    return cwd;
  }
}
