// Helpers for codec tests: run bytes through encode/decode pipelines, make WAL-like data, make age keys.
import { randomBytes } from 'node:crypto';
import { Readable, Writable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** Runs `data` (fed in `chunkSize` pieces) through `transforms` and collects the output. */
export async function runThrough(data: Buffer, transforms: Duplex[], chunkSize = 64 << 10): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const source = Readable.from(
    (function* () {
      for (let offset = 0; offset < data.length; offset += chunkSize) yield data.subarray(offset, offset + chunkSize);
    })(),
  );
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk);
      done();
    },
  });
  await pipeline([source, ...transforms, sink]);
  return Buffer.concat(chunks);
}

/**
 * Bytes shaped like a WAL segment: 8 KiB pages with a page header, records of row data (counters,
 * repeated text, random bytes standing in for hashes and TOAST), and a zeroed tail as after a switch.
 */
export function walLikeData(size: number, seed = 1): Buffer {
  const data = Buffer.alloc(size);
  let state = seed >>> 0;
  const next = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state;
  };
  const filled = Math.floor(size * 0.85);
  for (let page = 0; page < filled; page += 8192) {
    if (page + 24 <= size) {
      data.writeUInt16LE(0xd110, page);
      data.writeUInt32LE(page >>> 13, page + 8);
    }
    let offset = page + 24;
    const end = Math.min(page + 8192, filled);
    while (offset + 96 <= end) {
      const length = 48 + (next() % 48);
      data.writeUInt32LE(length, offset);
      data.writeUInt32LE(next() % 4096, offset + 4);
      data.writeUInt32LE(offset, offset + 8);
      data.write(`row ${next() % 997} customer name ${next() % 31} `, offset + 12, length - 28, 'latin1');
      randomBytes(8).copy(data, offset + length - 16);
      offset += length;
    }
  }
  return data;
}
