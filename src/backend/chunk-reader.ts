// Reading a body of unknown length chunk by chunk, as its producer pushed them (putLarge of S3 and POSIX).
import type { Readable } from 'node:stream';

/**
 * Reads a stream chunk by chunk as its producer pushed them ('data' events, paused between reads).
 * The async iterator would read() whatever is buffered, concatenating two or more chunks into a fresh
 * buffer each time: garbage that raised the peak RSS of a 512 MiB upload by some 30 MiB. And a chunk
 * its writer handed over (core/owned.ts) arrives as that very chunk, for the reader to give back.
 */
export class ChunkReader {
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private ended = false;
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;

  /**
   * `aheadBytes`: how much the producer may push while the reader works on a chunk (0: it is paused
   * after each chunk until the reader asks for the next). A reader that writes each chunk to a file
   * wants the producer to go on meanwhile (its reads and the writes overlap in the thread pool).
   */
  constructor(private readonly stream: Readable, private readonly aheadBytes = 0) {
    stream.pause();
    stream.on('data', (chunk: Buffer | string) => {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      this.queue.push(buffer);
      this.queuedBytes += buffer.length;
      if (this.queuedBytes >= this.aheadBytes) stream.pause();
      this.wake?.();
    });
    stream.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    stream.on('error', (error) => {
      this.failure ??= { error };
      this.wake?.();
    });
    stream.on('close', () => {
      if (!this.ended) this.failure ??= { error: Object.assign(new Error('the stream closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }) };
      this.wake?.();
    });
  }

  /** The next chunk; undefined at the end; rejects with the stream's error. */
  async next(): Promise<Buffer | undefined> {
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk !== undefined) {
        this.queuedBytes -= chunk.length;
        if (this.queuedBytes < this.aheadBytes && !this.ended && this.failure === undefined) this.stream.resume();
        return chunk;
      }
      if (this.failure !== undefined) throw this.failure.error;
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        this.stream.resume();
      });
      this.wake = undefined;
    }
  }
}
