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

/**
 * Gives `buffer` (a copy buffer an encoder gathered a block's input in) back once `job`, which reads
 * it, has succeeded: the codecs' jobs leave nothing in their output that points into their input.
 * Not when the job moved it to a worker thread (its memory is detached here then, byteLength 0), nor
 * after a failure (nothing says the work is done with it).
 */
export function returnCopyBufferAfter(job: Promise<unknown>, buffer: Buffer): void {
  job.then(() => returnCopyBuffer(buffer), () => undefined);
}
