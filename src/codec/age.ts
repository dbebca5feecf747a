// Client-side encryption in the age v1 format (age-encryption.org/v1): header by age-header.ts, payload here; both with Node's crypto.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Transform, type Duplex, type TransformCallback } from 'node:stream';
import { WalvaultError } from '../core/errors.js';
import { decryptHeader, encodeHeader, hkdf, parseIdentity, parseRecipient, type X25519Identity } from './age-header.js';
import { ByteQueue } from './bytes.js';
import { isAgeFile } from './catalog.js';
import { OrderedOutput } from './ordered.js';
import { takeHandedOver } from '../core/owned.js';
import { runCodecJob, StreamGroup } from './pool.js';

export { AGE_MAGIC, isAgeFile } from './catalog.js';

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

/** An encryption failure as walvault reports it: a bug (the inputs were checked before any data moved). */
function mapEncryptError(error: unknown): Error {
  if (error instanceof WalvaultError) return error;
  return new WalvaultError('internal', `age encryption failed: ${(error as Error | undefined)?.message ?? String(error)}`, { cause: error });
}

/** Parses recipients (createAgeEncryptStream, before any data moves); a malformed one is a 'key' error naming it. */
function recipientKeys(recipients: readonly string[]): Buffer[] {
  return recipients.map((recipient) => {
    try {
      return parseRecipient(recipient);
    } catch (error) {
      throw new WalvaultError('key', `invalid age recipient "${recipient}": ${(error as Error).message}`, {
        hint: 'use the public key printed by `age-keygen` (it starts with age1...)',
        cause: error,
      });
    }
  });
}

/** Parses identities (createAgeDecryptStream, before any data moves); a malformed one is a 'key' error (the secret is not echoed). */
function identityKeys(identities: readonly string[]): X25519Identity[] {
  return identities.map((identity, index) => {
    try {
      return parseIdentity(identity);
    } catch (error) {
      throw new WalvaultError('key', `age identity #${index + 1} is not a valid secret key: ${(error as Error).message}`, {
        hint: 'the identity file must hold lines starting with AGE-SECRET-KEY-1, as written by `age-keygen`',
        cause: error,
      });
    }
  });
}

/** Plaintext bytes per STREAM chunk (age v1 payload format). */
const CHUNK = 64 << 10;
/** Poly1305 tag after each chunk. */
const TAG = 16;
/** An age header is a few lines per recipient; anything longer is not an age file we wrote. */
const HEADER_LIMIT = 64 << 10;

/** The payload key: HKDF-SHA-256(file key, salt = payload nonce, info = "payload"). */
function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return hkdf(fileKey, nonce, 'payload');
}

/** The STREAM nonce of chunk `counter`: 11-byte big-endian counter, then 1 on the last chunk. */
function chunkNonce(counter: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUIntBE(counter, 5, 6);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

/** STREAM chunks per job: 1 MiB of payload, enough to outweigh a message to a worker thread. */
const CHUNKS_PER_JOB = 16;

/** What a seal or open job needs (see CodecJob in jobs.ts). */
interface ChunkJob {
  key: Uint8Array;
  counter: number;
  last: boolean;
  input: Uint8Array;
}

/**
 * Seals `input` as consecutive STREAM chunks from `counter`: whole 64 KiB chunks, and when `last`, a
 * final one of what is left (possibly empty) flagged as last. A job (jobs.ts): runs on any thread.
 */
export function sealChunks(job: ChunkJob): Uint8Array {
  const input = Buffer.from(job.input.buffer, job.input.byteOffset, job.input.byteLength);
  const count = job.last ? Math.max(1, Math.ceil(input.length / CHUNK)) : input.length / CHUNK;
  if (!Number.isInteger(count)) throw new Error(`age seal job of ${input.length} bytes is not whole chunks`);
  const sealed = Buffer.allocUnsafeSlow(input.length + count * TAG);
  let at = 0;
  for (let index = 0; index < count; index += 1) {
    const plaintext = input.subarray(index * CHUNK, (index + 1) * CHUNK);
    const cipher = createCipheriv('chacha20-poly1305', Buffer.from(job.key), chunkNonce(job.counter + index, job.last && index === count - 1), { authTagLength: TAG });
    at += cipher.update(plaintext).copy(sealed, at);
    cipher.final();
    at += cipher.getAuthTag().copy(sealed, at);
  }
  return sealed;
}

/**
 * Opens consecutive sealed STREAM chunks from `counter` (each 64 KiB + tag; when `last`, the final one
 * may be shorter and is checked as last). Throws on any chunk that does not authenticate. A job (jobs.ts).
 */
export function openChunks(job: ChunkJob): Uint8Array {
  const input = Buffer.from(job.input.buffer, job.input.byteOffset, job.input.byteLength);
  const whole = CHUNK + TAG;
  const count = job.last ? Math.max(1, Math.ceil(input.length / whole)) : input.length / whole;
  if (!Number.isInteger(count)) throw new Error(`age open job of ${input.length} bytes is not whole chunks`);
  const opened = Buffer.allocUnsafeSlow(Math.max(0, input.length - count * TAG));
  let at = 0;
  for (let index = 0; index < count; index += 1) {
    const counter = job.counter + index;
    const last = job.last && index === count - 1;
    const sealed = input.subarray(index * whole, (index + 1) * whole);
    if (sealed.length < TAG) throw new Error('the payload is truncated');
    if (last && sealed.length === TAG && counter > 0) throw new Error('final chunk is empty');
    const decipher = createDecipheriv('chacha20-poly1305', Buffer.from(job.key), chunkNonce(counter, last), { authTagLength: TAG });
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
    const body = decipher.update(sealed.subarray(0, sealed.length - TAG));
    try {
      decipher.final();
    } catch (error) {
      throw new Error(`chunk ${counter} does not authenticate${last ? ' (last chunk: truncated?)' : ''} (${(error as Error).message})`);
    }
    at += body.copy(opened, at);
  }
  return opened.subarray(0, at);
}

/**
 * Encrypts the payload in age's STREAM format with Node's ChaCha20-Poly1305 (OpenSSL), after the
 * header and payload nonce (age-header.ts). A full chunk is sealed only once
 * more input shows it is not the last one. Runs of chunks are sealed as jobs (pool.ts), in order.
 */
class AgePayloadEncryptor extends Transform {
  private readonly queue = new ByteQueue();
  private counter = 0;
  private started = false;
  private readonly output = new OrderedOutput(this, mapEncryptError);

  constructor(private readonly prefix: Buffer, private readonly key: Buffer, private readonly group: StreamGroup) {
    super();
  }

  private seal(chunks: number, last: boolean): void {
    const input = this.queue.take(last ? this.queue.length : chunks * CHUNK);
    this.output.add(runCodecJob({ op: 'age-seal', key: this.key, counter: this.counter, last, input }, { owned: false }));
    this.counter += chunks;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.output.enter(this.group);
    this.output.add(this.prefix);
  }

  private async consume(): Promise<void> {
    await this.group.admitted();
    // Keeps at least one byte back: the last chunk is sealed differently, and only the end tells which it is.
    while (this.queue.length > CHUNK) {
      this.seal(Math.min(CHUNKS_PER_JOB, Math.floor((this.queue.length - 1) / CHUNK)), false);
      await this.output.room();
    }
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.start();
    // A block handed over by its writer (archive.ts's EncodingSource, encryption without compression)
    // goes back once the jobs sealing it are done and the bytes kept back are copied out of it: a
    // reused block instead of 1 MiB of garbage per block.
    const giveBack = takeHandedOver(chunk, chunk.byteLength);
    this.queue.push(chunk);
    this.consume()
      .then(async () => {
        if (giveBack === undefined) return;
        await this.output.drained();
        this.queue.detach();
        giveBack();
      })
      .then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.start();
    this.seal(1, true);
    this.output.end().then(() => callback(), callback);
  }
}

/** Decrypts an age file: header (age-header.ts: identities, MAC), then the STREAM payload, in jobs. */
class AgeDecryptor extends Transform {
  private readonly queue = new ByteQueue();
  private header: Buffer | null = null;
  private key: Buffer | null = null;
  private counter = 0;
  private readonly output = new OrderedOutput(this, mapDecryptError);

  constructor(private readonly identities: readonly X25519Identity[], private readonly group: StreamGroup) {
    super();
  }

  private open(chunks: number, last: boolean): void {
    const input = this.queue.take(last ? this.queue.length : chunks * (CHUNK + TAG));
    this.output.add(runCodecJob({ op: 'age-open', key: this.key as Buffer, counter: this.counter, last, input }, { owned: false }));
    this.counter += chunks;
  }

  /** Finds the end of the header (the "--- MAC" line) in the queued bytes; null while incomplete. */
  private headerLength(): number | null {
    const head = this.queue.peek(Math.min(this.queue.length, HEADER_LIMIT));
    if (!isAgeFile(head)) throw mapDecryptError(new Error('not an age v1 file'));
    const macLine = head.indexOf('\n--- ');
    const end = macLine < 0 ? -1 : head.indexOf('\n', macLine + 1);
    if (end < 0) {
      if (head.length >= HEADER_LIMIT) throw mapDecryptError(new Error('no end of header within 64 KiB'));
      return null;
    }
    return end + 1;
  }

  private async consume(): Promise<void> {
    await this.group.admitted();
    if (this.key === null) {
      if (this.header === null) {
        const length = this.headerLength();
        if (length === null) return;
        this.header = this.queue.take(length);
      }
      if (this.queue.length < 16) return;
      const nonce = this.queue.take(16);
      let fileKey: Uint8Array;
      try {
        fileKey = decryptHeader(this.header, this.identities);
      } catch (error) {
        throw mapDecryptError(error);
      }
      this.key = payloadKey(fileKey, nonce);
    }
    // Keeps at least one byte back: the last chunk is opened differently, and only the end tells which it is.
    while (this.queue.length > CHUNK + TAG) {
      this.open(Math.min(CHUNKS_PER_JOB, Math.floor((this.queue.length - 1) / (CHUNK + TAG))), false);
      await this.output.room();
    }
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.output.enter(this.group);
    this.queue.push(chunk);
    this.consume().then(() => callback(), (error: unknown) => callback(mapDecryptError(error)));
  }

  override _flush(callback: TransformCallback): void {
    this.consume()
      .then(() => {
        if (this.key === null) throw mapDecryptError(new Error('the file ends inside the header (truncated)'));
        this.open(1, true);
        return this.output.end();
      })
      .then(() => callback(), (error: unknown) => callback(mapDecryptError(error)));
  }
}

/**
 * A stream that encrypts its input to `recipients` in the age format: the header (a new file key
 * wrapped for each recipient, header MAC) and payload nonce, then the payload sealed in OpenSSL.
 * Memory: the chunks of the jobs in flight.
 */
export async function createAgeEncryptStream(recipients: readonly string[], group: StreamGroup = new StreamGroup()): Promise<Duplex> {
  const { header, fileKey } = encodeHeader(recipientKeys(recipients));
  const nonce = randomBytes(16);
  return new AgePayloadEncryptor(Buffer.concat([header, nonce]), payloadKey(fileKey, nonce), group);
}

/** A stream that decrypts an age file with any of `identities`; errors are 'key' (no identity fits) or 'corrupt'. */
export async function createAgeDecryptStream(identities: readonly string[], group: StreamGroup = new StreamGroup()): Promise<Duplex> {
  return new AgeDecryptor(identityKeys(identities), group);
}
