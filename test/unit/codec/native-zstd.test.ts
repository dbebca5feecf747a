// Node's own zstd (node:zlib, Node 22.15 and later) and the WASM one write the same format: each reads the other's
// frames, and `zstd -d` reads both. On a Node without it, walvault must say so and use WASM.
import { execFileSync } from 'node:child_process';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { createDecoder, createEncoder } from '../../../src/codec/index.js';
import { compressFrame, decompressFrame, hasNativeZstd, preferNativeZstd } from '../../../src/codec/zstd.js';
import { runThrough, walLikeData } from '../../support/codec.js';

const nodeHasZstd = typeof (zlib as unknown as { zstdCompress?: unknown }).zstdCompress === 'function';

afterEach(() => preferNativeZstd(true));

async function encode(data: Buffer, native: boolean, level?: number): Promise<Buffer> {
  preferNativeZstd(native);
  return runThrough(data, (await createEncoder({ compress: 'zstd', ...(level === undefined ? {} : { level }) })).transforms);
}

async function decode(stored: Buffer, native: boolean): Promise<Buffer> {
  preferNativeZstd(native);
  return runThrough(stored, await createDecoder({ codec: 'zstd', encryption: 'none' }, {}));
}

describe('zstd: Node\'s own and WASM', () => {
  it(`uses Node's own zstd exactly when this Node (${process.version}) has it, unless turned off`, () => {
    expect(hasNativeZstd()).toBe(nodeHasZstd);
    preferNativeZstd(false);
    expect(hasNativeZstd()).toBe(false);
  });

  it('each decodes what the other encoded, at levels 1, 3 and 19, and `zstd -d` decodes both', async () => {
    const data = walLikeData((9 << 20) + 4_321, 21);
    for (const level of [1, 3, 19]) {
      const wasm = await encode(data, false, level);
      const native = await encode(data, true, level);
      for (const [writer, stored] of [['wasm', wasm], ['native', native]] as const) {
        expect((await decode(stored, true)).equals(data), `${writer} level ${level} by default decoder`).toBe(true);
        expect((await decode(stored, false)).equals(data), `${writer} level ${level} by wasm`).toBe(true);
        expect(execFileSync('zstd', ['-dcq'], { input: stored, maxBuffer: 64 << 20 }).equals(data), `${writer} level ${level} by zstd -d`).toBe(true);
      }
      // The same library at the same level: sizes agree within 2 % (zstd versions differ slightly).
      expect(Math.abs(native.length - wasm.length) / wasm.length).toBeLessThan(0.02);
    }
  });

  it('a flipped byte fails the content checksum in either decoder (corrupt)', async () => {
    const data = walLikeData(5 << 20, 22);
    for (const native of [false, true]) {
      const stored = await encode(data, native);
      stored[stored.length - 2] = (stored[stored.length - 2] ?? 0) ^ 0x55;
      await expect(decode(stored, native)).rejects.toMatchObject({ kind: 'corrupt' });
    }
  });
});

/** node:zlib's one-shot zstd, as walvault called it per frame before its streams were kept open (the reference). */
function oneShot(input: Buffer, level: number): Promise<Buffer> {
  const native = zlib as unknown as { zstdCompress(input: Buffer, options: object, callback: (error: Error | null, output: Buffer) => void): void; constants: Record<string, number> };
  const { ZSTD_c_compressionLevel, ZSTD_c_checksumFlag, ZSTD_c_contentSizeFlag } = native.constants as Record<string, number>;
  const params = { [ZSTD_c_compressionLevel as number]: level, [ZSTD_c_checksumFlag as number]: 1, [ZSTD_c_contentSizeFlag as number]: 1 };
  return new Promise((resolve, reject) => native.zstdCompress(input, { params, pledgedSrcSize: input.length }, (error, output) => (error === null ? resolve(output) : reject(error))));
}

/** What a frame's header says (RFC 8878 3.1.1.1). */
function frameFacts(frame: Buffer): { magic: number; checksum: boolean; contentSize: number | null } {
  const descriptor = frame[4] ?? 0;
  const singleSegment = (descriptor & 0x20) !== 0;
  const sizeBytes = descriptor >> 6 === 0 ? (singleSegment ? 1 : 0) : [0, 2, 4, 8][descriptor >> 6]!;
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!;
  const contentSize = sizeBytes === 0 ? null : frame.readUIntLE(at, Math.min(sizeBytes, 6)) + (sizeBytes === 2 ? 256 : 0);
  return { magic: frame.readUInt32LE(0), checksum: (descriptor & 0x04) !== 0, contentSize };
}

describe.runIf(nodeHasZstd)('Node\'s own zstd through streams kept open for many frames', () => {
  const inputs = [0, 1, 100, 65_536, (1 << 20) - 1, 1 << 20].flatMap((size, index) => [walLikeData(size, 30 + index), Buffer.from(walLikeData(size, 40 + index).map((byte, at) => (byte * 31 + at) & 0xff))]);

  it('writes each frame as a one-shot zstdCompress with pledgedSrcSize does, at levels 1, 3 and 19, interleaved: one frame, its content size and checksum in the header, the same size within 0.1 %, decoded by WASM and by `zstd -d`', async () => {
    for (const level of [1, 3, 19]) {
      const frames = (await Promise.all(inputs.map((input) => compressFrame(level, input, true)))).map((frame) => Buffer.from(frame));
      for (const [index, input] of inputs.entries()) {
        const frame = frames[index]!;
        const reference = await oneShot(input, level);
        const what = `input ${index} (${input.length} bytes), level ${level}`;
        expect(frameFacts(frame), what).toEqual(frameFacts(reference));
        expect(frameFacts(frame).contentSize, what).toBe(input.length);
        expect(Math.abs(frame.length - reference.length), what).toBeLessThanOrEqual(Math.max(4, reference.length / 1000));
        expect(Buffer.from(await decompressFrame(frame, Math.max(input.length, 1), false, input.length)).equals(input), `${what}, by WASM`).toBe(true);
      }
      expect(execFileSync('zstd', ['-dcq'], { input: Buffer.concat(frames), maxBuffer: 64 << 20 }).equals(Buffer.concat(inputs)), `level ${level}, zstd -d`).toBe(true);
    }
  });

  it('gives each of many frames in flight at once its own output, and decodes each back to its input', async () => {
    const many = Array.from({ length: 48 }, (_, index) => inputs[index % inputs.length]!);
    const levels = many.map((_, index) => [1, 3][index % 2]!);
    const frames = await Promise.all(many.map((input, index) => compressFrame(levels[index]!, input, true)));
    const decoded = await Promise.all(frames.map((frame, index) => decompressFrame(frame, Math.max(many[index]!.length, 1), true, many[index]!.length)));
    for (const [index, input] of many.entries()) expect(Buffer.from(decoded[index]!).equals(input), `frame ${index}`).toBe(true);
  });

  it('fails a damaged frame as corrupt, and the next frames decode (a failed stream is not used again)', async () => {
    const input = walLikeData(1 << 20, 50);
    const frame = Buffer.from(await compressFrame(3, input, true));
    const damaged = Buffer.from(frame);
    damaged[damaged.length - 2] = (damaged[damaged.length - 2] ?? 0) ^ 0x55;
    const results = await Promise.allSettled([decompressFrame(damaged, input.length, true, input.length), decompressFrame(frame, input.length, true, input.length), decompressFrame(damaged, input.length, true, input.length)]);
    expect(results.map((result) => result.status)).toEqual(['rejected', 'fulfilled', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ kind: 'corrupt' });
    for (let round = 0; round < 4; round += 1) expect(Buffer.from(await decompressFrame(frame, input.length, true, input.length)).equals(input)).toBe(true);
  });

  it('returns exactly one frame for every write, also when a frame ends exactly at the end of node:zlib\'s output buffer (zstd then adds an empty frame)', async () => {
    // 17-byte frames (4 incompressible bytes: a raw block) one after another on one stream: their
    // sum passes every multiple of node:zlib's output buffer size, so some frame ends exactly there.
    let whole = 0;
    for (let index = 0; index < 20_000; index += 1) {
      const input = Buffer.from([index & 0xff, (index >> 8) & 0xff, 0x9e, 0x37]);
      const frame = Buffer.from(await compressFrame(3, input, true));
      if (frame.length !== 17 || frameFacts(frame).contentSize !== 4) expect.fail(`frame ${index}: ${frame.length} bytes, ${frame.toString('hex')}`);
      whole += 1;
    }
    expect(whole).toBe(20_000);
  }, 60_000);

  it('refuses a frame that decodes to another size than its caller was told (corrupt)', async () => {
    const input = walLikeData(4096, 51);
    const frame = await compressFrame(3, input, true);
    await expect(decompressFrame(frame, 8192, true, 4095)).rejects.toMatchObject({ kind: 'corrupt' });
    await expect(decompressFrame(frame, 4095, true, null)).rejects.toMatchObject({ kind: 'corrupt' });
  });
});
