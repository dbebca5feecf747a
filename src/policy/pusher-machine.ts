// The background pusher's states and the only transitions between them: one table, read by the loop in
// archive-async.ts, by the tests and (as its "Workers" table) by SPOOL.md, which must list the same rows.

/** The pusher's states; the worker's pid file shows the current one ("PID STATE ID", SPOOL.md). */
export type PusherState = 'starting' | 'pushing' | 'idle' | 'stopping' | 'stopped';

/**
 * What moves the pusher from one state to another:
 * - `lock-taken` / `lock-held`: the worker took its lock (the pid file) / a live worker holds it.
 * - `work`: a scan found pushes in flight (just launched or still running).
 * - `drained`: a scan found nothing in flight, and the idle time has not run out.
 * - `idle-timeout`: nothing was pushed for the idle time.
 * - `failed`: a push failed and none is left in flight (PostgreSQL's own requests retry and report it).
 * - `stop-asked`: a stop file, the server or the data directory gone, the config file changed; for the
 *   request that pushes while the worker loads: the worker took over, or its own file failed.
 * - `settled`: the pushes in flight have settled.
 */
export type PusherEvent = 'lock-taken' | 'lock-held' | 'work' | 'drained' | 'idle-timeout' | 'failed' | 'stop-asked' | 'settled';

/** One state's row: what the pusher waits for while in it, and where each allowed event leads. */
export interface PusherStateRow {
  waitsFor: string;
  on: Partial<Record<PusherEvent, PusherState>>;
}

/** The pusher's state machine. An event missing from a state's row is a bug: `PusherMachine.fire` throws. */
export const PUSHER_STATES: { readonly [S in PusherState]: PusherStateRow } = {
  starting: {
    waitsFor: 'its lock: the pid file reserved for it by whoever started it, an exclusive create, or the takeover of a dead worker\'s',
    on: { 'lock-taken': 'pushing', 'lock-held': 'stopped' },
  },
  pushing: {
    waitsFor: 'a push in flight to finish, or the poll interval; then scans archive_status again',
    on: { work: 'pushing', drained: 'idle', 'idle-timeout': 'stopping', failed: 'stopping', 'stop-asked': 'stopping' },
  },
  idle: {
    waitsFor: 'the poll interval; then scans archive_status again',
    on: { work: 'pushing', drained: 'idle', 'idle-timeout': 'stopping', failed: 'stopping', 'stop-asked': 'stopping' },
  },
  stopping: {
    waitsFor: 'the pushes in flight to settle (no new ones start)',
    on: { settled: 'stopped' },
  },
  stopped: {
    waitsFor: 'nothing: its pid file is removed, the process ends',
    on: {},
  },
};

/** Thrown for an event the table does not allow in the current state: a bug in the pusher, never an operator's error. */
export class IllegalTransition extends Error {
  constructor(
    readonly state: PusherState,
    readonly event: PusherEvent,
  ) {
    super(`the background pusher cannot take "${event}" in state "${state}" (see PUSHER_STATES)`);
  }
}

/** Tells the outside world (the pid file) about a state entered; not called for a state kept (work in pushing, drained in idle). */
export type EnterState = (state: PusherState, from: PusherState) => Promise<void>;

/** The current state of one pusher run, changed only through the table. */
export class PusherMachine {
  #state: PusherState;

  constructor(
    private readonly enter: EnterState = async () => undefined,
    initial: PusherState = 'starting',
  ) {
    this.#state = initial;
  }

  /** The current state. */
  get state(): PusherState {
    return this.#state;
  }

  /** The state `event` leads to from the current one, without taking it; throws IllegalTransition. */
  target(event: PusherEvent): PusherState {
    const next = PUSHER_STATES[this.#state].on[event];
    if (next === undefined) throw new IllegalTransition(this.#state, event);
    return next;
  }

  /** Takes `event`: moves to the state the table names, and reports a changed state to `enter`. */
  async fire(event: PusherEvent): Promise<PusherState> {
    const from = this.#state;
    const next = this.target(event);
    this.#state = next;
    if (next !== from) await this.enter(next, from);
    return next;
  }
}
