// The restore prefetcher's state table: the transitions it allows, those it refuses, and SPOOL.md naming the same states and transitions.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { IllegalTransition, nextState, PREFETCHER_MACHINE, PREFETCHER_STATES, PrefetcherMachine, type PrefetcherEvent, type PrefetcherState } from '../../../src/policy/prefetcher-states.js';

const EVENTS: PrefetcherEvent[] = ['locked', 'lock-held', 'busy', 'quiet', 'idle-timeout', 'failed', 'stop-asked', 'server-gone', 'recovery-ended', 'grace-over'];
const STOPS: PrefetcherEvent[] = ['failed', 'stop-asked', 'server-gone'];

/** Every allowed transition as "state --event--> next", sorted. */
function transitions(): string[] {
  const all: string[] = [];
  for (const state of PREFETCHER_STATES) for (const [event, next] of Object.entries(PREFETCHER_MACHINE[state].on)) all.push(`${state} --${event}--> ${next}`);
  return all.sort();
}

describe('prefetcher state table', () => {
  it('allows exactly starting -> serving <-> idle -> (ending ->) stopping', () => {
    expect(transitions()).toEqual(
      [
        'starting --locked--> serving',
        'starting --lock-held--> stopping',
        'serving --busy--> serving',
        'serving --quiet--> idle',
        'serving --recovery-ended--> ending',
        ...STOPS.map((event) => `serving --${event}--> stopping`),
        'idle --busy--> serving',
        'idle --quiet--> idle',
        'idle --idle-timeout--> stopping',
        'idle --recovery-ended--> ending',
        ...STOPS.map((event) => `idle --${event}--> stopping`),
        'ending --busy--> ending',
        'ending --quiet--> ending',
        'ending --grace-over--> stopping',
        ...STOPS.map((event) => `ending --${event}--> stopping`),
      ].sort(),
    );
  });

  it('throws on every transition the table does not list', () => {
    let refused = 0;
    for (const state of PREFETCHER_STATES) {
      for (const event of EVENTS) {
        if (PREFETCHER_MACHINE[state].on[event] !== undefined) continue;
        expect(() => nextState(state, event)).toThrow(IllegalTransition);
        refused += 1;
      }
    }
    // stopping is final; serving never times out (something is in flight); nothing goes back to starting or from ending to serving.
    expect(() => nextState('stopping', 'busy')).toThrow('prefetcher: event "busy" is not allowed in state "stopping"');
    expect(() => nextState('serving', 'idle-timeout')).toThrow(IllegalTransition);
    expect(() => nextState('idle', 'locked')).toThrow(IllegalTransition);
    expect(() => nextState('starting', 'busy')).toThrow(IllegalTransition);
    expect(() => nextState('ending', 'recovery-ended')).toThrow(IllegalTransition);
    expect(() => nextState('ending', 'idle-timeout')).toThrow(IllegalTransition);
    expect(refused).toBe(PREFETCHER_STATES.length * EVENTS.length - transitions().length);
  });

  it('reaches every state from starting, and stopping from every state', () => {
    const reached = new Set<PrefetcherState>(['starting']);
    for (let round = 0; round < PREFETCHER_STATES.length; round += 1) for (const state of [...reached]) for (const next of Object.values(PREFETCHER_MACHINE[state].on)) reached.add(next);
    expect([...reached].sort()).toEqual([...PREFETCHER_STATES].sort());
    for (const state of PREFETCHER_STATES) expect(state === 'stopping' || Object.values(PREFETCHER_MACHINE[state].on).includes('stopping')).toBe(true);
    expect(PREFETCHER_MACHINE.stopping.on).toEqual({});
  });

  it('runs: tells each change of state once, in order, and refuses an illegal event without changing state', async () => {
    const entered: PrefetcherState[] = [];
    const machine = new PrefetcherMachine(async (state) => {
      entered.push(state);
    });
    expect(machine.state).toBe('starting');
    await machine.fire('locked');
    await machine.fire('busy');
    await machine.fire('quiet');
    await machine.fire('quiet');
    await machine.fire('busy');
    await machine.fire('quiet');
    await expect(machine.fire('locked')).rejects.toThrow(IllegalTransition);
    expect(machine.state).toBe('idle');
    await machine.fire('idle-timeout');
    expect(machine.stopping).toBe(true);
    await expect(machine.fire('quiet')).rejects.toThrow(IllegalTransition);
    expect(entered).toEqual(['serving', 'idle', 'serving', 'idle', 'stopping']);
    const ending: PrefetcherState[] = [];
    const second = new PrefetcherMachine(async (state) => {
      ending.push(state);
    });
    for (const event of ['locked', 'busy', 'recovery-ended', 'busy', 'quiet', 'grace-over'] as const) await second.fire(event);
    expect(ending).toEqual(['serving', 'ending', 'stopping']);
  });

  it('is the table SPOOL.md shows (states, what each waits for, transitions)', async () => {
    const spoolMd = await readFile(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../src/policy/SPOOL.md'), 'utf8');
    expect(spoolMd).toContain('- prefetcher: `starting` → `serving` ⇄ `idle` → (`ending` →) `stopping`.');
    const rows = new Map<string, string[]>();
    // Only the prefetcher's own table: SPOOL.md also has the pusher's, with states of the same names.
    const lines = spoolMd.split('\n');
    const header = lines.indexOf('| state | waits for | event → next state |');
    expect(header).toBeGreaterThan(0);
    const end = lines.findIndex((line, index) => index > header && !line.startsWith('|'));
    for (const line of lines.slice(header + 2, end)) {
      const match = /^\| `([a-z]+)` \| (.+) \| (.+) \|$/.exec(line);
      if (match !== null && (PREFETCHER_STATES as readonly string[]).includes(match[1]!)) rows.set(match[1]!, [match[2]!, match[3]!]);
    }
    expect([...rows.keys()]).toEqual([...PREFETCHER_STATES]);
    for (const state of PREFETCHER_STATES) {
      const [waitsFor, cell] = rows.get(state)!;
      expect(waitsFor).toBe(PREFETCHER_MACHINE[state].waitsFor);
      const documented: string[] = [];
      for (const part of cell!.split('; ')) {
        const arrow = /^(.+) → `([a-z]+)`$/.exec(part);
        if (arrow === null) continue;
        for (const event of arrow[1]!.split(', ')) documented.push(`${state} --${event.replace(/`/g, '')}--> ${arrow[2]}`);
      }
      expect(documented.sort()).toEqual(transitions().filter((line) => line.startsWith(`${state} `)));
    }
  });
});
