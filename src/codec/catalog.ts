// What is known about each codec without loading it (names, level ranges, magic numbers), so option checks and format sniffing stay cheap at start-up.
import type { LevelRange } from './types.js';

/** The static facts of one compression codec; its streams live in its own module, loaded when used. */
export interface CodecInfo {
  readonly name: string;
  readonly levels: LevelRange;
  /** First bytes of every frame the codec writes. */
  readonly magic: Buffer;
}

/** gzip: levels 1 (fastest) to 9 (smallest), default 6 as in the gzip tool. */
export const GZIP_INFO: CodecInfo = { name: 'gzip', levels: { min: 1, max: 9, default: 6 }, magic: Buffer.from([0x1f, 0x8b]) };
/** lz4 frame format: one level (the fast compressor). */
export const LZ4_INFO: CodecInfo = { name: 'lz4', levels: { min: 1, max: 1, default: 1 }, magic: Buffer.from([0x04, 0x22, 0x4d, 0x18]) };
/** zstd frame format: levels 1 to 19, default 3 as in the zstd tool. */
export const ZSTD_INFO: CodecInfo = { name: 'zstd', levels: { min: 1, max: 19, default: 3 }, magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]) };

/** Every compression codec, in the order the options list them. */
export const CODEC_INFO: readonly CodecInfo[] = [GZIP_INFO, LZ4_INFO, ZSTD_INFO];

/** Codecs this build can write and read. */
export const SUPPORTED_CODECS: readonly string[] = ['none', ...CODEC_INFO.map((info) => info.name)];

/** True when `firstBytes` start with `magic`. */
export function hasMagic(firstBytes: Buffer, magic: Buffer): boolean {
  return firstBytes.length >= magic.length && firstBytes.subarray(0, magic.length).equals(magic);
}

/** First bytes of every binary (non-armored) age file. */
export const AGE_MAGIC = Buffer.from('age-encryption.org/v1\n', 'ascii');

/** True when `firstBytes` start an age v1 file. */
export function isAgeFile(firstBytes: Buffer): boolean {
  const n = Math.min(firstBytes.length, AGE_MAGIC.length);
  return n >= 'age-encryption.org/'.length && firstBytes.subarray(0, n).equals(AGE_MAGIC.subarray(0, n));
}
