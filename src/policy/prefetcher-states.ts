// The restore prefetcher's state machine (SPOOL.md, "Workers"): its states, what each waits for, and the
// events that move it; one table, so that the loop in restore-prefetch.ts, the pid file and SPOOL.md
// name the same states, and a transition the table does not list is a bug that throws.

/** The prefetcher's states, in the order it passes them; the second word of its pid file. */
export const PREFETCHER_STATES = ['starting', 'serving', 'idle', 'ending', 'stopping'] as const;

/** One of the prefetcher's states. */
export type PrefetcherState = (typeof PREFETCHER_STATES)[number];

/** What happens to a prefetcher: each moves it to the state the table says, or is illegal where it is. */
export type PrefetcherEvent =
  /** It took the worker lock ("PID starting ID", reserved for it by whoever started it, or free). */
  | 'locked'
  /** Another live worker holds the lock: this one has nothing to do. */
  | 'lock-held'
  /** Downloads are in flight or a request is open. */
  | 'busy'
  /** Nothing in flight and no request open. */
  | 'quiet'
  /** Idle for its idle time (a third of it without a position): PostgreSQL stopped asking. */
  | 'idle-timeout'
  /** A download failed: PostgreSQL's own requests take over (the launcher starts Node for them). */
  | 'failed'
  /** A request with other options asked it to stop (restore.stop). */
  | 'stop-asked'
  /** The server it serves is gone (data directory deleted, postmaster.pid gone or naming a dead process). */
  | 'server-gone'
  /** Neither recovery.signal nor standby.signal is left: recovery has ended. */
  | 'recovery-ended'
  /** Recovery ended a while ago (ENDING_GRACE_MS): the requests of its end are over. */
  | 'grace-over';

/** One state's row of the table. */
export interface StateSpec {
  /** What the prefetcher waits for in this state (for the docs and for `status`-style inspection). */
  waitsFor: string;
  /** The events allowed in this state and the state each leads to. */
  on: Partial<Record<PrefetcherEvent, PrefetcherState>>;
}

/** The reasons to stop that hold in every running state (checked every 100 ms). */
const STOPS = { failed: 'stopping', 'stop-asked': 'stopping', 'server-gone': 'stopping' } as const;

/**
 * How long the prefetcher stays in `ending` (at least; until its requests are answered): PostgreSQL removes
 * recovery.signal / standby.signal once it chose the new timeline, and then still asks for the old
 * timeline's history file (writeTimeLineHistory); a worker gone by then costs that request a Node start.
 */
export const ENDING_GRACE_MS = 1000;

/**
 * The table: starting -> serving <-> idle -> (ending ->) stopping. `stopping` is final: the worker lets
 * its downloads settle, removes what nobody took, then removes its pid file and exits.
 */
export const PREFETCHER_MACHINE: Readonly<Record<PrefetcherState, StateSpec>> = {
  starting: {
    waitsFor: 'its Node start and the worker lock (reserved for it by whoever started it)',
    on: { locked: 'serving', 'lock-held': 'stopping' },
  },
  serving: {
    waitsFor: 'its downloads in flight (the window after the position, files asked for) and the requests it answers (while one is served, the window\'s other downloads hold between chunks, not with a local repository, and not while a decoder waits for one of the codec pool\'s admissions: `restore-priority.ts`, `codec/admission.ts`)',
    on: { busy: 'serving', quiet: 'idle', 'recovery-ended': 'ending', ...STOPS },
  },
  idle: {
    waitsFor: 'a new position (the cursor file, a request, a file taken from the spool) or its idle time to pass',
    on: { busy: 'serving', quiet: 'idle', 'idle-timeout': 'stopping', 'recovery-ended': 'ending', ...STOPS },
  },
  ending: {
    waitsFor: 'the requests of the end of recovery (the history files of the new timeline\'s choice) for ENDING_GRACE_MS; fetches nothing ahead',
    on: { busy: 'ending', quiet: 'ending', 'grace-over': 'stopping', ...STOPS },
  },
  stopping: {
    waitsFor: 'its downloads to settle; then it removes what nobody took, its folders and its pid file',
    on: {},
  },
};

/** A transition the table does not allow: a bug in the worker's loop, never an operator's error. */
export class IllegalTransition extends Error {
  constructor(
    readonly state: PrefetcherState,
    readonly event: PrefetcherEvent,
  ) {
    super(`prefetcher: event "${event}" is not allowed in state "${state}"`);
  }
}

/** Where an event leads from a state; throws IllegalTransition when the table does not list it. */
export function nextState(state: PrefetcherState, event: PrefetcherEvent): PrefetcherState {
  const next = PREFETCHER_MACHINE[state].on[event];
  if (next === undefined) throw new IllegalTransition(state, event);
  return next;
}

/**
 * The running machine: holds the current state and tells `onEnter` about each change (the worker
 * writes it to its pid file). Events that keep the state call nothing.
 */
export class PrefetcherMachine {
  #state: PrefetcherState = 'starting';
  constructor(private readonly onEnter: (state: PrefetcherState) => Promise<void>) {}

  /** The current state. */
  get state(): PrefetcherState {
    return this.#state;
  }

  /** True once the machine is in its final state. */
  get stopping(): boolean {
    return this.#state === 'stopping';
  }

  /** Applies an event (throws IllegalTransition when the table does not allow it); returns the new state. */
  async fire(event: PrefetcherEvent): Promise<PrefetcherState> {
    const next = nextState(this.#state, event);
    if (next !== this.#state) {
      this.#state = next;
      await this.onEnter(next);
    }
    return next;
  }
}
