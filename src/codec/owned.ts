// Chunks whose writer hands them over to a codec stream for good: an encoder may keep such a chunk as
// a job's input (and move it to a worker thread) instead of copying it into a block of its own, and
// gives it back to the writer's pool once the job is done with it.

/** Chunks handed over and not yet taken, each with how to give it back; weak, so a chunk never taken costs nothing. */
const handedOver = new WeakMap<Uint8Array, (chunk: Buffer) => void>();

/**
 * Marks `chunk` as given away: the writer will neither change nor reuse it once written to a codec
 * stream, until the encoder calls `giveBack` with it (archive.ts's EncodingSource reads each 1 MiB of a
 * segment into a reused copy buffer, core/buffers.ts, and hands it over).
 */
export function handOver(chunk: Buffer, giveBack: (chunk: Buffer) => void): Buffer {
  handedOver.set(chunk, giveBack);
  return chunk;
}

/**
 * When `chunk` was handed over and fills its whole buffer of exactly `size` bytes: the function that
 * gives it back, to be called once nothing reads it any more (the encoder may keep it until then). A
 * chunk moved to a worker thread meanwhile (its buffer detached) is not given back. Else undefined.
 */
export function takeHandedOver(chunk: Uint8Array, size: number): (() => void) | undefined {
  const giveBack = handedOver.get(chunk);
  if (giveBack === undefined) return undefined;
  handedOver.delete(chunk);
  if (chunk.byteLength !== size || chunk.byteOffset !== 0 || chunk.buffer.byteLength !== size || !(chunk.buffer instanceof ArrayBuffer)) return undefined;
  return () => {
    if (chunk.byteLength === size) giveBack(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  };
}
