// The prefetcher's one priority rule: while PostgreSQL waits for a file, the window's other downloads
// pause between chunks. On a machine or a server that is the bound (s3rver on two cores: each 16 MiB GET
// costs it ~30 ms of a core and the client as much), downloads in parallel share it equally, so the file
// asked for arrived with the rest (measured: four at once took ~490 ms each; one alone ~130 ms). Only
// the order of work changes: every byte still goes through the same hash check, and no answer depends on it.
import { Transform, type TransformCallback } from 'node:stream';

/**
 * Whether the window's downloads hold for requests with this backend: not for a local directory, where
 * no server is shared and the holds only cost (scripts/bench, 31 segments, five runs each in one run:
 * recovery 2.49 s with them, 2.20 s without, 3.67 against 3.09 CPU-seconds; from S3 at +20 ms 3.94 s
 * with, 4.10 s without).
 */
export function holdsWindowDownloads(backendKind: string): boolean {
  return backendKind !== 'local';
}

/** The longest one chunk of a window download waits (a stuck request cannot stall the window past its deadlines). */
export const HOLD_MAX_MS = 2000;

/** Asked before every chunk of a download: a promise to wait for, or null to go on. */
export type Hold = () => Promise<void> | null;

/** Which downloads PostgreSQL waits for, and the hold every other download obeys. */
export class DownloadPriority {
  /** Names PostgreSQL waits for (a request being served), with how many requests wait for each. */
  readonly #urgent = new Map<string, number>();
  #released: { promise: Promise<void>; resolve: () => void } | null = null;

  /**
   * `mayHold`: false while holding would keep the waited-for file out (a decoder of it waits for one of
   * the codec pool's admissions, which held downloads' decoders keep: codec/admission.ts); then
   * nothing holds, and `releaseHolds` wakes what already does.
   */
  constructor(
    private readonly maxHoldMs = HOLD_MAX_MS,
    private readonly mayHold: () => boolean = () => true,
  ) {}

  /** Lets every held download go on now (each asks again before its next chunk). */
  releaseHolds(): void {
    this.#released?.resolve();
    this.#released = null;
  }

  /** True while some request waits. */
  get waiting(): boolean {
    return this.#urgent.size > 0;
  }

  /** For a download of `name`: null when it may go on (nothing waited for, or it is itself waited for), else what to wait for. */
  holdFor(name: string): Promise<void> | null {
    if (this.#urgent.size === 0 || this.#urgent.has(name) || !this.mayHold()) return null;
    if (this.#released === null) {
      let resolve = (): void => undefined;
      const promise = new Promise<void>((done) => (resolve = done));
      this.#released = { promise, resolve };
    }
    return Promise.race([this.#released.promise, new Promise<void>((done) => setTimeout(done, this.maxHoldMs).unref())]);
  }

  /** Runs `work` (serving a request for `name`) with `name` marked as waited for. */
  async urgently<T>(name: string, work: () => Promise<T>): Promise<T> {
    this.#urgent.set(name, (this.#urgent.get(name) ?? 0) + 1);
    // A download of `name` may already wait on a hold from an earlier request: every held one asks again.
    this.releaseHolds();
    try {
      return await work();
    } finally {
      const left = (this.#urgent.get(name) ?? 1) - 1;
      if (left > 0) this.#urgent.set(name, left);
      else this.#urgent.delete(name);
      if (this.#urgent.size === 0) this.releaseHolds();
    }
  }
}

/**
 * Passes chunks on, each only once `hold` lets it: a held download stops reading (backpressure down to
 * the socket), so the server's and the machine's time goes to the download PostgreSQL waits for.
 */
export class HoldStream extends Transform {
  constructor(private readonly hold: Hold) {
    super({ highWaterMark: 64 * 1024 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const wait = this.hold();
    if (wait === null) callback(null, chunk);
    else wait.then(() => callback(null, chunk), callback);
  }
}
