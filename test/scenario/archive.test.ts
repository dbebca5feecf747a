// Scenarios for walvault-archive, driven through the built executable as PostgreSQL would call it.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bin, run } from '../support/cli.js';
import { postgresGid, postgresUid } from '../support/users.js';
import { makeScenarioDirs, type ScenarioDirs } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';

const SEGMENT = '000000010000000000000003';
const MiB = 1 << 20;

let temp: ScenarioDirs;
let dataDir: string;
let repo: string;

beforeEach(async () => {
  temp = await makeScenarioDirs();
  ({ dataDir, repo } = temp);
});
afterEach(async () => {
  await temp.remove();
});

const archive = (source: string, name: string, extra: string[] = []) => run('walvault-archive', [`--repo=${repo}`, ...extra, source, name], { cwd: dataDir });
const storedPath = (name: string) => path.join(repo, 'wal', name.slice(0, 16), name);

describe('walvault-archive', () => {
  it('stores a new segment durably under the final name, 0600 in 0700 folders, with its hash recorded', async () => {
    const content = pseudoRandomBytes(MiB, 'a');
    const source = await writeWalFile(dataDir, SEGMENT, content);
    const result = await archive(source, SEGMENT);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(new RegExp(`walvault-archive: info: archived "${SEGMENT}" to ".*${SEGMENT}" \\(1048576 bytes, \\d+ ms\\)`));
    expect((await readFile(storedPath(SEGMENT))).equals(content)).toBe(true);
    expect((await stat(storedPath(SEGMENT))).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(storedPath(SEGMENT)))).mode & 0o777).toBe(0o700);
    const meta = JSON.parse(await readFile(`${storedPath(SEGMENT)}~meta`, 'utf8')) as { contentHash: string; contentSize: number };
    expect(meta.contentSize).toBe(MiB);
    expect(meta.contentHash).toMatch(/^[0-9a-f]{16}$/);
    expect((await readdir(path.dirname(storedPath(SEGMENT)))).sort()).toEqual([SEGMENT, `${SEGMENT}~meta`]);
  });

  it('archives the same segment again (crash before .done) with exit 0 and a warning', async () => {
    const source = await writeWalFile(dataDir, SEGMENT, pseudoRandomBytes(MiB, 'a'));
    expect((await archive(source, SEGMENT)).code).toBe(0);
    const again = await archive(source, SEGMENT);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain(`warning: "${SEGMENT}" was already archived at "${storedPath(SEGMENT)}" with identical content; made sure it is durable, reporting success`);
  });

  it('refuses with exit 7 when the archived copy rotted but its recorded hash still matches (never exit 0 on a damaged copy)', async () => {
    const content = pseudoRandomBytes(MiB, 'a');
    const source = await writeWalFile(dataDir, SEGMENT, content);
    expect((await archive(source, SEGMENT)).code).toBe(0);
    const rotted = Buffer.from(content);
    rotted[0x4_0000] = (rotted[0x4_0000] ?? 0) ^ 0x01;
    await chmod(storedPath(SEGMENT), 0o600);
    await writeFile(storedPath(SEGMENT), rotted);
    const again = await archive(source, SEGMENT);
    expect(again.code).toBe(7);
    expect(again.stderr).toContain(`error: the archived copy of "${SEGMENT}" at "${storedPath(SEGMENT)}" is damaged: its recorded hash matches this file but its stored bytes differ at byte offset 262144`);
    expect(again.stderr).toContain('HINT: run walvault verify on the repository');
    expect((await readFile(storedPath(SEGMENT))).equals(rotted)).toBe(true);
  });

  it('compares a compressed archived copy by its decoded bytes: identical content is exit 0, a rotted copy exit 7', async () => {
    const content = Buffer.concat([Buffer.alloc(MiB / 2, 7), pseudoRandomBytes(MiB / 2, 'b')]);
    const source = await writeWalFile(dataDir, SEGMENT, content);
    expect((await archive(source, SEGMENT, ['--compress=lz4'])).code).toBe(0);
    const again = await archive(source, SEGMENT, ['--compress=lz4']);
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('with identical content');
    const stored = await readFile(storedPath(SEGMENT));
    const truncated = stored.subarray(0, stored.length - 100);
    await writeFile(storedPath(SEGMENT), truncated);
    const damaged = await archive(source, SEGMENT, ['--compress=lz4']);
    expect(damaged.code).toBe(7);
    expect(damaged.stderr).toContain(`error: the archived copy of "${SEGMENT}" at "${storedPath(SEGMENT)}" is damaged: stored object is not valid lz4 frame data`);
  });

  it('refuses different content under an existing name with exit 4, naming the byte offset and LSN, changing nothing', async () => {
    const original = pseudoRandomBytes(MiB, 'a');
    const source = await writeWalFile(dataDir, SEGMENT, original);
    expect((await archive(source, SEGMENT)).code).toBe(0);
    const diverged = Buffer.from(original);
    diverged[0x5_1234] = (diverged[0x5_1234] ?? 0) ^ 0xff;
    await writeFile(path.join(dataDir, 'other'), diverged);
    const refused = await archive('other', SEGMENT);
    expect(refused.code).toBe(4);
    // Segment 3 of 1 MiB segments starts at LSN 0/300000; the offset 0x51234 is LSN 0/351234.
    expect(refused.stderr).toContain(`error: refusing to overwrite "${SEGMENT}" at "${storedPath(SEGMENT)}": the archived copy is not "other", the contents differ at byte offset ${0x5_1234} (LSN 0/351234); HINT: two clusters`);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect((await readFile(storedPath(SEGMENT))).equals(original)).toBe(true);
  });

  it('refuses a different timeline history file the same way', async () => {
    const source = await writeWalFile(dataDir, '00000002.history', Buffer.from('1\t0/3000148\tno recovery target specified\n'));
    expect((await archive(source, '00000002.history')).code).toBe(0);
    await writeFile(path.join(dataDir, 'pg_wal', '00000002.history'), '1\t0/5000000\tbefore 2026-01-01\n');
    const refused = await archive(source, '00000002.history');
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('refusing to overwrite "00000002.history"');
    expect(await readFile(path.join(repo, 'wal', '00000002.history'), 'utf8')).toBe('1\t0/3000148\tno recovery target specified\n');
  });

  it('stores .partial and .backup files next to their segments', async () => {
    for (const name of [`${SEGMENT}.partial`, `${SEGMENT}.00000028.backup`]) {
      const source = await writeWalFile(dataDir, name, Buffer.from(`content of ${name}`));
      expect((await archive(source, name)).code).toBe(0);
      expect(await readFile(storedPath(name), 'utf8')).toBe(`content of ${name}`);
    }
  });

  it('fails with exit 3 when the source is missing, storing nothing', async () => {
    const result = await archive(`pg_wal/${SEGMENT}`, SEGMENT);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`error: file to archive "pg_wal/${SEGMENT}" does not exist`);
    expect(existsSync(path.join(repo, 'wal'))).toBe(false);
  });

  it('fails with exit 3 when the source is unreadable, storing nothing', async () => {
    // Root reads every file, so as root the archiver runs as the postgres OS user, as in production.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) await chown(repo, postgresUid(), postgresGid());
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('x'));
    await chmod(path.join(dataDir, source), 0);
    const result = await run('walvault-archive', [`--repo=${repo}`, source, SEGMENT], { cwd: dataDir, ...(asRoot ? { user: 'postgres' } : {}) });
    expect(result.stderr).toContain(`error: cannot read file to archive "${source}": EACCES`);
    expect(result.code).toBe(3);
    expect(existsSync(storedPath(SEGMENT))).toBe(false);
  });

  it.each(['../../etc/passwd', 'pg_wal/000000010000000000000003', '', '.', '..', 'a'.repeat(65), 'name with space', '00000001~meta'])(
    'refuses the bad name %j with exit 2 before touching storage',
    async (name) => {
      const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('x'));
      const result = await archive(source, name);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`walvault-archive: error: invalid WAL file name ${JSON.stringify(name)}: expected 1 to 64 ASCII letters, digits and dots, no path separators; HINT: `);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(path.join(repo, 'wal'))).toBe(false);
    },
  );

  it('refuses a missing repository directory with exit 2 and says how to create it', async () => {
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('x'));
    const result = await run('walvault-archive', [`--repo=${repo}/missing`, source, SEGMENT], { cwd: dataDir });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`error: repository directory "${repo}/missing" does not exist; HINT: create it (mkdir -m 700`);
  });

  it('lets racing archivers of identical content all succeed, exactly one storing it', async () => {
    const source = await writeWalFile(dataDir, SEGMENT, pseudoRandomBytes(4 * MiB, 'race'));
    const results = await Promise.all([1, 2, 3, 4].map(() => archive(source, SEGMENT)));
    expect(results.map((result) => result.code)).toEqual([0, 0, 0, 0]);
    expect(results.filter((result) => result.stderr.includes('info: archived')).length).toBe(1);
    expect(await readdir(path.dirname(storedPath(SEGMENT)))).toEqual(expect.arrayContaining([SEGMENT, `${SEGMENT}~meta`]));
  });

  it('lets exactly one of two clusters racing on one name win; the other fails with exit 4', async () => {
    await writeFile(path.join(dataDir, 'a'), pseudoRandomBytes(4 * MiB, 'cluster-a'));
    await writeFile(path.join(dataDir, 'b'), pseudoRandomBytes(4 * MiB, 'cluster-b'));
    const results = await Promise.all([archive('a', SEGMENT), archive('b', SEGMENT), archive('a', SEGMENT), archive('b', SEGMENT)]);
    const stored = await readFile(storedPath(SEGMENT));
    const winner = stored.equals(await readFile(path.join(dataDir, 'a'))) ? 'a' : 'b';
    const codes = results.map((result) => result.code);
    const expected = ['a', 'b', 'a', 'b'].map((who) => (who === winner ? 0 : 4));
    expect(codes).toEqual(expected);
  });

  it('leaves no partial file under the final name when killed -9 mid-write, and cleans up on the retry', async () => {
    const big = Buffer.alloc(192 * MiB);
    pseudoRandomBytes(MiB, 'big').copy(big);
    const source = await writeWalFile(dataDir, SEGMENT, big);
    // detached: its own process group, so kill -9 reaches node as well as the sh launcher.
    const child = spawn(bin('walvault-archive'), [`--repo=${repo}`, source, SEGMENT], { cwd: dataDir, stdio: 'ignore', detached: true });
    const folder = path.dirname(storedPath(SEGMENT));
    let temps: string[] = [];
    for (let tries = 0; tries < 2000 && temps.length === 0; tries += 1) {
      temps = (await readdir(folder).catch(() => [] as string[])).filter((entry) => entry.includes('~tmp~'));
      if (temps.length === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(temps.length).toBeGreaterThan(0);
    const closed = new Promise((resolve) => child.on('close', resolve));
    process.kill(-(child.pid ?? 0), 'SIGKILL');
    await closed;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = await readdir(folder);
    expect(after).not.toContain(SEGMENT);
    expect(after).not.toContain(`${SEGMENT}~meta`);
    expect(after.some((entry) => entry.includes('~tmp~'))).toBe(true);
    const retry = await archive(source, SEGMENT);
    expect(retry.code).toBe(0);
    expect((await readdir(folder)).sort()).toEqual([SEGMENT, `${SEGMENT}~meta`]);
    expect((await stat(storedPath(SEGMENT))).size).toBe(big.length);
  });

  it('reports a full repository filesystem with exit 9 and leaves nothing behind', async () => {
    // A 2 MiB tmpfs as the repository; mounting needs root (CI runs as root), and a failed mount fails the test.
    const { execFileSync } = await import('node:child_process');
    expect(() => execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', repo], { stdio: 'pipe' }), 'mounting a 2 MiB tmpfs needs root').not.toThrow();
    try {
      const source = await writeWalFile(dataDir, SEGMENT, pseudoRandomBytes(4 * MiB, 'full'));
      const result = await archive(source, SEGMENT);
      expect(result.code).toBe(9);
      expect(result.stderr).toMatch(/error: could not .* no space left on device; HINT: free space in the repository/);
      const folder = path.dirname(storedPath(SEGMENT));
      expect(await readdir(folder)).toEqual([]);
    } finally {
      execFileSync('umount', [repo]);
    }
  });

  it('takes options from WALVAULT_* environment variables and a JSON config file, flags winning', async () => {
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('configured'));
    const config = path.join(temp.dir, 'walvault.json');
    await writeFile(config, JSON.stringify({ repo: path.join(temp.dir, 'nowhere'), 'file-mode': '0640' }));
    const viaEnv = await run('walvault-archive', [source, SEGMENT], { cwd: dataDir, env: { WALVAULT_CONFIG: config, WALVAULT_REPO: repo } });
    expect(viaEnv.code).toBe(0);
    expect((await stat(storedPath(SEGMENT))).mode & 0o777).toBe(0o640);
    const flagWins = await run('walvault-archive', [`--repo=${path.join(temp.dir, 'flag')}`, source, SEGMENT], { cwd: dataDir, env: { WALVAULT_REPO: repo } });
    expect(flagWins.code).toBe(2);
    expect(flagWins.stderr).toContain(`repository directory "${path.join(temp.dir, 'flag')}" does not exist`);
  });

  it('refuses unknown flags and unknown config keys with exit 2, but ignores unrelated WALVAULT_* variables', async () => {
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('x'));
    const unknownFlag = await archive(source, SEGMENT, ['--compresion=zstd']);
    expect(unknownFlag.stderr).toContain('error: unknown option "--compresion"');
    expect(unknownFlag.code).toBe(2);
    expect(existsSync(path.join(repo, 'wal'))).toBe(false);
    const config = path.join(temp.dir, 'bad.json');
    await writeFile(config, JSON.stringify({ repo, tiemout: 5 }));
    const badConfig = await run('walvault-archive', [`--config=${config}`, source, SEGMENT], { cwd: dataDir });
    expect(badConfig.code).toBe(2);
    expect(badConfig.stderr).toContain(`config file "${config}" has unknown option "tiemout"`);
    expect((await run('walvault-archive', [`--repo=${repo}`, source, SEGMENT], { cwd: dataDir, env: { WALVAULT_PG_BIN: '/x' } })).code).toBe(0);
  });

  it('exits 6 within --timeout when the storage hangs, instead of hanging the archiver', async () => {
    // Opening a FIFO for reading blocks until a writer appears: a stand-in for a hung NFS server.
    const { execFileSync } = await import('node:child_process');
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('hang'));
    expect((await archive(source, SEGMENT)).code).toBe(0);
    await import('node:fs/promises').then((fs) => fs.rm(`${storedPath(SEGMENT)}~meta`));
    execFileSync('mkfifo', [`${storedPath(SEGMENT)}~meta`]);
    const started = Date.now();
    const result = await archive(source, SEGMENT, ['--timeout=1']);
    expect(result.code).toBe(6);
    expect(result.stderr).toContain(`error: archiving "${SEGMENT}" did not finish within 1 s; HINT: check that the repository storage is reachable`);
    // One line: the launcher keeps the shell's "Killed" notice out of PostgreSQL's log.
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    // The bound only has to tell --timeout=1 from the 60 s default (and from a hang), with room for a loaded machine.
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});
