// Restoring from S3 over real HTTP: "not found" in one GET, hash verification against corruption in
// the store, retries of cut-off downloads, and --on-error for failures other than "not found".
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Deadline } from '../../src/core/deadline.js';
import { WalvaultError } from '../../src/core/errors.js';
import { hashBuffer } from '../../src/core/hash.js';
import { restoreFile } from '../../src/policy/restore.js';
import { getRaw, memoryLogger, putRaw, randomFile, runCli, s3Backend, s3Flags, segmentKey, useS3Scenario } from '../support/s3scenario.js';
import { faults, type S3TestServer } from '../support/s3server.js';

let server: S3TestServer;
let work: { dir: string; remove(): Promise<void> };
let counter = 0;
const freshPrefix = (): string => `restore-${counter++}`;
const SEGMENT = '000000010000000000000003';

useS3Scenario({ resetEachTest: true, bind: (scenario) => ({ server, work } = scenario) });

/** Archives a random segment with the CLI; returns its bytes. */
async function archived(prefix: string, size = 300 * 1024): Promise<Buffer> {
  const file = await randomFile(work.dir, `src-${counter++}`, size);
  const result = await runCli('walvault-archive', [...s3Flags(server, prefix), file.path, SEGMENT]);
  expect(result, result.stderr).toMatchObject({ code: 0 });
  server.resetRequests();
  return file.data;
}

/** A fresh directory to restore into, like pg_wal. */
async function targetDir(): Promise<string> {
  await fs.mkdir(path.join(work.dir, 'pg_wal'), { recursive: true });
  const dir = path.join(work.dir, `pg_wal-${counter++}`);
  await fs.mkdir(dir);
  return dir;
}

const exists = (file: string): Promise<boolean> => fs.stat(file).then(() => true, () => false);

describe('restore from S3', () => {
  it('a found segment arrives complete at %p, verified against its recorded hash, with one GET', async () => {
    const prefix = freshPrefix();
    const data = await archived(prefix);
    await targetDir();
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: work.dir });
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stderr).toContain(`restored "${SEGMENT}" from "s3://${server.bucket}/${segmentKey(prefix, SEGMENT)}" to "pg_wal/RECOVERYXLOG"`);
    expect(result.stderr).not.toContain('no recorded hash');
    expect((await fs.readFile(path.join(work.dir, 'pg_wal/RECOVERYXLOG'))).equals(data)).toBe(true);
    expect(server.requests.map((request) => request.method)).toEqual(['GET']);
  });

  it('not in the archive: exit 1 after exactly one GET (no listing, no HEAD), nothing at %p', async () => {
    const prefix = freshPrefix();
    const dir = await targetDir();
    const target = path.join(dir, 'RECOVERYXLOG');
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), '--on-error=abort', '000000010000000000000042', target]);
    expect(result, result.stderr).toMatchObject({ code: 1 });
    expect(result.stderr.trim()).toBe(`walvault-restore: info: "000000010000000000000042" not found in "s3://${server.bucket}/${prefix}/wal/0000000100000000/000000010000000000000042"`);
    expect(server.requests.map((request) => `${request.method} ${request.key}${request.query}`)).toEqual([`GET ${prefix}/wal/0000000100000000/000000010000000000000042?x-id=GetObject`]);
    expect(await exists(target)).toBe(false);
  });

  it('an object corrupted inside the store fails as corrupt (exit 128 with --on-error=abort), nothing at %p', async () => {
    const prefix = freshPrefix();
    const data = await archived(prefix);
    const objectFile = server.objectFile(segmentKey(prefix, SEGMENT));
    const damaged = Buffer.from(data);
    damaged[1000] = (damaged[1000] ?? 0) ^ 0x01;
    await fs.writeFile(objectFile, damaged);
    const dir = await targetDir();
    const target = path.join(dir, 'RECOVERYXLOG');
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), '--on-error=abort', SEGMENT, target]);
    expect(result, result.stderr).toMatchObject({ code: 128 });
    expect(result.stderr).toContain(`archived "${SEGMENT}" at "s3://${server.bucket}/${segmentKey(prefix, SEGMENT)}" is corrupt: content hash ${await hashBuffer(damaged)}`);
    expect(result.stderr).toContain(`does not match the recorded ${await hashBuffer(data)}`);
    expect(result.stderr).toContain('stopping recovery (--on-error=abort)');
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('an object overwritten through bare s3rver by another tool (keeping the metadata) fails as corrupt, never reported as "not found"', async () => {
    const prefix = freshPrefix();
    await archived(prefix);
    const key = segmentKey(prefix, SEGMENT);
    const before = await getRaw(server, key);
    await putRaw(server, key, Buffer.alloc(300 * 1024, 0x11), before?.metadata);
    const dir = await targetDir();
    const log = memoryLogger();
    const deadline = new Deadline(10_000, 'restoring');
    const failure = await restoreFile({ backend: s3Backend(server, prefix), fileName: SEGMENT, targetPath: path.join(dir, 'RECOVERYXLOG'), decode: {}, onError: 'abort', deadline, log }).catch((error: unknown) => error);
    deadline.dispose();
    expect((failure as WalvaultError).kind).toBe('abort-recovery');
    expect(((failure as WalvaultError).cause as WalvaultError).kind).toBe('corrupt');
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('an object without walvault metadata (written by another tool) is restored, with the log saying it could not be verified', async () => {
    const prefix = freshPrefix();
    const data = Buffer.alloc(100 * 1024, 0x33);
    await putRaw(server, segmentKey(prefix, SEGMENT), data);
    const dir = await targetDir();
    const target = path.join(dir, 'RECOVERYXLOG');
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), SEGMENT, target]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stderr).toContain('no recorded hash to verify');
    expect((await fs.readFile(target)).equals(data)).toBe(true);
  });

  it('a download cut off midway is retried and the file at %p is complete', async () => {
    const prefix = freshPrefix();
    const data = await archived(prefix, 2 * 1024 * 1024);
    server.inject({ fault: faults.truncate(700 * 1024), match: { method: 'GET', key: SEGMENT } });
    const dir = await targetDir();
    const target = path.join(dir, 'RECOVERYXLOG');
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), '--on-error=abort', SEGMENT, target]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(result.stderr).toContain('retrying in');
    expect((await fs.readFile(target)).equals(data)).toBe(true);
    expect(server.requests.filter((request) => request.method === 'GET').map((request) => request.outcome)).toEqual(['truncate', 'forwarded']);
    expect((await fs.readdir(dir)).sort()).toEqual(['RECOVERYXLOG']);
  });

  it('503 SlowDown on the download is retried transparently', async () => {
    const prefix = freshPrefix();
    const data = await archived(prefix);
    server.inject({ fault: faults.slowDown(), match: { method: 'GET', key: SEGMENT }, times: 2 });
    const dir = await targetDir();
    const target = path.join(dir, 'RECOVERYXLOG');
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), SEGMENT, target]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect((await fs.readFile(target)).equals(data)).toBe(true);
  });

  it('the store unreachable for longer than --timeout: exit 128 with --on-error=abort, never "not found"', async () => {
    const prefix = freshPrefix();
    await archived(prefix);
    server.inject({ fault: faults.drop(), match: { method: 'GET', key: SEGMENT }, times: 1000 });
    const dir = await targetDir();
    const target = path.join(dir, 'RECOVERYXLOG');
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), '--on-error=abort', '--timeout=2', SEGMENT, target]);
    expect(result, result.stderr).toMatchObject({ code: 128 });
    expect(result.stderr).toContain('stopping recovery (--on-error=abort)');
    // Tells --timeout=2 from the 60 s default, with room for a loaded machine.
    expect(result.durationMs).toBeLessThan(30_000);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('a missing bucket during recovery: exit 128 (abort) naming the bucket, or exit 1 with --on-error=missing', async () => {
    const dir = await targetDir();
    const target = path.join(dir, 'RECOVERYXLOG');
    const flags = ['--repo=s3://walvault-gone/x', `--s3-endpoint=${server.endpoint}`, '--s3-force-path-style'];
    const abort = await runCli('walvault-restore', [...flags, '--on-error=abort', SEGMENT, target]);
    expect(abort, abort.stderr).toMatchObject({ code: 128 });
    expect(abort.stderr).toContain('bucket "walvault-gone" does not exist');
    expect(server.requests.filter((request) => request.bucket === 'walvault-gone')).toHaveLength(1);
    const missing = await runCli('walvault-restore', [...flags, '--on-error=missing', SEGMENT, target]);
    expect(missing, missing.stderr).toMatchObject({ code: 1 });
    expect(missing.stderr).toContain('reporting "not available" to PostgreSQL (--on-error=missing)');
  });
});
