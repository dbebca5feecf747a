// Reused copy buffers: a segment copied through one long-lived buffer costs no allocation and leaves no garbage.

/** Size of a copy buffer: 16 reads and 16 writes per 16 MiB segment; large enough that syscall and thread-pool hops are noise. */
export const COPY_CHUNK = 1 << 20;

/** Buffers no copy is using; a process runs a few copies at once, so a handful at most. */
const spare: Buffer[] = [];
/** More than this many idle buffers are left to the collector. */
const MAX_SPARE = 8;

/**
 * Takes a COPY_CHUNK buffer (a spare one when there is one). Allocated outside Node's pool so that
 * giving it back keeps exactly this memory alive, nothing more.
 */
export function takeCopyBuffer(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafeSlow(COPY_CHUNK);
}

/**
 * Gives a buffer back for the next copy. Only call this once no I/O can still touch it: after a
 * failed copy whose write may still be in flight, drop the buffer instead.
 */
export function returnCopyBuffer(buffer: Buffer): void {
  if (buffer.length === COPY_CHUNK && spare.length < MAX_SPARE) spare.push(buffer);
}

/** Idle whole-file buffers, by capacity (see takeWholeBuffer). */
const spareWhole: Buffer[] = [];
/** Idle whole-file buffers kept (one per push slot is the common case). */
const MAX_SPARE_WHOLE = 2;

/**
 * Takes a buffer of `capacity` bytes for a file read whole before a one-request upload (a 16 MiB
 * segment to S3), reusing one given back: a fresh 16 MiB buffer per segment leaves the previous ones
 * resident until V8 gets round to collecting them, which broke the 100 MiB bound with two pushes.
 */
export function takeWholeBuffer(capacity: number): Buffer {
  const index = spareWhole.findIndex((buffer) => buffer.length === capacity);
  if (index >= 0) return spareWhole.splice(index, 1)[0] as Buffer;
  return Buffer.allocUnsafeSlow(capacity);
}

/** Gives a whole-file buffer back; only once nothing (an upload, a read) can still touch it. */
export function returnWholeBuffer(buffer: Buffer): void {
  if (spareWhole.length < MAX_SPARE_WHOLE) spareWhole.push(buffer);
}
