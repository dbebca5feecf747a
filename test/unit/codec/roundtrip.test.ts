// Every codec × encryption on buffers of awkward sizes: what goes in comes out, and stored objects are recognisable.
import { randomBytes } from 'node:crypto';
import { describe, expect, it, beforeAll } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { createDecoder, createEncoder, detectStoredFormat, SUPPORTED_CODECS } from '../../../src/codec/index.js';
import { runThrough, walLikeData } from '../../support/codec.js';

const SIZES = [0, 1, 2, 3, 17, 65_535, 65_536, 65_537, 1_000_003, (4 << 20) + 1, 9 << 20];

let identity = '';
let recipient = '';

beforeAll(async () => {
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
});

describe.each(SUPPORTED_CODECS.flatMap((codec) => [{ codec, encrypted: false }, { codec, encrypted: true }]))('codec $codec, encrypted $encrypted', ({ codec, encrypted }) => {
  it.each(SIZES)('round-trips %i bytes', async (size) => {
    const data = size > 100_000 ? walLikeData(size, size) : randomBytes(size);
    const encoder = await createEncoder({ compress: codec, recipients: encrypted ? [recipient] : [] });
    expect(encoder.codec).toBe(codec);
    expect(encoder.encryption).toBe(encrypted ? 'age' : 'none');
    const stored = await runThrough(data, encoder.transforms, 100_003);
    const decoder = await createDecoder({ codec: encoder.codec, encryption: encoder.encryption }, { identities: encrypted ? [identity] : [] });
    const restored = await runThrough(stored, decoder, 77_777);
    expect(restored.length).toBe(data.length);
    expect(restored.equals(data)).toBe(true);
    if (!encrypted && codec !== 'none' && size > 100_000) expect(stored.length).toBeLessThan(data.length);
    if (size > 0 || codec !== 'none' || encrypted) {
      const detected = detectStoredFormat(stored.subarray(0, 64));
      expect(detected).toEqual(encrypted ? { codec: 'auto', encryption: 'age' } : { codec, encryption: 'none' });
      const decodedByDetection = await runThrough(stored, await createDecoder(detected, { identities: [identity] }));
      expect(decodedByDetection.equals(data)).toBe(true);
    }
  });
});

describe('compression levels', () => {
  it.each([
    ['gzip', 1],
    ['gzip', 9],
    ['zstd', 1],
    ['zstd', 19],
    ['lz4', 1],
  ] as const)('%s level %i round-trips', async (codec, level) => {
    const data = walLikeData(2 << 20, level);
    const encoder = await createEncoder({ compress: codec, level });
    const restored = await runThrough(await runThrough(data, encoder.transforms), await createDecoder({ codec, encryption: 'none' }, {}));
    expect(restored.equals(data)).toBe(true);
  });

  it('a stronger level stores fewer bytes (zstd 19 < zstd 1, gzip 9 <= gzip 1)', async () => {
    const data = walLikeData(1 << 20, 5);
    const size = async (compress: string, level: number): Promise<number> => (await runThrough(data, (await createEncoder({ compress, level })).transforms)).length;
    expect(await size('zstd', 19)).toBeLessThan(await size('zstd', 1));
    expect(await size('gzip', 9)).toBeLessThanOrEqual(await size('gzip', 1));
  });

  it.each([
    ['gzip', 0, 'compression level 0 is out of range for gzip'],
    ['gzip', 10, 'compression level 10 is out of range for gzip'],
    ['zstd', 20, 'compression level 20 is out of range for zstd'],
    ['zstd', 2.5, 'compression level 2.5 is out of range for zstd'],
    ['lz4', 3, 'compression level 3 is out of range for lz4'],
    ['none', 3, '--compress-level needs a compression codec'],
  ] as const)('%s level %s is a usage error', async (codec, level, message) => {
    await expect(createEncoder({ compress: codec, level })).rejects.toMatchObject({ kind: 'usage', message });
  });

  it('an unknown codec is a usage error naming the choices', async () => {
    await expect(createEncoder({ compress: 'brotli' })).rejects.toMatchObject({ kind: 'usage', message: 'unknown compression "brotli"', hint: 'use one of: none, gzip, lz4, zstd' });
  });
});

describe('detectStoredFormat', () => {
  it('recognises each format by its magic bytes and treats anything else as uncompressed', () => {
    expect(detectStoredFormat(Buffer.from([0x1f, 0x8b, 0x08, 0x00]))).toEqual({ codec: 'gzip', encryption: 'none' });
    expect(detectStoredFormat(Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64]))).toEqual({ codec: 'lz4', encryption: 'none' });
    expect(detectStoredFormat(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00]))).toEqual({ codec: 'zstd', encryption: 'none' });
    expect(detectStoredFormat(Buffer.from('age-encryption.org/v1\n-> X25519 abc\n'))).toEqual({ codec: 'auto', encryption: 'age' });
    // A WAL page header (magic 0xD110 for PostgreSQL 15) is stored as is.
    expect(detectStoredFormat(Buffer.from([0x10, 0xd1, 0x06, 0x00]))).toEqual({ codec: 'none', encryption: 'none' });
    expect(detectStoredFormat(Buffer.alloc(0))).toEqual({ codec: 'none', encryption: 'none' });
  });
});

describe('lz4 frame decoding across chunk boundaries', () => {
  it.each([1, 3, 7, 4096])('decodes skippable frames and concatenated frames fed %i bytes at a time', async (chunk) => {
    const first = walLikeData(200_003, 1);
    const second = randomBytes(70_001);
    const encode = async (data: Buffer): Promise<Buffer> => runThrough(data, (await createEncoder({ compress: 'lz4' })).transforms, 65_536);
    const skippable = (payload: Buffer): Buffer => {
      const header = Buffer.alloc(8);
      header.writeUInt32LE(0x184d2a5a, 0);
      header.writeUInt32LE(payload.length, 4);
      return Buffer.concat([header, payload]);
    };
    const stored = Buffer.concat([skippable(Buffer.from('walvault')), await encode(first), skippable(Buffer.alloc(0)), await encode(second), skippable(randomBytes(13))]);
    const restored = await runThrough(stored, await createDecoder({ codec: 'lz4', encryption: 'none' }, {}), chunk);
    expect(restored.equals(Buffer.concat([first, second]))).toBe(true);
  });
});
