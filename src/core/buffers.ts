// Reused copy buffers: a segment copied through one long-lived buffer costs no allocation and leaves no garbage.

/** Size of a copy buffer: 16 reads and 16 writes per 16 MiB segment; large enough that syscall and thread-pool hops are noise. */
export const COPY_CHUNK = 1 << 20;

/**
 * Buffers of one size that callers give back when done, so that a stream of them costs no allocation
 * and leaves no garbage for the collector (whose forced runs, core/hash.ts, cost CPU and let dead
 * buffers add to the peak until they run). Allocated outside Node's pool so that a buffer kept keeps
 * exactly its own memory alive, nothing more.
 */
export class BufferPool {
  /** Buffers nobody is using; more than `maxSpare` idle ones are left to the collector. */
  private readonly spare: Buffer[] = [];

  constructor(readonly size: number, private readonly maxSpare: number) {}

  /** A buffer of `size` bytes, a spare one when there is one. */
  take(): Buffer {
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /**
   * Gives a buffer back for the next user. Only once no I/O can still touch it: after a failure
   * whose read or write may still be in flight, drop the buffer instead.
   */
  give(buffer: Buffer): void {
    if (buffer.length === this.size && buffer.byteOffset === 0 && buffer.buffer.byteLength === this.size && this.spare.length < this.maxSpare) this.spare.push(buffer);
  }

  /** Frees the idle buffers now (freeNow): when a phase that used them is over and another begins. */
  release(): void {
    for (const buffer of this.spare.splice(0)) freeNow(buffer);
  }
}

/**
 * Frees `buffer`'s memory now instead of at some later collection, by detaching its ArrayBuffer
 * (ArrayBuffer.prototype.transfer, ES2024, in Node 22 and later): for large buffers whose death the
 * peak cannot wait for. Only for a buffer nothing reads or writes again (every view of it is empty
 * afterwards), and only one that owns its whole ArrayBuffer (allocUnsafeSlow), never a slice of
 * Node's shared pool.
 */
export function freeNow(buffer: Buffer): void {
  const arrayBuffer = buffer.buffer as ArrayBuffer & { transfer?: (length?: number) => ArrayBuffer };
  if (buffer.byteOffset === 0 && buffer.byteLength === arrayBuffer.byteLength && buffer.byteLength > 0) arrayBuffer.transfer?.(0);
}

/** Copy buffers: a process runs a few copies at once, so a handful idle at most. */
const copyBuffers = new BufferPool(COPY_CHUNK, 8);

/** Frees the idle copy buffers now (a phase that copied much is over). */
export function releaseCopyBuffers(): void {
  copyBuffers.release();
}

/** Takes a COPY_CHUNK buffer (a spare one when there is one). */
export function takeCopyBuffer(): Buffer {
  return copyBuffers.take();
}

/**
 * Gives a buffer back for the next copy. Only call this once no I/O can still touch it: after a
 * failed copy whose write may still be in flight, drop the buffer instead.
 */
export function returnCopyBuffer(buffer: Buffer): void {
  copyBuffers.give(buffer);
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
