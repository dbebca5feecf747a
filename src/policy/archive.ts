// The archive policy: store a WAL file durably, never overwrite, and say exactly why when refusing.
import { createReadStream, readSync } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import { PassThrough, Transform, type Duplex, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Backend, FileBody, FilePart, ObjectMeta, OpContext, PullBody } from '../backend/types.js';
import { createEncoder, type DecodeOptions, type EncodeOptions } from '../codec/index.js';
import { monotonicMs } from '../core/clock.js';
import { withRetries, type Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { returnCopyBuffer, takeCopyBuffer } from '../core/buffers.js';
import { collectGarbageAfter, formatHash, HashingStream, loadXxhash, STREAM_CHUNK, type XxhashApi } from '../core/hash.js';
import { formatDuration, type Logger } from '../core/log.js';
import { formatLsn, lsnAtOffset, objectKey, validateFileName } from '../wal/names.js';
import { firstDifference } from './compare.js';
import { decodeStored } from './stored.js';

/** Everything the archive policy needs; the CLI builds it from options, tests build it directly. */
export interface ArchiveRequest {
  backend: Backend;
  /** Path of the file to archive (%p, relative to the working directory = the data directory). */
  sourcePath: string;
  /** Name to archive it under (%f). */
  fileName: string;
  /** Compression and encryption for the stored bytes. */
  encode: EncodeOptions;
  /** Keys for reading back an existing object when comparing (only needed for encrypted objects without metadata). */
  decode?: DecodeOptions;
  deadline: Deadline;
  log: Logger;
  /**
   * Called with the first bytes and size of the source before anything is stored, e.g. to refuse WAL
   * from another cluster; throw to refuse.
   */
  inspect?: (source: { fileName: string; head: Buffer; size: number }, ctx: OpContext) => Promise<void>;
  /** A background push (see OpContext.blockingCopy): the backend may copy with blocking calls. */
  blockingCopy?: boolean;
  /** Told once the file is durable in the repository (walvault status records it; src/cli/outcome.ts). */
  onArchived?: (note: { fileName: string; outcome: 'archived' | 'already-archived'; bytes: number }) => void;
}

/** What happened: newly stored, or found already stored with identical content. */
export interface ArchiveResult {
  outcome: 'archived' | 'already-archived';
  key: string;
  location: string;
  bytes: number;
  durationMs: number;
}

/** Facts about the source: known after it has been read (in one pass, or in the hash pass before a large upload). */
interface SourceFacts {
  size: number;
  hash: string;
}

/** What is known before anything is read beyond the head: enough for the `inspect` hook. */
interface SourceHead {
  size: number;
  head: Buffer;
}

/** Bytes of the source handed to the `inspect` hook (the WAL long page header and more). */
const HEAD_BYTES = 8192;

/** Opens the source, mapping "missing" and "unreadable" to the source error kind. */
async function openSource(sourcePath: string): Promise<{ handle: nodeFs.FileHandle; size: number }> {
  try {
    const handle = await nodeFs.open(sourcePath, 'r');
    const info = await handle.stat().catch(async (error: unknown) => {
      await handle.close();
      throw error;
    });
    if (!info.isFile()) {
      await handle.close();
      throw new WalvaultError('source', `file to archive "${sourcePath}" is not a regular file`, { hint: 'archive_command must pass %p as the path' });
    }
    return { handle, size: info.size };
  } catch (error) {
    if (error instanceof WalvaultError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new WalvaultError('source', `file to archive "${sourcePath}" does not exist (working directory "${process.cwd()}")`, {
        hint: 'archive_command must pass %p (the path relative to the data directory) and %f; PostgreSQL retries',
      });
    }
    throw sourceReadError(sourcePath, error);
  }
}

/** A read error of the source is reported as a source problem, not a storage problem. */
function sourceReadError(sourcePath: string, error: unknown): WalvaultError {
  if (error instanceof WalvaultError) return error;
  return new WalvaultError('source', `cannot read file to archive "${sourcePath}": ${(error as Error).message}`, {
    hint: 'make the file readable for the user running walvault (the PostgreSQL server user); check the disk holding pg_wal',
    cause: error,
  });
}

/** The source changed size between the first look and the end of the read: nothing may be stored. */
function changedError(sourcePath: string): WalvaultError {
  return new WalvaultError('source', `file to archive "${sourcePath}" changed while it was being archived`, { hint: 'nothing was stored; PostgreSQL retries' });
}

/** Size and first bytes of the source, read before anything is stored (the inspect hook may refuse). */
async function readHead(sourcePath: string): Promise<SourceHead> {
  const { handle, size } = await openSource(sourcePath);
  try {
    const head = Buffer.alloc(Math.min(HEAD_BYTES, size));
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return { size, head: head.subarray(0, bytesRead) };
  } catch (error) {
    throw sourceReadError(sourcePath, error);
  } finally {
    await handle.close();
  }
}

/**
 * Reads the source once from the start, hashing every byte on its way to the store: the hash recorded
 * is the hash of exactly the bytes stored. A backend pulls it into its own (reused) buffer.
 */
class HashingSource implements PullBody {
  bytes = 0;

  private constructor(
    private readonly sourcePath: string,
    private readonly handle: nodeFs.FileHandle,
    private readonly expectedSize: number,
    private readonly hasher: ReturnType<XxhashApi['create64']>,
  ) {}

  static async open(sourcePath: string, expectedSize: number): Promise<HashingSource> {
    const { create64 } = await loadXxhash();
    const { handle } = await openSource(sourcePath);
    return new HashingSource(sourcePath, handle, expectedSize, create64());
  }

  async pull(into: Buffer): Promise<number> {
    let bytesRead: number;
    try {
      ({ bytesRead } = await this.handle.read(into, 0, into.length, this.bytes));
    } catch (error) {
      throw sourceReadError(this.sourcePath, error);
    }
    return this.took(into, bytesRead);
  }

  pullSync(into: Buffer): number {
    let bytesRead: number;
    try {
      bytesRead = readSync(this.handle.fd, into, 0, into.length, this.bytes);
    } catch (error) {
      throw sourceReadError(this.sourcePath, error);
    }
    return this.took(into, bytesRead);
  }

  /** Hashes what a read put into `into` and counts it. */
  private took(into: Buffer, bytesRead: number): number {
    if (bytesRead > 0) {
      this.hasher.update(into.subarray(0, bytesRead));
      this.bytes += bytesRead;
    }
    return bytesRead;
  }

  /** Size and hash of everything read; fails when that is not the size the source had at the start. */
  facts(): SourceFacts {
    if (this.bytes !== this.expectedSize) throw changedError(this.sourcePath);
    return { size: this.bytes, hash: formatHash(this.hasher.digest()) };
  }

  close(): Promise<void> {
    return this.handle.close().catch(() => undefined);
  }
}

/**
 * The codec path of a backend that takes the metadata after the body (POSIX): the source is read once,
 * 1 MiB at a time (one lz4 block or zstd frame, COPY_CHUNK), each read into a reused copy buffer
 * (core/buffers.ts) that is hashed and handed over to the encoder (core/owned.ts: it becomes the
 * job's input as it is, no copy, and comes back once the job is done); the backend pulls the encoded
 * bytes into its own reused buffers, as it pulls a plain file. In place of a read stream of fresh
 * 256 KiB chunks, a hashing stream, the encoder gathering fresh 1 MiB blocks by copying, and a write
 * stream: one copy of the source fewer, no per-chunk stream hops, and no garbage from the input side.
 */
class EncodingSource implements PullBody {
  bytes = 0;
  private readonly output: AsyncIterator<Buffer>;
  private rest: Buffer = Buffer.alloc(0);
  private ended = false;
  private readonly feeding: Promise<void>;

  private constructor(
    private readonly sourcePath: string,
    private readonly handle: nodeFs.FileHandle,
    private readonly expectedSize: number,
    private readonly hasher: ReturnType<XxhashApi['create64']>,
    private readonly transforms: Duplex[],
    private readonly handOver: (chunk: Buffer, giveBack: (chunk: Buffer) => void) => Buffer,
    private readonly reclaimUntaken: (stream: object, chunk: Buffer) => boolean,
    private readonly onEnded: () => void,
  ) {
    const last = transforms[transforms.length - 1] as Duplex;
    if (transforms.length > 1) pipeline(transforms).catch(() => undefined);
    this.output = (last as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    this.feeding = this.feed();
  }

  /** `onEnded`: called once the encoded output has ended (the codec's work for this file is done). */
  static async open(sourcePath: string, expectedSize: number, transforms: Duplex[], onEnded: () => void): Promise<EncodingSource> {
    const { create64 } = await loadXxhash();
    const { handOver, reclaimUntaken } = await import('../core/owned.js');
    const { handle } = await openSource(sourcePath);
    return new EncodingSource(sourcePath, handle, expectedSize, create64(), transforms, handOver, reclaimUntaken, onEnded);
  }

  /** Reads the source into the first transform, with its backpressure; a read error fails the chain. */
  private async feed(): Promise<void> {
    const head = this.transforms[0] as Duplex;
    try {
      for (;;) {
        const block = takeCopyBuffer();
        let filled = 0;
        while (filled < block.length) {
          const { bytesRead } = await this.handle.read(block, filled, block.length - filled, this.bytes + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        if (filled === 0) {
          returnCopyBuffer(block);
          break;
        }
        // A whole block is the encoder's until it gives it back; a short last one is copied by the encoder (and left to the collector).
        // A stream that takes no block (gzip) but is done with each at its write callback gives it back then.
        const whole = filled === block.length;
        const data = whole ? this.handOver(block, returnCopyBuffer) : block.subarray(0, filled);
        this.hasher.update(data);
        collectGarbageAfter(this.bytes, this.bytes + filled);
        this.bytes += filled;
        if (head.destroyed) return;
        const room = head.write(data, (error) => {
          if (whole && error == null) this.reclaimUntaken(head, data);
        });
        if (!room) await drained(head);
        if (filled < block.length) break;
      }
      head.end();
    } catch (error) {
      head.destroy(head.destroyed ? undefined : sourceReadError(this.sourcePath, error));
    }
  }

  async pull(into: Buffer): Promise<number> {
    let at = 0;
    while (at < into.length && !this.ended) {
      if (this.rest.length === 0) {
        const next = await this.output.next();
        if (next.done === true) {
          this.ended = true;
          this.onEnded();
          break;
        }
        this.rest = next.value;
      }
      const copied = this.rest.copy(into, at);
      at += copied;
      this.rest = this.rest.subarray(copied);
    }
    return at;
  }

  /** Size and hash of everything read; fails when that is not the size the source had at the start. */
  facts(): SourceFacts {
    if (this.bytes !== this.expectedSize) throw changedError(this.sourcePath);
    return { size: this.bytes, hash: formatHash(this.hasher.digest()) };
  }

  /** Stops the encoder (when the backend gave up early) and closes the source. */
  async close(): Promise<void> {
    if (!this.ended) for (const transform of this.transforms) transform.destroy();
    await this.feeding;
    await this.handle.close().catch(() => undefined);
  }
}

/** Resolves when `stream` can take more input; rejects when it fails or closes first. */
function drained(stream: Duplex): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error): void => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
      stream.off('error', done);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new Error('the encoder stopped'));
    stream.once('drain', onDrain);
    stream.once('close', onClose);
    stream.once('error', done);
  });
}

/**
 * Chunk size of the bodies streamed from the file to S3. Every chunk a read stream produces is a fresh
 * buffer; those still in the pipeline when a collection runs outlive it and wait for a major one, so
 * their size sets how much dead memory piles up. Measured with the real pusher (32 segments of 16 MiB,
 * two at a time, against s3rver): peak RSS 91-92 MiB with 128 KiB chunks, 88-89 MiB with 64 KiB,
 * 87-89 MiB with 32 KiB, at the same throughput.
 */
const UPLOAD_CHUNK = 64 * 1024;

/** Wraps read errors of the source so they are reported as source problems, not storage problems. */
function readSource(sourcePath: string, range?: { start: number; length: number }, chunk = STREAM_CHUNK): Readable {
  const span = range === undefined ? {} : { start: range.start, end: range.start + range.length - 1 };
  const stream = createReadStream(sourcePath, { highWaterMark: chunk, ...span });
  const out = new PassThrough({ highWaterMark: chunk });
  stream.on('error', (error) => {
    out.destroy(sourceReadError(sourcePath, error));
  });
  return stream.pipe(out);
}

/** Hash pass (only before a multi-request upload to a backend that needs the hash first). */
async function hashSource(sourcePath: string, deadline: Deadline): Promise<SourceFacts> {
  const hasher = await HashingStream.create();
  const sink = new Transform({ transform: (_chunk, _encoding, done: TransformCallback) => done() });
  await deadline.race(pipeline(readSource(sourcePath), hasher, sink));
  return { size: hasher.bytes, hash: hasher.digest() };
}

/** Passes bytes through and fails the stream, before its end, if they no longer match the hash pass. */
function expectSameContent(sourcePath: string, facts: SourceFacts, hasher: HashingStream): Transform {
  return new Transform({
    transform: (chunk, _encoding, done: TransformCallback) => done(null, chunk),
    flush: (done: TransformCallback) => {
      if (hasher.bytes !== facts.size || hasher.digest() !== facts.hash) done(changedError(sourcePath));
      else done();
    },
  });
}

/** A range of the source as the scan saw it: its checksum for the store, its hash for the send pass. */
interface ScannedRange {
  offset: number;
  length: number;
  crc32: number;
  hash: string;
}

/**
 * The scan before a streamed upload: one read of the source through a reused buffer, giving its size
 * and hash (the metadata) and, per range of `partBytes`, the CRC32 the store checks and the hash the
 * send pass checks.
 */
async function scanSource(sourcePath: string, expectedSize: number, partBytes: number, deadline: Deadline): Promise<{ facts: SourceFacts; ranges: ScannedRange[] }> {
  const { create64 } = await loadXxhash();
  // node:zlib only here: the local paths (restore included, through the fast entry) never load it.
  const { crc32 } = await import('node:zlib');
  const { handle } = await openSource(sourcePath);
  const buffer = takeCopyBuffer();
  let settled = false;
  try {
    const whole = create64();
    // One range: its hash is the whole file's.
    const single = expectedSize <= partBytes;
    const ranges: ScannedRange[] = [];
    let part = { offset: 0, crc32: 0, hasher: single ? whole : create64() };
    let position = 0;
    const closePart = (): void => {
      if (position === part.offset) return;
      ranges.push({ offset: part.offset, length: position - part.offset, crc32: part.crc32, hash: single ? '' : formatHash(part.hasher.digest()) });
      part = { offset: position, crc32: 0, hasher: create64() };
    };
    for (;;) {
      const room = Math.min(buffer.length, part.offset + partBytes - position);
      let bytesRead: number;
      try {
        ({ bytesRead } = await deadline.race(handle.read(buffer, 0, room, position)));
      } catch (error) {
        throw deadline.signal.aborted ? error : sourceReadError(sourcePath, error);
      }
      if (bytesRead === 0) break;
      const data = buffer.subarray(0, bytesRead);
      whole.update(data);
      if (!single) part.hasher.update(data);
      part.crc32 = crc32(data, part.crc32);
      position += bytesRead;
      if (position === part.offset + partBytes) closePart();
    }
    settled = true;
    closePart();
    if (position !== expectedSize) throw changedError(sourcePath);
    const hash = formatHash(whole.digest());
    if (single && ranges[0] !== undefined) ranges[0].hash = hash;
    return { facts: { size: position, hash }, ranges };
  } finally {
    // A read still in flight (deadline passed) may yet write into the buffer: then it is dropped.
    if (settled) returnCopyBuffer(buffer);
    await handle.close().catch(() => undefined);
  }
}

/**
 * Passes bytes through holding the latest chunk back: the last one is released only once everything
 * hashed to what the scan saw, so a request fed by this stream never completes with other bytes.
 */
function releasedIfUnchanged(sourcePath: string, expected: { length: number; hash: string; fileSize?: number }, api: XxhashApi): Transform {
  const hasher = api.create64();
  let held: Buffer | undefined;
  let bytes = 0;
  return new Transform({
    highWaterMark: UPLOAD_CHUNK,
    transform(chunk: Buffer, _encoding, done: TransformCallback) {
      hasher.update(chunk);
      collectGarbageAfter(bytes, bytes + chunk.length);
      bytes += chunk.length;
      const previous = held;
      held = chunk;
      done(null, previous);
    },
    flush(done: TransformCallback) {
      if (bytes !== expected.length || formatHash(hasher.digest()) !== expected.hash) {
        done(changedError(sourcePath));
        return;
      }
      const release = (): void => {
        if (held !== undefined) this.push(held);
        done();
      };
      if (expected.fileSize === undefined) {
        release();
        return;
      }
      // The last range: a file that grew since the scan is refused, as the other paths do.
      nodeFs.stat(sourcePath).then(
        (info) => (info.size === expected.fileSize ? release() : done(changedError(sourcePath))),
        (error: unknown) => done(sourceReadError(sourcePath, error)),
      );
    },
  });
}

/** A scanned source as the backend streams it: each part re-read from the file and checked on the way. */
function fileBody(sourcePath: string, size: number, ranges: ScannedRange[], api: XxhashApi): FileBody {
  const parts = ranges.map(
    (range, index): FilePart => ({
      offset: range.offset,
      length: range.length,
      crc32: crc32Header(range.crc32),
      open: () => {
        const checked = releasedIfUnchanged(sourcePath, { ...range, fileSize: index === ranges.length - 1 ? size : undefined }, api);
        pipeline(readSource(sourcePath, { start: range.offset, length: range.length }, UPLOAD_CHUNK), checked).catch(() => undefined);
        return checked;
      },
    }),
  );
  return { size, parts };
}

/** A CRC32 as the x-amz-checksum-crc32 header carries it: base64 of the big-endian 4 bytes. */
function crc32Header(value: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value >>> 0);
  return bytes.toString('base64');
}

/** Outcome of one store attempt: whether it created the object, and the source's facts read on the way. */
interface StoreOutcome {
  created: boolean;
  facts: SourceFacts;
}

/** Feeds `input` through the encoder into a stream the backend consumes; `feeding` settles when the chain has. */
function encodeStream(input: Readable, transforms: Duplex[]): { body: Readable; feeding: Promise<void> } {
  const body = new PassThrough({ highWaterMark: STREAM_CHUNK });
  const feeding = pipeline([input, ...transforms, body]);
  feeding.catch(() => undefined);
  return { body, feeding };
}

/**
 * Stores the source under its key if absent:
 * - metadata after the body (POSIX): one pass, hashing while storing; the backend asks for the
 *   metadata only once the body has ended. No codec: the backend pulls the file through a reused buffer;
 *   with a codec it pulls the encoded bytes (EncodingSource).
 * - metadata before the body (S3), no codec: a scan (size, hash, per-part checksums) through a reused
 *   buffer, then the backend streams each part from the file, checked against the scan on the way.
 *   A push holds a few chunks, never a segment.
 * - metadata before the body with a codec: a hash pass, then the streamed store pass, which must see
 *   the same bytes (the backend holds the compressed parts).
 */
async function storeIfAbsent(request: ArchiveRequest, key: string, source: SourceHead): Promise<StoreOutcome> {
  const { backend, sourcePath } = request;
  const encoder = await createEncoder(request.encode);
  const plain = encoder.transforms.length === 0;
  const metaOf = (facts: SourceFacts): ObjectMeta => ({ contentHash: facts.hash, contentSize: facts.size, codec: encoder.codec, encryption: encoder.encryption });
  const ctx = { signal: request.deadline.signal, blockingCopy: request.blockingCopy };
  const timing = backend.metaTiming;

  if (timing.when === 'after-body' && !plain) {
    // Waits for the codec's admission before opening anything: a push waiting for its turn (the
    // pusher runs --parallel of them, the codec pool admits a few) holds no buffer, file or job.
    // The place is given back once the encoded bytes have all been pulled, before the backend's fsync
    // and link: the next push encodes meanwhile.
    const admission = encoder.admit();
    const release = await request.deadline.race(admission).catch((error: unknown) => {
      void admission.then((late) => late());
      throw error;
    });
    let reader: EncodingSource | undefined;
    try {
      reader = await EncodingSource.open(sourcePath, source.size, encoder.transforms, release);
      const facts = reader.facts.bind(reader);
      const { created } = await backend.putIfAbsent(key, reader, () => metaOf(facts()), ctx);
      return { created, facts: facts() };
    } finally {
      await reader?.close();
      release();
    }
  }
  if (timing.when === 'after-body') {
    const reader = await HashingSource.open(sourcePath, source.size);
    try {
      const { created } = await backend.putIfAbsent(key, reader, () => metaOf(reader.facts()), ctx);
      return { created, facts: reader.facts() };
    } finally {
      await reader.close();
    }
  }
  if (plain && backend.putFileIfAbsent !== undefined) {
    const { facts, ranges } = await scanSource(sourcePath, source.size, timing.singleRequestBytes, request.deadline);
    const { created } = await backend.putFileIfAbsent(key, fileBody(sourcePath, facts.size, ranges, await loadXxhash()), metaOf(facts), ctx);
    return { created, facts };
  }
  const facts = await hashSource(sourcePath, request.deadline);
  const hasher = await HashingStream.create();
  const { body, feeding } = encodeStream(readSource(sourcePath), [hasher, expectSameContent(sourcePath, facts, hasher), ...encoder.transforms]);
  const { created } = await backend.putIfAbsent(key, body, metaOf(facts), ctx);
  await feeding;
  return { created, facts };
}

/** How the stored copy relates to the source. */
type Comparison = { state: 'missing' } | { state: 'identical'; meta: ObjectMeta } | { state: 'different'; detail: string } | { state: 'damaged'; detail: string };

/**
 * Compares the existing object with the source. Where the recorded metadata is a sidecar (POSIX), the
 * stored copy is read back, decoded and compared byte for byte, so a copy whose bytes rotted while its
 * recorded hash still matches is never taken for identical (PostgreSQL would then recycle the only good
 * copy). A recorded hash alone decides where it cannot diverge from the body (Backend.metaBoundToBody:
 * one immutable S3 object, which spares a download of every segment a second server archives), and
 * for an encrypted object on a host that holds no identity to decrypt it (the archive side usually has
 * only the recipients); restore and `walvault verify` check such an object's content.
 */
async function compareWithStored(request: ArchiveRequest, key: string, facts: SourceFacts): Promise<Comparison> {
  const ctx = { signal: request.deadline.signal };
  const info = await request.backend.stat(key, ctx);
  if (!info.exists) return { state: 'missing' };
  const recordedSame = info.meta !== null && info.meta.contentHash === facts.hash && info.meta.contentSize === facts.size;
  if (info.meta !== null && recordedSame && request.backend.metaBoundToBody) return { state: 'identical', meta: info.meta };
  if (info.meta !== null && info.meta.encryption !== 'none' && (request.decode?.identities ?? []).length === 0) {
    if (recordedSame) return { state: 'identical', meta: info.meta };
    return { state: 'different', detail: `its recorded hash ${info.meta.contentHash} (${info.meta.contentSize} bytes) differs from this file's ${facts.hash} (${facts.size} bytes)` };
  }
  const object = await request.backend.read(key, ctx);
  if (object === null) return { state: 'missing' };
  const decoded = await decodeStored(object, request.decode ?? {});
  let offset: number | null;
  try {
    offset = await request.deadline.race(firstDifference(decoded.content, readSource(request.sourcePath)));
  } catch (error) {
    // The stored bytes do not decode (truncated, flipped): whatever they once held, they are damaged now.
    if (error instanceof WalvaultError && error.kind === 'corrupt') return { state: 'damaged', detail: error.message };
    throw error;
  }
  const decodeError = await decoded.finished.then(() => null, (error: unknown) => error);
  if (offset === null && decodeError === null) {
    return { state: 'identical', meta: info.meta !== null && recordedSame ? info.meta : { contentHash: facts.hash, contentSize: facts.size, codec: decoded.format.codec, encryption: decoded.format.encryption } };
  }
  const lsn = offset === null ? null : lsnAtOffset(request.fileName, offset, facts.size);
  const where = offset === null ? 'it does not decode' : `at byte offset ${offset}${lsn === null ? '' : ` (LSN ${formatLsn(lsn)})`}`;
  if (recordedSame) return { state: 'damaged', detail: `its recorded hash matches this file but its stored bytes differ ${where}` };
  const storedSize = info.meta?.contentSize;
  const sizes = storedSize !== undefined && storedSize !== facts.size ? `; archived copy has ${storedSize} bytes, this file ${facts.size}` : '';
  return { state: 'different', detail: `the contents differ ${where}${sizes}` };
}

/**
 * Archives one file. Resolves when the file is durably stored (new or identical copy already there);
 * throws WalvaultError('mismatch') when a different file is stored under that name, changing nothing.
 */
export async function archiveFile(request: ArchiveRequest): Promise<ArchiveResult> {
  const started = monotonicMs();
  const fileName = validateFileName(request.fileName);
  const key = objectKey(fileName);
  const { backend, deadline, log } = request;
  const location = backend.describe(key);
  const source = await readHead(request.sourcePath);
  // The request's own deadline: a background push has one per file, and must not be held by a disposed one.
  await request.inspect?.({ fileName, head: source.head, size: source.size }, { signal: deadline.signal });
  const retry = { deadline, onRetry: (error: WalvaultError, attempt: number, delay: number) => log.warn(`${error.oneLine()} (attempt ${attempt}, retrying in ${delay} ms)`) };

  for (let round = 0; round < 3; round += 1) {
    const { created, facts } = await withRetries(() => storeIfAbsent(request, key, source), retry);
    const durationMs = monotonicMs() - started;
    if (created) {
      log.info(`archived "${fileName}" to "${location}" (${facts.size} bytes, ${formatDuration(durationMs)})`);
      request.onArchived?.({ fileName, outcome: 'archived', bytes: facts.size });
      return { outcome: 'archived', key, location, bytes: facts.size, durationMs };
    }
    const comparison = await withRetries(() => compareWithStored(request, key, facts), retry);
    if (comparison.state === 'missing') continue;
    if (comparison.state === 'damaged') {
      throw new WalvaultError('corrupt', `the archived copy of "${fileName}" at "${location}" is damaged: ${comparison.detail}`, {
        hint: `run walvault verify on the repository; move the damaged copy (and its ~meta) aside so that PostgreSQL archives "${request.sourcePath}" again, which is still intact; nothing was changed`,
      });
    }
    if (comparison.state === 'different') {
      throw new WalvaultError('mismatch', `refusing to overwrite "${fileName}" at "${location}": the archived copy is not "${request.sourcePath}", ${comparison.detail}`, {
        hint: 'two clusters (or a promoted standby and its old primary) may be archiving into one repository; compare system identifiers with pg_controldata and give each cluster its own repository; nothing was changed',
      });
    }
    await withRetries(() => backend.persist(key, comparison.meta, { signal: deadline.signal }), retry);
    const total = monotonicMs() - started;
    log.warn(`"${fileName}" was already archived at "${location}" with identical content; made sure it is durable, reporting success (${formatDuration(total)})`);
    request.onArchived?.({ fileName, outcome: 'already-archived', bytes: facts.size });
    return { outcome: 'already-archived', key, location, bytes: facts.size, durationMs: total };
  }
  throw new WalvaultError('backend', `"${fileName}" at "${location}" keeps appearing and disappearing while archiving`, {
    hint: 'something else is deleting from the repository at the same time (a cleanup job?); PostgreSQL retries',
  });
}
