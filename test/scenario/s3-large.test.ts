// Large objects on S3 (putLarge, the multipart writer of base backups), through the proxy in front of
// s3rver: what goes over the wire, a failed part retried, a key created by someone else while the
// upload runs, an upload left by a crash (verify, cleanup), and memory for a stream of 2 GiB in a
// child process.
import { execFile } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MULTIPART } from '../../src/backend/s3.js';
import { WalvaultError } from '../../src/core/errors.js';
import { cleanupArchive } from '../../src/policy/cleanup.js';
import { verifyArchive } from '../../src/policy/verify.js';
import { getRaw, leaveUnfinishedUpload, memoryLogger, putRaw, s3Backend, useS3Scenario } from '../support/s3scenario.js';
import { faults } from '../support/s3server.js';
import { chunkedBody, patternedBytes } from '../contract/contract.js';

const MiB = 1024 * 1024;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ctx = () => ({ signal: new AbortController().signal });
const s3 = useS3Scenario({ scratch: false, resetEachTest: true });
let counter = 0;
const freshPrefix = (): string => `large-${(counter += 1)}`;
const KEY = 'backup/20261207T031900/base.tar';

/** The proxy's record of the requests of one object key. */
const requestsOf = (key: string) => s3.server.requests.filter((request) => request.key === key);

/** The S3 operation of a request the proxy saw. */
function operation(request: { method: string; query: string }): string {
  const query = new URLSearchParams(request.query);
  if (request.method === 'HEAD') return 'HeadObject';
  if (request.method === 'POST') return query.has('uploads') ? 'CreateMultipartUpload' : query.has('uploadId') ? 'CompleteMultipartUpload' : 'POST';
  if (request.method === 'PUT') return query.has('partNumber') ? 'UploadPart' : 'PutObject';
  if (request.method === 'DELETE') return query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  return request.method;
}

/** Waits (bounded, generous) until the proxy has seen a request matching `match`. */
async function untilRequest(match: (request: (typeof s3.server.requests)[number]) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!s3.server.requests.some(match)) {
    if (Date.now() > deadline) throw new Error(`${what} was not seen within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('putLarge on S3: the requests', () => {
  it('a stream of exactly two parts: a look-up, one create, two parts with their CRC32, a look-up, one conditional complete, no empty third part', async () => {
    const prefix = freshPrefix();
    const backend = s3Backend(s3.server, prefix, { conditionalWrites: 'on' });
    const data = patternedBytes(2 * DEFAULT_MULTIPART.partBytes);
    expect(await backend.putLarge(KEY, chunkedBody(data), ctx())).toEqual({ storedSize: data.length });
    const requests = requestsOf(`${prefix}/${KEY}`);
    expect(requests.map(operation)).toEqual(['HeadObject', 'CreateMultipartUpload', 'UploadPart', 'UploadPart', 'HeadObject', 'CompleteMultipartUpload']);
    const parts = requests.filter((request) => request.method === 'PUT');
    for (const part of parts) {
      expect(part.checksumCrc32).toMatch(/^[A-Za-z0-9+/]{6}==$/);
      expect(part.contentEncoding ?? '').not.toContain('aws-chunked');
      expect(part.outcome).toBe('forwarded');
    }
    expect(requests.at(-1)?.ifNoneMatch).toBe('*');
    expect((await getRaw(s3.server, `${prefix}/${KEY}`))?.body.equals(data)).toBe(true);
    expect(await s3.server.openUploads()).toEqual([]);
  });

  it('a stream shorter than one part goes as one conditional PutObject', async () => {
    const prefix = freshPrefix();
    const backend = s3Backend(s3.server, prefix, { conditionalWrites: 'on' });
    const data = patternedBytes(3 * MiB);
    expect(await backend.putLarge(KEY, chunkedBody(data), ctx())).toEqual({ storedSize: data.length });
    expect(requestsOf(`${prefix}/${KEY}`).map((request) => [operation(request), request.ifNoneMatch])).toEqual([
      ['HeadObject', undefined],
      ['PutObject', '*'],
    ]);
  });

  it('a part that fails with 500 is sent again, and the object is whole', async () => {
    const prefix = freshPrefix();
    const logger = memoryLogger();
    const backend = s3Backend(s3.server, prefix, { conditionalWrites: 'on', logger });
    s3.server.inject({ fault: faults.internalError(), match: { method: 'PUT', query: 'partNumber' }, times: 2 });
    const data = patternedBytes(20 * MiB + 5);
    expect(await backend.putLarge(KEY, chunkedBody(data), ctx())).toEqual({ storedSize: data.length });
    expect(requestsOf(`${prefix}/${KEY}`).filter((request) => request.outcome === '500')).toHaveLength(2);
    expect((await getRaw(s3.server, `${prefix}/${KEY}`))?.body.equals(data)).toBe(true);
    expect(logger.lines.some((line) => line.includes('InternalError') && line.includes('sending it again'))).toBe(true);
  });

  it('a part that keeps failing aborts the upload: the error names the part, nothing is stored, no upload is left', async () => {
    const prefix = freshPrefix();
    const backend = s3Backend(s3.server, prefix, { conditionalWrites: 'on', maxAttempts: 2 });
    s3.server.inject({ fault: faults.accessDenied(), match: { method: 'PUT', query: 'partNumber' }, times: 100 });
    const error = await backend.putLarge(KEY, chunkedBody(patternedBytes(20 * MiB)), ctx()).then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(WalvaultError);
    expect((error as WalvaultError).message).toMatch(/^could not upload part \d of "s3:\/\/walvault-test\/large-\d+\/backup\/20261207T031900\/base\.tar": access denied/);
    expect(await getRaw(s3.server, `${prefix}/${KEY}`)).toBeNull();
    expect(await s3.server.openUploads()).toEqual([]);
    expect(requestsOf(`${prefix}/${KEY}`).filter((request) => request.outcome === 'abort')).toHaveLength(1);
  });
});

describe('putLarge on S3: a key that comes to exist while the upload runs', () => {
  it('where If-None-Match is enforced, the conditional complete refuses: "mismatch", the other object intact, the upload aborted', async () => {
    const prefix = freshPrefix();
    const backend = s3Backend(s3.server, prefix, { conditionalWrites: 'on' });
    const theirs = Buffer.from('written by another tool while the backup ran');
    s3.server.inject({ fault: faults.delay(1_000), match: { method: 'POST', query: 'uploadId' } });
    const put = backend.putLarge(KEY, chunkedBody(patternedBytes(12 * MiB)), ctx());
    await untilRequest((request) => request.method === 'POST' && request.query.includes('uploadId='), 'the complete');
    await putRaw(s3.server, `${prefix}/${KEY}`, theirs);
    await expect(put).rejects.toMatchObject({ kind: 'mismatch' });
    expect((await getRaw(s3.server, `${prefix}/${KEY}`))?.body).toEqual(theirs);
    expect(requestsOf(`${prefix}/${KEY}`).filter((request) => request.outcome === '412')).toHaveLength(1);
    expect(await s3.server.openUploads()).toEqual([]);
  });

  it('where the store ignores If-None-Match (auto falls back), the look-up right before the complete refuses', async () => {
    s3.server.enforceConditionalWrites = false;
    const prefix = freshPrefix();
    const backend = s3Backend(s3.server, prefix, { conditionalWrites: 'auto', logger: memoryLogger() });
    const theirs = Buffer.from('written by another tool while the backup ran');
    s3.server.inject({ fault: faults.delay(1_000), match: { method: 'PUT', query: 'partNumber' } });
    const put = backend.putLarge(KEY, chunkedBody(patternedBytes(12 * MiB)), ctx());
    await untilRequest((request) => request.method === 'PUT' && request.query.includes('partNumber='), 'the first part');
    await putRaw(s3.server, `${prefix}/${KEY}`, theirs);
    await expect(put).rejects.toMatchObject({ kind: 'mismatch' });
    expect((await getRaw(s3.server, `${prefix}/${KEY}`))?.body).toEqual(theirs);
    expect(requestsOf(`${prefix}/${KEY}`).filter((request) => request.method === 'POST' && request.query.includes('uploadId='))).toEqual([]);
    expect(await s3.server.openUploads()).toEqual([]);
  });
});

describe('putLarge on S3: memory', () => {
  // The process holds 64-67 MiB once the SDK is loaded (Node 20), before any request: the writer's
  // share is the growth. Measured with 8 MiB parts (6 MiB now): 2 x 8 MiB part buffers and the
  // requests' heap, 30-41 MiB (peak RSS 97-105 MiB); a writer that kept even 2% of what it sent, or
  // held three more parts, fails.
  it('a 2 GiB stream grows the RSS of the process by less than 48 MiB, and is stored byte for byte', async () => {
    const distS3 = path.join(root, 'dist/backend/s3.js');
    if (!existsSync(distS3)) throw new Error(`"${distS3}" is missing: run npm run build (npm test does) before this test`);
    const prefix = freshPrefix();
    const mebibytes = 2048;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [path.join(root, 'test/support/s3-large-memory-child.mjs'), distS3, s3.server.endpoint, s3.server.bucket, prefix, KEY, String(mebibytes)],
      { env: { ...process.env, ...s3.server.env }, maxBuffer: 1 << 20 },
    );
    const report = JSON.parse(stdout) as { storedSize: number; crc32: number; baselineMiB: number; peakMiB: number; seconds: number };
    console.log(
      `putLarge memory: ${mebibytes} MiB to s3rver in ${report.seconds.toFixed(1)} s (${(mebibytes / report.seconds).toFixed(0)} MiB/s), RSS ${report.baselineMiB.toFixed(0)} -> peak ${report.peakMiB.toFixed(0)} MiB`,
    );
    expect(report.storedSize).toBe(mebibytes * MiB);
    expect(report.peakMiB - report.baselineMiB).toBeLessThan(48);
    let storedCrc = 0;
    let storedBytes = 0;
    for await (const chunk of createReadStream(s3.server.objectFile(`${prefix}/${KEY}`))) {
      storedCrc = crc32(chunk as Buffer, storedCrc);
      storedBytes += (chunk as Buffer).length;
    }
    expect(storedBytes).toBe(mebibytes * MiB);
    expect(storedCrc >>> 0).toBe(report.crc32);
    expect(await s3.server.openUploads()).toEqual([]);
  }, 600_000);
});

describe('an upload left unfinished by a crash', () => {
  it('verify warns about it; cleanup keeps it while younger than the grace period, then aborts it', async () => {
    const prefix = freshPrefix();
    const backend = s3Backend(s3.server, prefix);
    await leaveUnfinishedUpload(backend, KEY);
    const verified = await verifyArchive(backend);
    const finding = verified.findings.find((candidate) => candidate.code === 'temp-file');
    expect(finding).toMatchObject({ severity: 'warning', file: expect.stringMatching(/^backup\/20261207T031900\/base\.tar~upload~/) });
    expect(finding?.message).toContain(`leftover temporary file "s3://walvault-test/${prefix}/backup/20261207T031900/base.tar~upload~`);
    const before = '000000010000000000000001';
    expect((await cleanupArchive(backend, { before })).leftovers).toEqual([]);
    expect(await s3.server.openUploads()).toHaveLength(1);
    expect((await cleanupArchive(backend, { before, leftoverGraceMs: 0, dryRun: true })).leftovers).toEqual([finding?.file]);
    expect(await s3.server.openUploads()).toHaveLength(1);
    expect((await cleanupArchive(backend, { before, leftoverGraceMs: 0 })).leftovers).toEqual([finding?.file]);
    expect(await s3.server.openUploads()).toEqual([]);
    expect((await verifyArchive(backend)).findings.filter((candidate) => candidate.code === 'temp-file')).toEqual([]);
  });
});
