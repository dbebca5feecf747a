// processState reads a process's state from /proc/PID/stat: the letter after the last ')', whatever the
// command name holds; null when there is no such process.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { processState } from '../../src/core/process.js';

const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
});

/** Polls until the process shows `wanted` (a state change takes the kernel a moment after a signal). */
async function stateBecomes(pid: number, wanted: string): Promise<string | null> {
  let state = await processState(pid);
  for (let poll = 0; poll < 100 && state !== wanted; poll += 1) {
    await sleep(20);
    state = await processState(pid);
  }
  return state;
}

describe('processState', () => {
  it('is R or S for this process, T for a stopped child and S again once it continues', async () => {
    expect(['R', 'S']).toContain(await processState(process.pid));
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(child);
    child.kill('SIGSTOP');
    expect(await stateBecomes(child.pid!, 'T')).toBe('T');
    child.kill('SIGCONT');
    expect(await stateBecomes(child.pid!, 'S')).toBe('S');
  });

  it('is Z for a child that exited and was not reaped', async () => {
    // sh starts `sleep 0` in the background and becomes `sleep 30`, which never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(parent);
    const [line] = (await once(createInterface({ input: parent.stdout! }), 'line')) as [string];
    expect(await stateBecomes(Number(line), 'Z')).toBe('Z');
  });

  it('reads the state after the last ")" when the command name holds ") " and "("', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'walvault-process-state-'));
    try {
      const named = path.join(dir, 'a) S (b');
      await symlink('/bin/sleep', named);
      const child = spawn(named, ['30'], { stdio: 'ignore' });
      children.push(child);
      child.kill('SIGSTOP');
      expect(await stateBecomes(child.pid!, 'T')).toBe('T');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is null for a process that has ended and been reaped, and for pids no process can have', async () => {
    const child = spawn('true', [], { stdio: 'ignore' });
    await once(child, 'exit');
    expect(await processState(child.pid!)).toBeNull();
    for (const pid of [0, -1, 1.5, Number.NaN]) expect(await processState(pid)).toBeNull();
  });
});
