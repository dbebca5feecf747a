// S3 option parsing, URL handling and the mapping of SDK failures to walvault's error kinds and exit codes.
import { describe, expect, it } from 'vitest';
import { openBackend } from '../../src/backend/registry.js';
import { mapS3Error, metaFromHeaders, parseS3Target, S3Backend, s3OptionsFromSettings } from '../../src/backend/s3.js';
import { exitCodeOf, WalvaultError } from '../../src/core/errors.js';

const context = { operation: 'upload', target: 's3://archive-bucket/pg/wal/x', bucket: 'archive-bucket', endpoint: undefined };

/** An error shaped like the AWS SDK's service exceptions. */
const sdkError = (name: string, status?: number, extra: Record<string, unknown> = {}): Error =>
  Object.assign(new Error(`${name} message`), { name, ...(status === undefined ? {} : { $metadata: { httpStatusCode: status } }), ...extra });

describe('s3:// URLs and options', () => {
  it('splits bucket and prefix, dropping stray slashes', () => {
    expect(parseS3Target('bucket')).toEqual({ bucket: 'bucket', prefix: '' });
    expect(parseS3Target('bucket/a/b/')).toEqual({ bucket: 'bucket', prefix: 'a/b' });
    expect(parseS3Target('bucket//a')).toEqual({ bucket: 'bucket', prefix: 'a' });
  });

  it('reads every --s3-* option from the parsed command line (flags, WALVAULT_* env and config all arrive here)', () => {
    const options = s3OptionsFromSettings('bucket/prod/main', {
      s3Endpoint: 'http://minio:9000',
      s3Region: 'eu-west-3',
      s3ForcePathStyle: true,
      s3StorageClass: 'STANDARD_IA',
      s3Sse: 'aws:kms',
      s3SseKmsKeyId: 'alias/walvault',
      s3ConditionalWrites: 'on',
      s3RequestTimeout: '5000',
      s3MaxAttempts: 5,
    });
    expect(options).toEqual({
      bucket: 'bucket',
      prefix: 'prod/main',
      endpoint: 'http://minio:9000',
      region: 'eu-west-3',
      forcePathStyle: true,
      storageClass: 'STANDARD_IA',
      sse: 'aws:kms',
      sseKmsKeyId: 'alias/walvault',
      conditionalWrites: 'on',
      requestTimeoutMs: 5000,
      maxAttempts: 5,
    });
  });

  it('refuses bad values as usage errors (exit 2) with the fix in the hint', () => {
    const bad = (extra: Record<string, unknown>): WalvaultError => {
      try {
        s3OptionsFromSettings('bucket', extra);
      } catch (error) {
        return error as WalvaultError;
      }
      throw new Error('accepted');
    };
    expect(bad({ s3Sse: 'des' }).oneLine()).toBe('invalid --s3-sse "des"; HINT: use --s3-sse=AES256 or --s3-sse=aws:kms');
    expect(bad({ s3ConditionalWrites: 'maybe' }).oneLine()).toBe('invalid --s3-conditional-writes "maybe"; HINT: use auto, on or off');
    expect(bad({ s3SseKmsKeyId: 'k' }).message).toBe('--s3-sse-kms-key-id needs --s3-sse=aws:kms');
    expect(bad({ s3MaxAttempts: '0' }).message).toBe('invalid --s3-max-attempts "0": expected a positive integer');
    expect(exitCodeOf(bad({ s3RequestTimeout: 'soon' }))).toBe(2);
  });

  it('the registry opens s3:// URLs with the options, and the description names bucket and prefix', async () => {
    const backend = await openBackend('s3://archive-bucket/pg/main', { extra: { s3Endpoint: 'http://127.0.0.1:1', s3Region: 'us-east-1' } });
    expect(backend).toBeInstanceOf(S3Backend);
    expect(backend.kind).toBe('s3');
    expect(backend.describe('wal/0000000100000000/000000010000000000000001')).toBe('s3://archive-bucket/pg/main/wal/0000000100000000/000000010000000000000001');
  });
});

describe('SDK failures become walvault errors', () => {
  it.each([
    ['InternalError', 500],
    ['ServiceUnavailable', 503],
    ['SlowDown', 503],
    ['ThrottlingException', 400],
    ['Whatever', 502],
    ['TooManyRequests', 429],
  ])('%s (HTTP %s) is a transient backend failure (retried, exit 5)', (name, status) => {
    const error = mapS3Error(sdkError(name, status), context);
    expect(error.kind).toBe('backend');
    expect(error.transient).toBe(true);
    expect(exitCodeOf(error)).toBe(5);
  });

  it.each(['ECONNRESET', 'ECONNREFUSED', 'EPIPE'])('a connection failure (%s) is transient', (code) => {
    const error = mapS3Error(Object.assign(new Error('socket hang up'), { code }), context);
    expect(error.transient).toBe(true);
    expect(error.message).toContain(code);
  });

  it('a reset the SDK labels "TimeoutError" is reported as the reset it is, not as a timeout', () => {
    const error = mapS3Error(Object.assign(new Error('socket hang up'), { name: 'TimeoutError', code: 'ECONNRESET' }), context);
    expect(error.kind).toBe('backend');
    expect(error.transient).toBe(true);
    expect(error.message).toBe('could not upload "s3://archive-bucket/pg/wal/x": AWS S3 failed (ECONNRESET: socket hang up)');
  });

  it('a request timeout is a transient timeout (exit 6)', () => {
    const error = mapS3Error(sdkError('TimeoutError'), context);
    expect(error.kind).toBe('timeout');
    expect(error.transient).toBe(true);
    expect(exitCodeOf(error)).toBe(6);
  });

  it('the deadline aborting a request reports the deadline error itself', () => {
    const controller = new AbortController();
    const deadlineError = new WalvaultError('timeout', 'archiving "x" did not finish within 1 s');
    controller.abort(deadlineError);
    expect(mapS3Error(sdkError('AbortError'), { ...context, signal: controller.signal })).toBe(deadlineError);
  });

  it('NoSuchBucket fails fast, naming the bucket and the fix', () => {
    const error = mapS3Error(sdkError('NoSuchBucket', 404), context);
    expect(error.transient).toBe(false);
    expect(error.oneLine()).toBe(
      'could not upload "s3://archive-bucket/pg/wal/x": bucket "archive-bucket" does not exist at AWS S3; HINT: create the bucket, or fix the bucket name in --repo (and --s3-endpoint / --s3-region if it lives elsewhere)',
    );
  });

  it('AccessDenied fails fast with the permissions to grant', () => {
    const error = mapS3Error(sdkError('AccessDenied', 403), context);
    expect(error.transient).toBe(false);
    expect(error.message).toBe('could not upload "s3://archive-bucket/pg/wal/x": access denied to bucket "archive-bucket" (AccessDenied)');
    expect(error.hint).toContain('s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject');
  });

  it.each(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken'])('%s points at the credential chain, never at a flag', (name) => {
    const error = mapS3Error(sdkError(name, 403), context);
    expect(error.transient).toBe(false);
    expect(error.message).toContain(`the credentials were refused by AWS S3 (${name})`);
    expect(error.hint).toContain('AWS SDK default chain');
  });

  it('a bucket in another region says to set the region', () => {
    const error = mapS3Error(sdkError('PermanentRedirect', 301), context);
    expect(error.hint).toBe('set --s3-region (or AWS_REGION) to the region of the bucket');
  });

  it('an unknown client error is permanent and names the code', () => {
    const error = mapS3Error(sdkError('InvalidStorageClass', 400), context);
    expect(error.transient).toBe(false);
    expect(error.message).toBe('could not upload "s3://archive-bucket/pg/wal/x": InvalidStorageClass (HTTP 400): InvalidStorageClass message');
  });
});

describe('object metadata', () => {
  it('reads walvault metadata, and null for objects without it', () => {
    expect(metaFromHeaders({ 'walvault-content-hash': '0123456789abcdef', 'walvault-content-size': '16777216', 'walvault-codec': 'none', 'walvault-encryption': 'none' }, 's3://b/k')).toEqual({
      contentHash: '0123456789abcdef',
      contentSize: 16777216,
      codec: 'none',
      encryption: 'none',
    });
    expect(metaFromHeaders({}, 's3://b/k')).toBeNull();
    expect(metaFromHeaders(undefined, 's3://b/k')).toBeNull();
  });

  it('damaged metadata is corruption (exit 7), not a missing hash', () => {
    let error: unknown;
    try {
      metaFromHeaders({ 'walvault-content-hash': 'xyz', 'walvault-content-size': '1' }, 's3://b/k');
    } catch (caught) {
      error = caught;
    }
    expect((error as WalvaultError).kind).toBe('corrupt');
    expect(exitCodeOf(error)).toBe(7);
  });
});
