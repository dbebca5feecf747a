// The worker lock reserved by the process that starts a pusher: requests see a live worker while it loads, and the worker takes the reservation over.
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSpool, reserveWorkerLock, spoolPaths, takeWorkerLock, workerAlive } from '../../../src/policy/spool.js';
import { makeTempDir } from '../../support/tmp.js';

let temp: { dir: string; remove(): Promise<void> };
beforeEach(async () => {
  temp = await makeTempDir();
});
afterEach(async () => {
  await temp.remove();
});

/** A pid that is certainly not running: a child that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

describe('worker lock reservation', () => {
  it('marks a starting worker as live ("PID starting") and lets exactly that process take the lock over', async () => {
    const paths = spoolPaths(temp.dir, 'archive');
    await openSpool(paths, 'v1|test');
    await reserveWorkerLock(paths, process.pid);
    expect(await readFile(paths.pidFile, 'utf8')).toBe(`${process.pid} starting\n`);
    expect(await workerAlive(paths)).toBe(true);
    const release = await takeWorkerLock(paths);
    expect(release).not.toBeNull();
    // Taken over: the launcher no longer sees "starting".
    expect(await readFile(paths.pidFile, 'utf8')).toBe(`${process.pid}\n`);
    await release!();
    expect(await workerAlive(paths)).toBe(false);
  });

  it('does not reserve over a live worker, and a reservation for a worker that died is taken over by the next one', async () => {
    const paths = spoolPaths(temp.dir, 'archive');
    await openSpool(paths, 'v1|test');
    await writeFile(paths.pidFile, `${process.pid}\n`);
    await reserveWorkerLock(paths, 12345);
    expect(await readFile(paths.pidFile, 'utf8')).toBe(`${process.pid}\n`);

    const dead = await deadPid();
    await writeFile(paths.pidFile, `${dead} starting\n`);
    expect(await workerAlive(paths)).toBe(false);
    const release = await takeWorkerLock(paths);
    expect(release).not.toBeNull();
    expect(await readFile(paths.pidFile, 'utf8')).toBe(`${process.pid}\n`);
    await release!();
  });
});
