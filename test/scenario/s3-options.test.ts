// S3 options seen where they act: --s3-storage-class and --s3-sse(-kms-key-id) as headers of the real
// requests, --s3-max-attempts in how the retries split between the SDK and walvault, restore's
// --parallel in the GETs the prefetcher keeps open at once, and restore's
// answer to a GET refused with 403 (an error, never "not found") and to bytes changed in transit.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { getRaw, randomFile, runCli, s3Flags, segmentKey, useS3Scenario } from '../support/s3scenario.js';
import { faults, type S3TestServer } from '../support/s3server.js';
import { killWorker } from '../support/spool.js';

let server: S3TestServer;
let work: { dir: string; remove(): Promise<void> };
let counter = 0;
const freshPrefix = (): string => `options-${counter++}`;
const SEGMENT = '000000010000000000000007';

useS3Scenario({ resetEachTest: true, bind: (scenario) => ({ server, work } = scenario) });

/** The requests that wrote the segment's object (PutObject; the probe's scratch objects are elsewhere). */
const segmentPuts = (prefix: string) => server.requests.filter((request) => request.method === 'PUT' && request.key === segmentKey(prefix, SEGMENT));

describe('S3 write options reach the store as request headers', () => {
  it('--s3-storage-class and --s3-sse=AES256 are sent with the PutObject of the segment', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, `class-${counter}`, 64 * 1024);
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', '--s3-storage-class=STANDARD_IA', '--s3-sse=AES256', file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    const puts = segmentPuts(prefix);
    expect(puts).toHaveLength(1);
    expect(puts[0]!.headers['x-amz-storage-class']).toBe('STANDARD_IA');
    expect(puts[0]!.headers['x-amz-server-side-encryption']).toBe('AES256');
    expect(puts[0]!.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBeUndefined();
  });

  it('--s3-sse=aws:kms with --s3-sse-kms-key-id sends both headers', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, `kms-${counter}`, 64 * 1024);
    const keyId = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', '--s3-sse=aws:kms', `--s3-sse-kms-key-id=${keyId}`, file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    const puts = segmentPuts(prefix);
    expect(puts).toHaveLength(1);
    expect(puts[0]!.headers['x-amz-server-side-encryption']).toBe('aws:kms');
    expect(puts[0]!.headers['x-amz-server-side-encryption-aws-kms-key-id']).toBe(keyId);
    expect(puts[0]!.headers['x-amz-storage-class']).toBeUndefined();
  });

  it('without the options no such header is sent', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, `plain-${counter}`, 1024);
    expect((await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', file.path, SEGMENT])).code).toBe(0);
    const headers = Object.keys(segmentPuts(prefix)[0]?.headers ?? {});
    expect(headers).toContain('x-amz-checksum-crc32');
    expect(headers.filter((name) => name.startsWith('x-amz-storage-class') || name.startsWith('x-amz-server-side-encryption'))).toEqual([]);
  });
});

describe('--s3-max-attempts', () => {
  // Two 500s, then success. With 3 attempts per request the SDK absorbs both: walvault sees one
  // successful call and logs nothing. With 1 the SDK gives up at once, and walvault's own retries
  // (each logged "(attempt N, retrying in D ms)") carry the archive through.
  it.each([
    [3, 0],
    [1, 2],
  ])('--s3-max-attempts=%i: two 500s then success; walvault itself retries %i times', async (maxAttempts, walvaultRetries) => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, `attempts-${counter}`, 32 * 1024);
    server.inject({ fault: faults.internalError(), match: { method: 'PUT', key: SEGMENT }, times: 2 });
    const result = await runCli('walvault-archive', [...s3Flags(server, prefix), '--s3-conditional-writes=on', `--s3-max-attempts=${maxAttempts}`, file.path, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(segmentPuts(prefix).map((request) => request.outcome)).toEqual(['500', '500', 'forwarded']);
    expect(result.stderr.match(/retrying in \d+ ms/g) ?? []).toHaveLength(walvaultRetries);
    expect((await getRaw(server, segmentKey(prefix, SEGMENT)))?.body.equals(file.data)).toBe(true);
  });
});

describe('restore: a GET refused with 403', () => {
  /** Archives a segment, then makes every GET of it answer 403 AccessDenied. */
  async function deniedSegment(): Promise<{ prefix: string; target: string }> {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, `denied-${counter}`, 32 * 1024);
    expect((await runCli('walvault-archive', [...s3Flags(server, prefix), file.path, SEGMENT])).code).toBe(0);
    server.inject({ fault: faults.accessDenied(), match: { method: 'GET', key: SEGMENT }, times: 100 });
    const dir = path.join(work.dir, `pg_wal-${counter++}`);
    await fs.mkdir(dir);
    return { prefix, target: path.join(dir, 'RECOVERYXLOG') };
  }

  it('stops recovery (exit 128 with --on-error=abort) naming access denied, never "not found", nothing at %p', async () => {
    const { prefix, target } = await deniedSegment();
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), '--prefetch=0', '--on-error=abort', SEGMENT, target]);
    expect(result.stderr).toMatch(/^walvault-restore: error: .*access denied.*\(AccessDenied\).*stopping recovery \(--on-error=abort\)/m);
    expect(result.stderr).not.toContain('not found');
    expect(result.code).toBe(128);
    expect(await fs.stat(target).then(() => true, () => false)).toBe(false);
  });

  it('with --on-error=missing: exit 1, but logged as an error, not as an ordinary "not found"', async () => {
    const { prefix, target } = await deniedSegment();
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), '--prefetch=0', '--on-error=missing', SEGMENT, target]);
    expect(result.stderr).toMatch(/^walvault-restore: error: .*\(AccessDenied\).*reporting "not available" to PostgreSQL \(--on-error=missing\)/m);
    expect(result.stderr).not.toContain('info: ');
    expect(result.code).toBe(1);
  });
});

describe('restore: a download whose bytes do not match the recorded hash', () => {
  it('one byte changed in transit (the stored object intact): refused as corrupt, exit 128, nothing at %p, never "not found"', async () => {
    const prefix = freshPrefix();
    const file = await randomFile(work.dir, `flip-${counter}`, 256 * 1024);
    expect((await runCli('walvault-archive', [...s3Flags(server, prefix), file.path, SEGMENT])).code).toBe(0);
    server.inject({ fault: { type: 'flip', atByte: 100_000 }, match: { method: 'GET', key: SEGMENT }, times: 100 });
    const dir = path.join(work.dir, `pg_wal-${counter++}`);
    await fs.mkdir(dir);
    const target = path.join(dir, 'RECOVERYXLOG');
    const result = await runCli('walvault-restore', [...s3Flags(server, prefix), '--prefetch=0', '--on-error=abort', SEGMENT, target]);
    expect(result.stderr).toMatch(/^walvault-restore: error: archived "000000010000000000000007" at ".*" is corrupt: content hash [0-9a-f]{16} \(262144 bytes\) does not match the recorded [0-9a-f]{16} \(262144 bytes\); stopping recovery/m);
    expect(result.stderr).not.toContain('not found');
    expect(result.code).toBe(128);
    expect(await fs.readdir(dir)).toEqual([]);
    // The store's copy is intact: the same restore succeeds once the transit fault is gone.
    server.clearFaults();
    const again = await runCli('walvault-restore', [...s3Flags(server, prefix), '--prefetch=0', '--on-error=abort', SEGMENT, target]);
    expect(again, again.stderr).toMatchObject({ code: 0 });
    expect((await fs.readFile(target)).equals(file.data)).toBe(true);
  });
});

describe('restore --parallel: how many files the prefetcher downloads at once', () => {
  // Each GET is held 1.5 s by the proxy, so downloads the prefetcher starts together overlap there;
  // the proxy counts how many it had open at once. The upper bound is the promise; the lower one
  // shows the option is not ignored (1.5 s is far more than starting three downloads takes).
  it.each([
    [1, 1, 1],
    [3, 2, 3],
  ])('--parallel=%i: at most %i..%i GETs in flight while it fills a window of 6', async (parallel, atLeast, atMost) => {
    const prefix = freshPrefix();
    const names = [1, 2, 3, 4, 5, 6, 7].map((n) => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`);
    for (const name of names) {
      // A valid segment size (1 MiB): the prefetcher only starts for segments.
      const file = await randomFile(work.dir, `parallel-${counter++}`, 1 << 20);
      expect((await runCli('walvault-archive', [...s3Flags(server, prefix), '--push-ahead=0', file.path, name])).code).toBe(0);
    }
    const dataDir = path.join(work.dir, `data-${counter++}`);
    await fs.mkdir(path.join(dataDir, 'pg_wal'), { recursive: true });
    await fs.writeFile(path.join(dataDir, 'recovery.signal'), '');
    // Prefetched files sit in restore.ID, ID the fingerprint of the options (src/policy/SPOOL.md).
    const spoolRoot = path.join(dataDir, 'pg_wal', 'walvault');
    const prefetched = async (): Promise<string[]> => {
      const folders = (await fs.readdir(spoolRoot).catch(() => [] as string[])).filter((name) => /^restore\.[0-9a-f]+$/.test(name));
      const lists = await Promise.all(folders.map((folder) => fs.readdir(path.join(spoolRoot, folder)).catch(() => [] as string[])));
      return lists.flat();
    };
    server.resetRequests();
    server.latencyMs = 1500;
    try {
      const first = await runCli('walvault-restore', [...s3Flags(server, prefix), '--prefetch=6', `--parallel=${parallel}`, names[0]!, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, waitFor: 'exit' });
      expect(first, first.stderr).toMatchObject({ code: 0 });
      // The window: the six segments after the first, all prefetched (bounded wait, generous for a loaded machine).
      const until = Date.now() + 120_000;
      let spooled: string[] = [];
      while (Date.now() < until) {
        spooled = (await prefetched()).filter((name) => names.includes(name)).sort();
        if (spooled.length === 6) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(spooled).toEqual(names.slice(1));
      expect(server.maxConcurrentGets).toBeGreaterThanOrEqual(atLeast);
      expect(server.maxConcurrentGets).toBeLessThanOrEqual(atMost);
    } finally {
      server.latencyMs = 0;
      await killWorker(path.join(dataDir, 'pg_wal', 'walvault'), 'restore').catch(() => undefined);
    }
  }, 300_000);
});
