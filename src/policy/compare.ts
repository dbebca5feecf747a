// Finds where two byte streams first differ, so a refused archive can name the byte offset and LSN.
import type { Readable } from 'node:stream';

/** Pulls chunks from an async iterator, letting the caller take any number of bytes at a time. */
class ChunkReader {
  private buffer: Buffer = Buffer.alloc(0);
  private done = false;
  private readonly iterator: AsyncIterator<Buffer>;

  constructor(stream: Readable) {
    this.iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  /** Makes at least one byte available; false at end of stream. */
  async fill(): Promise<boolean> {
    while (this.buffer.length === 0 && !this.done) {
      const next = await this.iterator.next();
      if (next.done === true) this.done = true;
      else this.buffer = Buffer.from(next.value);
    }
    return this.buffer.length > 0;
  }

  peek(): Buffer {
    return this.buffer;
  }

  consume(count: number): void {
    this.buffer = this.buffer.subarray(count);
  }

  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}

/** Offset of the first differing byte (or of the shorter stream's end), or null when identical. */
export async function firstDifference(left: Readable, right: Readable): Promise<number | null> {
  const a = new ChunkReader(left);
  const b = new ChunkReader(right);
  let offset = 0;
  try {
    for (;;) {
      const [hasA, hasB] = await Promise.all([a.fill(), b.fill()]);
      if (!hasA || !hasB) return hasA === hasB ? null : offset;
      const chunkA = a.peek();
      const chunkB = b.peek();
      const length = Math.min(chunkA.length, chunkB.length);
      if (!chunkA.subarray(0, length).equals(chunkB.subarray(0, length))) {
        let index = 0;
        while (chunkA[index] === chunkB[index]) index += 1;
        return offset + index;
      }
      a.consume(length);
      b.consume(length);
      offset += length;
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}
