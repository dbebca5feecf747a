// NFS-specific paths: the mount guard, a LINK whose reply was lost (EEXIST after success), transient ESTALE.
// These machines have no NFS client, so faults are injected into the POSIX core's filesystem calls.
import { link as fsLink, mkdir, readFile, writeFile } from 'node:fs/promises';
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

  it('retries a transient ESTALE within the deadline and then succeeds', async () => {
    let failures = 0;
    const backend = createNfsBackend({
      root: repo,
      fsTypes: [fsType],
      ops: {
        fsyncPath: async (target) => {
          if (failures < 2) {
            failures += 1;
            throw Object.assign(new Error('ESTALE: stale file handle'), { code: 'ESTALE' });
          }
          const { open } = await import('node:fs/promises');
          const handle = await open(target, 'r');
          await handle.sync();
          await handle.close();
        },
      },
    });
    const source = await writeWalFile(dataDir, SEGMENT, Buffer.from('stale handles happen'));
    const { lines, log } = capture();
    const result = await archiveFile({ backend, sourcePath: path.join(dataDir, source), fileName: SEGMENT, encode: { compress: 'none' }, deadline: new Deadline(10_000, 'test'), log });
    expect(result.outcome).toBe('archived');
    expect(failures).toBe(2);
    expect(lines.filter((line) => line.includes('ESTALE') && line.includes('retrying'))).toHaveLength(2);
  });
});
