// LZ4 in the standard LZ4 frame format (readable by `lz4 -d`), blocks compressed by lz4_flex compiled to WASM (lz4-wasm-nodejs), decoded here.
import { Transform, type TransformCallback } from 'node:stream';
import { returnCopyBufferAfter, takeCopyBuffer } from '../core/buffers.js';
import { WalvaultError } from '../core/errors.js';
import { loadXxhash, type XxhashApi } from '../core/hash.js';
import { LZ4_INFO } from './catalog.js';
import { FrameSequenceDecoder } from './frames.js';
import { OrderedOutput } from './ordered.js';
import { giveBackConsumed, takeHandedOver } from '../core/owned.js';
import { runCodecJob, StreamGroup } from './pool.js';
import type { Codec } from './types.js';

type Lz4Module = typeof import('lz4-wasm-nodejs');
type Hasher32 = ReturnType<XxhashApi['create32']>;

let lz4Loaded: Promise<Lz4Module> | undefined;

/** Loads the WASM block compressor only when lz4 is used (once per thread). */
function loadLz4(): Promise<Lz4Module> {
  lz4Loaded ??= import('lz4-wasm-nodejs');
  return lz4Loaded;
}

const FRAME_MAGIC = 0x184d2204;
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** Block maximum size 1 MiB (BD code 6): bounds memory per stream (decoding takes any block size the format allows); a copy buffer (core/buffers.ts, COPY_CHUNK) holds one. */
const BLOCK_SIZE = 1 << 20;
const BLOCK_SIZE_CODES: Readonly<Record<number, number>> = { 4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20 };
const UNCOMPRESSED_FLAG = 0x80000000;
/** LZ4 matches reach back at most 64 KiB: the dictionary kept for linked blocks. */
const WINDOW = 64 << 10;

function corrupt(detail: string): WalvaultError {
  return new WalvaultError('corrupt', `stored object is not valid lz4 frame data: ${detail}`, {
    hint: 'the stored object is damaged; restore it from another copy of the archive',
  });
}

const EMPTY = Buffer.alloc(0);

/** The 4-byte little-endian form of `value`. */
function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value >>> 0);
  return buffer;
}

/**
 * One independent block as the frame stores it: its size word, then the compressed bytes, or the
 * original bytes (flagged) when compressing does not make them smaller. A job (jobs.ts): runs on any thread.
 */
export async function compressBlock(block: Uint8Array): Promise<Uint8Array> {
  const lz4 = await loadLz4();
  // lz4_flex prepends the uncompressed size (4 bytes) to the raw LZ4 block, in a buffer of its own:
  // those 4 bytes become the block's size word in place (no copy of the compressed bytes).
  const compressed = lz4.compress(block);
  const size = compressed.length - 4;
  if (size < block.length) {
    new DataView(compressed.buffer, compressed.byteOffset, 4).setUint32(0, size, true);
    return compressed;
  }
  const stored = Buffer.allocUnsafeSlow(4 + block.length);
  stored.writeUInt32LE((block.length | UNCOMPRESSED_FLAG) >>> 0, 0);
  stored.set(block, 4);
  return stored;
}

/** Decodes one independent raw block (no dictionary) of at most `maxOutput` bytes; a job (jobs.ts). */
export async function decompressBlock(source: Uint8Array, maxOutput: number): Promise<Uint8Array> {
  const input = Buffer.isBuffer(source) ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength);
  return decodeBlock(input, EMPTY, maxOutput);
}

/**
 * Compresses into one LZ4 frame: independent 1 MiB blocks and a content checksum. Each block is
 * gathered in a copy buffer (core/buffers.ts; back to the spares once its job is done) or is a 1 MiB
 * chunk its writer handed over (owned.ts), handed to its job whole (moved to a worker thread, not copied);
 * the content checksum is taken here, in input order.
 */
class Lz4FrameEncoder extends Transform {
  private block: Buffer | undefined;
  private filled = 0;
  private headerWritten = false;
  private readonly output = new OrderedOutput(this, (error) => error as Error);

  constructor(private readonly xxh: XxhashApi, private readonly content: Hasher32, private readonly group: StreamGroup = new StreamGroup()) {
    super();
  }

  private writeHeader(): void {
    if (this.headerWritten) return;
    this.headerWritten = true;
    // FLG: version 01, independent blocks, no block checksum, no content size, content checksum, no dict id.
    const descriptor = Buffer.from([0x64, 0x60]);
    const headerChecksum = (this.xxh.h32Raw(descriptor, 0) >>> 8) & 0xff;
    this.output.add(Buffer.concat([u32(FRAME_MAGIC), descriptor, Buffer.from([headerChecksum])]));
  }

  /** Starts the block's job; `giveBack`: the block was handed over (owned.ts), returned once the job is done with it. */
  private emitBlock(giveBack?: () => void): void {
    const block = this.block as Buffer;
    const input = block.subarray(0, this.filled);
    this.block = undefined;
    this.filled = 0;
    const job = runCodecJob({ op: 'lz4-compress', input }, { owned: true });
    if (giveBack !== undefined) job.then(giveBack, giveBack);
    else returnCopyBufferAfter(job, block);
    this.output.add(job);
  }

  private async gather(chunk: Buffer): Promise<void> {
    this.output.enter(this.group);
    await this.group.admitted();
    this.writeHeader();
    this.content.update(chunk);
    let rest = chunk;
    // A whole block handed over by its writer (owned.ts) is the job's input as it is, not copied.
    const giveBack = this.filled === 0 ? takeHandedOver(chunk, BLOCK_SIZE) : undefined;
    if (giveBack !== undefined) {
      this.block = chunk;
      this.filled = BLOCK_SIZE;
      this.emitBlock(giveBack);
      await this.output.room();
      return;
    }
    while (rest.length > 0) {
      this.block ??= takeCopyBuffer();
      const take = Math.min(BLOCK_SIZE - this.filled, rest.length);
      rest.copy(this.block, this.filled, 0, take);
      this.filled += take;
      rest = rest.subarray(take);
      if (this.filled === BLOCK_SIZE) {
        this.emitBlock();
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
    try {
      this.writeHeader();
      if (this.filled > 0) this.emitBlock();
      this.output.add(Buffer.concat([u32(0), u32(this.content.digest())]));
    } catch (error) {
      callback(error as Error);
      return;
    }
    this.output.end().then(() => callback(), callback);
  }
}

/**
 * Decodes one raw LZ4 block whose matches may reach into `dictionary` (the previous 64 KiB of output
 * for linked blocks, `lz4 -BD`). Plain TypeScript: the WASM decoder needs the exact decoded size, which
 * the frame does not record, and cannot take a dictionary. Bounds-checked throughout.
 */
export function decodeBlock(source: Buffer, dictionary: Buffer, maxOutput: number): Buffer {
  const out = Buffer.allocUnsafe(dictionary.length + maxOutput);
  dictionary.copy(out, 0);
  const inputEnd = source.length;
  const outputEnd = out.length;
  let op = dictionary.length;
  let ip = 0;
  while (ip < inputEnd) {
    const token = source[ip++] as number;
    let literals = token >>> 4;
    if (literals === 15) {
      let more = 255;
      while (more === 255) {
        if (ip >= inputEnd) throw corrupt('block ends inside a literal length');
        more = source[ip++] as number;
        literals += more;
      }
    }
    if (ip + literals > inputEnd || op + literals > outputEnd) throw corrupt('literal run overflows the block');
    if (literals < 32) {
      for (let end = ip + literals; ip < end; ) out[op++] = source[ip++] as number;
    } else {
      source.copy(out, op, ip, ip + literals);
      op += literals;
      ip += literals;
    }
    if (ip === inputEnd) break;
    if (ip + 2 > inputEnd) throw corrupt('block ends inside a match offset');
    const offset = (source[ip] as number) | ((source[ip + 1] as number) << 8);
    ip += 2;
    if (offset === 0 || offset > op) throw corrupt('match offset points before the data');
    let length = (token & 15) + 4;
    if ((token & 15) === 15) {
      let more = 255;
      while (more === 255) {
        if (ip >= inputEnd) throw corrupt('block ends inside a match length');
        more = source[ip++] as number;
        length += more;
      }
    }
    if (op + length > outputEnd) throw corrupt('match overflows the block');
    if (length < 32 || offset < length) {
      // Byte by byte: an overlapping match (offset < length) repeats the bytes it is producing.
      for (let from = op - offset, end = op + length; op < end; ) out[op++] = out[from++] as number;
    } else {
      out.copyWithin(op, op - offset, op - offset + length);
      op += length;
    }
  }
  return out.subarray(dictionary.length, op);
}

type DecodeState =
  | { step: 'magic' }
  | { step: 'descriptor'; flags: number; blockMax: number; length: number }
  | { step: 'block-size' }
  | { step: 'block'; size: number; raw: boolean }
  | { step: 'content-checksum' }
  | { step: 'skip'; remaining: number };

/**
 * Decodes LZ4 frames (concatenated frames and skippable frames too), independent or linked blocks,
 * verifying the content checksum when the frame has one. Memory: one block plus a 64 KiB window.
 */
class Lz4FrameDecoder extends FrameSequenceDecoder {
  protected state: DecodeState = { step: 'magic' };
  private blockMax = BLOCK_SIZE;
  private linked = false;
  private blockChecksum = false;
  private content: Hasher32 | undefined;
  private window: Buffer = Buffer.alloc(0);

  constructor(private readonly xxh: XxhashApi, group?: StreamGroup) {
    super('lz4', corrupt, group);
  }

  /** Removes and returns exactly `n` queued bytes, or null when fewer are queued. */
  private takeBytes(n: number): Buffer | null {
    return this.queue.length < n ? null : this.queue.take(n);
  }

  /** Queues decoded data (now, or a job's later result); the content checksum is taken in order as it is pushed. */
  private queueOutput(data: Buffer | Promise<Uint8Array>): void {
    const content = this.content;
    if (Buffer.isBuffer(data) && this.linked && data.length > 0) {
      this.window = data.length >= WINDOW ? Buffer.from(data.subarray(data.length - WINDOW)) : Buffer.concat([this.window, data]).subarray(-WINDOW);
    }
    this.output.add(data, (decoded) => content?.update(decoded));
  }

  protected step(): boolean {
    const state = this.state;
    switch (state.step) {
      case 'magic': {
        if (this.queue.length < 4) return false;
        const magic = this.queue.readUInt32LE(0);
        if (magic === FRAME_MAGIC) {
          this.queue.take(4);
          this.state = { step: 'descriptor', flags: -1, blockMax: 0, length: 0 };
        } else if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) {
          if (this.queue.length < 8) return false;
          const remaining = this.queue.readUInt32LE(4);
          this.queue.take(8);
          this.state = { step: 'skip', remaining };
        } else {
          throw corrupt(`unknown magic number 0x${magic.toString(16)}`);
        }
        return true;
      }
      case 'descriptor': {
        if (this.queue.length < 2) return false;
        const flags = this.queue.byteAt(0);
        const bd = this.queue.byteAt(1);
        if (flags >> 6 !== 1) throw corrupt(`unsupported frame version ${flags >> 6}`);
        if ((flags & 0x01) !== 0) throw corrupt('frames with a dictionary id are not supported');
        const length = 2 + ((flags & 0x08) !== 0 ? 8 : 0) + 1;
        const descriptor = this.takeBytes(length);
        if (descriptor === null) return false;
        const expected = (this.xxh.h32Raw(descriptor.subarray(0, length - 1), 0) >>> 8) & 0xff;
        if (descriptor[length - 1] !== expected) throw corrupt('frame header checksum mismatch');
        const blockMax = BLOCK_SIZE_CODES[(bd >> 4) & 0x07];
        if (blockMax === undefined) throw corrupt(`invalid block maximum size code ${(bd >> 4) & 0x07}`);
        this.blockMax = blockMax;
        this.linked = (flags & 0x20) === 0;
        this.blockChecksum = (flags & 0x10) !== 0;
        this.content = (flags & 0x04) !== 0 ? this.xxh.create32(0) : undefined;
        this.window = Buffer.alloc(0);
        this.sawFrame = true;
        this.state = { step: 'block-size' };
        return true;
      }
      case 'block-size': {
        const bytes = this.takeBytes(4);
        if (bytes === null) return false;
        const word = bytes.readUInt32LE(0);
        if (word === 0) {
          this.state = this.content === undefined ? { step: 'magic' } : { step: 'content-checksum' };
          return true;
        }
        const size = (word & ~UNCOMPRESSED_FLAG) >>> 0;
        if (size > this.blockMax) throw corrupt(`block of ${size} bytes exceeds the frame's maximum of ${this.blockMax}`);
        this.state = { step: 'block', size, raw: (word & UNCOMPRESSED_FLAG) !== 0 };
        return true;
      }
      case 'block': {
        const block = this.takeBytes(state.size + (this.blockChecksum ? 4 : 0));
        if (block === null) return false;
        const data = block.subarray(0, state.size);
        if (this.blockChecksum && this.xxh.h32Raw(data, 0) !== block.readUInt32LE(state.size)) throw corrupt('block checksum mismatch');
        if (state.raw) this.queueOutput(Buffer.from(data));
        // Linked blocks (`lz4 -BD`) reach into the previous block's output: decoded here, in order.
        else if (this.linked) this.queueOutput(decodeBlock(data, this.window, this.blockMax));
        else this.queueOutput(runCodecJob({ op: 'lz4-decompress', input: data, maxOutput: this.blockMax }, { owned: false }));
        this.state = { step: 'block-size' };
        return true;
      }
      case 'content-checksum': {
        const bytes = this.takeBytes(4);
        if (bytes === null) return false;
        const content = this.content;
        // Checked once every block before it is decoded and counted (they may still be in other threads).
        this.output.add(EMPTY, () => {
          if (content !== undefined && bytes.readUInt32LE(0) !== content.digest()) throw corrupt('content checksum mismatch');
        });
        this.content = undefined;
        this.state = { step: 'magic' };
        return true;
      }
      case 'skip': {
        const n = Math.min(state.remaining, this.queue.length);
        if (n > 0) this.takeBytes(n);
        state.remaining -= n;
        if (state.remaining > 0) return false;
        this.state = { step: 'magic' };
        return true;
      }
    }
  }
}

/** lz4 codec: one level (lz4_flex implements the fast LZ4 compressor only); frames carry a content checksum. */
export const lz4Codec: Codec = {
  name: LZ4_INFO.name,
  levels: LZ4_INFO.levels,
  async compressor(_level, group) {
    const xxh = await loadXxhash();
    return new Lz4FrameEncoder(xxh, xxh.create32(0), group);
  },
  async decompressor(group) {
    return new Lz4FrameDecoder(await loadXxhash(), group);
  },
};
