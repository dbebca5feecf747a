// Zstandard through @bokuweb/zstd-wasm (the reference C library compiled to WASM: nothing to build at install).
// The package compresses whole buffers only, so the stream is a sequence of independent frames of at most
// 4 MiB of input each: the standard format (RFC 8878 allows concatenated frames; `zstd -d` decodes them)
// with bounded memory at any segment size.
import { Transform, type TransformCallback } from 'node:stream';
import { WalvaultError } from '../core/errors.js';
import { loadXxhash, type XxhashApi } from '../core/hash.js';
import { ZSTD_INFO } from './catalog.js';
import { FrameSequenceDecoder } from './frames.js';
import type { Codec } from './types.js';

type ZstdModule = typeof import('@bokuweb/zstd-wasm');

let loaded: Promise<ZstdModule> | undefined;

/** Loads and instantiates the WASM module once per process, only when zstd is used. */
function loadZstd(): Promise<ZstdModule> {
  loaded ??= (async () => {
    const zstd = await import('@bokuweb/zstd-wasm');
    await zstd.init();
    return zstd;
  })();
  return loaded;
}

const FRAME_MAGIC = 0xfd2fb528;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** Input bytes per frame we write: bounds memory, and costs little ratio on WAL (matches are local). */
const FRAME_INPUT = 4 << 20;
/** Largest block content allowed by the format. */
const BLOCK_MAX = 128 << 10;
/** Frames (of other writers) whose decoded size could exceed this are refused rather than buffered. */
const DECODED_FRAME_LIMIT = 256 << 20;

function corrupt(detail: string): WalvaultError {
  return new WalvaultError('corrupt', `stored object is not valid zstd data: ${detail}`, {
    hint: 'the stored object is damaged; restore it from another copy of the archive',
  });
}

/** Compresses into a sequence of zstd frames, one per 4 MiB of input (one frame for an empty input). */
class ZstdFramesEncoder extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private framesWritten = 0;

  constructor(private readonly zstd: ZstdModule, private readonly xxh: XxhashApi, private readonly level: number) {
    super();
  }

  /**
   * Compresses the pending input into one frame and adds the content checksum the format defines
   * (flag bit 2 of the frame header descriptor; the low 32 bits of XXH64, seed 0, after the last
   * block), so `zstd -d` and our decoder both detect damage.
   */
  private emitFrame(): void {
    const input = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    const compressed = this.zstd.compress(input, this.level);
    const frame = Buffer.from(compressed.buffer, compressed.byteOffset, compressed.byteLength);
    if (frame.readUInt32LE(0) !== FRAME_MAGIC || ((frame[4] ?? 0) & 0x04) !== 0) throw new Error('unexpected zstd frame from the compressor');
    frame[4] = (frame[4] ?? 0) | 0x04;
    const checksum = Buffer.alloc(4);
    checksum.writeUInt32LE(Number(this.xxh.h64Raw(input, 0n) & 0xffffffffn));
    this.push(frame);
    this.push(checksum);
    this.framesWritten += 1;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      let rest = chunk;
      while (rest.length > 0) {
        const take = Math.min(FRAME_INPUT - this.pendingBytes, rest.length);
        this.pending.push(rest.subarray(0, take));
        this.pendingBytes += take;
        rest = rest.subarray(take);
        if (this.pendingBytes === FRAME_INPUT) this.emitFrame();
      }
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.pendingBytes > 0 || this.framesWritten === 0) this.emitFrame();
      callback();
    } catch (error) {
      callback(error as Error);
    }
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
 * in one call. Memory: one frame (ours hold 4 MiB of content); skippable frames are skipped.
 */
class ZstdFramesDecoder extends FrameSequenceDecoder {
  protected state: FrameState = { step: 'magic' };

  constructor(private readonly zstd: ZstdModule) {
    super('zstd', corrupt);
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
        const singleSegment = (descriptor & 0x20) !== 0;
        if ((descriptor & 0x08) !== 0) throw corrupt('reserved bit set in the frame header');
        const dictionaryBytes = [0, 1, 2, 4][descriptor & 0x03] ?? 0;
        const sizeFlag = descriptor >> 6;
        const contentSizeBytes = sizeFlag === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][sizeFlag] ?? 0;
        const headerLength = 4 + 1 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
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
          else this.decodeFrame(state.cursor, state.contentSize ?? state.bound);
        }
        return true;
      }
      case 'checksum': {
        if (queue.length < state.cursor) return false;
        this.decodeFrame(state.cursor, state.contentSize ?? state.bound);
        return true;
      }
    }
  }

  private decodeFrame(length: number, capacity: number): void {
    const frame = this.queue.take(length);
    let output: Uint8Array;
    try {
      output = this.zstd.decompress(frame, { defaultHeapSize: Math.max(capacity, 1) });
    } catch (error) {
      throw corrupt(`frame does not decompress (${(error as Error).message})`);
    }
    if (output.byteLength > 0) this.push(Buffer.from(output.buffer, output.byteOffset, output.byteLength));
    this.state = { step: 'magic' };
  }
}

function tooLarge(): WalvaultError {
  return new WalvaultError('corrupt', `stored zstd frame decodes to more than ${DECODED_FRAME_LIMIT >> 20} MiB, too large to decode in bounded memory`, {
    hint: 'walvault writes frames of 4 MiB; this object was written by another tool: decompress it by hand with `zstd -d`',
  });
}

/** zstd codec: levels 1 (fast) to 19 (smallest, slow), default 3 as in the zstd tool; frames carry a content checksum. */
export const zstdCodec: Codec = {
  name: ZSTD_INFO.name,
  levels: ZSTD_INFO.levels,
  async compressor(level) {
    const [zstd, xxh] = await Promise.all([loadZstd(), loadXxhash()]);
    return new ZstdFramesEncoder(zstd, xxh, level);
  },
  async decompressor() {
    return new ZstdFramesDecoder(await loadZstd());
  },
};
