// Client-side encryption in the age v1 format (age-encryption.org/v1) with the age-encryption package.
import type { Duplex } from 'node:stream';
import { WalvaultError } from '../core/errors.js';
import { WebTransformDuplex } from './relay.js';

type AgeModule = typeof import('age-encryption');

let loaded: Promise<AgeModule> | undefined;

/** Loads the age implementation only when encryption is used. */
function loadAge(): Promise<AgeModule> {
  loaded ??= import('age-encryption');
  return loaded;
}

/** First bytes of every binary (non-armored) age file. */
export const AGE_MAGIC = Buffer.from('age-encryption.org/v1\n', 'ascii');

/** True when `firstBytes` start an age v1 file. */
export function isAgeFile(firstBytes: Buffer): boolean {
  const n = Math.min(firstBytes.length, AGE_MAGIC.length);
  return n >= 'age-encryption.org/'.length && firstBytes.subarray(0, n).equals(AGE_MAGIC.subarray(0, n));
}

/** Maps an error from decryption: a key that fits none of the recipients is 'key'; anything else is damage ('corrupt'). */
export function mapDecryptError(error: unknown): Error {
  if (error instanceof WalvaultError) return error;
  const detail = (error as Error | undefined)?.message ?? String(error);
  if (/no identity matched/i.test(detail)) {
    return new WalvaultError('key', 'none of the given age identities can decrypt the stored object (it was encrypted to other recipients)', {
      hint: 'give the identity file whose public key (age-keygen -y FILE) was the --encrypt-recipient when this file was archived',
      cause: error,
    });
  }
  return new WalvaultError('corrupt', `the encrypted stored object fails authentication: ${detail}`, {
    hint: 'the stored object was damaged or tampered with; restore it from another copy of the archive',
    cause: error,
  });
}

/** Maps an error from encryption (programming or resource errors only: recipients are checked up front). */
function mapEncryptError(error: unknown): Error {
  if (error instanceof WalvaultError) return error;
  return new WalvaultError('internal', `age encryption failed: ${(error as Error | undefined)?.message ?? String(error)}`, { cause: error });
}

/** Checks recipients before any data moves; a malformed one is a 'key' error naming it. */
export async function validateRecipients(recipients: readonly string[]): Promise<void> {
  const age = await loadAge();
  for (const recipient of recipients) {
    try {
      // Encrypting an empty file wraps a key for the recipient, which fully parses it.
      const probe = new age.Encrypter();
      probe.addRecipient(recipient);
      await probe.encrypt(new Uint8Array(0));
    } catch (error) {
      throw new WalvaultError('key', `invalid age recipient "${recipient}": ${(error as Error).message}`, {
        hint: 'use the public key printed by `age-keygen` (it starts with age1...)',
        cause: error,
      });
    }
  }
}

/** Checks identities before any data moves; a malformed one is a 'key' error (the secret is not echoed). */
export async function validateIdentities(identities: readonly string[]): Promise<void> {
  const age = await loadAge();
  for (const [index, identity] of identities.entries()) {
    try {
      await age.identityToRecipient(identity);
    } catch (error) {
      throw new WalvaultError('key', `age identity #${index + 1} is not a valid secret key: ${(error as Error).message}`, {
        hint: 'the identity file must hold lines starting with AGE-SECRET-KEY-1, as written by `age-keygen`',
        cause: error,
      });
    }
  }
}

/** A stream that encrypts its input to `recipients` in the age format (64 KiB chunks, bounded memory). */
export async function createAgeEncryptStream(recipients: readonly string[]): Promise<Duplex> {
  const age = await loadAge();
  const encrypter = new age.Encrypter();
  for (const recipient of recipients) encrypter.addRecipient(recipient);
  return new WebTransformDuplex((input) => encrypter.encrypt(input), mapEncryptError);
}

/** A stream that decrypts an age file with any of `identities`; errors are 'key' (no identity fits) or 'corrupt'. */
export async function createAgeDecryptStream(identities: readonly string[]): Promise<Duplex> {
  const age = await loadAge();
  const decrypter = new age.Decrypter();
  for (const identity of identities) decrypter.addIdentity(identity);
  return new WebTransformDuplex((input) => decrypter.decrypt(input), mapDecryptError);
}
