// A monotonic clock for durations in log lines and timeouts.

/**
 * Milliseconds on a monotonic clock. Not `performance.now()`: the first use of the global
 * `performance` loads node:perf_hooks (~1 ms), paid by every call PostgreSQL makes.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
