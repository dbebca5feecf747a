// Helpers for the push-ahead / prefetch scenarios: a fake pg_wal with archive_status, runs that don't wait for background workers.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, type RunResult } from './cli.js';

/** Runs an executable and resolves when IT exits (its background worker may keep stderr open longer). */
export function runNoWait(name: 'walvault-archive' | 'walvault-restore', args: string[], options: { cwd: string; env?: Record<string, string>; ignoreSignals?: string[] }): Promise<RunResult> {
  return run(name, args, { ...options, waitFor: 'exit' });
}

/** Writes a WAL-named file into pg_wal and marks it .ready, as the server does when a segment is complete. */
export async function makeReady(dataDir: string, name: string, content: Buffer): Promise<string> {
  await mkdir(path.join(dataDir, 'pg_wal', 'archive_status'), { recursive: true });
  await writeFile(path.join(dataDir, 'pg_wal', name), content);
  await writeFile(path.join(dataDir, 'pg_wal', 'archive_status', `${name}.ready`), '');
  return `pg_wal/${name}`;
}

/** What the server does after archive_command returned 0. */
export async function markDone(dataDir: string, name: string): Promise<void> {
  const status = path.join(dataDir, 'pg_wal', 'archive_status');
  await rename(path.join(status, `${name}.ready`), path.join(status, `${name}.done`));
}

/** Pid of a side's background worker, or null when none is running. */
export async function workerPid(spoolDir: string, side: 'archive' | 'restore'): Promise<number | null> {
  const text = await readFile(path.join(spoolDir, `${side}.pid`), 'utf8').catch(() => null);
  if (text === null) return null;
  const pid = Number.parseInt(text, 10);
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/** Waits until a side's worker has started (or the time is up). */
export async function waitForWorkerStart(spoolDir: string, side: 'archive' | 'restore', timeoutMs = 10_000): Promise<number | null> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const pid = await workerPid(spoolDir, side);
    if (pid !== null) return pid;
    await sleep(5);
  }
  return null;
}

/**
 * Waits for a side's worker to have run: up to `startMs` for it to appear (a worker holds its pid file
 * for at least its idle time, so it cannot be missed), then until it has exited. Fails when no worker
 * appeared, unless `expectWorker: false` says the test does not know whether one starts.
 */
export async function waitForWorkerExit(
  spoolDir: string,
  side: 'archive' | 'restore',
  options: { expectWorker?: boolean; timeoutMs?: number; startMs?: number } = {},
): Promise<void> {
  const { expectWorker = true, timeoutMs = 60_000, startMs = expectWorker ? 30_000 : 4000 } = options;
  if ((await waitForWorkerStart(spoolDir, side, startMs)) === null) {
    if (expectWorker) throw new Error(`no ${side} worker appeared in "${spoolDir}" within ${startMs} ms, though the test expected one`);
    return;
  }
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if ((await workerPid(spoolDir, side)) === null) return;
    await sleep(20);
  }
  throw new Error(`the ${side} worker in "${spoolDir}" is still running after ${timeoutMs} ms`);
}

/** Kills a side's worker if one is left (afterEach). */
export async function killWorker(spoolDir: string, side: 'archive' | 'restore'): Promise<void> {
  const pid = await workerPid(spoolDir, side);
  if (pid !== null) process.kill(pid, 'SIGKILL');
}

/** True when a path exists. */
export const exists = (target: string): boolean => existsSync(target);

/**
 * The entries folder of a side's fingerprint in a spool (src/policy/SPOOL.md: `archive.ID` holds markers,
 * `restore.ID` prefetched files): the only one there, or null. Its name, relative to `relativeTo` when given.
 */
export async function entriesDir(spoolDir: string, side: 'archive' | 'restore'): Promise<string | null> {
  const names = (await readdir(spoolDir).catch(() => [] as string[])).filter((name) => new RegExp(`^${side}\\.[0-9a-f]{16}$`).test(name));
  if (names.length > 1) throw new Error(`more than one ${side} entries folder in "${spoolDir}": ${names.join(', ')}`);
  return names[0] === undefined ? null : path.join(spoolDir, names[0]);
}

/** The files in a side's entries folder (none when there is no folder), sorted. */
export async function entryNames(spoolDir: string, side: 'archive' | 'restore'): Promise<string[]> {
  const dir = await entriesDir(spoolDir, side);
  return dir === null ? [] : (await readdir(dir).catch(() => [] as string[])).sort();
}
