// Chunks whose writer hands them over for good to whatever reads them last: an encoder may keep such a
// chunk as a job's input (and move it to a worker thread) instead of copying it into a block of its
// own, and gives it back to the writer's pool once the job is done with it; a reader that copies a
// chunk out (an encoder gathering a block, a multipart part, a file write) gives it back once it has.
// A chunk nobody gives back is left to the collector: handing over never makes a chunk unsafe to keep.
// Only the stream's last reader may give a chunk back, and nothing before it may keep a reference
// (the hashing streams copy what they keep).

/** Chunks handed over and not yet taken, each with how to give it back; weak, so a chunk never taken costs nothing. */
const handedOver = new WeakMap<Uint8Array, (chunk: Buffer) => void>();

/**
 * Marks `chunk` as given away: the writer will neither change nor reuse it once written to a stream,
 * until a reader gives it back (archive.ts's EncodingSource reads each 1 MiB of a segment into a
 * reused copy buffer, core/buffers.ts, and hands it over; so does the backup's tar of each file read).
 */
export function handOver(chunk: Buffer, giveBack: (chunk: Buffer) => void): Buffer {
  handedOver.set(chunk, giveBack);
  return chunk;
}

/**
 * When `chunk` was handed over and fills its whole buffer of exactly `size` bytes: the function that
 * gives it back, to be called once nothing reads it any more (the encoder may keep it until then). A
 * chunk moved to a worker thread meanwhile (its buffer detached) is not given back. Else undefined, and
 * the chunk stays handed over (a reader that copies it out gives it back, giveBackConsumed).
 */
export function takeHandedOver(chunk: Uint8Array, size: number): (() => void) | undefined {
  const giveBack = handedOver.get(chunk);
  if (giveBack === undefined) return undefined;
  if (chunk.byteLength !== size || chunk.byteOffset !== 0 || chunk.buffer.byteLength !== size || !(chunk.buffer instanceof ArrayBuffer)) return undefined;
  handedOver.delete(chunk);
  return () => {
    if (chunk.byteLength === size) giveBack(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  };
}

/**
 * The reader of `chunk` has copied out all it needs and keeps no reference to it: gives it back to its
 * writer now when it was handed over (and not yet taken or given back); else nothing happens.
 */
export function giveBackConsumed(chunk: Uint8Array): void {
  const giveBack = handedOver.get(chunk);
  if (giveBack === undefined) return;
  handedOver.delete(chunk);
  giveBack(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
}

/** Codec streams done with each input chunk once its write callback has run (node:zlib's). */
const doneAtCallback = new WeakSet<object>();

/**
 * Declares that `stream` keeps no reference to a written chunk once that write's callback has run
 * (node:zlib's streams consume each chunk whole before calling back), so a writer may reuse a chunk
 * it handed over and the stream did not take (the gzip codec takes none).
 */
export function markDoneAtCallback<T extends object>(stream: T): T {
  doneAtCallback.add(stream);
  return stream;
}

/**
 * After a successful write's callback: gives `chunk` back to its writer when `stream` is done with its
 * chunks at the callback and never took this one; true when it did. Else the chunk stays with the
 * stream (and the collector) as before.
 */
export function reclaimUntaken(stream: object, chunk: Buffer): boolean {
  const giveBack = handedOver.get(chunk);
  if (giveBack === undefined || !doneAtCallback.has(stream)) return false;
  handedOver.delete(chunk);
  giveBack(chunk);
  return true;
}
