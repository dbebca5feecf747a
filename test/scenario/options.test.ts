// Options of walvault-archive and walvault-restore seen in their effect through the built executables:
// --dir-mode with a non-default value, --verbose (debug lines) against the default and --quiet.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../support/cli.js';
import { makeScenarioDirs, type ScenarioDirs } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';

const SEGMENT = '000000010000000000000004';
let temp: ScenarioDirs;

beforeEach(async () => {
  temp = await makeScenarioDirs();
});
afterEach(async () => {
  await temp.remove();
});

const archive = (source: string, extra: string[]) => run('walvault-archive', [`--repo=${temp.repo}`, '--push-ahead=0', ...extra, source, SEGMENT], { cwd: temp.dataDir });
const restore = (extra: string[]) => run('walvault-restore', [`--repo=${temp.repo}`, '--prefetch=0', ...extra, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: temp.dataDir });

describe('--dir-mode', () => {
  it('--dir-mode=0750 gives the directories walvault creates mode 0750 (the default is 0700)', async () => {
    const source = await writeWalFile(temp.dataDir, SEGMENT, pseudoRandomBytes(64 * 1024, 'dir-mode'));
    const result = await archive(source, ['--dir-mode=0750']);
    expect(result.code).toBe(0);
    for (const dir of [path.join(temp.repo, 'wal'), path.join(temp.repo, 'wal', SEGMENT.slice(0, 16))]) expect(((await stat(dir)).mode & 0o777).toString(8), dir).toBe('750');
  });

  it('an invalid --dir-mode is a usage error (exit 2) before anything is created', async () => {
    const source = await writeWalFile(temp.dataDir, SEGMENT, Buffer.from('x'));
    const result = await archive(source, ['--dir-mode=rwx']);
    expect(result.stderr).toContain('--dir-mode');
    expect(result.code).toBe(2);
    expect(await stat(path.join(temp.repo, 'wal')).catch(() => null)).toBeNull();
  });
});

describe('--verbose', () => {
  it('walvault-archive --verbose adds debug lines to the info line; without it there are none', async () => {
    // Not a real WAL segment (no page header): archiving says, at debug level only, that it skipped the cluster check.
    const source = await writeWalFile(temp.dataDir, SEGMENT, pseudoRandomBytes(64 * 1024, 'verbose'));
    const verbose = await archive(source, ['--verbose']);
    expect(verbose.code).toBe(0);
    expect(verbose.stderr).toContain(`walvault-archive: debug: "${SEGMENT}" does not start with a WAL long page header for its name; cluster check skipped`);
    expect(verbose.stderr).toMatch(/^walvault-archive: info: archived /m);
    await temp.remove();
    temp = await makeScenarioDirs();
    const plainSource = await writeWalFile(temp.dataDir, SEGMENT, pseudoRandomBytes(64 * 1024, 'verbose'));
    const plain = await archive(plainSource, []);
    expect(plain.code).toBe(0);
    expect(plain.stderr).not.toContain('debug:');
    expect(plain.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('walvault-restore --verbose logs the restore line that --quiet leaves out, and the file arrives either way', async () => {
    const content = pseudoRandomBytes(64 * 1024, 'restore-verbose');
    const source = await writeWalFile(temp.dataDir, SEGMENT, content);
    expect((await archive(source, [])).code).toBe(0);
    const verbose = await restore(['--verbose']);
    expect(verbose.code).toBe(0);
    expect(verbose.stderr).toMatch(new RegExp(`^walvault-restore: info: restored "${SEGMENT}" from ".*" to "pg_wal/RECOVERYXLOG" \\(65536 bytes`, 'm'));
    expect((await readFile(path.join(temp.dataDir, 'pg_wal', 'RECOVERYXLOG'))).equals(content)).toBe(true);
    const quiet = await restore(['--quiet']);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');
  });
});
