// The archive policy: store a WAL file durably, never overwrite, and say exactly why when refusing.
import { createReadStream } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import { PassThrough, Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Backend, ObjectMeta } from '../backend/types.js';
import { createEncoder, type DecodeOptions, type EncodeOptions } from '../codec/index.js';
import { withRetries, type Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { HashingStream, STREAM_CHUNK } from '../core/hash.js';
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
  inspect?: (source: { fileName: string; head: Buffer; size: number }) => Promise<void>;
}

/** What happened: newly stored, or found already stored with identical content. */
export interface ArchiveResult {
  outcome: 'archived' | 'already-archived';
  key: string;
  location: string;
  bytes: number;
  durationMs: number;
}

/** Facts about the source gathered by the first read. */
interface SourceFacts {
  size: number;
  hash: string;
  head: Buffer;
}

/** Opens the source, mapping "missing" and "unreadable" to the source error kind. */
async function openSource(sourcePath: string): Promise<nodeFs.FileHandle> {
  try {
    const handle = await nodeFs.open(sourcePath, 'r');
    const info = await handle.stat();
    if (!info.isFile()) {
      await handle.close();
      throw new WalvaultError('source', `file to archive "${sourcePath}" is not a regular file`, { hint: 'archive_command must pass %p as the path' });
    }
    return handle;
  } catch (error) {
    if (error instanceof WalvaultError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new WalvaultError('source', `file to archive "${sourcePath}" does not exist (working directory "${process.cwd()}")`, {
        hint: 'archive_command must pass %p (the path relative to the data directory) and %f; PostgreSQL retries',
      });
    }
    throw new WalvaultError('source', `cannot read file to archive "${sourcePath}": ${(error as Error).message}`, {
      hint: 'make the file readable for the user running walvault (the PostgreSQL server user)',
      cause: error,
    });
  }
}

/** Wraps read errors of the source so they are reported as source problems, not storage problems. */
function readSource(sourcePath: string): Readable {
  const stream = createReadStream(sourcePath, { highWaterMark: STREAM_CHUNK });
  const out = new PassThrough({ highWaterMark: STREAM_CHUNK });
  stream.on('error', (error) => {
    out.destroy(new WalvaultError('source', `cannot read file to archive "${sourcePath}": ${error.message}`, { hint: 'check the disk holding pg_wal', cause: error }));
  });
  return stream.pipe(out);
}

/** First pass: size, content hash and head of the source. */
async function inspectSource(sourcePath: string, deadline: Deadline): Promise<SourceFacts> {
  const handle = await openSource(sourcePath);
  await handle.close();
  const hasher = await HashingStream.create();
  const sink = new Transform({ transform: (_chunk, _encoding, done: TransformCallback) => done() });
  await deadline.race(pipeline(readSource(sourcePath), hasher, sink));
  return { size: hasher.bytes, hash: hasher.digest(), head: hasher.head };
}

/** Passes bytes through and fails the stream, before its end, if they no longer match the first read. */
function expectSameContent(sourcePath: string, facts: SourceFacts, hasher: HashingStream): Transform {
  return new Transform({
    transform: (chunk, _encoding, done: TransformCallback) => done(null, chunk),
    flush: (done: TransformCallback) => {
      if (hasher.bytes !== facts.size || hasher.digest() !== facts.hash) {
        done(new WalvaultError('source', `file to archive "${sourcePath}" changed while it was being archived`, { hint: 'nothing was stored; PostgreSQL retries' }));
      } else done();
    },
  });
}

/** Stores the source under its key if absent; returns whether this call created it. */
async function storeIfAbsent(request: ArchiveRequest, key: string, facts: SourceFacts): Promise<boolean> {
  const encoder = await createEncoder(request.encode);
  const meta: ObjectMeta = { contentHash: facts.hash, contentSize: facts.size, codec: encoder.codec, encryption: encoder.encryption };
  const hasher = await HashingStream.create({ headLimit: 0 });
  const body = new PassThrough({ highWaterMark: STREAM_CHUNK });
  const feeding = pipeline([readSource(request.sourcePath), hasher, expectSameContent(request.sourcePath, facts, hasher), ...encoder.transforms, body]);
  feeding.catch(() => undefined);
  const { created } = await request.backend.putIfAbsent(key, body, meta, { signal: request.deadline.signal });
  await feeding;
  return created;
}

/** How the stored copy relates to the source. */
type Comparison = { state: 'missing' } | { state: 'identical'; meta: ObjectMeta } | { state: 'different'; detail: string };

/** Compares the existing object with the source: by recorded hash when there is one, else by content. */
async function compareWithStored(request: ArchiveRequest, key: string, facts: SourceFacts): Promise<Comparison> {
  const ctx = { signal: request.deadline.signal };
  const info = await request.backend.stat(key, ctx);
  if (!info.exists) return { state: 'missing' };
  if (info.meta !== null && info.meta.contentHash === facts.hash && info.meta.contentSize === facts.size) {
    return { state: 'identical', meta: info.meta };
  }
  if (info.meta !== null && info.meta.encryption !== 'none' && (request.decode?.identities ?? []).length === 0) {
    return { state: 'different', detail: `its recorded hash ${info.meta.contentHash} (${info.meta.contentSize} bytes) differs from this file's ${facts.hash} (${facts.size} bytes)` };
  }
  const object = await request.backend.read(key, ctx);
  if (object === null) return { state: 'missing' };
  const decoded = await decodeStored(object, request.decode ?? {});
  const offset = await request.deadline.race(firstDifference(decoded.content, readSource(request.sourcePath)));
  await decoded.finished.catch(() => undefined);
  if (offset === null) {
    return { state: 'identical', meta: { contentHash: facts.hash, contentSize: facts.size, codec: decoded.format.codec, encryption: decoded.format.encryption } };
  }
  const storedSize = info.meta?.contentSize;
  const lsn = lsnAtOffset(request.fileName, offset, facts.size);
  const where = `at byte offset ${offset}${lsn === null ? '' : ` (LSN ${formatLsn(lsn)})`}`;
  const sizes = storedSize !== undefined && storedSize !== facts.size ? `; archived copy has ${storedSize} bytes, this file ${facts.size}` : '';
  return { state: 'different', detail: `the contents differ ${where}${sizes}` };
}

/**
 * Archives one file. Resolves when the file is durably stored (new or identical copy already there);
 * throws WalvaultError('mismatch') when a different file is stored under that name, changing nothing.
 */
export async function archiveFile(request: ArchiveRequest): Promise<ArchiveResult> {
  const started = performance.now();
  const fileName = validateFileName(request.fileName);
  const key = objectKey(fileName);
  const { backend, deadline, log } = request;
  const location = backend.describe(key);
  const facts = await inspectSource(request.sourcePath, deadline);
  await request.inspect?.({ fileName, head: facts.head, size: facts.size });
  const retry = { deadline, onRetry: (error: WalvaultError, attempt: number, delay: number) => log.warn(`${error.oneLine()} (attempt ${attempt}, retrying in ${delay} ms)`) };

  for (let round = 0; round < 3; round += 1) {
    const created = await withRetries(() => storeIfAbsent(request, key, facts), retry);
    const durationMs = performance.now() - started;
    if (created) {
      log.info(`archived "${fileName}" to "${location}" (${facts.size} bytes, ${formatDuration(durationMs)})`);
      return { outcome: 'archived', key, location, bytes: facts.size, durationMs };
    }
    const comparison = await withRetries(() => compareWithStored(request, key, facts), retry);
    if (comparison.state === 'missing') continue;
    if (comparison.state === 'different') {
      throw new WalvaultError('mismatch', `refusing to overwrite "${fileName}" at "${location}": the archived copy is not "${request.sourcePath}", ${comparison.detail}`, {
        hint: 'two clusters (or a promoted standby and its old primary) may be archiving into one repository; compare system identifiers with pg_controldata and give each cluster its own repository; nothing was changed',
      });
    }
    await withRetries(() => backend.persist(key, comparison.meta, { signal: deadline.signal }), retry);
    const total = performance.now() - started;
    log.warn(`"${fileName}" was already archived at "${location}" with identical content; made sure it is durable, reporting success (${formatDuration(total)})`);
    return { outcome: 'already-archived', key, location, bytes: facts.size, durationMs: total };
  }
  throw new WalvaultError('backend', `"${fileName}" at "${location}" keeps appearing and disappearing while archiving`, {
    hint: 'something else is deleting from the repository at the same time (a cleanup job?); PostgreSQL retries',
  });
}
