// Scenarios for walvault-restore, driven through the built executable as PostgreSQL would call it.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bin, run } from '../support/cli.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';

const SEGMENT = '000000010000000000000007';
const MiB = 1 << 20;

let temp: { dir: string; remove(): Promise<void> };
let dataDir: string;
let repo: string;
let content: Buffer;

beforeEach(async () => {
  temp = await makeTempDir();
  dataDir = path.join(temp.dir, 'data');
  repo = path.join(temp.dir, 'repo');
  await mkdir(dataDir);
  await mkdir(repo);
  content = pseudoRandomBytes(MiB, 'restore');
  const source = await writeWalFile(dataDir, SEGMENT, content);
  expect((await run('walvault-archive', [`--repo=${repo}`, source, SEGMENT], { cwd: dataDir })).code).toBe(0);
  await rm(path.join(dataDir, source));
});
afterEach(async () => {
  await temp.remove();
});

const restore = (name: string, extra: string[] = []) => run('walvault-restore', [`--repo=${repo}`, ...extra, name, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
const storedPath = (name: string) => path.join(repo, 'wal', name.slice(0, 16), name);
const target = () => path.join(dataDir, 'pg_wal', 'RECOVERYXLOG');
// pg_wal's entries but the spool (walvault), where the archive call of beforeEach recorded its outcome for walvault status.
const pgWalEntries = async () => (await readdir(path.join(dataDir, 'pg_wal'))).filter((name) => name !== 'walvault').sort();

/** Flips one byte of the stored copy, as bit rot or a bad disk would. */
async function corruptStored(offset: number): Promise<void> {
  const stored = await readFile(storedPath(SEGMENT));
  stored[offset] = (stored[offset] ?? 0) ^ 0x01;
  await writeFile(storedPath(SEGMENT), stored);
}

describe('walvault-restore', () => {
  it('puts the complete, verified file at %p and exits 0', async () => {
    const result = await restore(SEGMENT);
    expect(result.code).toBe(0);
    expect((await readFile(target())).equals(content)).toBe(true);
    expect(result.stderr).toMatch(new RegExp(`info: restored "${SEGMENT}" from ".*" to "pg_wal/RECOVERYXLOG" \\(1048576 bytes, \\d+ ms\\)\\n$`));
    expect(await pgWalEntries()).toEqual(['RECOVERYXLOG']);
  });

  it('replaces a leftover file at %p (the server reuses RECOVERYXLOG)', async () => {
    await writeFile(target(), 'old contents');
    expect((await restore(SEGMENT)).code).toBe(0);
    expect((await readFile(target())).equals(content)).toBe(true);
  });

  it('exits exactly 1 with one quiet line when the file is not archived (the normal end of recovery)', async () => {
    const result = await restore('00000002.history');
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`walvault-restore: info: "00000002.history" not found in "${path.join(repo, 'wal', '00000002.history')}"\n`);
    expect(await pgWalEntries()).toEqual([]);
    expect((await restore('000000010000000000000008', ['--quiet'])).stderr).toBe('');
  });

  it('stops archive recovery (exit 128) on a corrupt object instead of reporting "not found", writing nothing', async () => {
    await corruptStored(4242);
    await writeFile(path.join(dataDir, 'recovery.signal'), '');
    const result = await restore(SEGMENT);
    expect(result.code).toBe(128);
    expect(result.stderr).toContain(`error: archived "${SEGMENT}" at "${storedPath(SEGMENT)}" is corrupt: content hash`);
    expect(result.stderr).toContain('stopping recovery (--on-error=abort) so it cannot end early at the wrong point');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(await pgWalEntries()).toEqual([]);
  });

  it('reports "not available" (exit 1) loudly in standby mode, where the server retries', async () => {
    await corruptStored(10);
    await writeFile(path.join(dataDir, 'standby.signal'), '');
    const result = await restore(SEGMENT);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/walvault-restore: error: archived ".*" is corrupt: .*reporting "not available" to PostgreSQL \(--on-error=missing\)/);
    expect(existsSync(target())).toBe(false);
  });

  it('follows an explicit --on-error over the signal files', async () => {
    await corruptStored(10);
    await writeFile(path.join(dataDir, 'standby.signal'), '');
    expect((await restore(SEGMENT, ['--on-error=abort'])).code).toBe(128);
    await rm(path.join(dataDir, 'standby.signal'));
    await writeFile(path.join(dataDir, 'recovery.signal'), '');
    expect((await restore(SEGMENT, ['--on-error=missing'])).code).toBe(1);
  });

  it('stops archive recovery when the repository is unreachable, and even on a bad option', async () => {
    await writeFile(path.join(dataDir, 'recovery.signal'), '');
    const unreachable = await run('walvault-restore', [`--repo=${repo}-gone`, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(unreachable.code).toBe(128);
    expect(unreachable.stderr).toContain(`repository directory "${repo}-gone" does not exist; stopping recovery`);
    const typo = await run('walvault-restore', [`--repo=${repo}`, '--on-eror=missing', SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(typo.code).toBe(128);
    expect(typo.stderr).toContain('unknown option "--on-eror"');
  });

  it('restores objects archived by other tools (no recorded hash), saying it could not verify them', async () => {
    const foreign = '000000010000000000000009';
    await mkdir(path.dirname(storedPath(foreign)), { recursive: true });
    await writeFile(storedPath(foreign), content);
    const result = await restore(foreign);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(', no recorded hash to verify)');
    expect((await readFile(target())).equals(content)).toBe(true);
  });

  it('never leaves a partial file at %p when killed -9 mid-copy', async () => {
    const big = '00000001000000000000000A';
    await copyFile(storedPath(SEGMENT), path.join(dataDir, 'big'));
    await writeFile(path.join(dataDir, 'big'), Buffer.alloc(256 * MiB, 3));
    expect((await run('walvault-archive', [`--repo=${repo}`, 'big', big], { cwd: dataDir })).code).toBe(0);
    const child = spawn(bin('walvault-restore'), [`--repo=${repo}`, big, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, stdio: 'ignore', detached: true });
    let started = false;
    for (let tries = 0; tries < 3000 && !started; tries += 1) {
      started = (await pgWalEntries()).includes('.RECOVERYXLOG~walvault');
      if (!started) await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(started).toBe(true);
    const closed = new Promise((resolve) => child.on('close', resolve));
    process.kill(-(child.pid ?? 0), 'SIGKILL');
    await closed;
    expect(existsSync(target())).toBe(false);
    const retry = await restore(big);
    expect(retry.code).toBe(0);
    expect((await readFile(target())).length).toBe(256 * MiB);
    expect(await pgWalEntries()).toEqual(['RECOVERYXLOG']);
  });

  it('gives up within --timeout when the storage hangs, following --on-error', async () => {
    await rm(`${storedPath(SEGMENT)}~meta`);
    execFileSync('mkfifo', [`${storedPath(SEGMENT)}~meta`]);
    await writeFile(path.join(dataDir, 'recovery.signal'), '');
    const started = Date.now();
    const result = await restore(SEGMENT, ['--timeout=1']);
    expect(result.code).toBe(128);
    expect(result.stderr).toContain(`restoring "${SEGMENT}" did not finish within 1 s; stopping recovery`);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    // The bound only has to tell --timeout=1 from the 60 s default (and from a hang), with room for a loaded machine.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(existsSync(target())).toBe(false);
  });

  it('refuses a bad name without touching storage', async () => {
    const result = await restore('../../etc/passwd', ['--on-error=missing']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('invalid WAL file name "../../etc/passwd"');
  });
});
