// The fast path's defects found when it was tried as an operator (issue 17), each through the installed
// executables: a launcher, Node's request path and the workers must never answer for other options,
// must refuse what cannot work, and workers must not outlive what they serve.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../support/cli.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';
import { entryNames, exists, killWorker, makeReady, markDone, runNoWait, waitForWorkerExit, waitForWorkerStart, workerPid } from '../support/spool.js';
import { segmentFileName } from '../../src/wal/names.js';

const MiB = 1 << 20;
const seg = (n: number): string => segmentFileName(1, BigInt(n), 16 * MiB);

let temp: { dir: string; remove(): Promise<void> };
let dataDir: string;
let spool: string;
const servers: ChildProcess[] = [];

beforeEach(async () => {
  temp = await makeTempDir();
  dataDir = path.join(temp.dir, 'data');
  spool = path.join(dataDir, 'pg_wal', 'walvault');
  await mkdir(path.join(dataDir, 'pg_wal', 'archive_status'), { recursive: true });
});
afterEach(async () => {
  await killWorker(spool, 'archive');
  await killWorker(spool, 'restore');
  for (const server of servers.splice(0)) server.kill('SIGKILL');
  // A worker may still write into the data directory: killWorker does not wait for the SIGKILLed one to
  // exit, and after a failed test one may still be starting (no pid file yet). The removal retries ENOTEMPTY.
  await rm(temp.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
});

const storedPath = (repo: string, name: string): string => path.join(repo, 'wal', name.slice(0, 16), name);

describe('defect 1: options changed in the config file', () => {
  it('never answers from markers pushed with the old repository: every request stores its file where the config now says', async () => {
    const [repoA, repoB] = [path.join(temp.dir, 'A'), path.join(temp.dir, 'B')];
    await mkdir(repoA);
    await mkdir(repoB);
    const config = path.join(temp.dir, 'walvault.json');
    await writeFile(config, JSON.stringify({ repo: repoA }));
    const names = [1, 2, 3, 4].map(seg);
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const archive = (name: string) => runNoWait('walvault-archive', [`--config=${config}`, `pg_wal/${name}`, name], { cwd: dataDir });
    expect((await archive(names[0]!)).code).toBe(0);
    await waitForWorkerExit(spool, 'archive');
    await markDone(dataDir, names[0]!);
    // The backlog was pushed into A.
    for (const name of names) expect(exists(storedPath(repoA, name)), name).toBe(true);
    await writeFile(config, JSON.stringify({ repo: repoB }));
    for (const name of names.slice(1)) {
      const result = await archive(name);
      expect(result.code, result.stderr).toBe(0);
      expect(exists(storedPath(repoB, name)), `"${name}" answered 0 but is missing from the repository the config file names`).toBe(true);
      await markDone(dataDir, name);
    }
    await waitForWorkerExit(spool, 'archive');
  });
});

describe('defect 2 and 10: prefetch off, and a restore run by hand', () => {
  let repo: string;
  const names = [1, 2, 3].map(seg);
  beforeEach(async () => {
    repo = path.join(temp.dir, 'repo');
    await mkdir(repo);
    const source = path.join(temp.dir, 'primary');
    await mkdir(source);
    for (const name of names) {
      const walPath = await writeWalFile(source, name, pseudoRandomBytes(MiB, name));
      expect((await run('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', walPath, name], { cwd: source })).code).toBe(0);
    }
  });

  const ways: Array<[string, string[], Record<string, string>]> = [
    ['--prefetch 0 (space form)', ['--prefetch', '0'], {}],
    ['WALVAULT_PREFETCH=0', [], { WALVAULT_PREFETCH: '0' }],
    ['"prefetch": 0 in the config file', ['--config=CONFIG'], {}],
  ];
  for (const [how, flags, env] of ways) {
    it(`starts no prefetcher when ${how} turns it off`, async () => {
      await writeFile(path.join(dataDir, 'recovery.signal'), '');
      const config = path.join(temp.dir, 'off.json');
      await writeFile(config, JSON.stringify({ prefetch: 0 }));
      const args = flags.map((flag) => flag.replace('CONFIG', config));
      const history = await runNoWait('walvault-restore', [`--repo=${repo}`, ...args, '00000002.history', 'pg_wal/RECOVERYHISTORY'], { cwd: dataDir, env });
      expect(history.code).toBe(1);
      for (const name of names.slice(0, 2)) {
        const result = await runNoWait('walvault-restore', [`--repo=${repo}`, ...args, name, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, env });
        expect(result.code, result.stderr).toBe(0);
      }
      await sleep(300);
      expect(await workerPid(spool, 'restore')).toBeNull();
      expect(exists(spool)).toBe(false);
    });
  }

  it('a single walvault-restore run by hand (no recovery.signal or standby.signal) leaves no prefetcher behind', async () => {
    const result = await runNoWait('walvault-restore', [`--repo=${repo}`, names[0]!, path.join(temp.dir, 'copy')], { cwd: dataDir });
    expect(result.code, result.stderr).toBe(0);
    await sleep(300);
    expect(await workerPid(path.join(temp.dir, 'walvault'), 'restore')).toBeNull();
    expect(exists(path.join(temp.dir, 'walvault'))).toBe(false);
  });
});

describe('defect 3: a spool set in the config file', () => {
  it('is where the launcher looks: it neither writes a pid file into pg_wal/walvault nor waits there', async () => {
    const repo = path.join(temp.dir, 'repo');
    const custom = path.join(dataDir, 'pg_wal', 'elsewhere');
    await mkdir(repo);
    const config = path.join(temp.dir, 'walvault.json');
    await writeFile(config, JSON.stringify({ repo, spool: custom }));
    const names = [1, 2, 3, 4].map(seg);
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const archive = (name: string) => runNoWait('walvault-archive', [`--config=${config}`, `pg_wal/${name}`, name], { cwd: dataDir });
    expect((await archive(names[0]!)).code).toBe(0);
    await waitForWorkerExit(custom, 'archive');
    await markDone(dataDir, names[0]!);
    const second = await archive(names[1]!);
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(new RegExp(`"${names[1]}" was pushed ahead and is durable in the repository \\(answered from "${custom}/archive\\.[0-9a-f]{16}"\\)\\n$`));
    expect(second.durationMs).toBeLessThan(4000);
    expect(exists(path.join(spool, 'archive.pid'))).toBe(false);
    expect(await entryNames(spool, 'archive')).toEqual([]);
  });
});

describe('defect 7: node missing from the PATH of the server user', () => {
  it('says so with its own exit code (archive, walvault) and keeps 127 for restore (recovery stops)', async () => {
    const env = { PATH: path.join(temp.dir, 'empty-bin') };
    await makeReady(dataDir, seg(1), pseudoRandomBytes(MiB, 'x'));
    const archived = await runNoWait('walvault-archive', ['--repo=/nonexistent', `pg_wal/${seg(1)}`, seg(1)], { cwd: dataDir, env });
    expect(archived.code).toBe(15);
    expect(archived.stderr).toContain('walvault-archive: error: node not found ("node" is not an executable in PATH=');
    expect(archived.stderr).toContain('HINT: install Node.js where the server\'s user finds it, or set WALVAULT_NODE');
    const wrong = await runNoWait('walvault-archive', ['--repo=/nonexistent', `pg_wal/${seg(1)}`, seg(1)], { cwd: dataDir, env: { WALVAULT_NODE: '/nonexistent/node' } });
    expect(wrong.code).toBe(15);
    expect(wrong.stderr).toContain('node not found ("/nonexistent/node"');
    const restored = await runNoWait('walvault-restore', ['--repo=/nonexistent', seg(1), 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, env });
    expect(restored.code).toBe(127);
    expect(restored.stderr).toContain('walvault-restore: error: node not found');
  });
});

describe('defect 9: a spool on another filesystem than pg_wal', () => {
  it('is refused with a clear error instead of a silent copy', async () => {
    const repo = path.join(temp.dir, 'repo');
    await mkdir(repo);
    const other = path.join('/dev/shm', `walvault-spool-${process.pid}-${Date.now()}`);
    await makeReady(dataDir, seg(1), pseudoRandomBytes(MiB, 'x'));
    await makeReady(dataDir, seg(2), pseudoRandomBytes(MiB, 'y'));
    try {
      const result = await runNoWait('walvault-archive', [`--repo=${repo}`, `--spool=${other}`, `pg_wal/${seg(1)}`, seg(1)], { cwd: dataDir });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`walvault-archive: error: spool "${other}" is on another filesystem than "pg_wal"; HINT: put --spool on the filesystem of pg_wal`);
      expect(exists(storedPath(repo, seg(1)))).toBe(false);
      // The same options with push-ahead off need no spool.
      expect((await runNoWait('walvault-archive', [`--repo=${repo}`, `--spool=${other}`, '--push-ahead=0', `pg_wal/${seg(1)}`, seg(1)], { cwd: dataDir })).code).toBe(0);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});

describe('defect 10: background workers end once there is nothing to serve', () => {
  let repo: string;
  const names = [1, 2, 3, 4, 5].map(seg);
  beforeEach(async () => {
    repo = path.join(temp.dir, 'repo');
    await mkdir(repo);
    const source = path.join(temp.dir, 'primary');
    await mkdir(source);
    for (const name of names) {
      const walPath = await writeWalFile(source, name, pseudoRandomBytes(MiB, name));
      expect((await run('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', walPath, name], { cwd: source })).code).toBe(0);
    }
    await writeFile(path.join(dataDir, 'recovery.signal'), '');
  });

  /** A stand-in postmaster: a live process named in postmaster.pid, as PostgreSQL writes it. */
  async function startServer(): Promise<ChildProcess> {
    const server = spawn('sleep', ['120'], { stdio: 'ignore' });
    servers.push(server);
    await writeFile(path.join(dataDir, 'postmaster.pid'), `${server.pid}\n${dataDir}\n`);
    return server;
  }

  /** Starts a prefetcher the way a recovery does, and returns its pid. */
  async function startPrefetcher(): Promise<number> {
    const first = await runNoWait('walvault-restore', [`--repo=${repo}`, '--prefetch=2', names[0]!, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(first.code, first.stderr).toBe(0);
    const pid = await waitForWorkerStart(spool, 'restore');
    expect(pid).not.toBeNull();
    return pid!;
  }

  // The prefetcher's idle time is 30 s: ending within 10 s means it noticed.
  const gone = (pid: number): Promise<boolean> =>
    (async () => {
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        try {
          process.kill(pid, 0);
        } catch {
          return true;
        }
        await sleep(50);
      }
      return false;
    })();

  it('the prefetcher ends when the server stops (postmaster.pid gone, or its process dead)', async () => {
    const server = await startServer();
    const pid = await startPrefetcher();
    server.kill('SIGKILL');
    expect(await gone(pid)).toBe(true);
  });

  it('the prefetcher ends when recovery ends (recovery.signal removed)', async () => {
    await startServer();
    const pid = await startPrefetcher();
    await rm(path.join(dataDir, 'recovery.signal'));
    expect(await gone(pid)).toBe(true);
  });

  it('the prefetcher ends when its data directory is deleted, and says what it is doing in its pid file meanwhile', async () => {
    await startServer();
    const pid = await startPrefetcher();
    const line = await readFile(path.join(spool, 'restore.pid'), 'utf8');
    expect(line).toMatch(new RegExp(`^${pid} (starting|serving|idle) [0-9a-f]{16}\\n$`));
    // The prefetcher writes into pg_wal/walvault until it notices: a folder it refills between the listing
    // and the rmdir fails with ENOTEMPTY, and the removal walks the tree again.
    await rm(dataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    expect(exists(dataDir)).toBe(false);
    expect(await gone(pid)).toBe(true);
  });
});

describe('defect 4: the pusher\'s cluster guard', () => {
  it('runs under each push\'s own deadline: a repository document that never answers (a FIFO, as a hung NFS read) holds no claim for ever', async () => {
    const repo = path.join(temp.dir, 'repo');
    await mkdir(repo);
    // open() of a FIFO without a writer blocks in the thread pool, as a read from a hung NFS server does.
    const fifo = spawn('mkfifo', [path.join(repo, 'walvault.json')]);
    await new Promise((resolve) => fifo.on('exit', resolve));
    const names = [1, 2, 3].map(seg);
    // Segments with a long page header, as the server writes them: the guard reads the repository document for them.
    for (const [index, name] of names.entries()) {
      const content = pseudoRandomBytes(MiB, name);
      content.writeUInt16LE(0xd110, 0);
      content.writeUInt16LE(0x2, 2);
      content.writeUInt32LE(1, 4);
      content.writeBigUInt64LE(BigInt(index + 1) * 16n * BigInt(MiB), 8);
      content.writeBigUInt64LE(7000000000000000001n, 24);
      content.writeUInt32LE(16 * MiB, 32);
      content.writeUInt32LE(8192, 36);
      await makeReady(dataDir, name, content);
    }
    const first = await runNoWait('walvault-archive', [`--repo=${repo}`, '--timeout=3', '--parallel=1', `pg_wal/${names[0]}`, names[0]!], { cwd: dataDir });
    expect(first.code).toBe(6);
    // The request opened the spool and started a pusher (the claim folder is its).
    expect(exists(path.join(spool, 'archive.work'))).toBe(true);
    // The pusher's push of the next file times out like the request did, and the pusher ends.
    await waitForWorkerExit(spool, 'archive', { timeoutMs: 30_000 });
    expect(await readdirOrEmpty(path.join(spool, 'archive.work'))).toEqual([]);
  });
});

/** The names in a folder, or none. */
async function readdirOrEmpty(dir: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  return readdir(dir).catch(() => [] as string[]);
}
