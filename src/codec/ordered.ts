// A stream's codec jobs may finish out of order (different worker threads): their outputs are pushed in the order the jobs were started.
import type { Transform } from 'node:stream';
import type { StreamGroup } from './pool.js';

/** Jobs a stream may have started and not yet pushed: enough to keep two threads busy on one object, few enough to bound memory. */
export const STREAM_JOBS = 2;

/** Output pushed and not yet read that stops a stream taking more input (one 1 MiB block or frame). */
const UNREAD_LIMIT = 1 << 20;

/** Turns a job's output (a Uint8Array from a worker, or a Buffer) into a Buffer without copying. */
export function asBuffer(output: Uint8Array): Buffer {
  return Buffer.isBuffer(output) ? output : Buffer.from(output.buffer, output.byteOffset, output.byteLength);
}

/**
 * The outputs of a Transform, in order: each `add` takes a result now or later; it is pushed once every
 * earlier one has been, after its `then` (checksums over the output, in order) ran. The first failure
 * destroys the stream with `mapError(failure)`, and no output after it is pushed.
 */
export class OrderedOutput {
  private tail: Promise<void> = Promise.resolve();
  private readonly pending: Array<Promise<void>> = [];
  private failed = false;
  private readonly readWaiters: Array<() => void> = [];
  /** The stream's place in its pipeline's StreamGroup, held from its first input until it ends or is destroyed. */
  private release: (() => void) | undefined;

  constructor(
    private readonly stream: Transform,
    private readonly mapError: (error: unknown) => Error,
  ) {
    // Results are pushed after the input that made them was accepted, so the Transform's own
    // backpressure (it holds the write callback while its readable side is full) comes too late:
    // room() also waits until the reader has taken what was pushed, woken from _read.
    const read = stream._read.bind(stream);
    stream._read = (size: number): void => {
      read(size);
      for (const wake of this.readWaiters.splice(0)) wake();
    };
    // A stream destroyed (failed, or its pipeline torn down) leaves its group too.
    const destroy = stream._destroy.bind(stream);
    stream._destroy = (error: Error | null, callback: (error?: Error | null) => void): void => {
      this.release?.();
      destroy(error, callback);
    };
  }

  /** Counts the stream in its pipeline's group (the codec pool's busy objects) from its first input on. */
  enter(group: StreamGroup): void {
    this.release ??= group.enter();
  }

  /** Resolves once every result is pushed, and leaves the group; rejects (mapped) when any failed. */
  async end(): Promise<void> {
    await this.drained();
    this.release?.();
  }

  /** Queues a result for pushing; `then` sees the output first and may throw (the stream then fails). */
  add(result: Uint8Array | Promise<Uint8Array>, then?: (output: Buffer) => void): void {
    const settled = Promise.resolve(result);
    settled.catch(() => undefined);
    const pushed = this.tail.then(async () => {
      const output = asBuffer(await settled);
      then?.(output);
      if (output.length > 0 && !this.stream.destroyed) this.stream.push(output);
    });
    this.tail = pushed;
    this.pending.push(pushed);
    pushed.then(
      () => this.pending.splice(this.pending.indexOf(pushed), 1),
      (error: unknown) => {
        this.pending.splice(this.pending.indexOf(pushed), 1);
        if (this.failed) return;
        this.failed = true;
        this.stream.destroy(this.mapError(error));
      },
    );
  }

  /** Resolves once fewer than `limit` results wait to be pushed; rejects (mapped) once any failed. */
  async room(limit = STREAM_JOBS): Promise<void> {
    try {
      while (this.pending.length >= limit) await this.pending[0];
      while (this.stream.readableLength >= UNREAD_LIMIT && !this.stream.destroyed) await new Promise<void>((resolve) => this.readWaiters.push(resolve));
      if (this.failed) await this.tail;
    } catch (error) {
      throw this.mapError(error);
    }
  }

  /** Resolves once every result is pushed; rejects (mapped) when any failed. */
  async drained(): Promise<void> {
    try {
      await this.tail;
    } catch (error) {
      throw this.mapError(error);
    }
  }
}
