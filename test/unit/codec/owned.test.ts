// Chunks handed over to codec streams (src/codec/owned.ts): a stream done with its input at the write
// callback (gzip) gives each chunk back then, and reusing it at once (overwritten, refilled) changes no
// stored byte; a stream that keeps input past the callback (age) or takes the chunk (lz4) is never given one back.
import { gunzipSync } from 'node:zlib';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { createEncoder } from '../../../src/codec/index.js';
import { handOver, reclaimUntaken } from '../../../src/codec/owned.js';
import { walLikeData } from '../../support/codec.js';

const BLOCK = 1 << 20;

/**
 * Writes `data` into `head` the way archive.ts's EncodingSource does: 1 MiB blocks, each handed over and
 * reclaimed after its write's callback when the stream allows it. A block given back is scribbled over
 * at once and reused for the next read. Returns the encoded output and how many blocks came back.
 */
async function writeThrough(transforms: Duplex[], data: Buffer): Promise<{ output: Buffer; reclaimed: number }> {
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
  const giveBack = (chunk: Buffer): void => {
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
  return { output: Buffer.concat(chunks), reclaimed };
}

describe('chunks handed over to a codec stream', () => {
  it('gzip gives every 1 MiB block back at its write callback, and a block reused at once changes no stored byte', async () => {
    const data = walLikeData(16 * BLOCK, 7);
    const encoder = await createEncoder({ compress: 'gzip' });
    const { output, reclaimed } = await writeThrough(encoder.transforms, data);
    expect(reclaimed).toBe(16);
    expect(gunzipSync(output).equals(data)).toBe(true);
  });

  it('lz4 takes its blocks (gives them back itself, not at the callback); age keeps input past the callback and is given none', async () => {
    const data = walLikeData(4 * BLOCK, 9);
    const lz4 = await createEncoder({ compress: 'lz4' });
    expect((await writeThrough(lz4.transforms, data)).reclaimed).toBe(0);
    const recipient = await identityToRecipient(await generateX25519Identity());
    const age = await createEncoder({ compress: 'none', recipients: [recipient] });
    expect((await writeThrough(age.transforms, data)).reclaimed).toBe(0);
  });
});
