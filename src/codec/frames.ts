// The stream side shared by the frame decoders (lz4, zstd): input is queued and parsed step by step,
// decoded frames or blocks come out in order (OrderedOutput), and an input that ends inside a frame,
// or holds no frame at all, is reported as damaged.
import { Transform, type TransformCallback } from 'node:stream';
import { ByteQueue } from './bytes.js';
import { OrderedOutput } from './ordered.js';
import { StreamGroup } from './pool.js';

/** A Transform that decodes a sequence of frames from a byte queue; subclasses parse, this class feeds and finishes. */
export abstract class FrameSequenceDecoder extends Transform {
  protected readonly queue = new ByteQueue();
  /** Set once a frame starts: an input without any frame is damaged, not an empty file. */
  protected sawFrame = false;
  /** Decoded data, pushed in input order whichever thread decoded it. */
  protected readonly output = new OrderedOutput(this, (error) => error as Error);

  constructor(
    private readonly codecName: string,
    private readonly corrupt: (detail: string) => Error,
    private readonly group: StreamGroup = new StreamGroup(),
  ) {
    super();
  }

  /** Where the parser is; 'magic' between frames (waiting for the next frame's magic number). */
  protected abstract state: { step: string };

  /** Parses what the queue holds: true to be called again, false when it needs more input. */
  protected abstract step(): boolean;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.output.enter(this.group);
    this.queue.push(chunk);
    this.group
      .admitted()
      .then(() => {
        while (this.step());
        return this.output.room();
      })
      .then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    if (this.state.step !== 'magic' || this.queue.length > 0) callback(this.corrupt('the data ends in the middle of a frame (truncated)'));
    else if (!this.sawFrame) callback(this.corrupt(`no ${this.codecName} frame found`));
    else {
      this.output.end().then(() => callback(), callback);
    }
  }
}
