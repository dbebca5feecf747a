// Archiving to S3 over real HTTP: refuse-to-overwrite with and without If-None-Match support, retries,
// deadlines, permanent errors and multipart uploads, against s3rver (bare, or behind the fault proxy).
import crypto from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';
import { PROBE_RECORD_KEY } from '../../src/backend/s3.js';
import type { ObjectMeta } from '../../src/backend/types.js';
import { Deadline } from '../../src/core/deadline.js';
import { WalvaultError } from '../../src/core/errors.js';
import { hashBuffer } from '../../src/core/hash.js';
import { archiveFile } from '../../src/policy/archive.js';
import { getRaw, memoryLogger, putRaw, randomFile, runCli, s3Backend, s3Flags, segmentKey, useS3Scenario } from '../support/s3scenario.js';
import { faults, type S3TestServer } from '../support/s3server.js';

let server: S3TestServer;
let work: { dir: string; remove(): Promise<void> };
let prefixCounter = 0;
/** A fresh repository prefix per test. */
const freshPrefix = (): string => `archive-${prefixCounter++}`;
const SEGMENT = '000000010000000000000001';

useS3Scenario({ resetEachTest: true, bind: (scenario) => ({ server, work } = scenario) });

/** Archives through the policy with a fresh deadline. */
async function archive(
  prefix: string,
  sourcePath: string,
  options: { timeoutMs?: number; bare?: boolean; backend?: Parameters<typeof s3Backend>[2]; beforeUpload?: () => Promise<void> } = {},
) {
  const log = memoryLogger();
  const backend = s3Backend(server, prefix, { bare: options.bare, logger: log, ...options.backend });
  const { beforeUpload } = options;
  if (beforeUpload !== undefined) {
    // Runs between the scan of the file and the upload streamed from it.
    const upload = backend.putFileIfAbsent.bind(backend);
    backend.putFileIfAbsent = async (...args) => {
      await beforeUpload();
      return upload(...args);
    };
  }
  const deadline = new Deadline(options.timeoutMs ?? 20_000, `archiving "${SEGMENT}"`);
  try {
    const result = await archiveFile({ backend, sourcePath, fileName: SEGMENT, encode: { compress: 'none' }, deadline, log });
    return { result, log };
  } finally {
    deadline.dispose();
  }
}

/** The requests the proxy saw for one object key. */
const requestsFor = (key: string) => server.requests.filter((request) => request.key === key);

describe('conditional writes', () => {
  it('a second server archiving different content under the same name is refused (exit 4) and the archived object is unchanged', async () => {
    const prefix = freshPrefix();
    const first = await randomFile(work.dir, 'first', 64 * 1024);
    const second = await randomFile(work.dir, 'second', 64 * 1024);
    const ok = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', first.path, SEGMENT]);
    expect(ok, ok.stderr).toMatchObject({ code: 0 });
    server.resetRequests();
    const refused = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', second.path, SEGMENT]);
    expect(refused, refused.stderr).toMatchObject({ code: 4 });
    expect(refused.stderr).toContain(`refusing to overwrite "${SEGMENT}" at "s3://${server.bucket}/${segmentKey(prefix, SEGMENT)}"`);
    expect(refused.stderr).toContain('the contents differ at byte offset');
    const key = segmentKey(prefix, SEGMENT);
    expect(requestsFor(key).find((request) => request.method === 'PUT')).toMatchObject({ ifNoneMatch: '*', outcome: '412' });
    expect((await getRaw(server, key))?.body.equals(first.data)).toBe(true);
  });

  it('re-archiving identical content succeeds with a HEAD comparing the stored hash, without downloading the object', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'same', 200 * 1024);
    expect((await archive(prefix, file.path)).result.outcome).toBe('archived');
    server.resetRequests();
    const again = await archive(prefix, file.path);
    expect(again.result.outcome).toBe('already-archived');
    const key = segmentKey(prefix, SEGMENT);
    expect(requestsFor(key).map((request) => `${request.method} ${request.outcome}`)).toEqual(['PUT 412', 'HEAD forwarded']);
  });

  it('an identical object written by another tool (no metadata) is compared by streaming it, then gets walvault metadata', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'foreign', 100 * 1024);
    const key = segmentKey(prefix, SEGMENT);
    await putRaw(server, key, file.data);
    server.resetRequests();
    const { result, log } = await archive(prefix, file.path);
    expect(result.outcome).toBe('already-archived');
    expect(log.lines.some((line) => line.includes('already archived') && line.includes('identical content'))).toBe(true);
    expect(requestsFor(key).some((request) => request.method === 'GET')).toBe(true);
    const stored = await getRaw(server, key);
    expect(stored?.body.equals(file.data)).toBe(true);
    expect(stored?.metadata).toMatchObject({ 'walvault-content-hash': await hashBuffer(file.data), 'walvault-content-size': String(file.data.length) });
  });

  it('a different object written by another tool (no metadata) is refused with the first differing offset', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'foreign-different', 100 * 1024);
    const other = Buffer.from(file.data);
    other[5000] = (other[5000] ?? 0) ^ 0xff;
    const key = segmentKey(prefix, SEGMENT);
    await putRaw(server, key, other);
    const failure = await archive(prefix, file.path).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(WalvaultError);
    expect((failure as WalvaultError).kind).toBe('mismatch');
    expect((failure as WalvaultError).message).toContain('the contents differ at byte offset 5000');
    expect((await getRaw(server, key))?.body.equals(other)).toBe(true);
  });

  it('auto mode on bare s3rver detects that If-None-Match is ignored, records it, and still never overwrites', async () => {
    const prefix = freshPrefix();
    const first = await randomFile(work.dir, 'bare-first', 32 * 1024);
    const second = await randomFile(work.dir, 'bare-second', 32 * 1024);
    const { log } = await archive(prefix, first.path, { bare: true });
    expect(log.lines.some((line) => line.startsWith('warning: s3: the store at') && line.includes('ignores If-None-Match (it would overwrite)'))).toBe(true);
    const record = JSON.parse((await getRaw(server, `${prefix}/${PROBE_RECORD_KEY}`))?.body.toString() ?? '{}') as { ifNoneMatch?: string };
    expect(record.ifNoneMatch).toBe('ignored');
    const refused = await runCli('walvault-archive', [...s3Flags(server, prefix, { bare: true }), second.path, SEGMENT]);
    expect(refused, refused.stderr).toMatchObject({ code: 4 });
    expect(refused.stderr).toContain('ignores If-None-Match (it would overwrite) (recorded in');
    expect((await getRaw(server, segmentKey(prefix, SEGMENT)))?.body.equals(first.data)).toBe(true);
  });

  it('auto mode probes once per repository: a later process reads the recorded result instead of probing again', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'probe-once', 1024);
    await archive(prefix, file.path);
    const probes = server.requests.filter((request) => request.key.startsWith(`${prefix}/walvault-s3-probe/`));
    expect(probes.map((request) => `${request.method} ${request.outcome}`)).toEqual(['PUT forwarded', 'PUT 412', 'DELETE forwarded']);
    server.resetRequests();
    const later = await randomFile(work.dir, 'probe-later', 1024);
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), later.path, '000000010000000000000002']);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(server.requests.some((request) => request.key.includes('walvault-s3-probe/'))).toBe(false);
    expect(server.requests.filter((request) => request.key === `${prefix}/${PROBE_RECORD_KEY}`).map((request) => request.method)).toEqual(['GET']);
  });

  const probeRecord = async (prefix: string): Promise<{ version?: number; ifNoneMatch?: string } | null> => {
    const raw = await getRaw(server, `${prefix}/${PROBE_RECORD_KEY}`);
    return raw === null ? null : (JSON.parse(raw.body.toString()) as { version?: number; ifNoneMatch?: string });
  };
  const PROBE_KEYS = 'walvault-s3-probe/';

  it('auto mode: an unrelated 400 on the first probe write (the same write without the header fails too) fails the archive and records nothing; the next archive probes again', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'probe-400', 1024);
    server.inject({ fault: { type: 'status', status: 400, code: 'InvalidRequest', message: 'a policy refuses this request' }, match: { method: 'PUT', key: PROBE_KEYS }, times: 2 });
    const failure = await archive(prefix, file.path).catch((error: unknown) => error);
    expect((failure as WalvaultError).kind).toBe('backend');
    expect((failure as WalvaultError).message).toContain('InvalidRequest (HTTP 400): a policy refuses this request');
    expect(await probeRecord(prefix)).toBeNull();
    const { result, log } = await archive(prefix, file.path);
    expect(result.outcome).toBe('archived');
    expect(await probeRecord(prefix)).toMatchObject({ version: 2, ifNoneMatch: 'enforced' });
    expect(log.lines.filter((line) => line.startsWith('warning:'))).toEqual([]);
  });

  it('auto mode: a transient 503 on the first probe write is retried, never recorded as a downgrade', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'probe-503', 1024);
    server.inject({ fault: faults.slowDown(), match: { method: 'PUT', key: PROBE_KEYS } });
    const { result } = await archive(prefix, file.path);
    expect(result.outcome).toBe('archived');
    expect(await probeRecord(prefix)).toMatchObject({ version: 2, ifNoneMatch: 'enforced' });
  });

  it('auto mode: a store refusing the header (400) but accepting the same write without it is recorded as "rejected", with the warning', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'probe-rejected', 1024);
    server.inject({ fault: { type: 'status', status: 400, code: 'InvalidArgument', message: 'If-None-Match is not supported' }, match: { method: 'PUT', key: PROBE_KEYS } });
    const { result, log } = await archive(prefix, file.path);
    expect(result.outcome).toBe('archived');
    expect(await probeRecord(prefix)).toMatchObject({ version: 2, ifNoneMatch: 'rejected' });
    expect(log.lines.some((line) => line.startsWith('warning: s3: the store at') && line.includes('rejects If-None-Match') && line.includes('HINT:'))).toBe(true);
  });

  it('auto mode: a record of an older probe (version 1, which trusted multipart completes) is probed again', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'probe-v1', 1024);
    await putRaw(server, `${prefix}/${PROBE_RECORD_KEY}`, Buffer.from(JSON.stringify({ version: 1, ifNoneMatch: 'rejected' })));
    const { log } = await archive(prefix, file.path);
    expect(server.requests.filter((request) => request.key.startsWith(`${prefix}/${PROBE_KEYS}`)).map((request) => `${request.method} ${request.outcome}`)).toEqual([
      'PUT forwarded',
      'PUT 412',
      'DELETE forwarded',
    ]);
    expect(await probeRecord(prefix)).toMatchObject({ version: 2, ifNoneMatch: 'enforced' });
    expect(log.lines.filter((line) => line.startsWith('warning:'))).toEqual([]);
  });

  it('--s3-conditional-writes=on against a store that refuses the header fails with a hint to use auto or off', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'unsupported', 1024);
    server.inject({ fault: faults.notImplemented(), match: { method: 'PUT', key: SEGMENT } });
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 5 });
    expect(result.stderr).toContain('the store does not support conditional writes (If-None-Match: *), answering NotImplemented');
    expect(result.stderr).toContain('HINT: use --s3-conditional-writes=auto');
  });

  it('--s3-conditional-writes=off looks the name up first and never sends If-None-Match', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'off', 1024);
    const backend = s3Backend(server, prefix, { conditionalWrites: 'off' });
    const ctx = { signal: new AbortController().signal };
    const meta = { contentHash: await hashBuffer(file.data), contentSize: file.data.length, codec: 'none', encryption: 'none' };
    expect(await backend.putIfAbsent('wal/x', Readable.from([file.data]), meta, ctx)).toEqual({ created: true });
    expect(await backend.putIfAbsent('wal/x', Readable.from([Buffer.from('other')]), meta, ctx)).toEqual({ created: false });
    expect(server.requests.map((request) => `${request.method} ${request.ifNoneMatch ?? '-'}`)).toEqual(['HEAD -', 'PUT -', 'HEAD -']);
  });

  it('a 409 ConditionalRequestConflict whose competitor has landed counts as "already exists"', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'conflict', 1024);
    await archive(prefix, file.path);
    server.resetRequests();
    server.inject({ fault: faults.conditionalConflict(), match: { method: 'PUT', key: SEGMENT } });
    const { result } = await archive(prefix, file.path);
    expect(result.outcome).toBe('already-archived');
    expect(requestsFor(segmentKey(prefix, SEGMENT)).map((request) => `${request.method} ${request.outcome}`)).toEqual(['PUT 409', 'HEAD forwarded', 'HEAD forwarded']);
  });
});

describe('configuration', () => {
  it('options from WALVAULT_* variables and a --config file reach the S3 backend', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'env-config', 1024);
    const config = `${work.dir}/walvault.json`;
    await fs.writeFile(config, JSON.stringify({ 's3-conditional-writes': 'off', 's3-force-path-style': true }));
    const result = await runCli('walvault-archive', [`--config=${config}`, file.path, SEGMENT], {
      env: { WALVAULT_REPO: `s3://${server.bucket}/${prefix}`, WALVAULT_S3_ENDPOINT: server.endpoint },
    });
    expect(result, result.stderr).toMatchObject({ code: 0 });
    // off: a look-up, then a write without If-None-Match; no probe
    expect(requestsFor(segmentKey(prefix, SEGMENT)).map((request) => `${request.method} ${request.ifNoneMatch ?? '-'}`)).toEqual(['HEAD -', 'PUT -']);
  });

  it('the AWS SDK environment (AWS_ENDPOINT_URL_S3, AWS_REGION) works without any --s3-* flag', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'aws-env', 1024);
    const result = await runCli('walvault-archive', [`--repo=s3://${server.bucket}/${prefix}`, file.path, SEGMENT], {
      // An IP-address endpoint makes the SDK use path-style URLs by itself.
      env: { AWS_ENDPOINT_URL_S3: server.endpoint, AWS_REGION: 'eu-central-1' },
    });
    // One info line and nothing else: no SDK warnings on stderr (PostgreSQL's log).
    expect(result.stderr.split('\n').filter((line) => line !== '')).toHaveLength(1);
    expect(result.stderr).toContain(`walvault-archive: info: archived "${SEGMENT}" to "s3://${server.bucket}/${segmentKey(prefix, SEGMENT)}" (1024 bytes, `);
    expect(result, result.stderr).toMatchObject({ code: 0 });
  });

  it('an unknown --s3-conditional-writes value is a usage error (exit 2) before touching the store', async () => {
    const file = await randomFile(work.dir, 'bad-mode', 1024);
    const result = await runCli('walvault-archive', [...s3Flags(server, freshPrefix()), '--s3-conditional-writes=sometimes', file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 2 });
    expect(result.stderr).toContain('s3-conditional-writes');
    expect(server.requests).toEqual([]);
  });
});

describe('transient failures and deadlines', () => {
  it('500 InternalError twice, then success: archived after three attempts', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'retry500', 50 * 1024);
    server.inject({ fault: faults.internalError(), match: { method: 'PUT', key: SEGMENT }, times: 2 });
    const { result } = await archive(prefix, file.path);
    expect(result.outcome).toBe('archived');
    expect(requestsFor(segmentKey(prefix, SEGMENT)).map((request) => request.outcome)).toEqual(['500', '500', 'forwarded']);
    expect((await getRaw(server, segmentKey(prefix, SEGMENT)))?.body.equals(file.data)).toBe(true);
  });

  it('503 SlowDown, then success', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'slowdown', 50 * 1024);
    server.inject({ fault: faults.slowDown(), match: { method: 'PUT', key: SEGMENT } });
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(requestsFor(segmentKey(prefix, SEGMENT)).map((request) => request.outcome)).toEqual(['503', 'forwarded']);
  });

  it('a dropped connection, then success', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'drop', 50 * 1024);
    server.inject({ fault: faults.drop(), match: { method: 'PUT', key: SEGMENT } });
    const { result } = await archive(prefix, file.path);
    expect(result.outcome).toBe('archived');
    expect(requestsFor(segmentKey(prefix, SEGMENT)).map((request) => request.outcome)).toEqual(['drop', 'forwarded']);
  });

  it('when every attempt fails transiently, the policy keeps retrying within --timeout and then exits 5 or 6 (not a hang, not above 125)', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'always500', 1024);
    server.inject({ fault: faults.internalError(), match: { method: 'PUT', key: SEGMENT }, times: 1000 });
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', '--timeout=3', file.path, SEGMENT]);
    // 5 when the last failure ends the retries, 6 when the deadline cuts an attempt in flight: both are right.
    expect([5, 6], result.stderr).toContain(result.code);
    expect(result.stderr).toContain('failed (InternalError, HTTP 500');
    expect(result.stderr).toContain('retrying in');
    // Tells --timeout=3 from the 60 s default, with room for a loaded machine.
    expect(result.durationMs).toBeLessThan(30_000);
    expect(requestsFor(segmentKey(prefix, SEGMENT)).length).toBeGreaterThan(3);
  });

  it('a request stalled longer than --s3-request-timeout on every attempt fails as a timeout (exit 6)', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'stall', 1024);
    server.inject({ fault: faults.stall(300_000), match: { method: 'PUT', key: SEGMENT }, times: 1000 });
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', '--s3-request-timeout=300', '--s3-max-attempts=2', '--timeout=2', file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 6 });
    expect(result.stderr).toMatch(/did not (answer in time|finish within 2 s)/);
    // The stall lasts 300 s: well under the 60 s default means a deadline cut it, with room for a loaded machine.
    expect(result.durationMs).toBeLessThan(30_000);
  });

  it('a stall longer than the whole --timeout ends at the deadline with exit 6', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'stall-deadline', 1024);
    server.inject({ fault: faults.stall(300_000), match: { method: 'PUT', key: SEGMENT }, times: 10 });
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', '--timeout=1.5', file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 6 });
    expect(result.stderr).toContain(`archiving "${SEGMENT}" did not finish within 1.5 s`);
    // The stall lasts 300 s: well under the 60 s default means the deadline cut it, with room for a loaded machine.
    expect(result.durationMs).toBeLessThan(30_000);
  });
});

describe('permanent failures fail fast', () => {
  it('a missing bucket: exit 5 after one request, naming the bucket and the fix', async () => {
    const file = await randomFile(work.dir, 'nobucket', 1024);
    const result = await runCli('walvault-archive', [`--repo=s3://no-such-bucket-here/x`, `--s3-endpoint=${server.endpoint}`, '--s3-force-path-style', '--s3-conditional-writes=on', file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 5 });
    expect(result.stderr).toContain('bucket "no-such-bucket-here" does not exist');
    expect(result.stderr).toContain('HINT: create the bucket, or fix the bucket name in --repo');
    expect(server.requests.filter((request) => request.bucket === 'no-such-bucket-here')).toHaveLength(1);
  });

  it('403 AccessDenied: exit 5 after one request, with the IAM permissions in the hint', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'denied', 1024);
    server.inject({ fault: faults.accessDenied(), match: { method: 'PUT', key: SEGMENT }, times: 10 });
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 5 });
    expect(result.stderr).toContain(`access denied to bucket "${server.bucket}" (AccessDenied)`);
    expect(result.stderr).toContain('s3:PutObject, s3:GetObject, s3:ListBucket');
    expect(requestsFor(segmentKey(prefix, SEGMENT))).toHaveLength(1);
  });

  it('an unknown access key (InvalidAccessKeyId): exit 5 after one request, pointing at the credential chain', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'badkey', 1024);
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', file.path, SEGMENT], {
      env: { AWS_ACCESS_KEY_ID: 'NOT-A-KEY', AWS_SECRET_ACCESS_KEY: 'wrong' },
    });
    expect(result, result.stderr).toMatchObject({ code: 5 });
    expect(result.stderr).toContain('the credentials were refused by');
    expect(result.stderr).toContain('(InvalidAccessKeyId)');
    expect(result.stderr).toContain('HINT: walvault takes credentials only from the AWS SDK default chain');
    expect(requestsFor(segmentKey(prefix, SEGMENT))).toHaveLength(1);
  });

  it('no credentials at all: exit 5 naming the default chain, never a prompt for flags', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'nocreds', 1024);
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', '--timeout=10', file.path, SEGMENT], {
      env: { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_CONFIG_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true' },
    });
    expect(result, result.stderr).toMatchObject({ code: 5 });
    expect(result.stderr).toContain('AWS SDK default chain');
  });
});

/** A CRC32 the way x-amz-checksum-crc32 carries it. */
function crc32Header(data: Buffer): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc32(data));
  return bytes.toString('base64');
}

describe('uploads streamed from the file', () => {
  const memoryBodyBytes = 256 * 1024;

  it('one PutObject carries the CRC32 of a scan beforehand (no aws-chunked framing) and the store keeps the exact bytes', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'streamed', 3 * 1024 * 1024 + 5);
    const { result } = await archive(prefix, file.path);
    expect(result.outcome).toBe('archived');
    const puts = requestsFor(segmentKey(prefix, SEGMENT)).filter((request) => request.method === 'PUT');
    // The proxy checks the CRC32 against the body, as S3 does, and would have answered 400 BadDigest.
    expect(puts).toMatchObject([{ checksumCrc32: crc32Header(file.data), contentEncoding: undefined, outcome: 'forwarded' }]);
    const stored = await getRaw(server, segmentKey(prefix, SEGMENT));
    expect(stored?.body.equals(file.data)).toBe(true);
    expect(stored?.metadata['walvault-content-hash']).toBe(await hashBuffer(file.data));
  });

  it('a file above the memory threshold still goes in one conditional PutObject with its whole CRC32, never in parts', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'streamed-large', 4 * memoryBodyBytes + 100);
    await archive(prefix, file.path, { backend: { memoryBodyBytes } });
    const requests = requestsFor(segmentKey(prefix, SEGMENT));
    expect(requests.filter((request) => request.method === 'POST' || request.query.includes('partNumber=') || request.query.includes('uploads'))).toEqual([]);
    expect(requests.filter((request) => request.method === 'PUT')).toMatchObject([{ checksumCrc32: crc32Header(file.data), contentEncoding: undefined, ifNoneMatch: '*', outcome: 'forwarded' }]);
    expect((await getRaw(server, segmentKey(prefix, SEGMENT)))?.body.equals(file.data)).toBe(true);
  });

  it('the file changing between the scan and the upload: the request is abandoned before its last byte, nothing is stored, a source error', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'changing', 3 * 1024 * 1024);
    const changed = Buffer.from(file.data);
    changed.writeUInt8(changed.readUInt8(changed.length - 10) ^ 0xff, changed.length - 10);
    const failure = await archive(prefix, file.path, { beforeUpload: () => fs.writeFile(file.path, changed) }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(WalvaultError);
    expect((failure as WalvaultError).kind).toBe('source');
    expect((failure as WalvaultError).message).toContain('changed while it was being archived');
    // The proxy reads a checksummed body whole before forwarding it: the client gave up before the end
    // (the proxy notices the closed connection a moment later).
    await vi.waitFor(() => {
      expect(requestsFor(segmentKey(prefix, SEGMENT)).filter((request) => request.method === 'PUT').map((request) => request.outcome)).toEqual(['incomplete']);
    });
    expect(await getRaw(server, segmentKey(prefix, SEGMENT))).toBeNull();
  });

  it('the file growing after the scan: nothing is stored', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'growing', 1024 * 1024);
    const failure = await archive(prefix, file.path, { beforeUpload: () => fs.appendFile(file.path, 'more') }).catch((error: unknown) => error);
    expect((failure as WalvaultError).kind).toBe('source');
    expect(await getRaw(server, segmentKey(prefix, SEGMENT))).toBeNull();
  });

  it('a store refusing the checksum (400 BadDigest) fails the archive and stores nothing', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'bad-digest', 64 * 1024);
    server.inject({ fault: { type: 'status', status: 400, code: 'BadDigest', message: 'The CRC32 you specified did not match the calculated checksum.' }, match: { method: 'PUT', key: SEGMENT } });
    const failure = await archive(prefix, file.path).catch((error: unknown) => error);
    expect((failure as WalvaultError).kind).toBe('backend');
    expect((failure as WalvaultError).message).toContain('BadDigest');
    expect(await getRaw(server, segmentKey(prefix, SEGMENT))).toBeNull();
  });
});

describe('bodies above the memory threshold: one conditional PutObject each', () => {
  const memoryBodyBytes = 256 * 1024;
  const meta = (size: number): ObjectMeta => ({ contentHash: '0000000000000000', contentSize: size, codec: 'zstd', encryption: 'none' });
  const ctx = (): { signal: AbortSignal } => ({ signal: new AbortController().signal });

  it('a streamed (encoded) body is spooled, sent in one PutObject with its CRC32 and If-None-Match, and comes back byte for byte', async () => {
    const prefix = freshPrefix();
    const data = crypto.randomBytes(4 * memoryBodyBytes + 1234);
    const backend = s3Backend(server, prefix, { memoryBodyBytes, conditionalWrites: 'on' });
    const body = Readable.from((function* () {
      for (let offset = 0; offset < data.length; offset += 10_000) yield data.subarray(offset, offset + 10_000);
    })());
    expect(await backend.putIfAbsent('wal/spooled', body, meta(data.length), ctx())).toEqual({ created: true });
    const requests = requestsFor(`${prefix}/wal/spooled`);
    expect(requests.filter((request) => request.method === 'POST' || request.query.includes('partNumber='))).toEqual([]);
    expect(requests.filter((request) => request.method === 'PUT')).toMatchObject([{ checksumCrc32: crc32Header(data), contentEncoding: undefined, ifNoneMatch: '*', outcome: 'forwarded' }]);
    expect((await getRaw(server, `${prefix}/wal/spooled`))?.body.equals(data)).toBe(true);
    // The spool file was unlinked when it was opened: nothing of it is left in the temp directory.
    expect((await fs.readdir(os.tmpdir())).filter((name) => name.startsWith(`walvault-s3-spool-${process.pid}-`))).toEqual([]);
  });

  it('a streamed body whose name exists is read to its end, not sent: one HEAD, no PUT', async () => {
    const prefix = freshPrefix();
    const data = crypto.randomBytes(3 * memoryBodyBytes);
    const backend = s3Backend(server, prefix, { memoryBodyBytes, conditionalWrites: 'on' });
    expect(await backend.putIfAbsent('wal/again', Readable.from([data]), meta(data.length), ctx())).toEqual({ created: true });
    server.resetRequests();
    let consumed = 0;
    const body = Readable.from((function* () {
      for (let offset = 0; offset < data.length; offset += 10_000) {
        consumed += Math.min(10_000, data.length - offset);
        yield data.subarray(offset, offset + 10_000);
      }
    })());
    expect(await backend.putIfAbsent('wal/again', body, meta(data.length), ctx())).toEqual({ created: false });
    expect(consumed).toBe(data.length);
    expect(requestsFor(`${prefix}/wal/again`).map((request) => request.method)).toEqual(['HEAD']);
  });

  it('a temp directory that cannot take the spool: exit 5 naming it, with the fix, and nothing stored', async () => {
    const prefix = freshPrefix();
    const backend = s3Backend(server, prefix, { memoryBodyBytes, conditionalWrites: 'on' });
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = `${work.dir}/no-such-dir`;
    try {
      const failure = await backend.putIfAbsent('wal/unspooled', Readable.from([crypto.randomBytes(2 * memoryBodyBytes)]), meta(2 * memoryBodyBytes), ctx()).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(WalvaultError);
      expect((failure as WalvaultError).kind).toBe('backend');
      expect((failure as WalvaultError).message).toMatch(new RegExp(`^could not spool "s3://[^"]+/wal/unspooled" to the temp directory "${work.dir}/no-such-dir": ENOENT`));
      expect((failure as WalvaultError).hint).toContain('point TMPDIR elsewhere');
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
    expect(await getRaw(server, `${prefix}/wal/unspooled`)).toBeNull();
  });

  it('re-archiving an identical large segment is recognised by one HEAD and nothing is uploaded again', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'large-again', 3 * memoryBodyBytes + 7);
    expect((await archive(prefix, file.path, { backend: { memoryBodyBytes } })).result.outcome).toBe('archived');
    server.resetRequests();
    const again = await archive(prefix, file.path, { backend: { memoryBodyBytes } });
    expect(again.result.outcome).toBe('already-archived');
    expect(requestsFor(segmentKey(prefix, SEGMENT)).map((request) => request.method)).toEqual(['HEAD', 'HEAD']);
  });

  it('the deadline passing mid-upload: exit 6, no object', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, 'large-stall', 3 * memoryBodyBytes);
    server.inject({ fault: faults.stall(30_000), match: { method: 'PUT', key: SEGMENT }, times: 100 });
    const failure = await archive(prefix, file.path, { timeoutMs: 1500, backend: { memoryBodyBytes } }).catch((error: unknown) => error);
    expect((failure as WalvaultError).kind).toBe('timeout');
    expect(await getRaw(server, segmentKey(prefix, SEGMENT))).toBeNull();
  });

  it('two servers racing large uploads of different content: exactly one wins, the loser is refused by the conditional PUT', async () => {
    const prefix = freshPrefix();
    const a = await randomFile(work.dir, 'race-a', 3 * memoryBodyBytes);
    const b = await randomFile(work.dir, 'race-b', 3 * memoryBodyBytes);
    // Both PUTs wait until both archivers have looked the name up.
    server.inject({ fault: faults.delay(800), match: { method: 'PUT', key: SEGMENT }, times: 2 });
    // Conditional writes on, not probed: two first-time probes would PUT the probe record at once, and
    // s3rver's file store crashes on concurrent PUTs of one key (an unhandled ENOENT in its WriteStream).
    const backend = { memoryBodyBytes, conditionalWrites: 'on' } as const;
    const results = await Promise.allSettled([archive(prefix, a.path, { backend }), archive(prefix, b.path, { backend })]);
    const archived = results.filter((result) => result.status === 'fulfilled');
    const refused = results.filter((result) => result.status === 'rejected');
    expect(archived).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(((refused[0] as PromiseRejectedResult).reason as WalvaultError).kind).toBe('mismatch');
    const key = segmentKey(prefix, SEGMENT);
    const winner = results[0]?.status === 'fulfilled' ? a : b;
    expect((await getRaw(server, key))?.body.equals(winner.data)).toBe(true);
    const puts = requestsFor(key).filter((request) => request.method === 'PUT');
    expect(puts.map((request) => request.outcome).sort()).toEqual(['412', 'forwarded']);
  });

  it('memory stays bounded: 96 MiB streamed (spooled above 1 MiB) never sits in memory whole', async () => {
    // Bare endpoint: the proxy runs in this process and its buffers would count too. Memory is read
    // each time the body hands over its next block (not on a timer, which a loaded machine delays):
    // a backend that collected the whole body would pass 64 MiB before the last blocks are asked for.
    const backend = s3Backend(server, freshPrefix(), { memoryBodyBytes: 1024 * 1024, conditionalWrites: 'off', bare: true });
    const block = Buffer.alloc(256 * 1024, 0x42);
    const total = 96 * 1024 * 1024;
    const baseline = process.memoryUsage().arrayBuffers;
    let peak = 0;
    let blocks = 0;
    const body = Readable.from((function* () {
      for (let sent = 0; sent < total; sent += block.length) {
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - baseline);
        blocks += 1;
        yield Buffer.from(block);
      }
    })());
    const meta = { contentHash: '0000000000000000', contentSize: total, codec: 'none', encryption: 'none' };
    expect(await backend.putIfAbsent('wal/big', body, meta, { signal: new AbortController().signal })).toEqual({ created: true });
    expect(blocks).toBe(total / block.length);
    const info = await backend.stat('wal/big', { signal: new AbortController().signal });
    expect(info.exists && info.storedSize).toBe(total);
    // Whole, it would be 96 MiB; bounded, it is the memory threshold plus chunks not yet collected.
    console.log(`peak arrayBuffers above baseline: ${(peak / 1048576).toFixed(1)} MiB`);
    expect(peak).toBeLessThan(64 * 1024 * 1024);
  });
});
