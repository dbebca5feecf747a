// A queue of byte chunks that frame parsers read by offset and consume from the front, copying only what they take.

/** Bytes received but not yet consumed, kept as the chunks they arrived in. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The byte at `offset` from the front (offset < length). */
  byteAt(offset: number): number {
    let rest = offset;
    for (const chunk of this.chunks) {
      if (rest < chunk.length) return chunk[rest] as number;
      rest -= chunk.length;
    }
    throw new RangeError(`offset ${offset} beyond ${this.length} queued bytes`);
  }

  /** An unsigned little-endian integer of `size` bytes (at most 6) at `offset`. */
  readUIntLE(offset: number, size: number): number {
    let value = 0;
    for (let index = size - 1; index >= 0; index -= 1) value = value * 256 + this.byteAt(offset + index);
    return value;
  }

  readUInt32LE(offset: number): number {
    return this.readUIntLE(offset, 4);
  }

  /** The first `n` bytes (n <= length), left in the queue. */
  peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) return first.subarray(0, n);
    return Buffer.concat(this.chunks, this.length).subarray(0, n);
  }

  /** Copies what is queued into one buffer of its own: no queued byte is a view of a chunk pushed earlier any more. */
  detach(): void {
    if (this.length > 0) this.chunks = [Buffer.from(Buffer.concat(this.chunks, this.length))];
  }

  /** Removes and returns the first `n` bytes (n <= length). */
  take(n: number): Buffer {
    if (n > this.length) throw new RangeError(`cannot take ${n} of ${this.length} queued bytes`);
    const first = this.chunks[0];
    let result: Buffer;
    if (first !== undefined && first.length >= n) {
      result = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const parts: Buffer[] = [];
      let needed = n;
      while (needed > 0) {
        const chunk = this.chunks[0] as Buffer;
        if (chunk.length <= needed) {
          parts.push(chunk);
          this.chunks.shift();
          needed -= chunk.length;
        } else {
          parts.push(chunk.subarray(0, needed));
          this.chunks[0] = chunk.subarray(needed);
          needed = 0;
        }
      }
      result = Buffer.concat(parts, n);
    }
    this.length -= n;
    return result;
  }
}
