// The worker lock reserved by the process that starts a pusher: requests see a live worker while it loads, and the worker takes the reservation over.
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
    const paths = spoolPaths(temp.dir, 'archive', '0123456789abcdef');
    await openSpool(paths);
    await reserveWorkerLock(paths, process.pid);
    expect(await readFile(paths.pidFile, 'utf8')).toBe(`${process.pid} starting 0123456789abcdef\n`);
    expect(await workerAlive(paths)).toBe(true);
    const release = await takeWorkerLock(paths);
    expect(release).not.toBeNull();
    // Taken over: the launcher no longer sees "starting".
    expect(await readFile(paths.pidFile, 'utf8')).toBe(`${process.pid} running 0123456789abcdef\n`);
    await release!();
    expect(await workerAlive(paths)).toBe(false);
  });

  it('does not reserve over a live worker, and a reservation for a worker that died is taken over by the next one', async () => {
    const paths = spoolPaths(temp.dir, 'archive', '0123456789abcdef');
    await openSpool(paths);
    await writeFile(paths.pidFile, `${process.pid}\n`);
    await reserveWorkerLock(paths, 12345);
    expect(await readFile(paths.pidFile, 'utf8')).toBe(`${process.pid}\n`);

    const dead = await deadPid();
    await writeFile(paths.pidFile, `${dead} starting\n`);
    expect(await workerAlive(paths)).toBe(false);
    const release = await takeWorkerLock(paths);
    expect(release).not.toBeNull();
    expect(await readFile(paths.pidFile, 'utf8')).toBe(`${process.pid} running 0123456789abcdef\n`);
    await release!();
  });
});

describe('takeover of a lock or claim left by a dead process', () => {
  const spoolModule = fileURLToPath(new URL('../../../dist/policy/spool.js', import.meta.url));
  /** Runs `count` processes at once that each try to claim `file`; each stays alive (a holder) until all have answered. */
  async function race(file: string, count: number): Promise<string[]> {
    const script = `import(process.argv[1]).then(async (spool) => { const won = await spool.claimFile(process.argv[2], process.pid + ' x\\n'); process.stdout.write(won ? 'won' : 'lost'); process.stdin.resume(); process.stdin.on('end', () => process.exit(0)); })`;
    const children = Array.from({ length: count }, () => spawn(process.execPath, ['--input-type=module', '-e', script, spoolModule, file], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const outcomes = await Promise.all(
      children.map(
        (child) =>
          new Promise<string>((resolve) => {
            child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString()));
            child.on('exit', () => resolve('exited without an answer'));
          }),
      ),
    );
    await Promise.all(children.map((child) => new Promise((resolve) => {
      child.on('exit', resolve);
      child.stdin.end();
    })));
    return outcomes;
  }

  it('is won by exactly one of many processes racing for it (exclusive create of a takeover token, never check-then-act)', async () => {
    for (let round = 0; round < 2; round += 1) {
      const file = path.join(temp.dir, `claim-${round}`);
      await writeFile(file, `${await deadPid()} x\n`);
      const outcomes = await race(file, 6);
      expect(outcomes.filter((outcome) => outcome === 'won'), `round ${round}: ${outcomes.join(',')}`).toHaveLength(1);
      expect(outcomes.filter((outcome) => outcome === 'lost')).toHaveLength(5);
    }
  });
});
