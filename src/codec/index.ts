// The encode/decode pipelines between original WAL bytes and stored bytes (compression, then encryption).
import type { Duplex } from 'node:stream';
import { WalvaultError } from '../core/errors.js';

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

/** Codecs this build can write and read. */
export const SUPPORTED_CODECS: readonly string[] = ['none'];

/** Builds the transforms that turn original bytes into stored bytes, and names what they produce. */
export async function createEncoder(options: EncodeOptions): Promise<{ transforms: Duplex[]; codec: string; encryption: string }> {
  if (options.compress !== 'none') {
    throw new WalvaultError('usage', `unknown compression "${options.compress}"`, { hint: `use one of: ${SUPPORTED_CODECS.join(', ')}` });
  }
  if (options.recipients !== undefined && options.recipients.length > 0) {
    throw new WalvaultError('usage', 'encryption is not supported by this build', { hint: 'remove --encrypt-recipient' });
  }
  return { transforms: [], codec: 'none', encryption: 'none' };
}

/** Builds the transforms that turn stored bytes back into the original, from the recorded metadata. */
export async function createDecoder(meta: { codec: string; encryption: string }, _options: DecodeOptions): Promise<Duplex[]> {
  if (meta.codec !== 'none' || meta.encryption !== 'none') {
    throw new WalvaultError('corrupt', `stored object uses codec "${meta.codec}" and encryption "${meta.encryption}", which this build cannot read`, {
      hint: 'upgrade walvault to a version that supports this format',
    });
  }
  return [];
}

/** Recognises the stored format from its first bytes, for objects archived without metadata. */
export function detectStoredFormat(_firstBytes: Buffer): { codec: string; encryption: string } {
  return { codec: 'none', encryption: 'none' };
}
