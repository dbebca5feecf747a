// The pusher's state machine: every transition of its table, every event it must refuse, SPOOL.md
// showing the same table, and a real run whose pid file passes through the states.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../../src/backend/local.js';
import type { Backend } from '../../../src/backend/types.js';
import type { Deadline } from '../../../src/core/deadline.js';
import { createLogger } from '../../../src/core/log.js';
import { runPusher } from '../../../src/policy/archive-async.js';
import { IllegalTransition, PUSHER_STATES, PusherMachine, type PusherEvent, type PusherState } from '../../../src/policy/pusher-machine.js';
import { askWorkerToStop, readWorker, spoolPaths } from '../../../src/policy/spool.js';
import { makeReady } from '../../support/spool.js';
import { makeScenarioDirs, type ScenarioDirs } from '../../support/tmp.js';
import { pseudoRandomBytes } from '../../support/walfile.js';

const STATES: PusherState[] = ['starting', 'pushing', 'idle', 'stopping', 'stopped'];
const EVENTS: PusherEvent[] = ['lock-taken', 'lock-held', 'work', 'drained', 'idle-timeout', 'failed', 'stop-asked', 'settled'];

/** The transitions the pusher may take, written out by hand: a change of the table must change this too. */
const ALLOWED: ReadonlyArray<readonly [PusherState, PusherEvent, PusherState]> = [
  ['starting', 'lock-taken', 'pushing'],
  ['starting', 'lock-held', 'stopped'],
  ['pushing', 'work', 'pushing'],
  ['pushing', 'drained', 'idle'],
  ['pushing', 'idle-timeout', 'stopping'],
  ['pushing', 'failed', 'stopping'],
  ['pushing', 'stop-asked', 'stopping'],
  ['idle', 'work', 'pushing'],
  ['idle', 'drained', 'idle'],
  ['idle', 'idle-timeout', 'stopping'],
  ['idle', 'failed', 'stopping'],
  ['idle', 'stop-asked', 'stopping'],
  ['stopping', 'settled', 'stopped'],
];

/** A machine in `state`, recording what it reports entering. */
function machineIn(state: PusherState): { machine: PusherMachine; entered: string[] } {
  const entered: string[] = [];
  const machine = new PusherMachine(async (next, from) => {
    entered.push(`${from}->${next}`);
  }, state);
  return { machine, entered };
}

describe('pusher state machine', () => {
  it('has exactly the transitions listed: every state, every event', () => {
    const table = STATES.flatMap((state) => EVENTS.filter((event) => PUSHER_STATES[state].on[event] !== undefined).map((event) => [state, event, PUSHER_STATES[state].on[event]]));
    expect(table).toEqual(ALLOWED);
    expect(Object.keys(PUSHER_STATES).sort()).toEqual([...STATES].sort());
  });

  for (const [from, event, to] of ALLOWED) {
    it(`${from} --${event}--> ${to}${from === to ? ' (kept: the pid file is not rewritten)' : ''}`, async () => {
      const { machine, entered } = machineIn(from);
      expect(machine.target(event)).toBe(to);
      expect(machine.state).toBe(from);
      expect(await machine.fire(event)).toBe(to);
      expect(machine.state).toBe(to);
      expect(entered).toEqual(from === to ? [] : [`${from}->${to}`]);
    });
  }

  for (const state of STATES) {
    const refused = EVENTS.filter((event) => !ALLOWED.some(([from, allowed]) => from === state && allowed === event));
    it(`refuses in ${state}: ${refused.join(', ')}`, async () => {
      expect(refused.length).toBeGreaterThan(0);
      for (const event of refused) {
        const { machine, entered } = machineIn(state);
        expect(() => machine.target(event)).toThrow(IllegalTransition);
        await expect(machine.fire(event)).rejects.toThrow(new IllegalTransition(state, event).message);
        expect(machine.state).toBe(state);
        expect(entered).toEqual([]);
      }
    });
  }

  it('starts in starting and runs a whole life: lock, work, idle, work, stop, settle', async () => {
    const entered: string[] = [];
    const machine = new PusherMachine(async (next) => {
      entered.push(next);
    });
    expect(machine.state).toBe('starting');
    for (const event of ['lock-taken', 'work', 'drained', 'drained', 'work', 'work', 'stop-asked', 'settled'] as const) await machine.fire(event);
    expect(entered).toEqual(['pushing', 'idle', 'pushing', 'stopping', 'stopped']);
  });

  it('is the table SPOOL.md shows (section "Workers")', async () => {
    const spool = await readFile(new URL('../../../src/policy/SPOOL.md', import.meta.url), 'utf8');
    const lines = spool.split('\n');
    const header = lines.indexOf('| state | waits for | event → next |');
    expect(header).toBeGreaterThan(0);
    const end = lines.findIndex((line, index) => index > header && !line.startsWith('|'));
    const rows = lines
      .slice(header + 2, end)
      .map((line) => {
        const cells = line.split(' | ').map((cell) => cell.replace(/^\| |\|$/g, '').trim());
        const state = cells[0]!.replace(/`/g, '');
        const on = cells[2] === '(none)' ? {} : Object.fromEntries(cells[2]!.split(', ').map((pair) => pair.replace(/`/g, '').split(' → ')));
        return [state, { waitsFor: cells[1], on }];
      });
    expect(Object.fromEntries(rows)).toEqual(PUSHER_STATES);
  });
});

describe('pusher pid file', () => {
  let temp: ScenarioDirs;
  beforeEach(async () => {
    temp = await makeScenarioDirs();
  });
  afterEach(async () => {
    await temp.remove();
  });

  it('shows each state the pusher enters: pushing, idle, pushing again, stopping while a push is in flight; then it is gone', async () => {
    const names = [1, 2, 3, 4].map((n) => `00000001000000000000000${n}`);
    for (const name of names.slice(0, 3)) await makeReady(temp.dataDir, name, pseudoRandomBytes(64 * 1024, name));
    const walDir = path.join(temp.dataDir, 'pg_wal');
    const spoolDir = path.join(walDir, 'walvault');
    const paths = spoolPaths(spoolDir, 'archive', '0123456789abcdef');
    const local = createLocalBackend({ root: temp.repo });
    // Pushes of names[1] and names[3] wait until the test lets them go.
    const gates = new Map<string, () => void>();
    const held = new Map<string, Promise<void>>();
    for (const name of [names[1]!, names[3]!]) held.set(name, new Promise<void>((resolve) => gates.set(name, resolve)));
    const backend: Backend = Object.assign(Object.create(local) as Backend, {
      putIfAbsent: async (...args: Parameters<Backend['putIfAbsent']>) => {
        await held.get(path.basename(args[0]));
        return local.putIfAbsent(...args);
      },
    });
    const log = createLogger('walvault-archive', 'normal', () => undefined);
    // As startWorker does: the lock reserved for the worker, "PID starting ID".
    await import('node:fs/promises').then((fs) => fs.mkdir(spoolDir));
    await writeFile(paths.pidFile, `${process.pid} starting ${paths.id}\n`);
    const seen: string[] = [];
    /** Waits (bounded, generously) until the pid file says `state`. */
    const until = async (state: string): Promise<void> => {
      for (let waited = 0; waited < 60_000; waited += 10) {
        const worker = await readWorker(paths);
        if (worker?.state === state) {
          expect(worker).toEqual({ pid: process.pid, state, id: paths.id });
          seen.push(state);
          return;
        }
        await sleep(10);
      }
      throw new Error(`the pid file never said "${state}": ${await readFile(paths.pidFile, 'utf8').catch(() => '(none)')}`);
    };
    const running = runPusher({
      spoolDir,
      pushAhead: 16,
      parallel: 1,
      id: paths.id,
      backend,
      walDir,
      after: names[0]!,
      request: (fileName: string, deadline: Deadline) => ({ backend, sourcePath: path.join(walDir, fileName), fileName, encode: { compress: 'none' }, deadline, log }),
      timeoutMs: 60_000,
      idleMs: 600_000,
      log,
    });
    await until('pushing');
    gates.get(names[1]!)!();
    await until('idle');
    await makeReady(temp.dataDir, names[3]!, pseudoRandomBytes(64 * 1024, names[3]!));
    await until('pushing');
    await askWorkerToStop(paths, process.pid);
    await until('stopping');
    gates.get(names[3]!)!();
    const summary = await running;
    expect(seen).toEqual(['pushing', 'idle', 'pushing', 'stopping']);
    // What was in flight when it began to stop was finished, then the lock went.
    expect(summary).toEqual({ pushed: [names[1], names[2], names[3]], failed: [], locked: false });
    expect(await readWorker(paths)).toBeNull();
  });
});
