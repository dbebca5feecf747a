// Every storage operation runs under one deadline, so a hung NFS server or network becomes an error, never a hung archiver.
import { setTimeout as sleep } from 'node:timers/promises';
import { monotonicMs } from './clock.js';
import { WalvaultError } from './errors.js';

/** A point in time after which the whole command gives up; its signal aborts in-flight I/O. */
export class Deadline {
  /** Set once any deadline of this process has passed: I/O may still be stuck in the thread pool. */
  static anyExpired = false;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  private readonly expiresAt: number;
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;

  constructor(timeoutMs: number, private readonly what: string) {
    this.timeoutMs = timeoutMs;
    // A monotonic clock: a step of the wall clock (NTP, an operator) must not change the retry budget.
    this.expiresAt = monotonicMs() + timeoutMs;
    this.signal = this.controller.signal;
    this.timer = setTimeout(() => {
      Deadline.anyExpired = true;
      this.controller.abort(this.timeoutError());
    }, timeoutMs);
    this.timer.unref();
  }

  /** Milliseconds left before the deadline (0 when passed). */
  remaining(): number {
    return Math.max(0, this.expiresAt - monotonicMs());
  }

  /** The error every operation cut short by this deadline reports. */
  timeoutError(): WalvaultError {
    return new WalvaultError('timeout', `${this.what} did not finish within ${this.timeoutMs / 1000} s`, {
      hint: 'check that the repository storage is reachable and responsive, or raise --timeout',
    });
  }

  /**
   * Races `work` against the deadline. Filesystem calls cannot always be cancelled (a hung NFS
   * server blocks a thread), so the command must not wait for them once the deadline has passed.
   */
  race<T>(work: Promise<T>): Promise<T> {
    return raceAbort(work, this.signal);
  }

  /** Stops the timer (the command is done). */
  dispose(): void {
    clearTimeout(this.timer);
  }
}

/**
 * Runs one storage step of an operator command under a deadline of its own (`what` names it in the
 * timeout error): commands such as cleanup and backup give each listing or read a fresh budget.
 */
export async function underDeadline<T>(timeoutMs: number, what: string, work: (ctx: { signal: AbortSignal }) => Promise<T>): Promise<T> {
  const deadline = new Deadline(timeoutMs, what);
  try {
    return await deadline.race(work({ signal: deadline.signal }));
  } finally {
    deadline.dispose();
  }
}

/**
 * Settles with `work`, or rejects with `mapReason(signal.reason)` as soon as `signal` aborts: a call
 * that cannot be cancelled (a hung filesystem, a stalled socket) must not hold the command past its deadline.
 */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal, mapReason: (reason: unknown) => unknown = (reason) => reason): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(mapReason(signal.reason));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(mapReason(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Options for retrying transient failures. */
export interface RetryOptions {
  deadline: Deadline;
  /** First back-off delay; doubled after every failure, capped at maxDelayMs. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Called before each retry, to log it. */
  onRetry?: (error: WalvaultError, attempt: number, delayMs: number) => void;
}

/**
 * Runs `operation` until it succeeds, fails permanently, or the deadline leaves no room for another
 * try. Only WalvaultErrors marked transient are retried.
 */
export async function withRetries<T>(operation: () => Promise<T>, options: RetryOptions): Promise<T> {
  let delay = options.initialDelayMs ?? 100;
  const maxDelay = options.maxDelayMs ?? 5000;
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof WalvaultError) || !error.transient) throw error;
      const wait = Math.min(delay, maxDelay);
      if (options.deadline.remaining() <= wait) throw error;
      options.onRetry?.(error, attempt, wait);
      await sleep(wait, undefined, { signal: options.deadline.signal }).catch(() => {
        throw options.deadline.timeoutError();
      });
      delay *= 2;
    }
  }
}
