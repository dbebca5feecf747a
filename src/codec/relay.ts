// Adapters that put a stream behind another Duplex: lazy opening, format sniffing, error mapping, web streams.
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

/**
 * A Duplex around a web-streams transformation (`input` → output stream), e.g. the age-encryption
 * package's streaming API. The transformation starts when the output is first read, so a function
 * that reads a header before returning (age decryption) cannot deadlock.
 */
export class WebTransformDuplex extends Duplex {
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private readonly input: ReadableStream<Uint8Array>;
  private reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  private starting: Promise<ReadableStreamDefaultReader<Uint8Array>> | undefined;
  private reading = false;

  constructor(
    private readonly transform: (input: ReadableStream<Uint8Array>) => Promise<ReadableStream<Uint8Array>>,
    private readonly mapError: ErrorMapper,
  ) {
    super({ readableHighWaterMark: 1 << 16, writableHighWaterMark: 1 << 16 });
    const identity = new TransformStream<Uint8Array, Uint8Array>();
    this.writer = identity.writable.getWriter();
    this.input = identity.readable;
    this.writer.closed.catch(() => undefined);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const view = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.writer.write(view).then(() => callback(), (error: unknown) => callback(this.mapError(error)));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.writer.close().then(() => callback(), (error: unknown) => callback(this.mapError(error)));
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      this.starting ??= this.transform(this.input).then((output) => output.getReader());
      this.reader ??= await this.starting;
      for (;;) {
        const { done, value } = await this.reader.read();
        if (done) {
          this.push(null);
          return;
        }
        if (value.byteLength === 0) continue;
        if (!this.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength))) break;
      }
      this.reading = false;
    } catch (error) {
      this.destroy(this.mapError(error));
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.writer.abort(error ?? undefined).catch(() => undefined);
    this.reader?.cancel(error ?? undefined).catch(() => undefined);
    callback(error);
  }
}

/** Wraps a stream so that its errors reach the pipeline as `mapError(error)`. */
export function withErrors(inner: Duplex, mapError: ErrorMapper): Duplex {
  return new Relay({ open: async () => inner, mapError });
}
