// NFS-specific paths: the mount guard, a LINK whose reply was lost (EEXIST after success), transient
// ESTALE, EIO and ETIMEDOUT, and through nfs:// URLs a hung server and a mount dropped mid-recovery.
// These machines have no NFS client, so faults are injected into the POSIX core's filesystem calls.
import { execFileSync } from 'node:child_process';
import { link as fsLink, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createNfsBackend } from '../../src/backend/nfs.js';
import { filesystemTypeOf } from '../../src/backend/posix/core.js';
import { Deadline } from '../../src/core/deadline.js';
import { createLogger } from '../../src/core/log.js';
import { archiveFile } from '../../src/policy/archive.js';
import { run } from '../support/cli.js';
import { makeScenarioDirs, type ScenarioDirs } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';

const SEGMENT = '000000010000000000000005';
let temp: ScenarioDirs;
let repo: string;
let dataDir: string;
let fsType: string;

beforeEach(async () => {
  temp = await makeScenarioDirs();
  ({ repo, dataDir } = temp);
  fsType = (await filesystemTypeOf(repo))?.type ?? 'unknown';
});
afterEach(async () => {
  await temp.remove();
});

/** Captures log lines for assertions. */
function capture(): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, log: createLogger('walvault-archive', 'normal', (line) => lines.push(line)) };
}

describe('nfs backend', () => {
  it('refuses with exit 8 when the directory is not on an NFS mount (a dropped mount leaves the bare mountpoint)', async () => {
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('x'));
    const result = await run('walvault-archive', [`--repo=nfs://${repo}`, source, SEGMENT], { cwd: dataDir });
    expect(result.code).toBe(8);
    expect(result.stderr).toContain(`error: repository "${repo}" is on a "${fsType}" filesystem (mounted at "`);
    expect(result.stderr).toContain('not "nfs" or "nfs4"; HINT: mount the NFS export there');
  });

  it('accepts the filesystem types listed in --nfs-fstypes (e.g. an NFS-like FUSE gateway)', async () => {
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('x'));
    const result = await run('walvault-archive', [`--repo=nfs://${repo}`, `--nfs-fstypes=nfs4,${fsType}`, source, SEGMENT], { cwd: dataDir });
    expect(result.code).toBe(0);
    const restored = await run('walvault-restore', [`--repo=nfs://${repo}`, `--nfs-fstypes=${fsType}`, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(restored.code).toBe(0);
  });

  it('treats EEXIST from a retransmitted LINK as success when the existing file is our own', async () => {
    const backend = createNfsBackend({
      root: repo,
      fsTypes: [fsType],
      ops: {
        // The server performed the link, the reply was lost, the retransmission reports EEXIST.
        link: async (existing, target) => {
          await fsLink(existing, target);
          throw Object.assign(new Error('EEXIST: file already exists'), { code: 'EEXIST' });
        },
      },
    });
    const content = pseudoRandomBytes(1 << 20, 'retransmit');
    const source = await writeWalFile(dataDir, SEGMENT, content);
    const { lines, log } = capture();
    const result = await archiveFile({ backend, sourcePath: path.join(dataDir, source), fileName: SEGMENT, encode: { compress: 'none' }, deadline: new Deadline(10_000, 'test'), log });
    expect(result.outcome).toBe('archived');
    expect(lines.join('')).toContain('info: archived');
    expect((await readFile(path.join(repo, 'wal', SEGMENT.slice(0, 16), SEGMENT))).equals(content)).toBe(true);
    expect(JSON.parse(await readFile(path.join(repo, 'wal', SEGMENT.slice(0, 16), `${SEGMENT}~meta`), 'utf8')).contentSize).toBe(1 << 20);
  });

  it('flushes early with fdatasync (on the thread pool), never with the WASI writeback that runs on the main thread', async () => {
    let datasyncs = 0;
    const backend = createNfsBackend({
      root: repo,
      fsTypes: [fsType],
      ops: {
        datasync: async (handle) => {
          datasyncs += 1;
          await handle.datasync();
        },
      },
    });
    const content = pseudoRandomBytes(4 << 20, 'nfs early flush');
    const source = await writeWalFile(dataDir, SEGMENT, content);
    const { log } = capture();
    const result = await archiveFile({ backend, sourcePath: path.join(dataDir, source), fileName: SEGMENT, encode: { compress: 'none' }, deadline: new Deadline(10_000, 'test'), log });
    expect(result.outcome).toBe('archived');
    expect(datasyncs).toBe(2);
  });

  it('still refuses when EEXIST is about someone else\'s file', async () => {
    const backend = createNfsBackend({ root: repo, fsTypes: [fsType] });
    await mkdir(path.join(repo, 'wal', SEGMENT.slice(0, 16)), { recursive: true });
    await writeFile(path.join(repo, 'wal', SEGMENT.slice(0, 16), SEGMENT), 'another cluster');
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('this cluster'));
    const { log } = capture();
    await expect(archiveFile({ backend, sourcePath: path.join(dataDir, source), fileName: SEGMENT, encode: { compress: 'none' }, deadline: new Deadline(10_000, 'test'), log })).rejects.toMatchObject({ kind: 'mismatch' });
  });

  it.each(['ESTALE', 'EIO', 'ETIMEDOUT'])('retries a transient %s within the deadline and then succeeds', async (code) => {
    let failures = 0;
    const backend = createNfsBackend({
      root: repo,
      fsTypes: [fsType],
      ops: {
        fsyncPath: async (target) => {
          if (failures < 2) {
            failures += 1;
            throw Object.assign(new Error(`${code}: injected`), { code });
          }
          const { open } = await import('node:fs/promises');
          const handle = await open(target, 'r');
          await handle.sync();
          await handle.close();
        },
      },
    });
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('transient errors happen'));
    const { lines, log } = capture();
    const result = await archiveFile({ backend, sourcePath: path.join(dataDir, source), fileName: SEGMENT, encode: { compress: 'none' }, deadline: new Deadline(60_000, 'test'), log });
    expect(result.outcome).toBe('archived');
    expect(failures).toBe(2);
    expect(lines.filter((line) => line.includes(code) && line.includes('retrying'))).toHaveLength(2);
  });
});

// Through the executables with nfs:// URLs. The mount guard accepts the types in --nfs-fstypes, so a
// ramfs mounted by the test (root, as in CI) stands in for the NFS mount: it can hang (a FIFO where
// metadata belongs blocks like an unanswering server) and be unmounted mid-recovery.
describe('nfs:// through walvault-archive and walvault-restore', () => {
  let mounted = false;
  const mountRepo = (): void => {
    execFileSync('mount', ['-t', 'ramfs', '-o', 'mode=0700', 'ramfs', repo], { stdio: 'pipe' });
    mounted = true;
  };
  const unmountRepo = (): void => {
    execFileSync('umount', [repo], { stdio: 'pipe' });
    mounted = false;
  };
  afterEach(() => {
    if (mounted) unmountRepo();
  });
  const nfsArgs = (): string[] => [`--repo=nfs://${repo}`, '--nfs-fstypes=ramfs'];

  it('a hung server: walvault-archive exits 6 within --timeout, one line, instead of hanging the archiver', async () => {
    expect(() => mountRepo(), 'mounting a ramfs needs root').not.toThrow();
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('hang'));
    expect((await run('walvault-archive', [...nfsArgs(), '--push-ahead=0', source, SEGMENT], { cwd: dataDir })).code).toBe(0);
    const meta = path.join(repo, 'wal', SEGMENT.slice(0, 16), `${SEGMENT}~meta`);
    await rm(meta);
    execFileSync('mkfifo', [meta]);
    const started = Date.now();
    const result = await run('walvault-archive', [...nfsArgs(), '--push-ahead=0', '--timeout=1', source, SEGMENT], { cwd: dataDir });
    expect(result.stderr).toContain(`walvault-archive: error: archiving "${SEGMENT}" did not finish within 1 s; HINT: check that the repository storage is reachable`);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.code).toBe(6);
    // Tells --timeout=1 from the 60 s default (and from a hang), with room for a loaded machine.
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('the mount dropped partway through recovery: exit 128 (recovery stops) naming the mount, never "not found"', async () => {
    expect(() => mountRepo(), 'mounting a ramfs needs root').not.toThrow();
    const next = '000000010000000000000006';
    for (const name of [SEGMENT, next]) {
      const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, name));
      expect((await run('walvault-archive', [...nfsArgs(), '--push-ahead=0', source, name], { cwd: dataDir })).code).toBe(0);
    }
    await writeFile(path.join(dataDir, 'recovery.signal'), '');
    const first = await run('walvault-restore', [...nfsArgs(), '--prefetch=0', SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(first.code).toBe(0);
    unmountRepo(); // the bare mountpoint is left: an empty directory on the local filesystem
    const second = await run('walvault-restore', [...nfsArgs(), '--prefetch=0', next, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(second.stderr).toContain(`error: repository "${repo}" is on a "${fsType}" filesystem (mounted at "`);
    expect(second.stderr).toContain('stopping recovery');
    expect(second.stderr).not.toContain('not found');
    expect(second.code).toBe(128);
  });
});
