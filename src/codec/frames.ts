// The stream side shared by the frame decoders (lz4, zstd): input is queued and parsed step by step,
// and an input that ends inside a frame, or holds no frame at all, is reported as damaged.
import { Transform, type TransformCallback } from 'node:stream';
import { ByteQueue } from './bytes.js';

/** A Transform that decodes a sequence of frames from a byte queue; subclasses parse, this class feeds and finishes. */
export abstract class FrameSequenceDecoder extends Transform {
  protected readonly queue = new ByteQueue();
  /** Set once a frame starts: an input without any frame is damaged, not an empty file. */
  protected sawFrame = false;

  constructor(
    private readonly codecName: string,
    private readonly corrupt: (detail: string) => Error,
  ) {
    super();
  }

  /** Where the parser is; 'magic' between frames (waiting for the next frame's magic number). */
  protected abstract state: { step: string };

  /** Parses what the queue holds: true to be called again, false when it needs more input. */
  protected abstract step(): boolean;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.queue.push(chunk);
    try {
      while (this.step());
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.state.step !== 'magic' || this.queue.length > 0) callback(this.corrupt('the data ends in the middle of a frame (truncated)'));
    else if (!this.sawFrame) callback(this.corrupt(`no ${this.codecName} frame found`));
    else callback();
  }
}
