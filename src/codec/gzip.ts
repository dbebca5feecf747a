// gzip (RFC 1952) through node:zlib: the most widely readable codec (`gunzip`, `zcat`).
import zlib from 'node:zlib';
import { GZIP_INFO } from './catalog.js';
import { markDoneAtCallback } from '../core/owned.js';
import type { Codec } from './types.js';

/** gzip codec: levels 1 (fastest) to 9 (smallest), default 6 as in the gzip tool. */
export const gzipCodec: Codec = {
  name: GZIP_INFO.name,
  levels: GZIP_INFO.levels,
  async compressor(level) {
    // Each written chunk is consumed whole before its callback: the writer may reuse it then (owned.ts).
    return markDoneAtCallback(zlib.createGzip({ level, chunkSize: 1 << 16 }));
  },
  async decompressor() {
    return zlib.createGunzip({ chunkSize: 1 << 16 });
  },
};
