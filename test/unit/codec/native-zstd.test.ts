// Node's own zstd (node:zlib, Node 22.15 and later) and the WASM one write the same format: each reads the other's
// frames, and `zstd -d` reads both. On a Node without it, walvault must say so and use WASM.
import { execFileSync } from 'node:child_process';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { createDecoder, createEncoder } from '../../../src/codec/index.js';
import { hasNativeZstd, preferNativeZstd } from '../../../src/codec/zstd.js';
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
