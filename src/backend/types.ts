// The one interface every storage backend implements; the archive, restore and verify policies use only this.
import type { Readable } from 'node:stream';

/** What walvault records with every stored object, so restore and verify need no flags. */
export interface ObjectMeta {
  /** xxh64 of the ORIGINAL bytes (before compression/encryption), 16 lower-case hex digits. */
  contentHash: string;
  /** Size in bytes of the original file. */
  contentSize: number;
  /** Codec of the stored bytes: 'none', or a compression codec name (see src/codec). */
  codec: string;
  /** Encryption of the stored bytes: 'none' or 'age'. Applied after compression. */
  encryption: string;
}

/** Result of looking an object up: a missing object is a value, never an exception. */
export type StatResult =
  | { exists: false }
  | {
      exists: true;
      /** Bytes as stored (after compression/encryption). */
      storedSize: number;
      /** Metadata recorded at archive time; null for objects written by other tools (or a crash window on POSIX). */
      meta: ObjectMeta | null;
      modified: Date;
    };

/** An opened object: its stored bytes and what was recorded about them. */
export interface StoredObject {
  body: Readable;
  /** Bytes as stored. */
  storedSize: number;
  /** Metadata recorded at archive time; null when absent (objects written by other tools). */
  meta: ObjectMeta | null;
}

/**
 * A body the backend pulls into a buffer of its own: resolves how many bytes were placed at the start
 * of `into` (0 at the end). Lets a backend copy a file with one reused buffer instead of a chain of
 * streams with a fresh chunk per read.
 */
export interface PullBody {
  pull(into: Buffer): Promise<number>;
  /** The same as pull, with blocking calls (a file on a local disk offers it; see OpContext.blockingCopy). */
  pullSync?(into: Buffer): number;
}

/** What putIfAbsent stores: a stream, a pulled body, or bytes already in memory. */
export type PutBody = Readable | PullBody | Buffer;

/**
 * Whether a body is pulled. Not `instanceof Readable`: that would load node:stream (~1.5 ms) in calls
 * that never stream (a plain local archive pulls the file).
 */
export function isPullBody(body: PutBody): body is PullBody {
  return !Buffer.isBuffer(body) && typeof (body as Partial<PullBody>).pull === 'function';
}

/** One byte range of a file body whose checksum is known before it is sent (see FileBody). */
export interface FilePart {
  offset: number;
  length: number;
  /** CRC32 of the range as S3 wants it in x-amz-checksum-crc32: base64 of the big-endian value. */
  crc32: string;
  /**
   * A fresh stream of the range, each call a new one (to send it again after a failure). It fails
   * before its last byte when the bytes are not the ones scanned, so a request it feeds never completes.
   */
  open(): Readable;
}

/**
 * A local file scanned once before it is stored (size, hash, per-part checksums): the backend streams
 * each part from the file, so a push holds a few chunks in memory whatever the file's size.
 */
export interface FileBody {
  size: number;
  /** Consecutive ranges of at most the backend's `singleRequestBytes` covering the file; none when it is empty. */
  parts: FilePart[];
}

/**
 * The metadata of a put: known up front, or a function the backend calls once the body has been
 * consumed (the caller hashes while the body is stored; see Backend.metaTiming). The function may
 * throw (e.g. the source changed size): the put then fails and stores nothing.
 */
export type PutMeta = ObjectMeta | (() => ObjectMeta);

/** Outcome of an atomic create. */
export interface PutResult {
  /** true: this call created the object and it is durable. false: the key already existed; nothing was changed. */
  created: boolean;
}

/** Outcome of putLarge. */
export interface LargePutResult {
  /** Bytes as stored. */
  storedSize: number;
}

/** One entry of a listing. */
export interface ListEntry {
  /** Repository-relative key, '/'-separated. */
  key: string;
  /** Bytes as stored. */
  storedSize: number;
  modified: Date;
  /** A leftover temporary upload/file of walvault's own (never an archived file). */
  temp: boolean;
}

/** Per-call context: every storage operation honours the deadline's abort signal. */
export interface OpContext {
  signal: AbortSignal;
  /**
   * The caller is a background pusher, not a request PostgreSQL waits for: the backend may copy a
   * pulled body with blocking read/write calls on the main thread (each one a syscall instead of a
   * thread-pool round trip; a hung filesystem then stalls that pusher, whose claimed files
   * PostgreSQL's own requests take over; a request keeps its deadline either way).
   */
  blockingCopy?: boolean;
}

/**
 * A storage backend. Keys are repository-relative and '/'-separated. Durability (fsync, atomic create)
 * is the backend's job; comparing, refusing and warning is the caller's.
 */
export interface Backend {
  /** Backend name as in the registry: 'local', 'nfs', 's3'. */
  readonly kind: string;
  /**
   * When the backend needs an object's metadata. 'after-body' (POSIX: the sidecar is written after the
   * data is durable): a PutMeta function is called only after the body has ended, so the caller can
   * hash while storing and read the source once. 'before-body' (S3: metadata travels in the request
   * headers): a function is called before the body is read, so the caller must hash first.
   * `singleRequestBytes` is the most one request carries (S3: 5 GiB, every object in one PutObject):
   * the caller's scan of a file cuts its FileBody ranges at that size.
   */
  readonly metaTiming: { when: 'after-body' } | { when: 'before-body'; singleRequestBytes: number };
  /**
   * True when an object's recorded metadata is part of the object, written with its body in one atomic
   * request and never changed afterwards (S3: body and x-amz-meta-* of one PutObject): a recorded hash
   * then speaks for the stored bytes. False for a sidecar written beside the body (POSIX ~meta), which
   * can outlive a change to the body, so the archive policy compares stored bytes instead.
   */
  readonly metaBoundToBody: boolean;
  /** Where a key lives, for messages: a path or an s3:// URL. */
  describe(key: string): string;
  /**
   * Stores `body` under `key` only if `key` does not exist. Resolves `{created: true}` once the object
   * and its metadata are durable; `{created: false}` when the key already exists (content untouched).
   * A failure or abort leaves no object under `key` (temporary data is removed). The body is consumed
   * to its end before `{created: false}` is returned (the caller's hash of it is then complete).
   */
  putIfAbsent(key: string, body: PutBody, meta: PutMeta, ctx: OpContext): Promise<PutResult>;
  /**
   * The same for a scanned file (before-body backends may offer it): the metadata is known, and the
   * parts are streamed from the file instead of held in memory.
   */
  putFileIfAbsent?(key: string, file: FileBody, meta: ObjectMeta, ctx: OpContext): Promise<PutResult>;
  /**
   * Stores a stream of unknown length (many GiB: one tar archive of a base backup) under `key`, which
   * must not exist. Memory stays bounded whatever the size (S3: a multipart upload whose parts are sent
   * in parallel; POSIX: a temporary file fsynced and linked into place). No walvault metadata is
   * recorded on the object (stat/read report meta null): the backup manifest describes it. Resolves
   * with the stored size once the object is durable and visible under `key`; a failure or abort leaves
   * nothing under `key` (S3 aborts the upload) and rejects; an existing `key` rejects with
   * WalvaultError kind 'mismatch' and is left untouched.
   */
  putLarge(key: string, body: Readable, ctx: OpContext): Promise<LargePutResult>;
  /** Looks a key up; `{exists: false}` when missing. */
  stat(key: string, ctx: OpContext): Promise<StatResult>;
  /**
   * Opens the stored bytes together with their metadata, in one request where the store allows
   * (restore's "not found" must cost a single GET); null when the key is missing.
   */
  read(key: string, ctx: OpContext): Promise<StoredObject | null>;
  /**
   * Makes an existing object durable (POSIX: fsync file and directory) and, where the backend keeps
   * metadata apart from the data, records `meta` if none is recorded yet.
   */
  persist(key: string, meta: ObjectMeta | null, ctx: OpContext): Promise<void>;
  /** Lists keys under a prefix ('' for all), in no particular order. Internal metadata is never listed. */
  list(prefix: string, ctx: OpContext): AsyncIterable<ListEntry>;
  /** Removes a key (and its metadata). Missing keys are not an error. */
  delete(key: string, ctx: OpContext): Promise<void>;
  /** Reads a small repository document (e.g. walvault.json); null when missing. */
  readText(key: string, ctx: OpContext): Promise<string | null>;
  /** Writes a small repository document durably; with ifAbsent, returns false instead of replacing one. */
  writeText(key: string, text: string, ctx: OpContext, options?: { ifAbsent?: boolean }): Promise<boolean>;
}
