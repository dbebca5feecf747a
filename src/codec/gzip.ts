// gzip (RFC 1952) through node:zlib: the most widely readable codec (`gunzip`, `zcat`).
import zlib from 'node:zlib';
import type { Codec } from './types.js';

/** gzip codec: levels 1 (fastest) to 9 (smallest), default 6 as in the gzip tool. */
export const gzipCodec: Codec = {
  name: 'gzip',
  levels: { min: 1, max: 9, default: 6 },
  async compressor(level) {
    return zlib.createGzip({ level, chunkSize: 1 << 16 });
  },
  async decompressor() {
    return zlib.createGunzip({ chunkSize: 1 << 16 });
  },
  matches(firstBytes) {
    return firstBytes.length >= 2 && firstBytes[0] === 0x1f && firstBytes[1] === 0x8b;
  },
};
