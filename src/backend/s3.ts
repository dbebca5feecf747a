// The S3 backend: atomic create with one conditional PutObject (If-None-Match: *) per object on Amazon S3 and
// S3-compatible stores, loaded only for s3:// repositories.
import { createHash, randomBytes } from 'node:crypto';
import * as nodeFs from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import { crc32 } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type PutObjectCommandInput,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { freeNow } from '../core/buffers.js';
import { raceAbort } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { giveBackConsumed } from '../core/owned.js';
import { ChunkReader } from './chunk-reader.js';
import { extraCaAgent } from './extra-ca.js';
import type { Backend, FileBody, FilePart, LargePutResult, ListEntry, ObjectMeta, OpContext, PutBody, PutMeta, PutResult, StatResult, StoredObject } from './types.js';

/** How the backend makes "create only if absent" atomic. */
export type ConditionalWritesMode = 'auto' | 'on' | 'off';

/** Minimal logger the backend reports fallbacks and retries to (src/core/log.ts's Logger fits). */
export interface S3Logger {
  warn(message: string): void;
  debug(message: string): void;
}

/** Options of the S3 backend; credentials are never options: they come from the AWS SDK's default chain. */
export interface S3BackendOptions {
  /** Bucket name (from s3://bucket/prefix). */
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/'; '' for the bucket root. */
  prefix?: string;
  /** Endpoint URL of an S3-compatible store (MinIO, Ceph RGW, R2...); default: AWS, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL. */
  endpoint?: string;
  /** Region; default: AWS_REGION / AWS_DEFAULT_REGION / the profile's region, else us-east-1 when an endpoint is set. */
  region?: string;
  /** Path-style URLs (endpoint/bucket/key) instead of virtual-hosted ones; most self-hosted stores need it. */
  forcePathStyle?: boolean;
  /** Storage class of archived objects (STANDARD, STANDARD_IA, INTELLIGENT_TIERING...); default: the bucket's default. */
  storageClass?: string;
  /** Server-side encryption: AES256 (S3-managed keys) or aws:kms; default: the bucket's default encryption. */
  sse?: 'AES256' | 'aws:kms';
  /** KMS key id or ARN for sse=aws:kms; default: the account's aws/s3 key. */
  sseKmsKeyId?: string;
  /**
   * on: trust If-None-Match: * (the store enforces it); off: look up (HEAD) then write, with a race
   * window between two writers; auto (default): probe once whether the store enforces the header on
   * PutObject (the only request walvault creates objects with), record the answer in the repository,
   * and fall back to off, with a warning on every run, when it does not.
   */
  conditionalWrites?: ConditionalWritesMode;
  /** Time without progress after which one HTTP request is abandoned (and retried), in ms; default 30000. */
  requestTimeoutMs?: number;
  /** Attempts per request, the first included, for transient failures (5xx, throttling, resets, timeouts); default 3. */
  maxAttempts?: number;
  /**
   * A streamed (compressed or encrypted) body up to this many bytes is sent from memory; a larger one is
   * first spooled to an unlinked file in the OS temp directory (TMPDIR), so that it too goes in one
   * conditional PutObject with its length and CRC32 known; default 16 MiB.
   */
  memoryBodyBytes?: number;
  /** How putLarge cuts a stream into multipart parts; the defaults are in DEFAULT_MULTIPART (tests shrink them). */
  multipart?: Partial<MultipartPlan>;
  /** Where fallbacks (conditional writes not enforced) are reported; default: silent. */
  logger?: S3Logger;
}

/**
 * How putLarge cuts a stream of unknown length into the parts of a multipart upload. Part n (from 1)
 * has partBytes << floor((n - 1) / partsPerDoubling) bytes: with the defaults 6 MiB for the first
 * 1000 parts (5.9 GiB), 12 MiB for the next 1000, ... 3 GiB for parts 9001-10000, so the 10,000 parts
 * S3 allows reach 5.9 TiB, beyond S3's 5 TiB object limit, which is therefore the largest object
 * (5 MiB parts, S3's minimum, would stop at 4.9 TiB).
 * Parts up to memoryPartBytes are held in memory, larger ones are spooled to an unlinked file in
 * TMPDIR; memoryBudgetBytes bounds what the parts being filled and sent hold at once (a spooled part
 * counts for half of it: at most two on disk, up to 2 x 3 GiB near the 5 TiB end).
 */
export interface MultipartPlan {
  partBytes: number;
  partsPerDoubling: number;
  memoryPartBytes: number;
  memoryBudgetBytes: number;
}

/**
 * 6 MiB parts, two at a time: one part is sent while the next is read (12 MiB parts, after 5.9 GiB, one
 * at a time; then spooled parts, two at a time); a stream shorter than one part goes as one PutObject.
 * Each part is a buffer of its own, freed once sent, so the part being read costs only what it holds
 * so far (see fillPart). The budget is what the 100 MiB bound leaves `walvault backup` once the SDK is
 * loaded (Node 22: 43 MiB for `node -e 0`, 73 MiB with the SDK imported); peak RSS per Node and codec
 * is in the README (Performance).
 */
export const DEFAULT_MULTIPART: Readonly<MultipartPlan> = {
  partBytes: 6 * 1024 * 1024,
  partsPerDoubling: 1000,
  memoryPartBytes: 12 * 1024 * 1024,
  memoryBudgetBytes: 12 * 1024 * 1024,
};
/** S3's limits: parts per upload, bytes per object, bytes per part. */
const MAX_PARTS = 10_000;
export const MAX_LARGE_OBJECT_BYTES = 5 * 1024 * 1024 * 1024 * 1024;
/** A leftover multipart upload is listed as a temp entry `<key><UPLOAD_MARK><base64url upload id>`; delete() of that key aborts it. */
const UPLOAD_MARK = '~upload~';
/** How long the abort of a failed upload may take (it runs after the caller's deadline may have passed). */
const ABORT_TIMEOUT_MS = 10_000;

/** Where the auto mode records what the store does with If-None-Match (a repository document). */
export const PROBE_RECORD_KEY = 'walvault-s3-probe.json';
/** Scratch objects of the probe live under this folder and are deleted right after. */
const PROBE_SCRATCH_PREFIX = 'walvault-s3-probe/';

const DEFAULT_MEMORY_BODY_BYTES = 16 * 1024 * 1024;
/**
 * Largest object walvault creates: S3's limit for one PutObject (a WAL segment is at most 1 GiB).
 * Every object goes in ONE conditional PutObject, never a multipart upload: If-None-Match on
 * PutObject is what the probe tests, and some stores (Ceph RGW 16.2) honour it there but let a
 * CompleteMultipartUpload overwrite.
 */
export const MAX_SINGLE_PUT_BYTES = 5 * 1024 * 1024 * 1024;
/** Version of the probe record; records of older versions (whose probe also trusted multipart completes) are probed again. */
const PROBE_RECORD_VERSION = 2;
const META_HASH = 'walvault-content-hash';
const META_SIZE = 'walvault-content-size';
const META_CODEC = 'walvault-codec';
const META_ENCRYPTION = 'walvault-encryption';

/** What the store was found to do with If-None-Match: * on an existing key. */
type ProbeOutcome = 'enforced' | 'ignored' | 'rejected';

/** Error names that mean "try again": throttling, server trouble, broken or slow connections. */
const TRANSIENT_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'TransactionInProgressException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  'ConditionalRequestConflict',
  'OperationAborted',
]);
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'ERR_STREAM_PREMATURE_CLOSE']);
const CREDENTIAL_NAMES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'TokenRefreshRequired', 'InvalidToken', 'CredentialsProviderError', 'ExpiredTokenException']);

/** The parts of an SDK error walvault looks at. */
interface SdkErrorShape {
  name?: string;
  code?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  cause?: unknown;
}

/** HTTP status of an SDK error, if it got a response. */
function statusOf(error: unknown): number | undefined {
  return (error as SdkErrorShape | undefined)?.$metadata?.httpStatusCode;
}

/** What the SDK logs (strings, errors, request/response objects), on one line. */
export function formatSdkNote(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return describeSdkError(value);
  return inspect(value, { depth: 4, breakLength: Infinity, compact: true, maxStringLength: 500 });
}

/** An SDK error in one line: its code, HTTP status and message (which some stores leave empty). */
export function describeSdkError(error: unknown): string {
  const status = statusOf(error);
  const message = messageOf(error);
  return `${codeOf(error)}${status === undefined ? '' : ` (HTTP ${status})`}${message === '' ? '' : `: ${message}`}`;
}

/**
 * The message of an SDK error; '' when the store sent none. Ceph RGW answers 412 with an empty body,
 * which the SDK turns into the message "UnknownError".
 */
function messageOf(error: unknown): string {
  const message = (error as SdkErrorShape | undefined)?.message ?? (error === undefined ? '' : String(error));
  return message === 'UnknownError' ? '' : message;
}

/** The S3 error code (or JavaScript error name) of an SDK error. */
function codeOf(error: unknown): string {
  const shape = error as SdkErrorShape | undefined;
  return shape?.Code ?? shape?.name ?? 'Error';
}

/** Network-level error code (ECONNRESET...) of an error or its cause. */
function errnoOf(error: unknown): string | undefined {
  let current = error as SdkErrorShape | undefined;
  for (let depth = 0; current !== undefined && current !== null && depth < 4; depth += 1) {
    if (typeof current.code === 'string') return current.code;
    current = current.cause as SdkErrorShape | undefined;
  }
  return undefined;
}

/** The failure is "the key already exists" (a refused conditional write). */
function isPreconditionFailed(error: unknown): boolean {
  return statusOf(error) === 412 || codeOf(error) === 'PreconditionFailed';
}

/** The failure is a conditional write racing another one on the same key (AWS answers 409). */
function isConditionalConflict(error: unknown): boolean {
  return codeOf(error) === 'ConditionalRequestConflict' || (statusOf(error) === 409 && codeOf(error) !== 'BucketAlreadyExists');
}

/** The store refuses If-None-Match itself (not supported), as opposed to refusing the write. */
function isConditionUnsupported(error: unknown): boolean {
  return codeOf(error) === 'NotImplemented' || statusOf(error) === 501;
}

/** The key (not the bucket) is missing. */
function isMissingKey(error: unknown): boolean {
  const code = codeOf(error);
  if (code === 'NoSuchBucket') return false;
  return code === 'NoSuchKey' || code === 'NotFound' || statusOf(error) === 404;
}

/** Context for turning an SDK error into a WalvaultError. */
export interface S3ErrorContext {
  /** What was being done, e.g. 'upload', 'download', 'look up'. */
  operation: string;
  /** s3:// URL of the object or prefix. */
  target: string;
  bucket: string;
  /** Endpoint in use, for messages (undefined: AWS). */
  endpoint: string | undefined;
  signal?: AbortSignal;
}

/**
 * Maps an AWS SDK failure to a WalvaultError: transient ones (5xx, throttling, resets, timeouts) are
 * marked for retry; permanent ones (access denied, no such bucket, bad credentials) name the bucket
 * and the fix, and are not retried.
 */
export function mapS3Error(error: unknown, context: S3ErrorContext): WalvaultError {
  if (error instanceof WalvaultError) return error;
  if (context.signal?.aborted === true) {
    const reason: unknown = context.signal.reason;
    if (reason instanceof WalvaultError) return reason;
    return new WalvaultError('timeout', `${context.operation} of "${context.target}" was cancelled`, { cause: error, transient: true });
  }
  const code = codeOf(error);
  const status = statusOf(error);
  const errno = errnoOf(error);
  const detail = messageOf(error) || 'the store sent no message';
  const where = `"${context.target}"`;
  const bucket = `"${context.bucket}"`;
  const store = context.endpoint === undefined ? 'AWS S3' : `"${context.endpoint}"`;
  const credentialsHint =
    'walvault takes credentials only from the AWS SDK default chain: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for the postgres OS user, or attach an instance/task role';

  if (code === 'NoSuchBucket') {
    return new WalvaultError('backend', `could not ${context.operation} ${where}: bucket ${bucket} does not exist at ${store}`, {
      hint: `create the bucket, or fix the bucket name in --repo (and --s3-endpoint / --s3-region if it lives elsewhere)`,
      cause: error,
    });
  }
  if (code === 'AccessDenied' || code === 'AllAccessDisabled' || code === 'AccountProblem' || status === 403) {
    if (CREDENTIAL_NAMES.has(code)) {
      return new WalvaultError('backend', `could not ${context.operation} ${where}: the credentials were refused by ${store} (${code})`, {
        hint: credentialsHint,
        cause: error,
      });
    }
    return new WalvaultError('backend', `could not ${context.operation} ${where}: access denied to bucket ${bucket} (${code})`, {
      hint: `grant the credentials walvault runs with s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject on bucket ${bucket} (see the README's IAM policy); with --s3-sse=aws:kms also kms:GenerateDataKey and kms:Decrypt`,
      cause: error,
    });
  }
  if (CREDENTIAL_NAMES.has(code) || /credential/i.test(code) || /Could not load credentials/i.test(detail)) {
    return new WalvaultError('backend', `could not ${context.operation} ${where}: no usable AWS credentials (${code}: ${detail})`, {
      hint: credentialsHint,
      cause: error,
    });
  }
  if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || code === 'IllegalLocationConstraintException' || status === 301) {
    return new WalvaultError('backend', `could not ${context.operation} ${where}: bucket ${bucket} is in another region (${code})`, {
      hint: 'set --s3-region (or AWS_REGION) to the region of the bucket',
      cause: error,
    });
  }
  if (/checksum mismatch/i.test(detail)) {
    return new WalvaultError('corrupt', `could not ${context.operation} ${where}: the transfer checksum does not match (${detail})`, {
      hint: 'a network or storage fault damaged the bytes; walvault retries, and walvault verify checks the whole archive',
      cause: error,
      transient: true,
    });
  }
  if (/Region is missing/i.test(detail)) {
    return new WalvaultError('usage', `no AWS region configured for bucket ${bucket}`, {
      hint: 'set --s3-region or AWS_REGION (any value for stores that ignore regions, e.g. us-east-1)',
      cause: error,
    });
  }
  // The SDK names resets "TimeoutError" too (to retry them); only a real wait is reported as a timeout.
  const connectionFailure = errno !== undefined && errno !== 'ETIMEDOUT' && TRANSIENT_CODES.has(errno);
  if (!connectionFailure && (code === 'TimeoutError' || code === 'RequestTimeout' || code === 'RequestTimeoutException' || errno === 'ETIMEDOUT')) {
    return new WalvaultError('timeout', `could not ${context.operation} ${where}: ${store} did not answer in time (${code})`, {
      hint: 'check the network path to the store, or raise --s3-request-timeout / --timeout',
      cause: error,
      transient: true,
    });
  }
  const transient =
    TRANSIENT_NAMES.has(code) ||
    (status !== undefined && (status >= 500 || status === 429)) ||
    (errno !== undefined && TRANSIENT_CODES.has(errno)) ||
    (status === undefined && /socket hang up|ECONNRESET|EPIPE|premature close|aborted/i.test(detail));
  if (transient) {
    return new WalvaultError('backend', `could not ${context.operation} ${where}: ${store} failed (${errno ?? code}${status === undefined ? '' : `, HTTP ${status}`}: ${detail})`, {
      hint: 'the store is unreachable, overloaded or failing; walvault retries within --timeout and PostgreSQL retries after that',
      cause: error,
      transient: true,
    });
  }
  return new WalvaultError('backend', `could not ${context.operation} ${where}: ${code}${status === undefined ? '' : ` (HTTP ${status})`}: ${detail}`, {
    hint: `check the bucket ${bucket}, the endpoint and the S3 options (see the README's S3 section)`,
    cause: error,
  });
}

/** Reads walvault's metadata from S3 user metadata; null when the object was written by another tool. */
export function metaFromHeaders(metadata: Record<string, string> | undefined, target: string): ObjectMeta | null {
  const hash = metadata?.[META_HASH];
  if (metadata === undefined || hash === undefined) return null;
  const size = Number(metadata[META_SIZE]);
  if (!/^[0-9a-f]{16}$/.test(hash) || !Number.isSafeInteger(size) || size < 0) {
    throw new WalvaultError('corrupt', `metadata of "${target}" is not valid (hash "${hash}", size "${metadata[META_SIZE] ?? ''}")`, {
      hint: 'run walvault verify; restore the object from another copy of the archive',
    });
  }
  return { contentHash: hash, contentSize: size, codec: metadata[META_CODEC] ?? 'none', encryption: metadata[META_ENCRYPTION] ?? 'none' };
}

/** Writes walvault's metadata as S3 user metadata (x-amz-meta-*). */
function metaToHeaders(meta: ObjectMeta): Record<string, string> {
  return {
    [META_HASH]: meta.contentHash,
    [META_SIZE]: String(meta.contentSize),
    [META_CODEC]: meta.codec,
    [META_ENCRYPTION]: meta.encryption,
  };
}

/** Chunk size when a buffer or pulled body is turned into a stream. */
const BODY_CHUNK = 256 * 1024;

/** Any put body as a stream (a buffer as views of it, a pulled body through fresh chunks). */
function bodyStream(body: PutBody): Readable {
  if (body instanceof Readable) return body;
  if (Buffer.isBuffer(body)) {
    return Readable.from(
      (function* () {
        for (let offset = 0; offset < body.length; offset += BODY_CHUNK) yield body.subarray(offset, offset + BODY_CHUNK);
      })(),
      { objectMode: false },
    );
  }
  return Readable.from(
    (async function* () {
      for (;;) {
        const chunk = Buffer.allocUnsafe(BODY_CHUNK);
        const filled = await body.pull(chunk);
        if (filled === 0) return;
        yield chunk.subarray(0, filled);
      }
    })(),
    { objectMode: false },
  );
}

/**
 * A streamed body spooled to an unlinked file in the OS temp directory: its length and CRC32 are
 * known before it is sent, it can be read again for each attempt, and nothing is left behind by a crash.
 */
class SpooledBody {
  length = 0;
  private crc = 0;

  private constructor(private readonly handle: nodeFs.FileHandle) {}

  /** Opens a fresh spool file and unlinks it at once (the open handle keeps the bytes). */
  static async create(): Promise<SpooledBody> {
    const path = join(tmpdir(), `walvault-s3-spool-${process.pid}-${randomBytes(6).toString('hex')}`);
    const handle = await nodeFs.open(path, 'wx+', 0o600);
    await nodeFs.unlink(path).catch(() => undefined);
    return new SpooledBody(handle);
  }

  async write(chunk: Buffer): Promise<void> {
    let written = 0;
    while (written < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, written, chunk.length - written, this.length + written);
      written += bytesWritten;
    }
    this.crc = crc32(chunk, this.crc);
    this.length += chunk.length;
  }

  /** The whole spool as one range, streamed from the file for each attempt. */
  part(): FilePart {
    return {
      offset: 0,
      length: this.length,
      crc32: crc32Header(this.crc),
      open: () => (this.length === 0 ? Readable.from([]) : this.handle.createReadStream({ start: 0, end: this.length - 1, autoClose: false, highWaterMark: BODY_CHUNK })),
    };
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/** Chunks held in memory as one range with its CRC32 (sent again from the same chunks on a retry). */
function chunksPart(chunks: Buffer[], length: number): FilePart {
  let crc = 0;
  for (const chunk of chunks) crc = crc32(chunk, crc);
  return { offset: 0, length, crc32: crc32Header(crc), open: () => Readable.from(chunks, { objectMode: false }) };
}

/** A CRC32 as the x-amz-checksum-crc32 header carries it: base64 of the big-endian 4 bytes. */
function crc32Header(value: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value >>> 0);
  return bytes.toString('base64');
}

/** What one PutObject sends: bytes in memory, or a range streamed from a scanned or spooled file. */
type PartBody = Buffer | FilePart;

/** The body fields of a PutObject. */
interface BodyFields {
  Body: Buffer | Readable;
  ContentLength: number;
  ChecksumAlgorithm?: 'CRC32';
  ChecksumCRC32?: string;
}

/** What putLarge keeps while it uploads. */
interface LargeUploadState {
  /** Set once the multipart upload is created; cleared once it is completed (else it is aborted). */
  uploadId: string | undefined;
  parts: CompletedPart[];
  inFlight: Set<Promise<void>>;
  /** Budget taken by the part being filled and the parts being sent (see MultipartPlan). */
  used: number;
  /** The first part that failed, already mapped. */
  failure: WalvaultError | undefined;
  /** A chunk read but not yet placed in a part. */
  pending: Buffer | undefined;
}

/** One part as read: in a buffer (`backing` is the whole buffer, freed once the part is sent) or in a spool file. */
interface FilledPart {
  length: number;
  /** Nothing follows this part. */
  ended: boolean;
  file: FilePart;
  buffer?: Buffer;
  backing?: Buffer;
  spool?: SpooledBody;
}

/** The ETag S3 gives a completed multipart upload: MD5 of the parts' binary MD5s, then "-" and their count. */
function multipartEtag(parts: CompletedPart[]): string {
  const digests = Buffer.concat(parts.map((part) => Buffer.from((part.ETag ?? '').replace(/"/g, ''), 'hex')));
  return `${createHash('md5').update(digests).digest('hex')}-${parts.length}`;
}

/** Splits the part of an s3:// URL after the scheme into bucket and prefix. */
export function parseS3Target(target: string): { bucket: string; prefix: string } {
  const [bucket = '', ...rest] = target.split('/');
  return { bucket, prefix: rest.filter((part) => part !== '').join('/') };
}

const VALID_SSE = new Set(['AES256', 'aws:kms']);
const VALID_MODES = new Set(['auto', 'on', 'off']);

/**
 * Builds S3 options from the CLI/env/config values (`settings.extra` of the registry, keyed by option
 * name in camelCase: s3Endpoint, s3Region...), validating them.
 */
export function s3OptionsFromSettings(target: string, extra: Record<string, unknown> = {}): S3BackendOptions {
  const { bucket, prefix } = parseS3Target(target);
  const text = (name: string): string | undefined => {
    const value = extra[name];
    if (value === undefined || value === null || value === '') return undefined;
    return String(value);
  };
  const positive = (name: string, flag: string): number | undefined => {
    const value = text(name);
    if (value === undefined) return undefined;
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < 1) {
      throw new WalvaultError('usage', `invalid ${flag} "${value}": expected a positive integer`, { hint: `fix ${flag}` });
    }
    return parsed;
  };
  const sse = text('s3Sse');
  if (sse !== undefined && !VALID_SSE.has(sse)) {
    throw new WalvaultError('usage', `invalid --s3-sse "${sse}"`, { hint: 'use --s3-sse=AES256 or --s3-sse=aws:kms' });
  }
  const mode = text('s3ConditionalWrites');
  if (mode !== undefined && !VALID_MODES.has(mode)) {
    throw new WalvaultError('usage', `invalid --s3-conditional-writes "${mode}"`, { hint: 'use auto, on or off' });
  }
  const kmsKey = text('s3SseKmsKeyId');
  if (kmsKey !== undefined && sse !== 'aws:kms') {
    throw new WalvaultError('usage', '--s3-sse-kms-key-id needs --s3-sse=aws:kms', { hint: 'add --s3-sse=aws:kms or drop the key id' });
  }
  const pathStyle = extra.s3ForcePathStyle;
  return {
    bucket,
    prefix,
    endpoint: text('s3Endpoint'),
    region: text('s3Region'),
    forcePathStyle: pathStyle === undefined ? undefined : pathStyle === true || pathStyle === 'true' || pathStyle === '1',
    storageClass: text('s3StorageClass'),
    sse: sse as S3BackendOptions['sse'],
    sseKmsKeyId: kmsKey,
    conditionalWrites: mode as ConditionalWritesMode | undefined,
    requestTimeoutMs: positive('s3RequestTimeout', '--s3-request-timeout'),
    maxAttempts: positive('s3MaxAttempts', '--s3-max-attempts'),
  };
}

/** An object store speaking the S3 API; see S3BackendOptions. */
export class S3Backend implements Backend {
  readonly kind = 's3';
  /** Metadata goes in the request headers; every body (up to S3's 5 GiB) is sent in one request. */
  readonly metaTiming: Backend['metaTiming'];
  readonly metaBoundToBody = true;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  private readonly options: S3BackendOptions;
  private readonly memoryBodyBytes: number;
  private readonly endpoint: string | undefined;
  private detected: Promise<ProbeOutcome> | undefined;
  /** Keys this process has seen carrying walvault metadata: persist() has nothing to add for them (saves a HEAD). */
  private readonly knownWithMeta = new Set<string>();

  constructor(options: S3BackendOptions) {
    if (options.bucket === '') throw new WalvaultError('usage', 'no bucket in the S3 repository URL', { hint: 'use --repo=s3://bucket/prefix' });
    this.options = options;
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.memoryBodyBytes = options.memoryBodyBytes ?? DEFAULT_MEMORY_BODY_BYTES;
    this.metaTiming = { when: 'before-body', singleRequestBytes: MAX_SINGLE_PUT_BYTES };
    // The SDK warns on stderr (PostgreSQL's log) about Node versions on every start; walvault documents its own support.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
    const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (this.endpoint !== undefined && process.env.AWS_PROFILE === undefined ? 'us-east-1' : undefined);
    const timeout = options.requestTimeoutMs ?? 30_000;
    const sdkNote = (...content: unknown[]): void => options.logger?.debug(`s3 sdk: ${content.map(formatSdkNote).join(' ')}`);
    this.client = new S3Client({
      ...(region === undefined ? {} : { region }),
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.forcePathStyle === undefined ? {} : { forcePathStyle: options.forcePathStyle }),
      maxAttempts: options.maxAttempts ?? 3,
      // NODE_EXTRA_CA_CERTS reaches this process as WALVAULT_NODE_EXTRA_CA_CERTS (src/backend/extra-ca.ts).
      requestHandler: { requestTimeout: timeout, connectionTimeout: Math.min(timeout, 10_000), ...extraCaAgent((message) => options.logger?.warn(message)) },
      // Without a logger of its own the SDK warns on stderr (PostgreSQL's log), e.g. about every failed
      // streamed request, which walvault retries and reports itself.
      logger: { trace: () => undefined, debug: () => undefined, info: () => undefined, warn: sdkNote, error: sdkNote },
    });
  }

  describe(key: string): string {
    return `s3://${this.bucket}/${this.objectKey(key)}`;
  }

  /** The bucket key of a repository key. */
  objectKey(key: string): string {
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }

  private errorContext(operation: string, key: string, ctx?: OpContext): S3ErrorContext {
    return { operation, target: this.describe(key), bucket: this.bucket, endpoint: this.endpoint, signal: ctx?.signal };
  }

  /** Headers every object write carries: metadata, storage class, encryption. */
  private writeParams(key: string, meta: ObjectMeta | null): Pick<PutObjectCommandInput, 'Bucket' | 'Key' | 'Metadata' | 'StorageClass' | 'ServerSideEncryption' | 'SSEKMSKeyId'> {
    return {
      Bucket: this.bucket,
      Key: this.objectKey(key),
      ...(meta === null ? {} : { Metadata: metaToHeaders(meta) }),
      ...(this.options.storageClass === undefined ? {} : { StorageClass: this.options.storageClass as StorageClass }),
      ...(this.options.sse === undefined ? {} : { ServerSideEncryption: this.options.sse }),
      ...(this.options.sseKmsKeyId === undefined ? {} : { SSEKMSKeyId: this.options.sseKmsKeyId }),
    };
  }

  /** Whether writes can rely on If-None-Match: * (else HEAD, then write). */
  private async enforced(ctx: OpContext): Promise<boolean> {
    switch (this.options.conditionalWrites ?? 'auto') {
      case 'on':
        return true;
      case 'off':
        return false;
      case 'auto':
        if (this.detected === undefined) {
          const detecting = this.detect(ctx);
          this.detected = detecting;
          // A failed probe (store unreachable) is tried again by the next write, not remembered.
          detecting.catch(() => {
            if (this.detected === detecting) this.detected = undefined;
          });
        }
        return (await this.detected) === 'enforced';
    }
  }

  /** Reads the recorded probe result, or probes the store once and records it for later processes. */
  private async detect(ctx: OpContext): Promise<ProbeOutcome> {
    const recorded = await this.readText(PROBE_RECORD_KEY, ctx);
    if (recorded !== null) {
      try {
        const parsed = JSON.parse(recorded) as { version?: unknown; ifNoneMatch?: unknown };
        const outcome = parsed.ifNoneMatch;
        // Older records are probed again: their probe could record "rejected" on an unrelated 400.
        if (parsed.version === PROBE_RECORD_VERSION && (outcome === 'enforced' || outcome === 'ignored' || outcome === 'rejected')) {
          if (outcome !== 'enforced') this.warnFallback(outcome, true);
          return outcome;
        }
      } catch {
        // an unreadable record is replaced by a fresh probe
      }
    }
    const outcome = await this.probe(ctx);
    const record = {
      version: PROBE_RECORD_VERSION,
      ifNoneMatch: outcome,
      endpoint: this.endpoint ?? 'aws',
      probedAt: new Date().toISOString(),
      probedBy: `${hostname()}:${process.pid}`,
    };
    await this.writeText(PROBE_RECORD_KEY, `${JSON.stringify(record, null, 2)}\n`, ctx);
    if (outcome !== 'enforced') this.warnFallback(outcome, false);
    this.options.logger?.debug(`s3: conditional writes probe of "s3://${this.bucket}/${this.objectKey('')}": ${outcome}`);
    return outcome;
  }

  private warnFallback(outcome: ProbeOutcome, recorded: boolean): void {
    const what = outcome === 'ignored' ? 'ignores If-None-Match (it would overwrite)' : 'rejects If-None-Match';
    this.options.logger?.warn(
      `s3: the store at ${this.endpoint === undefined ? 'AWS S3' : `"${this.endpoint}"`} ${what}${recorded ? ` (recorded in "${this.describe(PROBE_RECORD_KEY)}")` : ''}; ` +
        'falling back to look-up-then-write, which cannot stop two servers racing on one name; HINT: use a store that enforces conditional writes, or give each cluster its own prefix',
    );
  }

  /**
   * Writes a scratch object twice with If-None-Match: * in single PutObject requests (the only way
   * walvault creates objects). A store that enforces the header refuses the second write (412/409);
   * one that ignores it overwrites. A first write refused with a 4xx is sent again without the header:
   * only when that one succeeds is the header itself what the store rejects; otherwise the failure is
   * unrelated (a policy, a bad bucket, a transient fault) and is reported, not recorded.
   */
  private async probe(ctx: OpContext): Promise<ProbeOutcome> {
    const key = `${PROBE_SCRATCH_PREFIX}${hostname().replace(/[^A-Za-z0-9.-]/g, '_')}-${process.pid}-${randomBytes(6).toString('hex')}`;
    const put = (text: string, conditional: boolean): Promise<unknown> =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: Buffer.from(text), ...(conditional ? { IfNoneMatch: '*' } : {}) }), {
        abortSignal: ctx.signal,
      });
    const failed = (error: unknown): WalvaultError => mapS3Error(error, this.errorContext('probe conditional writes at', key, ctx));
    try {
      try {
        await put('first', true);
      } catch (error) {
        const status = statusOf(error);
        const refusedRequest = isConditionUnsupported(error) || (status !== undefined && status >= 400 && status < 500 && status !== 403 && status !== 404 && status !== 412);
        if (!refusedRequest || failed(error).transient) throw failed(error);
        try {
          await put('plain', false);
        } catch (plainError) {
          throw failed(plainError);
        }
        this.options.logger?.debug(`s3: the store refused a PutObject with If-None-Match (${describeSdkError(error)}) and accepted it without`);
        return 'rejected';
      }
      try {
        await put('second', true);
        return 'ignored';
      } catch (error) {
        if (isPreconditionFailed(error) || isConditionalConflict(error)) return 'enforced';
        if (isConditionUnsupported(error)) return 'rejected';
        throw failed(error);
      }
    } finally {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { abortSignal: ctx.signal }).catch(() => undefined);
    }
  }

  async putIfAbsent(key: string, body: PutBody, meta: PutMeta, ctx: OpContext): Promise<PutResult> {
    // Metadata travels in the request headers: it is needed before the body (see metaTiming).
    const recorded = typeof meta === 'function' ? meta() : meta;
    if (Buffer.isBuffer(body) && body.length <= MAX_SINGLE_PUT_BYTES) {
      return this.putSingle(key, body, recorded, await this.enforced(ctx), ctx);
    }
    const stream = bodyStream(body);
    const chunks = (stream as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
    let spool: SpooledBody | undefined;
    try {
      const enforced = await this.enforced(ctx);
      const held: Buffer[] = [];
      let heldBytes = 0;
      let ended = false;
      while (heldBytes <= this.memoryBodyBytes) {
        const chunk = await this.nextChunk(chunks, key, ctx);
        if (chunk === undefined) {
          ended = true;
          break;
        }
        held.push(chunk);
        heldBytes += chunk.length;
      }
      // Sent from the chunks as they are: a concatenated copy would double the memory.
      if (ended) return await this.putSingle(key, chunksPart(held, heldBytes), recorded, enforced, ctx);
      // Larger than memory allows. One HEAD saves spooling and sending a segment already archived
      // (the usual re-archive case); the body is still read to its end, as putIfAbsent promises.
      if (await this.exists(key, ctx)) {
        held.length = 0;
        while ((await this.nextChunk(chunks, key, ctx)) !== undefined);
        return { created: false };
      }
      spool = await this.openSpool(key);
      for (let chunk: Buffer | undefined = held.shift(); chunk !== undefined; chunk = held.shift()) await this.spoolChunk(spool, chunk, key, ctx);
      for (let chunk = await this.nextChunk(chunks, key, ctx); chunk !== undefined; chunk = await this.nextChunk(chunks, key, ctx)) {
        await this.spoolChunk(spool, chunk, key, ctx);
      }
      return await this.putSingle(key, spool.part(), recorded, enforced, ctx);
    } finally {
      // Destroy first: a read still pending (deadline passed) must settle before the iterator can return.
      if (!stream.destroyed && !stream.readableEnded) stream.destroy();
      await chunks.return?.(undefined).catch(() => undefined);
      await spool?.close();
    }
  }

  /** A scanned file: streamed from the file in one request with the CRC32 the scan computed; see FileBody. */
  async putFileIfAbsent(key: string, file: FileBody, meta: ObjectMeta, ctx: OpContext): Promise<PutResult> {
    const enforced = await this.enforced(ctx);
    const [part, extra] = file.parts;
    if (extra !== undefined || file.size > MAX_SINGLE_PUT_BYTES) {
      throw new WalvaultError('internal', `could not upload "${this.describe(key)}": a file body of ${file.size} bytes in ${file.parts.length} ranges, expected one range of at most ${MAX_SINGLE_PUT_BYTES} bytes`, {
        hint: 'this is a bug in walvault; please report it',
      });
    }
    if (part === undefined) return this.putSingle(key, Buffer.alloc(0), meta, enforced, ctx);
    // One HEAD saves sending a large segment that is already archived (the usual re-archive case).
    if (part.length > this.memoryBodyBytes && (await this.exists(key, ctx))) return { created: false };
    return this.putSingle(key, part, meta, enforced, ctx);
  }

  /**
   * A stream of unknown length (one tar archive of a base backup) under a key that must not exist; see
   * Backend.putLarge. A stream that fits in the first part goes as one PutObject; a longer one as a
   * multipart upload whose parts (MultipartPlan) are sent while the next ones are read, each with its
   * CRC32 and retried within the deadline. What makes the create atomic, store by store:
   * - the key is looked up (HEAD) before anything is read, and again right before the complete; an
   *   existing key is refused (the upload is aborted);
   * - where PutObject's If-None-Match: * is enforced (the probe, or --s3-conditional-writes=on), the
   *   single PutObject and the CompleteMultipartUpload carry it. AWS S3 honours it on both (since
   *   2024): the create is atomic, and a refused complete leaves the existing object as it was. Ceph
   *   RGW 16.2 honours it on PutObject but completes a multipart upload over an existing object (issue
   *   18), and s3rver ignores it everywhere (the test proxy enforces it): there, and where the probe
   *   found the header not enforced, only the second look-up guards the complete, and two writers
   *   completing one key between a look-up and a complete would overwrite each other. A backup's keys
   *   carry its unique id, so only another tool writing that very key could race it.
   * On any failure or abort, the parts in flight are cancelled and the upload is aborted (best effort,
   * within ABORT_TIMEOUT_MS): nothing is visible under the key. An upload whose abort did not get
   * through (a crash, kill -9, the store unreachable) is listed as a temp entry (see list) for
   * `walvault cleanup` to abort.
   */
  async putLarge(key: string, body: Readable, ctx: OpContext): Promise<LargePutResult> {
    const chunks = new ChunkReader(body);
    // Cancels the reads and the parts in flight when one part fails or the caller's deadline passes.
    const upload = new AbortController();
    const onAbort = (): void => upload.abort(mapS3Error(ctx.signal.reason, this.errorContext('upload', key, ctx)));
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    if (ctx.signal.aborted) onAbort();
    const uploadCtx: OpContext = { signal: upload.signal };
    const plan = { ...DEFAULT_MULTIPART, ...this.options.multipart };
    const state: LargeUploadState = { uploadId: undefined, parts: [], inFlight: new Set(), used: 0, failure: undefined, pending: undefined };
    try {
      if (await this.exists(key, uploadCtx)) throw this.existingKeyError(key);
      const enforced = await this.enforced(uploadCtx);
      let total = 0;
      for (let partNumber = 1; ; partNumber += 1) {
        const size = plan.partBytes * 2 ** Math.floor((partNumber - 1) / plan.partsPerDoubling);
        const spooled = size > plan.memoryPartBytes;
        const cost = spooled ? plan.memoryBudgetBytes / 2 : size;
        // Waits until the parts in flight leave room for this one (the part being filled counts too).
        while (state.failure === undefined && state.inFlight.size > 0 && state.used + cost > plan.memoryBudgetBytes) await Promise.race(state.inFlight);
        if (state.failure !== undefined) throw state.failure;
        state.used += cost;
        const part = await this.fillPart(chunks, state, size, spooled, key, uploadCtx);
        total += part.length;
        if (partNumber === 1 && part.ended) {
          try {
            if (!(await this.putSingle(key, part.buffer ?? part.file, null, enforced, uploadCtx)).created) throw this.existingKeyError(key);
            return { storedSize: total };
          } finally {
            await part.spool?.close();
          }
        }
        if (total > MAX_LARGE_OBJECT_BYTES || (partNumber === MAX_PARTS && !part.ended)) {
          await part.spool?.close();
          throw new WalvaultError('source', `could not upload "${this.describe(key)}": the stream is larger than ${MAX_LARGE_OBJECT_BYTES} bytes, the largest object S3 stores`, {
            hint: 'split the backup into smaller archives (one per tablespace), or use a local repository',
          });
        }
        state.uploadId ??= await this.createUpload(key, uploadCtx);
        if (part.length > 0) this.dispatchPart(state, state.uploadId, partNumber, part, cost, key, uploadCtx, upload);
        else await part.spool?.close();
        if (part.ended) break;
      }
      while (state.inFlight.size > 0) await Promise.race(state.inFlight);
      if (state.failure !== undefined) throw state.failure;
      await this.completeUpload(key, state, enforced, uploadCtx);
      state.uploadId = undefined;
      return { storedSize: total };
    } catch (error) {
      upload.abort(error);
      throw error instanceof WalvaultError ? error : ctx.signal.aborted ? mapS3Error(error, this.errorContext('upload', key, ctx)) : error;
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      // Parts still in flight were cancelled above; the upload is aborted once they have settled.
      await Promise.all(state.inFlight);
      if (state.uploadId !== undefined) await this.abortUpload(key, state.uploadId);
      if (!body.destroyed && !body.readableEnded) body.destroy();
    }
  }

  private existingKeyError(key: string): WalvaultError {
    return new WalvaultError('mismatch', `"${this.describe(key)}" already exists; it was left as it is`, {
      hint: 'a backup never reuses a name: remove or move the object if it is not needed, then start again',
    });
  }

  /**
   * Reads the next part: `size` bytes, or fewer at the end of the stream, into a new buffer (or a
   * spool file for a part above memoryPartBytes), with its CRC32. A full part is followed by one chunk
   * read ahead, so that `ended` tells whether another part follows.
   */
  private async fillPart(chunks: ChunkReader, state: LargeUploadState, size: number, spooled: boolean, key: string, ctx: OpContext): Promise<FilledPart> {
    let buffer: Buffer | undefined;
    let spool: SpooledBody | undefined;
    if (spooled) spool = await this.openSpool(key);
    // A new buffer for each part, freed once the part is sent (dispatchPart): its pages become resident
    // only as it fills, so while one part is sent the next costs what it holds so far, not a whole
    // part (a compressed stream fills a part slowly: its uploads overlap a part's first MiB or two).
    else buffer = Buffer.allocUnsafeSlow(size);
    try {
      let length = 0;
      let crc = 0;
      let ended = false;
      while (length < size) {
        const chunk = state.pending ?? (await this.nextLargeChunk(chunks, key, ctx));
        state.pending = undefined;
        if (chunk === undefined) {
          ended = true;
          break;
        }
        const taken = chunk.length <= size - length ? chunk : chunk.subarray(0, size - length);
        if (taken.length < chunk.length) state.pending = chunk.subarray(taken.length);
        if (spool !== undefined) await this.spoolChunk(spool, taken, key, ctx);
        else {
          taken.copy(buffer!, length);
          crc = crc32(taken, crc);
        }
        // Copied whole: a chunk its writer handed over goes back to it (core/owned.ts).
        if (taken === chunk) giveBackConsumed(chunk);
        length += taken.length;
      }
      if (!ended && state.pending === undefined) {
        state.pending = await this.nextLargeChunk(chunks, key, ctx);
        ended = state.pending === undefined;
      }
      if (spool !== undefined) return { length, ended, spool, file: spool.part() };
      const bytes = buffer!.subarray(0, length);
      const file: FilePart = { offset: 0, length, crc32: crc32Header(crc), open: () => Readable.from([bytes], { objectMode: false }) };
      return { length, ended, buffer: bytes, backing: buffer, file };
    } catch (error) {
      await spool?.close();
      throw error;
    }
  }

  /** The next chunk of a large body, or the deadline (or a failed part), whichever comes first. */
  private nextLargeChunk(chunks: ChunkReader, key: string, ctx: OpContext): Promise<Buffer | undefined> {
    const mapAbort = (reason: unknown): unknown => mapS3Error(reason, this.errorContext('upload', key, ctx));
    if (ctx.signal.aborted) return Promise.reject(mapAbort(ctx.signal.reason));
    return raceAbort(chunks.next(), ctx.signal, mapAbort);
  }

  private async createUpload(key: string, ctx: OpContext): Promise<string> {
    try {
      const created = await this.client.send(new CreateMultipartUploadCommand({ ...this.writeParams(key, null), ChecksumAlgorithm: 'CRC32' }), { abortSignal: ctx.signal });
      if (created.UploadId === undefined) throw new Error('the store returned no UploadId');
      return created.UploadId;
    } catch (error) {
      throw mapS3Error(error, this.errorContext('start the upload of', key, ctx));
    }
  }

  /** Sends one part in the background; its share of the budget (and spool file) is released when it settles, its buffer once the store has it. */
  private dispatchPart(state: LargeUploadState, uploadId: string, partNumber: number, part: FilledPart, cost: number, key: string, ctx: OpContext, upload: AbortController): void {
    const sending: Promise<void> = this.sendBody(
      part.file,
      (fields, signal) =>
        this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: this.objectKey(key), UploadId: uploadId, PartNumber: partNumber, ...fields }), { abortSignal: signal }),
      key,
      ctx,
    )
      .then(
        (response) => {
          state.parts.push({ PartNumber: partNumber, ETag: response.ETag, ChecksumCRC32: part.file.crc32 });
          // The store has every byte of the part: no write can still read the buffer.
          if (part.backing !== undefined) freeNow(part.backing);
        },
        (error: unknown) => {
          const failure = error instanceof WalvaultError ? error : mapS3Error(error, this.errorContext(`upload part ${partNumber} of`, key, ctx));
          state.failure ??= failure;
          upload.abort(failure);
        },
      )
      .finally(async () => {
        state.used -= cost;
        await part.spool?.close();
        state.inFlight.delete(sending);
      });
    state.inFlight.add(sending);
  }

  /**
   * Completes the upload, conditionally where the store enforces If-None-Match (see putLarge). A 412
   * after a retried complete whose first answer was lost would be our own object: its ETag (the MD5 of
   * the parts' MD5s) tells.
   */
  private async completeUpload(key: string, state: LargeUploadState, enforced: boolean, ctx: OpContext): Promise<void> {
    // Also when enforced: the probe tests PutObject, and some stores ignore the header on the complete.
    if (await this.exists(key, ctx)) throw this.existingKeyError(key);
    const parts = [...state.parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          UploadId: state.uploadId,
          MultipartUpload: { Parts: parts },
          ...(enforced ? { IfNoneMatch: '*' } : {}),
        }),
        { abortSignal: ctx.signal },
      );
    } catch (error) {
      if (enforced && (isPreconditionFailed(error) || isConditionalConflict(error))) {
        const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { abortSignal: ctx.signal }).catch(() => undefined);
        if (head?.ETag !== undefined && head.ETag.replace(/"/g, '') === multipartEtag(parts)) return;
        if (isPreconditionFailed(error) || head !== undefined) throw this.existingKeyError(key);
      }
      if (enforced && isConditionUnsupported(error)) throw this.unsupportedError(key, error);
      throw mapS3Error(error, this.errorContext('complete the upload of', key, ctx));
    }
  }

  /** AbortMultipartUpload, best effort within its own short deadline (the caller's may have passed). */
  private async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(key), UploadId: uploadId }), { abortSignal: AbortSignal.timeout(ABORT_TIMEOUT_MS) });
    } catch (error) {
      if (isMissingKey(error) || codeOf(error) === 'NoSuchUpload') return;
      this.options.logger?.warn(`s3: could not abort the unfinished upload of "${this.describe(key)}" (${describeSdkError(error)}); HINT: walvault cleanup removes it later, or a bucket lifecycle rule (AbortIncompleteMultipartUpload)`);
    }
  }

  /** Next chunk of a streamed body, or the deadline, whichever comes first; read errors are the source's, not the store's. */
  private nextChunk(chunks: AsyncIterator<Buffer | string>, key: string, ctx: OpContext): Promise<Buffer | undefined> {
    const mapAbort = (reason: unknown): unknown => mapS3Error(reason, this.errorContext('upload', key, ctx));
    // Once the deadline has passed, nothing more is read.
    if (ctx.signal.aborted) return Promise.reject(mapAbort(ctx.signal.reason));
    return raceAbort(chunks.next(), ctx.signal, mapAbort).then((next) => {
      if (next.done === true) return undefined;
      return typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    });
  }

  private async openSpool(key: string): Promise<SpooledBody> {
    try {
      return await SpooledBody.create();
    } catch (error) {
      throw this.spoolError(key, error);
    }
  }

  /** Appends to the spool, within the deadline and S3's one-request limit. */
  private async spoolChunk(spool: SpooledBody, chunk: Buffer, key: string, ctx: OpContext): Promise<void> {
    if (spool.length + chunk.length > MAX_SINGLE_PUT_BYTES) {
      throw new WalvaultError('source', `could not upload "${this.describe(key)}": the stored body exceeds ${MAX_SINGLE_PUT_BYTES} bytes, S3's limit for one request`, {
        hint: 'a WAL file is at most 1 GiB; archive only PostgreSQL WAL, history and backup files',
      });
    }
    try {
      await raceAbort(spool.write(chunk), ctx.signal, (reason) => mapS3Error(reason, this.errorContext('upload', key, ctx)));
    } catch (error) {
      if (ctx.signal.aborted || error instanceof WalvaultError) throw error;
      throw this.spoolError(key, error);
    }
  }

  private spoolError(key: string, error: unknown): WalvaultError {
    return new WalvaultError('backend', `could not spool "${this.describe(key)}" to the temp directory "${tmpdir()}": ${(error as Error).message}`, {
      hint: 'a compressed or encrypted body above 16 MiB is written there first, to be sent in one request; free space there or point TMPDIR elsewhere',
      cause: error,
    });
  }

  /**
   * Sends one body. Bytes in memory get their CRC32 from the SDK, which also retries. A streamed range
   * carries the scan's CRC32 (with only an algorithm named, the SDK would frame the stream as
   * aws-chunked with a trailing checksum, which S3-compatible stores do not all understand), and since
   * the SDK never retries a stream, it is opened afresh here for each attempt. A range that fails its
   * check (the file changed) aborts the request before its last byte: its error is the one reported.
   */
  private async sendBody<T>(part: PartBody, send: (fields: BodyFields, signal: AbortSignal) => Promise<T>, key: string, ctx: OpContext): Promise<T> {
    if (Buffer.isBuffer(part)) return send({ Body: part, ContentLength: part.length, ChecksumAlgorithm: 'CRC32' }, ctx.signal);
    const attempts = this.options.maxAttempts ?? 3;
    for (let attempt = 1; ; attempt += 1) {
      const request = new AbortController();
      const cancel = (): void => request.abort(ctx.signal.reason);
      ctx.signal.addEventListener('abort', cancel, { once: true });
      if (ctx.signal.aborted) cancel();
      const body = part.open();
      let bodyError: unknown;
      body.on('error', (error) => {
        bodyError ??= error;
        request.abort(error);
      });
      try {
        return await send({ Body: body, ContentLength: part.length, ChecksumCRC32: part.crc32 }, request.signal);
      } catch (error) {
        if (bodyError !== undefined) throw bodyError;
        const decided = isConditionalConflict(error) || isConditionUnsupported(error) || isPreconditionFailed(error);
        const again = attempt < attempts && !ctx.signal.aborted && !decided && mapS3Error(error, this.errorContext('upload', key, ctx)).transient;
        if (!again) throw error;
        this.options.logger?.debug(`s3: ${codeOf(error)} sending "${this.describe(key)}", attempt ${attempt} of ${attempts}; sending it again`);
      } finally {
        ctx.signal.removeEventListener('abort', cancel);
        body.destroy();
      }
      // Full jitter, as the SDK's own retries: up to 100 ms, 200 ms, ... (20 s at most).
      await sleep(Math.random() * Math.min(20_000, 100 * 2 ** attempt), undefined, { signal: ctx.signal }).catch(() => undefined);
      if (ctx.signal.aborted) throw mapS3Error(ctx.signal.reason, this.errorContext('upload', key, ctx));
    }
  }

  /** Whether the key exists, for the look-up-then-write fallback and for skipping large uploads. */
  private async exists(key: string, ctx: OpContext): Promise<boolean> {
    return (await this.stat(key, ctx)).exists;
  }

  private async putSingle(key: string, data: PartBody, meta: ObjectMeta | null, enforced: boolean, ctx: OpContext): Promise<PutResult> {
    if (!enforced && (await this.exists(key, ctx))) return { created: false };
    try {
      await this.sendBody(
        data,
        (fields, signal) =>
          this.client.send(new PutObjectCommand({ ...this.writeParams(key, meta), ...fields, ...(enforced ? { IfNoneMatch: '*' } : {}) }), { abortSignal: signal }),
        key,
        ctx,
      );
      return { created: true };
    } catch (error) {
      if (enforced && isPreconditionFailed(error)) return { created: false };
      if (enforced && isConditionalConflict(error)) return this.afterConflict(key, error, ctx);
      if (enforced && isConditionUnsupported(error)) throw this.unsupportedError(key, error);
      throw mapS3Error(error, this.errorContext('upload', key, ctx));
    }
  }

  /** --s3-conditional-writes=on against a store that refuses the header. */
  private unsupportedError(key: string, error: unknown): WalvaultError {
    return new WalvaultError('backend', `could not upload "${this.describe(key)}": the store does not support conditional writes (If-None-Match: *), answering ${codeOf(error)}`, {
      hint: 'use --s3-conditional-writes=auto (probes the store and falls back to look-up-then-write) or off',
      cause: error,
    });
  }

  /**
   * 409 ConditionalRequestConflict: another conditional write on this key was in flight. If it has
   * landed, the key exists; otherwise the caller retries (a transient error).
   */
  private async afterConflict(key: string, error: unknown, ctx: OpContext): Promise<PutResult> {
    if (await this.exists(key, ctx)) return { created: false };
    throw new WalvaultError('backend', `could not upload "${this.describe(key)}": a concurrent write to the same name was in progress (ConditionalRequestConflict)`, {
      hint: 'another server is archiving the same file; walvault retries',
      cause: error,
      transient: true,
    });
  }

  async stat(key: string, ctx: OpContext): Promise<StatResult> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { abortSignal: ctx.signal });
      const meta = metaFromHeaders(head.Metadata, this.describe(key));
      if (meta !== null) this.knownWithMeta.add(key);
      return { exists: true, storedSize: head.ContentLength ?? 0, meta, modified: head.LastModified ?? new Date(0) };
    } catch (error) {
      if (!ctx.signal.aborted && isMissingKey(error)) return { exists: false };
      throw mapS3Error(error, this.errorContext('look up', key, ctx));
    }
  }

  async read(key: string, ctx: OpContext): Promise<StoredObject | null> {
    let response;
    try {
      response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), ChecksumMode: 'ENABLED' }), { abortSignal: ctx.signal });
    } catch (error) {
      if (!ctx.signal.aborted && isMissingKey(error)) return null;
      throw mapS3Error(error, this.errorContext('download', key, ctx));
    }
    const source = response.Body as Readable | undefined;
    const storedSize = response.ContentLength ?? 0;
    let meta: ObjectMeta | null;
    try {
      meta = metaFromHeaders(response.Metadata, this.describe(key));
    } catch (error) {
      source?.destroy();
      throw error;
    }
    return { body: this.guardBody(source, storedSize, key, ctx), storedSize, meta };
  }

  /**
   * Passes the downloaded bytes on, turning connection failures into retryable WalvaultErrors, a short
   * body into an error (never a silently truncated segment), and the deadline into a stop.
   */
  private guardBody(source: Readable | undefined, expected: number, key: string, ctx: OpContext): Readable {
    // 128 KiB: the socket's chunks die young. 1 GiB restores from s3rver, peak RSS over three sets of
    // five: 88.6-90.4 MiB at most with this, 89.8-95.9 MiB with 1 MiB, at the same speed.
    const out = new PassThrough({ highWaterMark: 128 * 1024 });
    // The connection may fail before the caller has attached its pipeline: without a listener that
    // 'error' would crash the process. The error stays on the stream (out.errored) for the pipeline.
    out.on('error', () => undefined);
    if (source === undefined) {
      out.end();
      return out;
    }
    let received = 0;
    const fail = (error: unknown): void => {
      if (out.destroyed) return;
      source.destroy();
      out.destroy(mapS3Error(error, this.errorContext('download', key, ctx)));
    };
    const onAbort = (): void => fail(ctx.signal.reason);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => ctx.signal.removeEventListener('abort', onAbort);
    out.on('close', cleanup);
    source.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (!out.write(chunk)) source.pause();
    });
    out.on('drain', () => source.resume());
    source.on('error', fail);
    source.on('aborted', () => fail(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
    source.on('end', () => {
      if (received !== expected) {
        fail(Object.assign(new Error(`connection closed after ${received} of ${expected} bytes`), { code: 'ECONNRESET' }));
        return;
      }
      cleanup();
      out.end();
    });
    out.on('close', () => {
      if (!source.destroyed && !source.readableEnded) source.destroy();
    });
    if (ctx.signal.aborted) onAbort();
    return out;
  }

  async persist(key: string, meta: ObjectMeta | null, ctx: OpContext): Promise<void> {
    // An object is durable once S3 acknowledged the PUT; only metadata may be missing (foreign objects).
    // Metadata never disappears from an object, so a key seen with it needs nothing.
    if (meta === null || this.knownWithMeta.has(key)) return;
    let head;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { abortSignal: ctx.signal });
    } catch (error) {
      if (!ctx.signal.aborted && isMissingKey(error)) return;
      throw mapS3Error(error, this.errorContext('look up', key, ctx));
    }
    if (metaFromHeaders(head.Metadata, this.describe(key)) !== null || head.ETag === undefined) return;
    try {
      // Copy onto itself with new metadata, only if it is still the object whose content was compared.
      await this.client.send(
        new CopyObjectCommand({
          ...this.writeParams(key, meta),
          CopySource: `${this.bucket}/${this.objectKey(key).split('/').map(encodeURIComponent).join('/')}`,
          CopySourceIfMatch: head.ETag,
          MetadataDirective: 'REPLACE',
        }),
        { abortSignal: ctx.signal },
      );
    } catch (error) {
      if (isPreconditionFailed(error)) return;
      throw mapS3Error(error, this.errorContext('record metadata of', key, ctx));
    }
  }

  async *list(prefix: string, ctx: OpContext): AsyncIterable<ListEntry> {
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${base}${prefix}`, ...(token === undefined ? {} : { ContinuationToken: token }) }), {
          abortSignal: ctx.signal,
        });
      } catch (error) {
        throw mapS3Error(error, this.errorContext('list', prefix, ctx));
      }
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined || !item.Key.startsWith(base)) continue;
        const key = item.Key.slice(base.length);
        if (key === PROBE_RECORD_KEY || key.startsWith(PROBE_SCRATCH_PREFIX)) continue;
        yield { key, storedSize: item.Size ?? 0, modified: item.LastModified ?? new Date(0), temp: false };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    yield* this.listUploads(prefix, ctx);
  }

  /**
   * Multipart uploads started under the prefix and never completed nor aborted (a putLarge killed
   * midway), as temp entries `<key>~upload~<upload id, base64url>` dated when they were started;
   * delete() of such a key aborts the upload. A store that cannot list uploads (s3rver) or credentials
   * without s3:ListBucketMultipartUploads list none (the latter with a warning).
   */
  private async *listUploads(prefix: string, ctx: OpContext): AsyncIterable<ListEntry> {
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: `${base}${prefix}`, ...(keyMarker === undefined ? {} : { KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }) }),
          { abortSignal: ctx.signal },
        );
      } catch (error) {
        if (!ctx.signal.aborted && (isConditionUnsupported(error) || statusOf(error) === 405)) {
          this.options.logger?.debug(`s3: the store does not list multipart uploads (${describeSdkError(error)})`);
          return;
        }
        if (!ctx.signal.aborted && (codeOf(error) === 'AccessDenied' || statusOf(error) === 403)) {
          this.options.logger?.warn(
            `s3: could not list the unfinished multipart uploads in "s3://${this.bucket}/${base}${prefix}" (${describeSdkError(error)}); leftovers of interrupted backups are not seen; HINT: grant s3:ListBucketMultipartUploads on the bucket`,
          );
          return;
        }
        throw mapS3Error(error, this.errorContext('list the uploads of', prefix, ctx));
      }
      for (const item of page.Uploads ?? []) {
        if (item.Key === undefined || item.UploadId === undefined || !item.Key.startsWith(base)) continue;
        const key = `${item.Key.slice(base.length)}${UPLOAD_MARK}${Buffer.from(item.UploadId).toString('base64url')}`;
        yield { key, storedSize: 0, modified: item.Initiated ?? new Date(0), temp: true };
      }
      if (page.IsTruncated !== true || page.NextKeyMarker === undefined) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async delete(key: string, ctx: OpContext): Promise<void> {
    const upload = key.lastIndexOf(UPLOAD_MARK);
    if (upload >= 0) return this.deleteUpload(key.slice(0, upload), Buffer.from(key.slice(upload + UPLOAD_MARK.length), 'base64url').toString(), ctx);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { abortSignal: ctx.signal });
    } catch (error) {
      if (!ctx.signal.aborted && isMissingKey(error)) return;
      throw mapS3Error(error, this.errorContext('delete', key, ctx));
    }
  }

  /** Aborts a leftover multipart upload listed as a temp entry; one already gone is not an error. */
  private async deleteUpload(key: string, uploadId: string, ctx: OpContext): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(key), UploadId: uploadId }), { abortSignal: ctx.signal });
    } catch (error) {
      if (!ctx.signal.aborted && (isMissingKey(error) || codeOf(error) === 'NoSuchUpload')) return;
      throw mapS3Error(error, this.errorContext('abort the upload of', key, ctx));
    }
  }

  async readText(key: string, ctx: OpContext): Promise<string | null> {
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { abortSignal: ctx.signal });
      return (await response.Body?.transformToString('utf8')) ?? '';
    } catch (error) {
      if (!ctx.signal.aborted && isMissingKey(error)) return null;
      throw mapS3Error(error, this.errorContext('read', key, ctx));
    }
  }

  async writeText(key: string, text: string, ctx: OpContext, options: { ifAbsent?: boolean } = {}): Promise<boolean> {
    const data = Buffer.from(text, 'utf8');
    if (options.ifAbsent === true) {
      return (await this.putSingle(key, data, null, await this.enforced(ctx), ctx)).created;
    }
    try {
      await this.client.send(new PutObjectCommand({ ...this.writeParams(key, null), Body: data, ContentLength: data.length, ChecksumAlgorithm: 'CRC32' }), {
        abortSignal: ctx.signal,
      });
      return true;
    } catch (error) {
      throw mapS3Error(error, this.errorContext('write', key, ctx));
    }
  }
}

/** Opens a repository in an S3 bucket (or under a prefix of it). */
export function createS3Backend(options: S3BackendOptions): S3Backend {
  return new S3Backend(options);
}
