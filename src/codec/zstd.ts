// Zstandard through the zstd-napi binding (the reference C library, built from the sources it ships).
import type { Duplex } from 'node:stream';
import { WalvaultError } from '../core/errors.js';
import type { Codec } from './types.js';

type ZstdModule = typeof import('zstd-napi');

let loaded: Promise<ZstdModule> | undefined;

/** Loads the native binding only when zstd is used (it is an optional dependency). */
function loadZstd(): Promise<ZstdModule> {
  loaded ??= import('zstd-napi').catch((error: unknown) => {
    loaded = undefined;
    throw new WalvaultError('usage', `the zstd codec is not available in this installation: ${(error as Error).message}`, {
      hint: 'reinstall walvault where a C compiler is available so the optional zstd-napi module builds, or use --compress=gzip or lz4',
      cause: error,
    });
  });
  return loaded;
}

/** Frame magic number 0xFD2FB528, little-endian. */
const MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** zstd codec: levels 1 (fast) to 19 (smallest), default 3 as in the zstd tool; frames carry a content checksum. */
export const zstdCodec: Codec = {
  name: 'zstd',
  levels: { min: 1, max: 19, default: 3 },
  async compressor(level) {
    const { CompressStream } = await loadZstd();
    // windowLog is left to the level (at most 8 MiB up to level 19), so decoding needs no special flags.
    return new CompressStream({ compressionLevel: level, checksumFlag: true }) as unknown as Duplex;
  },
  async decompressor() {
    const { DecompressStream } = await loadZstd();
    return new DecompressStream() as unknown as Duplex;
  },
  matches(firstBytes) {
    return firstBytes.length >= 4 && firstBytes.subarray(0, 4).equals(MAGIC);
  },
};
