// Wrong keys, missing keys and damaged stored objects: each is a clear 'key' or 'corrupt' error, never silent.
import { randomBytes } from 'node:crypto';
import { describe, expect, it, beforeAll } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { createDecoder, createEncoder } from '../../../src/codec/index.js';
import { WalvaultError } from '../../../src/core/errors.js';
import { runThrough, walLikeData } from '../../support/codec.js';

let identity = '';
let recipient = '';
let otherIdentity = '';

beforeAll(async () => {
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  otherIdentity = await generateX25519Identity();
});

async function encode(data: Buffer, compress: string, encrypted: boolean): Promise<Buffer> {
  return runThrough(data, (await createEncoder({ compress, recipients: encrypted ? [recipient] : [] })).transforms);
}

async function decodeError(stored: Buffer, meta: { codec: string; encryption: string }, identities: string[]): Promise<WalvaultError> {
  try {
    await runThrough(stored, await createDecoder(meta, { identities }));
  } catch (error) {
    expect(error).toBeInstanceOf(WalvaultError);
    return error as WalvaultError;
  }
  throw new Error('decoding damaged data succeeded');
}

describe('wrong or missing age identity', () => {
  it('restore without any identity is a key error before any byte is read', async () => {
    await expect(createDecoder({ codec: 'zstd', encryption: 'age' }, {})).rejects.toMatchObject({
      kind: 'key',
      message: 'the stored object is encrypted (age) and no decryption identity was given',
      hint: 'pass --decrypt-identity-file FILE (or WALVAULT_DECRYPT_IDENTITY_FILE) with the age secret key for the archive',
    });
  });

  it('restore with another identity is a key error and yields no byte', async () => {
    const stored = await encode(walLikeData(300_000), 'zstd', true);
    const decoder = await createDecoder({ codec: 'zstd', encryption: 'age' }, { identities: [otherIdentity] });
    const received: Buffer[] = [];
    const { Writable, Readable } = await import('node:stream');
    const { pipeline } = await import('node:stream/promises');
    const sink = new Writable({ write: (chunk: Buffer, _e, done) => { received.push(chunk); done(); } });
    await expect(pipeline([Readable.from([stored]), ...decoder, sink])).rejects.toMatchObject({
      kind: 'key',
      message: 'none of the given age identities can decrypt the stored object (it was encrypted to other recipients)',
    });
    expect(received).toEqual([]);
  });

  it('any one matching identity among several decrypts', async () => {
    const data = randomBytes(1000);
    const stored = await encode(data, 'none', true);
    const restored = await runThrough(stored, await createDecoder({ codec: 'none', encryption: 'age' }, { identities: [otherIdentity, identity] }));
    expect(restored.equals(data)).toBe(true);
  });

  it('a malformed identity is a key error that does not echo the secret', async () => {
    const error = await createDecoder({ codec: 'none', encryption: 'age' }, { identities: ['AGE-SECRET-KEY-1NOTAKEY'] }).catch((e: unknown) => e as WalvaultError);
    expect(error).toMatchObject({ kind: 'key' });
    expect((error as WalvaultError).message).toMatch(/^age identity #1 is not a valid secret key/);
    expect((error as WalvaultError).message).not.toContain('NOTAKEY');
  });

  it('a malformed recipient is a key error naming it', async () => {
    await expect(createEncoder({ compress: 'none', recipients: ['age1bogus'] })).rejects.toMatchObject({
      kind: 'key',
      message: expect.stringMatching(/^invalid age recipient "age1bogus"/),
      hint: 'use the public key printed by `age-keygen` (it starts with age1...)',
    });
  });
});

describe('damaged stored objects', () => {
  const data = walLikeData(1 << 20, 9);

  it.each(['none', 'gzip', 'lz4', 'zstd'])('encrypted %s: a flipped payload byte fails authentication (corrupt)', async (codec) => {
    const stored = await encode(data, codec, true);
    const damaged = Buffer.from(stored);
    const index = damaged.length - Math.floor(damaged.length / 3);
    damaged[index] = (damaged[index] ?? 0) ^ 0x01;
    const error = await decodeError(damaged, { codec, encryption: 'age' }, [identity]);
    expect(error.kind).toBe('corrupt');
    expect(error.message).toMatch(/^the encrypted stored object fails authentication/);
  });

  it('encrypted: a flipped header MAC byte is corrupt', async () => {
    const stored = await encode(data, 'zstd', true);
    const macLine = stored.indexOf('\n--- ') + 5;
    const damaged = Buffer.from(stored);
    damaged[macLine] = damaged[macLine] === 0x41 ? 0x42 : 0x41;
    const error = await decodeError(damaged, { codec: 'zstd', encryption: 'age' }, [identity]);
    expect(error.kind).toBe('corrupt');
  });

  it('encrypted: a flipped byte in the recipient stanza looks like a wrong key (key)', async () => {
    const stored = await encode(data, 'zstd', true);
    const stanzaBody = stored.indexOf('\n', stored.indexOf('-> X25519')) + 3;
    const damaged = Buffer.from(stored);
    damaged[stanzaBody] = damaged[stanzaBody] === 0x41 ? 0x42 : 0x41;
    const error = await decodeError(damaged, { codec: 'zstd', encryption: 'age' }, [identity]);
    expect(error.kind).toBe('key');
  });

  it.each(['none', 'gzip', 'lz4', 'zstd'])('encrypted %s: a truncated object is corrupt', async (codec) => {
    const stored = await encode(data, codec, true);
    const error = await decodeError(stored.subarray(0, stored.length - 100), { codec, encryption: 'age' }, [identity]);
    expect(error.kind).toBe('corrupt');
  });

  // A flipped bit in a match offset can point at identical bytes (WAL repeats itself): the output is
  // then exactly the original, which the content checksum rightly accepts. So the promise for a flip
  // anywhere is "refused as corrupt, or the original bytes", never a count of refusals; that the
  // checksum is checked at all is the next test's job, where the outcome is certain.
  it.each(['gzip', 'lz4', 'zstd'])('%s: a flipped byte anywhere is refused as corrupt or gives the original bytes, never different bytes', async (codec) => {
    const stored = await encode(data, codec, false);
    for (let k = 0; k < 16; k += 1) {
      const damaged = Buffer.from(stored);
      const index = Math.floor((damaged.length * (8 + k)) / 32);
      damaged[index] = (damaged[index] ?? 0) ^ 0x10;
      const outcome = await runThrough(damaged, await createDecoder({ codec, encryption: 'none' }, {})).then(
        (restored) => (restored.equals(data) ? 'original bytes' : `other bytes without an error (flip at ${index} of ${damaged.length})`),
        (error: unknown) => (error instanceof WalvaultError && error.kind === 'corrupt' && error.message.startsWith(`stored object is not valid ${codec}`) ? 'refused' : String(error)),
      );
      expect(['refused', 'original bytes']).toContain(outcome);
    }
  });

  // The stored checksum of the original bytes (gzip's CRC-32 before its length field, the lz4 frame's
  // and the zstd frame's trailing content checksum): flipping one of its bytes leaves the decompressed
  // bytes intact, so only checking the checksum can refuse it, and it must.
  it.each([
    ['gzip', 6],
    ['lz4', 2],
    ['zstd', 2],
  ] as const)('%s: a flipped byte in the stored content checksum is refused as corrupt', async (codec, fromEnd) => {
    const stored = await encode(data, codec, false);
    const damaged = Buffer.from(stored);
    const index = damaged.length - fromEnd;
    damaged[index] = (damaged[index] ?? 0) ^ 0x10;
    const error = await decodeError(damaged, { codec, encryption: 'none' }, []);
    expect(error.kind).toBe('corrupt');
    expect(error.message).toMatch(new RegExp(`^stored object is not valid ${codec}`));
  });

  it.each(['gzip', 'lz4', 'zstd'])('%s: a truncated object is corrupt', async (codec) => {
    const stored = await encode(data, codec, false);
    const error = await decodeError(stored.subarray(0, stored.length - 7), { codec, encryption: 'none' }, []);
    expect(error.kind).toBe('corrupt');
  });

  it.each([
    ['lz4', 'lz4 frame data'],
    ['zstd', 'zstd data'],
  ])('%s: an object cut inside a frame, or holding no frame at all, is named so', async (codec, what) => {
    const stored = await encode(data, codec, false);
    const cut = await decodeError(stored.subarray(0, stored.length - 7), { codec, encryption: 'none' }, []);
    expect(cut.message).toBe(`stored object is not valid ${what}: the data ends in the middle of a frame (truncated)`);
    const empty = await decodeError(Buffer.alloc(0), { codec, encryption: 'none' }, []);
    expect(empty.message).toBe(`stored object is not valid ${what}: no ${codec} frame found`);
  });

  it('a codec this build does not know is corrupt with an upgrade hint', async () => {
    await expect(createDecoder({ codec: 'brotli', encryption: 'none' }, {})).rejects.toMatchObject({
      kind: 'corrupt',
      message: 'stored object uses codec "brotli", which this build cannot read',
    });
  });
});
