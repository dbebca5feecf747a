// Adapters that put a stream behind another Duplex: lazy opening, format sniffing, error mapping.
import { Duplex } from 'node:stream';

/** Turns a low-level error from an inner stream into the error walvault reports. */
export type ErrorMapper = (error: unknown) => Error;

/** How a Relay opens its inner stream. */
export interface RelayOptions {
  /** Opens the inner stream, given at least `sniffBytes` first bytes of input (fewer only if the input is shorter). */
  open: (head: Buffer) => Promise<Duplex>;
  /** Bytes to collect before opening; 0 opens on the first write or at end of input. */
  sniffBytes?: number;
  mapError: ErrorMapper;
}

/**
 * A Duplex that forwards to an inner Duplex opened lazily (optionally after seeing the first bytes),
 * keeps backpressure on both sides, and reports the inner stream's errors through `mapError`.
 */
export class Relay extends Duplex {
  private inner: Duplex | undefined;
  private opening: Promise<Duplex> | undefined;
  private head: Buffer[] = [];
  private headBytes = 0;
  private readonly sniffBytes: number;

  constructor(private readonly options: RelayOptions) {
    super({ readableHighWaterMark: 1 << 16, writableHighWaterMark: 1 << 16 });
    this.sniffBytes = options.sniffBytes ?? 0;
  }

  private openInner(): Promise<Duplex> {
    this.opening ??= (async () => {
      const head = Buffer.concat(this.head);
      this.head = [];
      const inner = await this.options.open(head);
      this.inner = inner;
      inner.on('data', (chunk: Buffer) => {
        if (!this.push(chunk)) inner.pause();
      });
      inner.on('end', () => this.push(null));
      inner.on('error', (error) => this.destroy(this.options.mapError(error)));
      if (head.length > 0) await this.writeInner(inner, head);
      return inner;
    })();
    return this.opening;
  }

  private writeInner(inner: Duplex, chunk: Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (inner.write(chunk)) resolve();
      else inner.once('drain', resolve);
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.inner === undefined && this.opening === undefined && this.headBytes + chunk.length < this.sniffBytes) {
      this.head.push(chunk);
      this.headBytes += chunk.length;
      callback();
      return;
    }
    const run = async (): Promise<void> => {
      if (this.opening === undefined) {
        this.head.push(chunk);
        await this.openInner();
        return;
      }
      await this.writeInner(await this.opening, chunk);
    };
    run().then(() => callback(), (error: unknown) => callback(this.options.mapError(error)));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.openInner().then(
      (inner) => {
        inner.end();
        callback();
      },
      (error: unknown) => callback(this.options.mapError(error)),
    );
  }

  override _read(): void {
    this.inner?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner?.destroy();
    callback(error);
  }
}

/** Wraps a stream so that its errors reach the pipeline as `mapError(error)`. */
export function withErrors(inner: Duplex, mapError: ErrorMapper): Duplex {
  return new Relay({ open: async () => inner, mapError });
}
