// wal_segment_size can be 1 GiB: archive and restore must stream, never hold a segment in memory.
import { execFile } from 'node:child_process';
import { mkdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin } from '../support/cli.js';
import { startS3Server } from '../support/s3server.js';
import { s3Flags } from '../support/s3scenario.js';
import { makeTempDir } from '../support/tmp.js';
import { needTools } from '../support/tools.js';

const GiB = 1 << 30;
// A generous --timeout for each command (the default 60 s is for PostgreSQL's calls, not for a GiB
// through s3rver on a loaded machine), and a test timeout above the sum of its commands' deadlines.
const TIMEOUT = '--timeout=600';
const TEST_TIMEOUT_MS = 1_500_000;
const SEGMENT = '000000010000000000000001';
let temp: { dir: string; remove(): Promise<void> };

/** Runs a command under GNU time and returns its exit code and the peak RSS (KiB) of the largest process. */
async function measured(args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number; peakKiB: number; stderr: string }> {
  try {
    const { stderr } = await promisify(execFile)('/usr/bin/time', ['-f', 'peak=%M', ...args], { cwd, env: { ...process.env, ...env } });
    return { code: 0, peakKiB: Number(/peak=(\d+)/.exec(stderr)?.[1]), stderr };
  } catch (error) {
    const failure = error as { code: number; stderr: string };
    return { code: failure.code, peakKiB: Number(/peak=(\d+)/.exec(failure.stderr)?.[1]), stderr: failure.stderr };
  }
}

beforeAll(async () => {
  temp = await makeTempDir();
  await mkdir(path.join(temp.dir, 'repo'));
  await mkdir(path.join(temp.dir, 'pg_wal'));
  // Mostly zeros with real bytes at both ends and in the middle: the content check covers all of it.
  const handle = await open(path.join(temp.dir, 'pg_wal', SEGMENT), 'w');
  for (const offset of [0, GiB / 2, GiB - 4096]) await handle.write(Buffer.alloc(4096, 0xab), 0, 4096, offset);
  await handle.close();
});
afterAll(async () => {
  await temp?.remove();
});

describe('a 1 GiB segment', () => {
  it('is archived and restored byte for byte with peak memory below 100 MiB per process', async () => {
    needTools('/usr/bin/time');
    const archived = await measured([bin('walvault-archive'), `--repo=${temp.dir}/repo`, TIMEOUT, `pg_wal/${SEGMENT}`, SEGMENT], temp.dir);
    expect(archived.stderr).toContain(`archived "${SEGMENT}"`);
    expect(archived.code, archived.stderr).toBe(0);
    expect(archived.peakKiB).toBeLessThan(100 * 1024);
    const restored = await measured([bin('walvault-restore'), `--repo=${temp.dir}/repo`, TIMEOUT, SEGMENT, 'pg_wal/RECOVERYXLOG'], temp.dir);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.peakKiB).toBeLessThan(100 * 1024);
    expect((await stat(path.join(temp.dir, 'pg_wal', 'RECOVERYXLOG'))).size).toBe(GiB);
    // cmp exits 0 only when both files are identical.
    await promisify(execFile)('cmp', [path.join(temp.dir, 'pg_wal', SEGMENT), path.join(temp.dir, 'pg_wal', 'RECOVERYXLOG')]);
    process.stdout.write(`1 GiB segment: archive peak ${Math.round(archived.peakKiB / 1024)} MiB, restore peak ${Math.round(restored.peakKiB / 1024)} MiB\n`);
  }, TEST_TIMEOUT_MS);
});

describe('a 1 GiB segment on S3', () => {
  it('goes up in one PutObject streamed from the file and comes back byte for byte, each process below 100 MiB', async () => {
    needTools('/usr/bin/time');
    const server = await startS3Server();
    try {
      // Bare s3rver (it ignores If-None-Match, which the RGW tier covers): the proxy would hold the
      // checksummed 1 GiB body in this process to verify it.
      const flags = s3Flags(server, 'large', { bare: true });
      // No push-ahead, no prefetch: the measured process is the one doing the transfer.
      const archived = await measured([bin('walvault-archive'), ...flags, '--s3-conditional-writes=on', TIMEOUT, '--push-ahead=0', `pg_wal/${SEGMENT}`, SEGMENT], temp.dir, server.env);
      expect(archived.stderr).toContain(`archived "${SEGMENT}"`);
      expect(archived.code, archived.stderr).toBe(0);
      expect(archived.peakKiB).toBeLessThan(100 * 1024);
      const restored = await measured([bin('walvault-restore'), ...flags, TIMEOUT, '--prefetch=0', SEGMENT, 'pg_wal/RECOVERYXLOG.s3'], temp.dir, server.env);
      expect(restored.code, restored.stderr).toBe(0);
      expect(restored.peakKiB).toBeLessThan(100 * 1024);
      await promisify(execFile)('cmp', [path.join(temp.dir, 'pg_wal', SEGMENT), path.join(temp.dir, 'pg_wal', 'RECOVERYXLOG.s3')]);
      process.stdout.write(`1 GiB segment on S3: archive peak ${Math.round(archived.peakKiB / 1024)} MiB, restore peak ${Math.round(restored.peakKiB / 1024)} MiB\n`);
    } finally {
      await server.close();
    }
  }, TEST_TIMEOUT_MS);
});
