// Chunks handed over to codec streams (src/core/owned.ts): a stream done with its input at the write
// callback (gzip) gives each chunk back then; one that takes the chunks (lz4, age without compression)
// gives each back itself once done with it. Reusing a chunk at once (overwritten, refilled) changes no
// stored byte.
import { gunzipSync } from 'node:zlib';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { createDecoder, createEncoder } from '../../../src/codec/index.js';
import { giveBackConsumed, handOver, reclaimUntaken } from '../../../src/core/owned.js';
import { returnCopyBuffer, takeCopyBuffer } from '../../../src/core/buffers.js';
import { runThrough, walLikeData } from '../../support/codec.js';

const BLOCK = 1 << 20;

/**
 * Writes `data` into `head` the way archive.ts's EncodingSource does: 1 MiB blocks, each handed over and
 * reclaimed after its write's callback when the stream allows it. A block given back is scribbled over
 * at once and reused for the next read. Returns the encoded output and how many blocks came back.
 */
async function writeThrough(transforms: Duplex[], data: Buffer): Promise<{ output: Buffer; reclaimed: number; givenBack: number }> {
  const head = transforms[0] as Duplex;
  for (let at = 1; at < transforms.length; at += 1) (transforms[at - 1] as Duplex).pipe(transforms[at] as Duplex);
  const tail = transforms[transforms.length - 1] as Duplex;
  const chunks: Buffer[] = [];
  tail.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    tail.once('end', resolve);
    for (const stream of transforms) stream.once('error', reject);
  });
  const spare: Buffer[] = [];
  let reclaimed = 0;
  let givenBack = 0;
  const giveBack = (chunk: Buffer): void => {
    givenBack += 1;
    chunk.fill(0xa5);
    spare.push(chunk);
  };
  for (let at = 0; at < data.length; at += BLOCK) {
    const block = spare.pop() ?? Buffer.allocUnsafeSlow(BLOCK);
    data.copy(block, 0, at, at + BLOCK);
    const chunk = handOver(block, giveBack);
    const room = head.write(chunk, (error) => {
      if (error == null && reclaimUntaken(head, chunk)) reclaimed += 1;
    });
    if (!room) await new Promise((resolve) => head.once('drain', resolve));
  }
  head.end();
  await ended;
  return { output: Buffer.concat(chunks), reclaimed, givenBack };
}

describe('chunks handed over to a codec stream', () => {
  it('gzip gives every 1 MiB block back at its write callback, and a block reused at once changes no stored byte', async () => {
    const data = walLikeData(16 * BLOCK, 7);
    const encoder = await createEncoder({ compress: 'gzip' });
    const { output, reclaimed } = await writeThrough(encoder.transforms, data);
    expect(reclaimed).toBe(16);
    expect(gunzipSync(output).equals(data)).toBe(true);
  });

  it('lz4 and age (no compression) take their blocks and give each back once done with it, not at the callback; the bytes decode unchanged', async () => {
    const data = walLikeData(5 * BLOCK, 9);
    const lz4 = await createEncoder({ compress: 'lz4' });
    const viaLz4 = await writeThrough(lz4.transforms, data);
    expect(viaLz4.reclaimed).toBe(0);
    expect(viaLz4.givenBack).toBe(5);
    expect((await runThrough(viaLz4.output, await createDecoder({ codec: 'lz4', encryption: 'none' }, {}))).equals(data)).toBe(true);
    const identity = await generateX25519Identity();
    const age = await createEncoder({ compress: 'none', recipients: [await identityToRecipient(identity)] });
    const viaAge = await writeThrough(age.transforms, data);
    expect(viaAge.reclaimed).toBe(0);
    expect(viaAge.givenBack).toBe(5);
    expect((await runThrough(viaAge.output, await createDecoder({ codec: 'none', encryption: 'age' }, { identities: [identity] }))).equals(data)).toBe(true);
  });
});

describe('encoders gather their blocks in copy buffers and give them back (core/buffers.ts)', () => {
  for (const compress of ['lz4', 'zstd']) {
    it(`${compress}: the spare copy buffers are the blocks of a long stream, overwritten and all back at its end; the output decodes`, async () => {
      // Fill the spares with known buffers (marked), then stream 12 MiB through in 64 KiB writes.
      const known = Array.from({ length: 8 }, () => takeCopyBuffer());
      for (const buffer of known) returnCopyBuffer(buffer.fill(0x5a));
      const data = walLikeData(12 << 20, 77);
      const output = await runThrough(data, (await createEncoder({ compress })).transforms);
      expect((await runThrough(output, await createDecoder({ codec: compress, encryption: 'none' }, {}))).equals(data)).toBe(true);
      expect(known.some((buffer) => buffer.some((byte) => byte !== 0x5a)), 'some spare was a block').toBe(true);
      const after = Array.from({ length: known.length }, () => takeCopyBuffer());
      expect(after.every((buffer) => known.includes(buffer)), 'every spare came back').toBe(true);
      for (const buffer of after) returnCopyBuffer(buffer);
    });
  }
});

describe('a reader that copied a chunk out gives it back (giveBackConsumed)', () => {
  it('gives a handed-over chunk back once, and does nothing for one that was not handed over', () => {
    const returned: Buffer[] = [];
    const chunk = handOver(Buffer.alloc(16), (given) => returned.push(given));
    giveBackConsumed(chunk);
    giveBackConsumed(chunk);
    giveBackConsumed(Buffer.alloc(16));
    expect(returned).toEqual([chunk]);
  });

  for (const compress of ['lz4', 'zstd']) {
    it(`${compress} gives back the 256 KiB chunks it copies into its blocks (a tar's reads after a 512-byte header); reused at once, they change no byte of the output`, async () => {
      const data = walLikeData(6 * BLOCK + 512, 31);
      const encoder = await createEncoder({ compress });
      const head = encoder.transforms[0] as Duplex;
      for (let at = 1; at < encoder.transforms.length; at += 1) (encoder.transforms[at - 1] as Duplex).pipe(encoder.transforms[at] as Duplex);
      const tail = encoder.transforms[encoder.transforms.length - 1] as Duplex;
      const output: Buffer[] = [];
      tail.on('data', (chunk: Buffer) => output.push(chunk));
      const ended = new Promise((resolve) => tail.once('end', resolve));
      const spare: Buffer[] = [];
      let handed = 0;
      let givenBack = 0;
      const write = (chunk: Buffer): Promise<void> => new Promise((resolve) => (head.write(chunk) ? resolve() : head.once('drain', resolve)));
      await write(data.subarray(0, 512));
      for (let at = 512; at < data.length; at += 256 * 1024) {
        const buffer = spare.pop() ?? Buffer.allocUnsafeSlow(256 * 1024);
        data.copy(buffer, 0, at, at + 256 * 1024);
        handed += 1;
        await write(handOver(buffer, () => {
          givenBack += 1;
          buffer.fill(0xa5);
          spare.push(buffer);
        }));
      }
      head.end();
      await ended;
      expect(givenBack).toBe(handed);
      expect((await runThrough(Buffer.concat(output), await createDecoder({ codec: compress, encryption: 'none' }, {}))).equals(data)).toBe(true);
    });
  }
});
