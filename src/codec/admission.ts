// Who waits for the codec pool's admission (pool.ts, StreamGroup.admitted), told to the prefetcher's
// priority rule (policy/restore-priority.ts): a window download held while its decoder holds one of the
// few admissions must not keep out the decoder of the file PostgreSQL waits for. No imports, so the
// prefetcher can watch it without loading the pool.

let waiting = 0;
const listeners = new Set<() => void>();

/** True while some pipeline waits for an admission. */
export function admissionQueued(): boolean {
  return waiting > 0;
}

/** Called by the pool as a pipeline starts (+1) and stops (-1) waiting; a start wakes every listener. */
export function noteAdmissionWait(delta: 1 | -1): void {
  waiting += delta;
  if (delta > 0) for (const listener of listeners) listener();
}

/** Calls `listener` each time a pipeline starts waiting for an admission; returns the unsubscribe. */
export function onAdmissionQueued(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
