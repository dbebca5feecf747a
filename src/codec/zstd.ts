// Zstandard: Node's own zstd (node:zlib, Node 22.15 and later) where the running Node has it, else
// @bokuweb/zstd-wasm (the reference C library compiled to WASM: nothing to build at install).
// The stream is a sequence of independent frames of at most 1 MiB of input each, each with a content
// checksum: the standard format (RFC 8878 allows concatenated frames; `zstd -d` decodes them), with
// bounded memory at any segment size, and frames that compress and decompress in parallel (jobs.ts).
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { COPY_CHUNK, returnCopyBufferAfter, takeCopyBuffer } from '../core/buffers.js';
import { WalvaultError } from '../core/errors.js';
import { loadXxhash } from '../core/hash.js';
import { ZSTD_INFO } from './catalog.js';
import { FrameSequenceDecoder } from './frames.js';
import { OrderedOutput } from './ordered.js';
import { giveBackConsumed, takeHandedOver } from '../core/owned.js';
import { runCodecJob, StreamGroup } from './pool.js';
import type { Codec } from './types.js';

type ZstdModule = typeof import('@bokuweb/zstd-wasm');

let loaded: Promise<ZstdModule> | undefined;

/** Loads and instantiates the WASM module once per thread, only when zstd is used without Node's own. */
function loadZstd(): Promise<ZstdModule> {
  loaded ??= (async () => {
    const zstd = await import('@bokuweb/zstd-wasm');
    await zstd.init();
    return zstd;
  })();
  return loaded;
}

/** The part of node:zlib's zstd API used here (Node 22.15 and later; @types/node 20 does not know it). */
interface NativeZstd {
  createZstdCompress(options: { params: Record<number, number>; flush: number }): Transform;
  createZstdDecompress(): Transform;
  constants: Record<string, number>;
}

let nativeAllowed = true;

/** Node's own zstd, when this Node has it and it is not turned off (see preferNativeZstd). */
function nativeZstd(): NativeZstd | undefined {
  const candidate = zlib as unknown as Partial<NativeZstd>;
  return nativeAllowed && typeof candidate.createZstdCompress === 'function' && typeof candidate.createZstdDecompress === 'function' ? (candidate as NativeZstd) : undefined;
}

/** True when zstd jobs run in Node's own zstd (libuv's thread pool) rather than in WASM. */
export function hasNativeZstd(): boolean {
  return nativeZstd() !== undefined;
}

/** Turns Node's own zstd off or back on in this thread (tests and the codec benchmark compare it with WASM). */
export function preferNativeZstd(allowed: boolean): void {
  nativeAllowed = allowed;
}

const FRAME_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** Input bytes per frame we write: bounds memory, and costs little ratio on WAL (matches are local). */
const FRAME_INPUT = COPY_CHUNK;
/** Largest block content allowed by the format. */
const BLOCK_MAX = 128 << 10;
/** Frames (of other writers) whose decoded size could exceed this are refused rather than buffered. */
const DECODED_FRAME_LIMIT = 256 << 20;

function corrupt(detail: string): WalvaultError {
  return new WalvaultError('corrupt', `stored object is not valid zstd data: ${detail}`, {
    hint: 'the stored object is damaged; restore it from another copy of the archive',
  });
}

/**
 * A node:zlib zstd stream kept open for many frames: each frame is one write, and what the stream
 * emits for it is the frame's output. A one-shot zstdCompress/zstdDecompress per frame makes a new zstd
 * context each time, its workspace (~3 MiB compressing at level 3) malloc'd in libuv's threads and
 * freed a millisecond later; over a backup malloc kept ~25-35 MiB of that resident (peak RSS of a
 * 1.5 GiB zstd backup on Node 22, 107-119 MiB), and a context reused for every frame does not.
 * Compressing, the stream is made with `flush: ZSTD_e_end`: every write ends a frame, and zstd, given
 * the frame's whole input in its first call, writes the content size in the header as a one-shot call
 * with pledgedSrcSize does (not byte for byte: block boundaries may differ; native-zstd.test.ts compares
 * what readers depend on). Decompressing, a frame's end leaves the context ready for the next frame.
 * The stream pushes a write's output before it calls the write's callback (node:zlib's processCallback,
 * a flowing stream with nothing buffered emits at once); since a frame that lost its tail to the next
 * write would still start right, each output is checked to be whole (compressing: one frame, see
 * oneFrame; decompressing: the frame's content size) before it is used.
 */
interface Lane {
  readonly stream: Transform;
  parts: Buffer[];
  broken: boolean;
  /** Ends the write in flight with the stream's error: a zlib stream that fails never calls that write's callback. */
  failWrite?: (error: Error) => void;
}

/** Open lanes not in use, per kind (`c<level>` or `d`), in this thread; more are closed when released. */
const idleLanes = new Map<string, Lane[]>();
/** Idle lanes kept per kind: an encoder or decoder has two frames in flight (ordered.ts, STREAM_JOBS). */
const IDLE_LANES = 2;

function openLane(stream: Transform): Lane {
  const lane: Lane = { stream, parts: [], broken: false };
  stream.on('data', (part: Buffer) => lane.parts.push(part));
  const fail = (error: Error): void => {
    lane.broken = true;
    lane.failWrite?.(error);
  };
  stream.on('error', fail);
  stream.on('close', () => fail(new Error('zstd stream closed')));
  return lane;
}

/** Closes the idle lanes of this thread (their zstd contexts, ~2.6 MiB each compressing): when a phase that used them is over. */
export function closeIdleZstdLanes(): void {
  for (const lanes of idleLanes.values()) for (const lane of lanes.splice(0)) lane.stream.destroy();
}

/** Runs `input` through an idle lane of `kind` (or a new one from `open`): the output of that one write. */
async function throughLane(kind: string, open: () => Transform, input: Uint8Array): Promise<Buffer> {
  const lane = idleLanes.get(kind)?.pop() ?? openLane(open());
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      lane.failWrite = reject;
      lane.stream.write(input, (error) => {
        const parts = lane.parts;
        lane.parts = [];
        if (error !== null && error !== undefined) reject(error);
        else resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
      });
    });
  } catch (error) {
    lane.broken = true;
    throw error;
  } finally {
    lane.failWrite = undefined;
    const idle = idleLanes.get(kind) ?? [];
    idleLanes.set(kind, idle);
    if (!lane.broken && idle.length < IDLE_LANES) idle.push(lane);
    else lane.stream.destroy();
  }
}

/** Header length of a frame from its descriptor byte (the byte after the magic number), RFC 8878 3.1.1.1. */
function frameHeaderLength(descriptor: number): { length: number; contentSizeBytes: number; dictionaryBytes: number } {
  const singleSegment = (descriptor & 0x20) !== 0;
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 0x03] ?? 0;
  const sizeFlag = descriptor >> 6;
  const contentSizeBytes = sizeFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][sizeFlag] ?? 0;
  return { length: 4 + 1 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes, contentSizeBytes, dictionaryBytes };
}

/**
 * The length of the whole frame at `offset` of `bytes` (header, blocks up to the last, checksum if
 * flagged) and the content size its header declares (null when it does not); null when no whole frame is there.
 */
function frameAt(bytes: Buffer, offset: number): { length: number; checksum: boolean; contentSize: number | null } | null {
  if (bytes.length < offset + 6 || bytes.readUInt32LE(offset) !== FRAME_MAGIC) return null;
  const descriptor = bytes[offset + 4] ?? 0;
  const header = frameHeaderLength(descriptor);
  if (bytes.length < offset + header.length) return null;
  const contentSize = header.contentSizeBytes === 0 ? null : bytes.readUIntLE(offset + header.length - header.contentSizeBytes, Math.min(header.contentSizeBytes, 6)) + (header.contentSizeBytes === 2 ? 256 : 0);
  const checksum = (descriptor & 0x04) !== 0;
  let cursor = offset + header.length;
  for (;;) {
    if (cursor + 3 > bytes.length) return null;
    const block = bytes.readUIntLE(cursor, 3);
    cursor += 3 + (((block >> 1) & 3) === 1 ? 1 : block >>> 3);
    if ((block & 1) === 1) break;
  }
  cursor += checksum ? 4 : 0;
  return cursor <= bytes.length ? { length: cursor - offset, checksum, contentSize } : null;
}

/**
 * The one frame with a content checksum that a write to a compressing lane produced, without the empty
 * frames that may follow it: when a frame's last byte fills node:zlib's output buffer exactly, node:zlib
 * calls zstd once more with ZSTD_e_end and no input, and zstd answers with a new, empty frame (13 bytes;
 * seen about once per thousand frames of a backup). Anything else is an error.
 */
function oneFrame(bytes: Buffer): Buffer {
  const first = frameAt(bytes, 0);
  if (first === null || !first.checksum) throw new Error('unexpected zstd output from node:zlib: not a whole frame with a checksum');
  for (let at = first.length; at < bytes.length; ) {
    const empty = frameAt(bytes, at);
    if (empty === null || empty.contentSize !== 0) throw new Error('unexpected zstd output from node:zlib: more than one frame for one write');
    at += empty.length;
  }
  return first.length === bytes.length ? bytes : bytes.subarray(0, first.length);
}

/**
 * One frame of `input` with the content checksum the format defines (flag bit 2 of the frame header
 * descriptor; the low 32 bits of XXH64, seed 0, after the last block), so `zstd -d` and our decoder
 * both detect damage. A job (jobs.ts): runs on any thread.
 */
export async function compressFrame(level: number, input: Uint8Array, useNative: boolean): Promise<Uint8Array> {
  const native = useNative ? nativeZstd() : undefined;
  if (native !== undefined) {
    const { ZSTD_c_compressionLevel, ZSTD_c_checksumFlag, ZSTD_c_contentSizeFlag, ZSTD_e_end } = native.constants as Record<string, number>;
    const params = { [ZSTD_c_compressionLevel as number]: level, [ZSTD_c_checksumFlag as number]: 1, [ZSTD_c_contentSizeFlag as number]: 1 };
    return oneFrame(await throughLane(`c${level}`, () => native.createZstdCompress({ params, flush: ZSTD_e_end as number }), input));
  }
  const [zstd, xxh] = await Promise.all([loadZstd(), loadXxhash()]);
  const compressed = zstd.compress(input as Buffer, level);
  const frame = Buffer.allocUnsafeSlow(compressed.byteLength + 4);
  frame.set(compressed, 0);
  if (frame.readUInt32LE(0) !== FRAME_MAGIC || ((frame[4] ?? 0) & 0x04) !== 0) throw new Error('unexpected zstd frame from the compressor');
  frame[4] = (frame[4] ?? 0) | 0x04;
  frame.writeUInt32LE(Number(xxh.h64Raw(input, 0n) & 0xffffffffn), compressed.byteLength);
  return frame;
}

/**
 * Decompresses one whole frame of at most `capacity` decoded bytes; a job (jobs.ts). `contentSize`:
 * the size its header declares, which the decoded bytes must match (null: it declares none).
 */
export async function decompressFrame(frame: Uint8Array, capacity: number, useNative: boolean, contentSize: number | null): Promise<Uint8Array> {
  const native = useNative ? nativeZstd() : undefined;
  let output: Uint8Array;
  try {
    output = native !== undefined ? await throughLane('d', () => native.createZstdDecompress(), frame) : (await loadZstd()).decompress(frame as Buffer, { defaultHeapSize: Math.max(capacity, 1) });
  } catch (error) {
    throw corrupt(`frame does not decompress (${(error as Error).message})`);
  }
  if (output.byteLength > capacity || (contentSize !== null && output.byteLength !== contentSize)) {
    throw corrupt(`frame decodes to ${output.byteLength} bytes, ${contentSize ?? `at most ${capacity}`} expected`);
  }
  return output;
}

/**
 * Compresses into a sequence of zstd frames, one per 1 MiB of input (one frame for an empty input).
 * Each frame's input is gathered in a copy buffer (core/buffers.ts; back to the spares once its job is
 * done, so a long stream allocates none per frame) or is a 1 MiB chunk its writer handed over
 * (owned.ts), handed to the job whole (moved to a worker thread, not copied).
 */
class ZstdFramesEncoder extends Transform {
  private frame: Buffer | undefined;
  private filled = 0;
  private framesWritten = 0;
  private readonly output = new OrderedOutput(this, (error) => error as Error);

  constructor(private readonly level: number, private readonly group: StreamGroup = new StreamGroup()) {
    super();
  }

  /** Starts the frame's job; `giveBack`: its input was handed over (owned.ts), returned once the job is done with it. */
  private emitFrame(giveBack?: () => void): void {
    const frame = this.frame;
    const input = (frame ?? Buffer.allocUnsafeSlow(0)).subarray(0, this.filled);
    this.frame = undefined;
    this.filled = 0;
    const job = runCodecJob({ op: 'zstd-compress', level: this.level, input, native: hasNativeZstd() }, { owned: true });
    if (giveBack !== undefined) job.then(giveBack, giveBack);
    else if (frame !== undefined) returnCopyBufferAfter(job, frame);
    this.output.add(job);
    this.framesWritten += 1;
  }

  private async gather(chunk: Buffer): Promise<void> {
    this.output.enter(this.group);
    await this.group.admitted();
    let rest = chunk;
    // A whole frame's input handed over by its writer (owned.ts) goes to the job as it is, not copied.
    const giveBack = this.filled === 0 ? takeHandedOver(chunk, FRAME_INPUT) : undefined;
    if (giveBack !== undefined) {
      this.frame = chunk;
      this.filled = FRAME_INPUT;
      this.emitFrame(giveBack);
      await this.output.room();
      return;
    }
    while (rest.length > 0) {
      this.frame ??= takeCopyBuffer();
      const take = Math.min(FRAME_INPUT - this.filled, rest.length);
      rest.copy(this.frame, this.filled, 0, take);
      this.filled += take;
      rest = rest.subarray(take);
      if (this.filled === FRAME_INPUT) {
        this.emitFrame();
        await this.output.room();
      }
    }
    // Copied: a handed-over chunk goes back to its writer (owned.ts).
    giveBackConsumed(chunk);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.gather(chunk).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    if (this.filled > 0 || this.framesWritten === 0) this.emitFrame();
    this.output.end().then(() => callback(), callback);
  }
}

type FrameState =
  | { step: 'magic' }
  | { step: 'skip'; remaining: number }
  | { step: 'header' }
  | { step: 'blocks'; cursor: number; bound: number; checksum: boolean; contentSize: number | null }
  | { step: 'checksum'; cursor: number; bound: number; contentSize: number | null };

/**
 * Splits the input into whole frames by walking frame and block headers, and decompresses each frame
 * in one call. Memory: one frame (ours hold 1 MiB of content, 4 MiB in older archives); skippable frames are skipped.
 */
class ZstdFramesDecoder extends FrameSequenceDecoder {
  protected state: FrameState = { step: 'magic' };

  constructor(group?: StreamGroup) {
    super('zstd', corrupt, group);
  }

  protected step(): boolean {
    const state = this.state;
    const queue = this.queue;
    switch (state.step) {
      case 'magic': {
        if (queue.length < 4) return false;
        const magic = queue.readUInt32LE(0);
        if (magic === FRAME_MAGIC) {
          this.state = { step: 'header' };
        } else if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) {
          if (queue.length < 8) return false;
          const size = queue.readUInt32LE(4);
          queue.take(8);
          this.state = { step: 'skip', remaining: size };
        } else {
          throw corrupt(`unknown magic number 0x${magic.toString(16)}`);
        }
        return true;
      }
      case 'skip': {
        const n = Math.min(state.remaining, queue.length);
        queue.take(n);
        state.remaining -= n;
        if (state.remaining > 0) return false;
        this.state = { step: 'magic' };
        return true;
      }
      case 'header': {
        if (queue.length < 5) return false;
        const descriptor = queue.byteAt(4);
        if ((descriptor & 0x08) !== 0) throw corrupt('reserved bit set in the frame header');
        const { length: headerLength, contentSizeBytes, dictionaryBytes } = frameHeaderLength(descriptor);
        if (queue.length < headerLength) return false;
        if (dictionaryBytes > 0 && queue.readUIntLE(headerLength - contentSizeBytes - dictionaryBytes, dictionaryBytes) !== 0) {
          throw corrupt('frames that need a dictionary are not supported');
        }
        let contentSize: number | null = null;
        if (contentSizeBytes > 0) {
          contentSize = queue.readUIntLE(headerLength - contentSizeBytes, contentSizeBytes) + (contentSizeBytes === 2 ? 256 : 0);
          if (contentSize > DECODED_FRAME_LIMIT) throw tooLarge();
        }
        this.sawFrame = true;
        this.state = { step: 'blocks', cursor: headerLength, bound: 0, checksum: (descriptor & 0x04) !== 0, contentSize };
        return true;
      }
      case 'blocks': {
        if (queue.length < state.cursor + 3) return false;
        const header = queue.readUIntLE(state.cursor, 3);
        const last = (header & 1) === 1;
        const type = (header >> 1) & 3;
        const size = header >>> 3;
        if (type === 3) throw corrupt('reserved block type');
        if (size > BLOCK_MAX) throw corrupt(`block of ${size} bytes exceeds the format's maximum`);
        const payload = type === 1 ? 1 : size;
        if (queue.length < state.cursor + 3 + payload) return false;
        state.cursor += 3 + payload;
        state.bound += type === 2 ? BLOCK_MAX : size;
        if (state.contentSize === null && state.bound > DECODED_FRAME_LIMIT) throw tooLarge();
        if (last) {
          if (state.checksum) this.state = { step: 'checksum', cursor: state.cursor + 4, bound: state.bound, contentSize: state.contentSize };
          else this.decodeFrame(state.cursor, state.bound, state.contentSize);
        }
        return true;
      }
      case 'checksum': {
        if (queue.length < state.cursor) return false;
        this.decodeFrame(state.cursor, state.bound, state.contentSize);
        return true;
      }
    }
  }

  /** `bound`: the most its blocks can decode to; `contentSize`: what its header declares, if it does. */
  private decodeFrame(length: number, bound: number, contentSize: number | null): void {
    const frame = this.queue.take(length);
    this.output.add(runCodecJob({ op: 'zstd-decompress', input: frame, capacity: contentSize ?? bound, contentSize, native: hasNativeZstd() }, { owned: false }));
    this.state = { step: 'magic' };
  }
}

function tooLarge(): WalvaultError {
  return new WalvaultError('corrupt', `stored zstd frame decodes to more than ${DECODED_FRAME_LIMIT >> 20} MiB, too large to decode in bounded memory`, {
    hint: 'walvault writes frames of at most 4 MiB; this object was written by another tool: decompress it by hand with `zstd -d`',
  });
}

/** zstd codec: levels 1 (fast) to 19 (smallest, slow), default 3 as in the zstd tool; frames carry a content checksum. */
export const zstdCodec: Codec = {
  name: ZSTD_INFO.name,
  levels: ZSTD_INFO.levels,
  async compressor(level, group) {
    return new ZstdFramesEncoder(level, group);
  },
  async decompressor(group) {
    return new ZstdFramesDecoder(group);
  },
};
