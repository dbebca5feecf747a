// walvault against a real S3 implementation, Ceph's RADOS Gateway (Debian's 16.2 packages), through
// the built executables: racing archivers at 16 MiB and at sizes that used to go multipart, restore,
// the peak memory of a spooled (compressed) body, and the RGW behaviours walvault depends on.
//
// RGW 16.2 honours If-None-Match: * on PutObject but NOT on CompleteMultipartUpload (it answers 200
// and overwrites): walvault therefore creates every object in one conditional PutObject.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Backend, describeSdkError, mapS3Error, PROBE_RECORD_KEY } from '../../src/backend/s3.js';
import { Deadline } from '../../src/core/deadline.js';
import { WalvaultError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/log.js';
import { archiveFile } from '../../src/policy/archive.js';
import { bin, run, type RunResult } from '../support/cli.js';
import { rgwStore, type RgwStore } from '../support/ceph.js';
import { makeTempDir } from '../support/tmp.js';

const MiB = 1024 * 1024;
const silentLog: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
let rgw: RgwStore;
let bucket: string;
let work: { dir: string; remove(): Promise<void> };
let prefixCounter = 0;
const freshPrefix = (): string => `scenario-${(prefixCounter += 1)}`;

beforeAll(async () => {
  rgw = await rgwStore();
  bucket = await rgw.bucket('walvault-scenario');
  Object.assign(process.env, rgw.env);
  work = await makeTempDir();
});
afterAll(async () => {
  await work?.remove();
});

const flags = (prefix: string): string[] => [`--repo=s3://${bucket}/${prefix}`, `--s3-endpoint=${rgw.endpoint}`, '--s3-force-path-style'];
const cli = (name: 'walvault-archive' | 'walvault-restore' | 'walvault', args: string[]): Promise<RunResult> => run(name, args, { cwd: work.dir, env: rgw.env });

async function getBytes(client: S3Client, key: string): Promise<Buffer | null> {
  try {
    const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await response.Body!.transformToByteArray());
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return null;
    throw error;
  }
}

/** A file of random bytes in its own folder (so no archiver sees the other's file). */
async function segmentFile(folder: string, name: string, size: number): Promise<{ path: string; data: Buffer }> {
  const dir = path.join(work.dir, folder);
  await fs.mkdir(dir, { recursive: true });
  const data = randomBytes(size);
  await fs.writeFile(path.join(dir, name), data);
  return { path: path.join(dir, name), data };
}

const segmentName = (index: number): string => `0000000100000000000000${index.toString(16).toUpperCase().padStart(2, '0')}`;
const objectKey = (prefix: string, segment: string): string => `${prefix}/wal/${segment.slice(0, 16)}/${segment}`;

/**
 * Two walvault-archive processes store different contents under one name at the same moment: exactly
 * one exits 0, the other is refused (exit 4), and what is restored is the winner's bytes.
 */
async function race(prefix: string, segment: string, size: number, extra: string[] = []): Promise<void> {
  const a = await segmentFile(`${prefix}-a`, segment, size);
  const b = await segmentFile(`${prefix}-b`, segment, size);
  const archive = (file: { path: string }): Promise<RunResult> => cli('walvault-archive', [...flags(prefix), ...extra, '--push-ahead=0', file.path, segment]);
  const results = await Promise.all([archive(a), archive(b)]);
  const codes = results.map((result) => result.code);
  expect(codes.filter((code) => code === 0), results.map((result) => result.stderr).join('\n')).toHaveLength(1);
  const loser = results.find((result) => result.code !== 0)!;
  expect(loser.code, loser.stderr).toBe(4);
  expect(loser.stderr).toMatch(/^walvault-archive: error: .*refusing to overwrite "/m);
  const winner = codes[0] === 0 ? a : b;
  const restored = path.join(work.dir, `${prefix}-restored`);
  const restore = await cli('walvault-restore', [...flags(prefix), '--prefetch=0', segment, restored]);
  expect(restore.code, restore.stderr).toBe(0);
  expect((await fs.readFile(restored)).equals(winner.data)).toBe(true);
  // RGW's memstore holds what the tests store: free it (the gc runs every few seconds).
  await rgw.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey(prefix, segment) }));
  await Promise.all([fs.rm(a.path), fs.rm(b.path), fs.rm(restored)]);
}

describe('racing archivers on RGW: exactly one winner, whatever the size', () => {
  it('16 MiB, plain: one exits 0, the other 4, the winner\'s bytes stored', async () => {
    const prefix = freshPrefix();
    await race(prefix, segmentName(1), 16 * MiB);
    // auto found and recorded that RGW enforces If-None-Match on PutObject.
    const record = JSON.parse((await getBytes(rgw.client, `${prefix}/${PROBE_RECORD_KEY}`))!.toString()) as { version: number; ifNoneMatch: string };
    expect(record).toMatchObject({ version: 2, ifNoneMatch: 'enforced' });
  });

  it('32 MiB, plain (formerly a multipart upload, which RGW 16.2 lets overwrite): two rounds, one winner each', async () => {
    const prefix = freshPrefix();
    for (const round of [2, 3]) await race(prefix, segmentName(round), 32 * MiB);
  });

  it('32 MiB, zstd-compressed random bytes (a streamed body spooled to a temp file): one winner', async () => {
    const prefix = freshPrefix();
    await race(prefix, segmentName(5), 32 * MiB, ['--compress=zstd']);
  });
});

/** Archives `size` random bytes with --compress=zstd under GNU time; the peak RSS in KiB. */
async function archivePeak(prefix: string, segment: string, size: number): Promise<{ peakKiB: number; data: Buffer }> {
  const file = await segmentFile(prefix, segment, size);
  let stderr = '';
  try {
    ({ stderr } = await promisify(execFile)('/usr/bin/time', ['-f', 'peak=%M', bin('walvault-archive'), ...flags(prefix), '--compress=zstd', '--push-ahead=0', file.path, segment], {
      cwd: work.dir,
      env: { ...process.env, ...rgw.env },
    }));
  } catch (error) {
    throw new Error(`walvault-archive failed: ${(error as { stderr?: string }).stderr ?? String(error)}`);
  }
  return { peakKiB: Number(/peak=(\d+)/.exec(stderr)?.[1]), data: file.data };
}

describe('memory on RGW', () => {
  it('a 64 MiB incompressible segment with --compress=zstd (spooled to a temp file) costs no more memory than a 16 MiB one sent from memory, and is restored byte for byte', async () => {
    const prefix = freshPrefix();
    // zstd's own buffers dominate either way; a body held whole would add 64 MiB.
    const small = await archivePeak(prefix, segmentName(11), 16 * MiB);
    const large = await archivePeak(prefix, segmentName(6), 64 * MiB);
    process.stdout.write(`zstd on RGW, archive peak RSS: 16 MiB segment ${Math.round(small.peakKiB / 1024)} MiB, 64 MiB segment (spooled) ${Math.round(large.peakKiB / 1024)} MiB\n`);
    expect(small.peakKiB).toBeGreaterThan(0);
    // Measured here: +12 to +27 MiB (GC timing); main, which held up to three 16 MiB parts, was +62 MiB.
    expect(large.peakKiB).toBeLessThan(small.peakKiB + 40 * 1024);
    const restored = path.join(work.dir, `${prefix}-restored`);
    const restore = await cli('walvault-restore', [...flags(prefix), '--prefetch=0', segmentName(6), restored]);
    expect(restore.code, restore.stderr).toBe(0);
    expect((await fs.readFile(restored)).equals(large.data)).toBe(true);
    for (const segment of [segmentName(11), segmentName(6)]) await rgw.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: objectKey(prefix, segment) }));
  });
});

describe('what RGW 16.2 does that walvault depends on or works around', () => {
  it('CompleteMultipartUpload with If-None-Match: * overwrites an existing object (why walvault never uploads in parts)', async () => {
    const key = `${freshPrefix()}/multipart-overwrite`;
    await rgw.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('first') }));
    const { UploadId } = await rgw.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const part = await rgw.client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.from('second') }));
    await rgw.client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, IfNoneMatch: '*', MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }));
    expect((await getBytes(rgw.client, key))?.toString()).toBe('second');
  });

  it('a PutObject refused by If-None-Match is a 412 with no message; walvault never shows it as "UnknownError"', async () => {
    const key = `${freshPrefix()}/exists`;
    await rgw.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('first'), IfNoneMatch: '*' }));
    const refused = await rgw.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('second'), IfNoneMatch: '*' })).catch((error: unknown) => error);
    expect((refused as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(412);
    expect((refused as Error).message).toBe('UnknownError');
    expect(describeSdkError(refused)).toBe('PreconditionFailed (HTTP 412)');
    const mapped = mapS3Error(refused, { operation: 'upload', target: `s3://${bucket}/${key}`, bucket, endpoint: rgw.endpoint });
    expect(mapped.message).toBe(`could not upload "s3://${bucket}/${key}": PreconditionFailed (HTTP 412): the store sent no message`);
    expect((await getBytes(rgw.client, key))?.toString()).toBe('first');
  });

  it('a wrong ChecksumCRC32 is accepted (RGW does not verify it): a file changing during the upload is still refused by walvault itself, nothing stored', async () => {
    const key = `${freshPrefix()}/wrong-crc`;
    await rgw.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('payload'), ChecksumCRC32: 'AAAAAA==' }));
    expect((await getBytes(rgw.client, key))?.toString()).toBe('payload');
    // walvault's guard does not rely on the store: the body stream fails before its last byte.
    const prefix = freshPrefix();
    const segment = segmentName(7);
    const file = await segmentFile(prefix, segment, 24 * MiB);
    const changed = Buffer.from(file.data);
    changed[changed.length - 10] = (changed[changed.length - 10] ?? 0) ^ 0xff;
    const backend = createS3Backend({ bucket, prefix, endpoint: rgw.endpoint, forcePathStyle: true });
    const upload = backend.putFileIfAbsent.bind(backend);
    // Between the scan of the file and the upload streamed from it, the file changes.
    backend.putFileIfAbsent = async (...args) => {
      await fs.writeFile(file.path, changed);
      return upload(...args);
    };
    const deadline = new Deadline(60_000, `archiving "${segment}"`);
    const failure = await archiveFile({ backend, sourcePath: file.path, fileName: segment, encode: { compress: 'none' }, deadline, log: silentLog }).catch((error: unknown) => error);
    deadline.dispose();
    expect(failure).toBeInstanceOf(WalvaultError);
    expect((failure as WalvaultError).kind).toBe('source');
    expect((failure as WalvaultError).message).toContain('changed while it was being archived');
    expect(await getBytes(rgw.client, objectKey(prefix, segment))).toBeNull();
  });

  it('a streamed body with only a trailing checksum (aws-chunked) is refused with 411; walvault\'s streamed uploads never use it', async () => {
    const key = `${freshPrefix()}/aws-chunked`;
    const { Readable } = await import('node:stream');
    const refused = await rgw.client
      .send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Readable.from([Buffer.from('streamed')]), ContentLength: 8, ChecksumAlgorithm: 'CRC32' }))
      .catch((error: unknown) => error);
    expect((refused as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(411);
    expect(describeSdkError(refused)).toContain('MissingContentLength');
  });
});

describe('cleanup on RGW', () => {
  it('walvault cleanup --before removes the older segments and keeps the rest', async () => {
    const prefix = freshPrefix();
    for (const index of [8, 9, 10]) {
      const file = await segmentFile(prefix, segmentName(index), 1 * MiB);
      const result = await cli('walvault-archive', [...flags(prefix), '--push-ahead=0', file.path, segmentName(index)]);
      expect(result.code, result.stderr).toBe(0);
    }
    const cleanup = await cli('walvault', ['cleanup', ...flags(prefix), `--before=${segmentName(10)}`]);
    expect(cleanup.code, cleanup.stderr).toBe(0);
    for (const [index, present] of [
      [8, false],
      [9, false],
      [10, true],
    ] as const) {
      expect((await getBytes(rgw.client, objectKey(prefix, segmentName(index)))) !== null).toBe(present);
    }
  });
});
