// The encode/decode pipelines between original WAL bytes and stored bytes (compression, then encryption).
// Only the catalog (names, levels, magic numbers) loads with this module: each codec, age and the
// relay load when an object is actually encoded or decoded, so plain archive/restore starts faster.
import { PassThrough, type Duplex } from 'node:stream';
import { WalvaultError } from '../core/errors.js';
import { CODEC_INFO, hasMagic, isAgeFile, SUPPORTED_CODECS } from './catalog.js';
import type { StreamGroup } from './pool.js';
import type { Codec } from './types.js';

export type { Codec, LevelRange } from './types.js';

/** How to encode original bytes for storage. */
export interface EncodeOptions {
  /** Compression codec name: 'none', or one of the codecs this build supports. */
  compress: string;
  /** Codec-specific compression level; undefined picks the codec's default. */
  level?: number;
  /** age recipients (public keys, `age1...`); empty or undefined means no encryption. */
  recipients?: string[];
}

/** How to decode stored bytes back into the original. */
export interface DecodeOptions {
  /** age identities (`AGE-SECRET-KEY-1...`) able to decrypt; needed only for encrypted objects. */
  identities?: string[];
}

/** Loads a compression codec's module, by name. */
const CODEC_LOADERS: ReadonlyMap<string, () => Promise<Codec>> = new Map([
  ['gzip', async () => (await import('./gzip.js')).gzipCodec],
  ['lz4', async () => (await import('./lz4.js')).lz4Codec],
  ['zstd', async () => (await import('./zstd.js')).zstdCodec],
]);

/** The codec named `name`, loaded; undefined when this build has no such codec. */
async function loadCodec(name: string): Promise<Codec | undefined> {
  return CODEC_LOADERS.get(name)?.();
}

export { SUPPORTED_CODECS } from './catalog.js';

/**
 * Codec name for stored objects whose compression is unknown (an encrypted object archived without
 * metadata): the decoder recognises the codec from the decrypted bytes.
 */
export const AUTO_CODEC = 'auto';

function unknownCodec(name: string): WalvaultError {
  return new WalvaultError('usage', `unknown compression "${name}"`, { hint: `use one of: ${SUPPORTED_CODECS.join(', ')}` });
}

/** Checks a codec name and level; returns the level to use (the codec's default when none is given). */
export function resolveLevel(codecName: string, level: number | undefined): number | undefined {
  if (codecName === 'none') {
    if (level !== undefined) {
      throw new WalvaultError('usage', '--compress-level needs a compression codec', { hint: 'add --compress=gzip, lz4 or zstd, or drop --compress-level' });
    }
    return undefined;
  }
  const codec = CODEC_INFO.find((info) => info.name === codecName);
  if (codec === undefined) throw unknownCodec(codecName);
  if (level === undefined) return codec.levels.default;
  const { min, max } = codec.levels;
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new WalvaultError('usage', `compression level ${level} is out of range for ${codec.name}`, {
      hint: min === max ? `${codec.name} has a single level (${min}); drop --compress-level` : `use a whole number from ${min} to ${max} for ${codec.name}`,
    });
  }
  return level;
}

/** Maps a decompressor's error: malformed compressed data means the stored object is damaged. */
function decompressError(codecName: string): (error: unknown) => Error {
  return (error) => {
    if (error instanceof WalvaultError) return error;
    return new WalvaultError('corrupt', `stored object is not valid ${codecName} data: ${(error as Error | undefined)?.message ?? String(error)}`, {
      hint: 'the stored object is damaged; restore it from another copy of the archive',
      cause: error,
    });
  };
}

/** What createEncoder builds. */
export interface Encoder {
  transforms: Duplex[];
  codec: string;
  encryption: string;
  /**
   * Waits until this pipeline may encode (the codec pool admits a few at once: pool.ts, admissionLimit)
   * and holds its place until the returned function is called (after its streams ended or failed).
   * A caller that waits here before it opens or reads anything holds no memory while it waits;
   * without it, the wait happens inside the first transform, after the first input arrived.
   */
  admit(): Promise<() => void>;
}

/** Builds the transforms that turn original bytes into stored bytes, and names what they produce. */
export async function createEncoder(options: EncodeOptions): Promise<Encoder> {
  const level = resolveLevel(options.compress, options.level);
  const transforms: Duplex[] = [];
  const group = await streamGroup(options.compress !== 'none' || (options.recipients ?? []).length > 0);
  if (options.compress !== 'none') {
    const codec = await loadCodec(options.compress);
    if (codec === undefined || level === undefined) throw unknownCodec(options.compress);
    transforms.push(await codec.compressor(level, group));
  }
  const recipients = options.recipients ?? [];
  if (recipients.length > 0) {
    const { createAgeEncryptStream } = await import('./age.js');
    transforms.push(await createAgeEncryptStream(recipients, group));
  }
  const admit = async (): Promise<() => void> => {
    if (group === undefined) return () => undefined;
    const release = group.enter();
    await group.admitted();
    return release;
  };
  return { transforms, codec: options.compress, encryption: recipients.length > 0 ? 'age' : 'none', admit };
}

/** One pipeline's codec streams, counted as one busy object by the codec pool (loaded only when a codec is used). */
async function streamGroup(needed: boolean): Promise<StreamGroup | undefined> {
  if (!needed) return undefined;
  const { StreamGroup: Group } = await import('./pool.js');
  return new Group();
}

/** A decompressor that picks the codec from the first bytes it sees. */
async function sniffingDecompressor(group: StreamGroup | undefined): Promise<Duplex> {
  const { Relay, withErrors } = await import('./relay.js');
  return new Relay({
    sniffBytes: 4,
    mapError: decompressError('compressed'),
    open: async (head) => {
      const info = CODEC_INFO.find((candidate) => hasMagic(head, candidate.magic));
      const codec = info === undefined ? undefined : await loadCodec(info.name);
      if (codec === undefined) return new PassThrough();
      return withErrors(await codec.decompressor(group), decompressError(codec.name));
    },
  });
}

/** Builds the transforms that turn stored bytes back into the original, from the recorded metadata. */
export async function createDecoder(meta: { codec: string; encryption: string }, options: DecodeOptions): Promise<Duplex[]> {
  const codec = meta.codec === 'none' || meta.codec === AUTO_CODEC ? undefined : await loadCodec(meta.codec);
  if (meta.codec !== 'none' && meta.codec !== AUTO_CODEC && codec === undefined) {
    throw new WalvaultError('corrupt', `stored object uses codec "${meta.codec}", which this build cannot read`, {
      hint: `this build reads ${SUPPORTED_CODECS.join(', ')}; upgrade walvault to a version that supports it`,
    });
  }
  if (meta.encryption !== 'none' && meta.encryption !== 'age') {
    throw new WalvaultError('corrupt', `stored object uses encryption "${meta.encryption}", which this build cannot read`, {
      hint: 'upgrade walvault to a version that supports it',
    });
  }
  const transforms: Duplex[] = [];
  const group = await streamGroup(codec !== undefined || meta.codec === AUTO_CODEC || meta.encryption === 'age');
  if (meta.encryption === 'age') {
    const identities = options.identities ?? [];
    if (identities.length === 0) {
      throw new WalvaultError('key', 'the stored object is encrypted (age) and no decryption identity was given', {
        hint: 'pass --decrypt-identity-file FILE (or WALVAULT_DECRYPT_IDENTITY_FILE) with the age secret key for the archive',
      });
    }
    const { createAgeDecryptStream } = await import('./age.js');
    transforms.push(await createAgeDecryptStream(identities, group));
  }
  if (codec !== undefined) {
    const { withErrors } = await import('./relay.js');
    transforms.push(withErrors(await codec.decompressor(group), decompressError(codec.name)));
  } else if (meta.codec === AUTO_CODEC) transforms.push(await sniffingDecompressor(group));
  return transforms;
}

/**
 * Recognises the stored format from its first bytes, for objects archived without metadata. An age
 * file hides its codec, so encrypted objects get codec 'auto' (recognised after decryption).
 */
export function detectStoredFormat(firstBytes: Buffer): { codec: string; encryption: string } {
  if (isAgeFile(firstBytes)) return { codec: AUTO_CODEC, encryption: 'age' };
  const codec = CODEC_INFO.find((candidate) => hasMagic(firstBytes, candidate.magic));
  return { codec: codec?.name ?? 'none', encryption: 'none' };
}

export { readIdentityFile, readRecipientsFile } from './keys.js';
