// The one-pass store: the source is read once, hashed on its way to the repository, and the recorded hash is that of the stored bytes.
import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import { EARLY_FLUSH_BYTES, PosixBackend } from '../../src/backend/posix/core.js';
import { openWriteback, type Writeback } from '../../src/backend/posix/writeback.js';
import type { Backend } from '../../src/backend/types.js';
import { createEncoder } from '../../src/codec/index.js';
import { Deadline } from '../../src/core/deadline.js';
import { WalvaultError } from '../../src/core/errors.js';
import { hashBuffer } from '../../src/core/hash.js';
import { createLogger } from '../../src/core/log.js';
import { archiveFile, type ArchiveRequest } from '../../src/policy/archive.js';
import { walLikeData } from '../support/codec.js';
import { getRaw, memoryLogger, s3Backend, segmentKey, useS3Scenario } from '../support/s3scenario.js';
import type { S3TestServer } from '../support/s3server.js';
import { makeScenarioDirs, type ScenarioDirs } from '../support/tmp.js';
import { pseudoRandomBytes, readBytesFromStorage, writeWalFile } from '../support/walfile.js';

const SEGMENT = '00000001000000000000000A';
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

/** Every file under a directory, relative to it. */
async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(root, path.join(entry.parentPath, entry.name))).sort();
}

const storedPath = (name: string): string => path.join(repo, 'wal', name.slice(0, 16), name);

/** Archives `name` from pg_wal with a local backend (or the one given). */
async function archive(name: string, options: Partial<ArchiveRequest> = {}) {
  const lines: string[] = [];
  const deadline = new Deadline(20_000, `archiving "${name}"`);
  try {
    const result = await archiveFile({
      backend: createLocalBackend({ root: repo }),
      sourcePath: path.join(dataDir, 'pg_wal', name),
      fileName: name,
      encode: { compress: 'none' },
      deadline,
      log: createLogger('walvault-archive', 'normal', (line) => lines.push(line)),
      ...options,
    });
    return { result, lines };
  } finally {
    deadline.dispose();
  }
}

describe('archive, one pass over the source (local repository)', () => {
  it('records the hash of exactly the stored bytes (a size that is not a multiple of the copy buffer)', async () => {
    const content = pseudoRandomBytes(3 * MiB + 12345, 'one pass');
    await writeWalFile(dataDir, SEGMENT, content);
    const { result } = await archive(SEGMENT);
    expect(result.outcome).toBe('archived');
    expect((await readFile(storedPath(SEGMENT))).equals(content)).toBe(true);
    const meta = JSON.parse(await readFile(`${storedPath(SEGMENT)}~meta`, 'utf8'));
    expect(meta).toEqual({ version: 1, contentHash: await hashBuffer(content), contentSize: content.length, codec: 'none', encryption: 'none' });
    expect((await filesUnder(repo)).filter((name) => name.includes('~tmp~'))).toEqual([]);
  });

  it('hashes while compressing too: the sidecar holds the hash of the original bytes', async () => {
    const content = Buffer.concat([pseudoRandomBytes(MiB, 'compressible'), Buffer.alloc(2 * MiB)]);
    await writeWalFile(dataDir, SEGMENT, content);
    await archive(SEGMENT, { encode: { compress: 'zstd' } });
    const meta = JSON.parse(await readFile(`${storedPath(SEGMENT)}~meta`, 'utf8'));
    expect(meta).toMatchObject({ contentHash: await hashBuffer(content), contentSize: content.length, codec: 'zstd' });
    expect((await readFile(storedPath(SEGMENT))).length).toBeLessThan(content.length);
  });

  it('lets the inspect hook (the cluster guard) refuse before anything is written, with the head and size of the file', async () => {
    const content = pseudoRandomBytes(2 * MiB, 'refused');
    await writeWalFile(dataDir, SEGMENT, content);
    let seen: { head: Buffer; size: number } | undefined;
    const refusal = new WalvaultError('cluster-mismatch', 'refusing to archive: another cluster');
    await expect(
      archive(SEGMENT, {
        inspect: async (source) => {
          seen = { head: source.head, size: source.size };
          throw refusal;
        },
      }),
    ).rejects.toBe(refusal);
    expect(seen?.size).toBe(content.length);
    expect(seen?.head.equals(content.subarray(0, 8192))).toBe(true);
    expect(await filesUnder(repo)).toEqual([]);
  });

  it('compares after the one pass: identical content succeeds with a warning, different content is refused at its offset', async () => {
    const content = pseudoRandomBytes(2 * MiB, 'first');
    await writeWalFile(dataDir, SEGMENT, content);
    await archive(SEGMENT);
    const again = await archive(SEGMENT);
    expect(again.result.outcome).toBe('already-archived');
    expect(again.lines.join('')).toContain(`warning: "${SEGMENT}" was already archived at "${storedPath(SEGMENT)}" with identical content`);

    const changed = Buffer.from(content);
    changed.writeUInt8(changed.readUInt8(MiB + 7) ^ 0xff, MiB + 7);
    await writeWalFile(dataDir, SEGMENT, changed);
    await expect(archive(SEGMENT)).rejects.toMatchObject({ kind: 'mismatch', message: expect.stringContaining(`at byte offset ${MiB + 7}`) });
    expect((await readFile(storedPath(SEGMENT))).equals(content)).toBe(true);
    expect((await filesUnder(repo)).filter((name) => name.includes('~tmp~'))).toEqual([]);
  });

  it('stores nothing when the file grows while it is read (the hash would not be that of the size first seen)', async () => {
    const content = pseudoRandomBytes(MiB, 'growing');
    const source = path.join(dataDir, await writeWalFile(dataDir, SEGMENT, content));
    const local = createLocalBackend({ root: repo });
    // Grows the file after the head was read, before the backend pulls the body.
    const growing: Backend = Object.assign(Object.create(local) as Backend, {
      putIfAbsent: async (...args: Parameters<Backend['putIfAbsent']>) => {
        await appendFile(source, Buffer.alloc(4096, 1));
        return local.putIfAbsent(...args);
      },
    });
    await expect(archive(SEGMENT, { backend: growing })).rejects.toMatchObject({ kind: 'source', message: `file to archive "${source}" changed while it was being archived` });
    expect((await filesUnder(repo)).filter((name) => !name.startsWith('walvault'))).toEqual([]);
  });

  it('removes a sidecar temp file left by a killed archiver when that name is archived again', async () => {
    const content = pseudoRandomBytes(64 * 1024, 'leftover');
    await writeWalFile(dataDir, SEGMENT, content);
    const directory = path.dirname(storedPath(SEGMENT));
    await mkdir(directory, { recursive: true });
    const host = (await import('node:os')).hostname().replace(/[^A-Za-z0-9.-]/g, '_');
    const leftover = `${SEGMENT}~meta~tmp~${host}~2147483646~deadbeef`;
    await writeFile(path.join(directory, leftover), '{}');
    await archive(SEGMENT);
    expect(await readdir(directory)).toEqual([SEGMENT, `${SEGMENT}~meta`]);
  });
});

/** link(2) that records `link NAME` in `events` first. */
const recordingLink =
  (events: string[]) =>
  async (existing: string, target: string): Promise<void> => {
    events.push(`link ${path.basename(target)}`);
    const { link } = await import('node:fs/promises');
    await link(existing, target);
  };

/** The real early writeback, recording each range it starts, and its opening and closing in `events`. */
const recordingWriteback =
  (ranges: number[][], events: string[] = []) =>
  (filePath: string): Writeback => {
    const real = openWriteback(filePath);
    expect(real).not.toBeNull();
    events.push('opened');
    return {
      start: (offset, length) => {
        ranges.push([offset, length]);
        real?.start(offset, length);
      },
      drop: () => {
        events.push('dropped');
        real?.drop();
      },
      close: () => {
        events.push('closed');
        real?.close();
      },
    };
  };

/** fsync of a file or directory by path, as the backend's own. */
const fsyncFile = async (target: string): Promise<void> => {
  const { open } = await import('node:fs/promises');
  const handle = await open(target, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
};

/** fsync by path that records `fsync temp` in `events` for the stored file's temp file (not the sidecar's, not a directory's). */
const recordingFsync =
  (events: string[]) =>
  async (target: string): Promise<void> => {
    if (target.includes('~tmp~') && !target.includes('~meta')) events.push('fsync temp');
    await fsyncFile(target);
  };

describe('archive, early flushes while the body is written (local repository)', () => {
  it('starts the writeback of every 2 MiB of a 16 MiB segment once it is written (fadvise, no fdatasync), drops the file from the cache once it is durable, and only then gives it its name', async () => {
    const content = pseudoRandomBytes(16 * MiB, 'early writeback');
    await writeWalFile(dataDir, SEGMENT, content);
    const events: string[] = [];
    const ranges: number[][] = [];
    const backend = new PosixBackend({
      kind: 'local',
      root: repo,
      ops: {
        writeback: recordingWriteback(ranges, events),
        datasync: async () => {
          events.push('fdatasync');
        },
        link: recordingLink(events),
        fsyncPath: recordingFsync(events),
      },
    });
    await archive(SEGMENT, { backend });
    expect(events).toEqual(['opened', 'closed', 'fsync temp', 'opened', 'dropped', 'closed', `link ${SEGMENT}`]);
    // Contiguous ranges of EARLY_FLUSH_BYTES from the start: everything written, each once.
    expect(ranges).toEqual(Array.from({ length: (16 * MiB) / EARLY_FLUSH_BYTES }, (_, index) => [index * EARLY_FLUSH_BYTES, EARLY_FLUSH_BYTES]));
    expect((await readFile(storedPath(SEGMENT))).equals(content)).toBe(true);
  });

  it('leaves the stored segment out of the page cache: reading it back goes to the disk, reading the source does not', async () => {
    const content = pseudoRandomBytes(16 * MiB, 'dropped from the cache');
    await writeWalFile(dataDir, SEGMENT, content);
    await archive(SEGMENT, { backend: new PosixBackend({ kind: 'local', root: repo }) });
    const before = readBytesFromStorage();
    expect(before, 'reading /proc/self/io (read_bytes): this test needs Linux task I/O accounting').not.toBeNull();
    expect((await readFile(path.join(dataDir, 'pg_wal', SEGMENT))).equals(content)).toBe(true);
    const afterSource = readBytesFromStorage() ?? 0;
    expect((await readFile(storedPath(SEGMENT))).equals(content)).toBe(true);
    expect(afterSource - (before ?? 0)).toBeLessThan(MiB);
    expect((readBytesFromStorage() ?? 0) - afterSource).toBeGreaterThanOrEqual(15 * MiB);
  });

  it('opens no early writeback for a file smaller than EARLY_FLUSH_BYTES (a history file loads no WASI)', async () => {
    const content = pseudoRandomBytes(EARLY_FLUSH_BYTES - 1, 'small');
    await writeWalFile(dataDir, SEGMENT, content);
    let opened = 0;
    const backend = new PosixBackend({ kind: 'local', root: repo, ops: { writeback: () => ((opened += 1), null), datasync: async () => undefined } });
    await archive(SEGMENT, { backend });
    expect(opened).toBe(0);
    expect((await readFile(storedPath(SEGMENT))).equals(content)).toBe(true);
  });

  it('starts an fdatasync about every 2 MiB of a 16 MiB segment where early writeback is not available, and all of them end before the file gets its name', async () => {
    const content = pseudoRandomBytes(16 * MiB, 'early flush');
    await writeWalFile(dataDir, SEGMENT, content);
    const events: string[] = [];
    const backend = new PosixBackend({
      kind: 'local',
      root: repo,
      ops: {
        writeback: () => null,
        datasync: async (handle) => {
          events.push('flush started');
          await handle.datasync();
          events.push('flush ended');
        },
        link: recordingLink(events),
      },
    });
    await archive(SEGMENT, { backend });
    expect(events.filter((event) => event === 'flush started')).toHaveLength((16 * MiB) / EARLY_FLUSH_BYTES);
    expect(events.filter((event) => event === 'flush ended')).toHaveLength((16 * MiB) / EARLY_FLUSH_BYTES);
    expect(events.at(-1)).toBe(`link ${SEGMENT}`);
    expect((await readFile(storedPath(SEGMENT))).equals(content)).toBe(true);
  });

  it('fails the store when early fdatasyncs keep failing (EIO is retried first): nothing under the final name, no temp file left', async () => {
    await writeWalFile(dataDir, SEGMENT, pseudoRandomBytes(8 * MiB, 'failing flush'));
    let flushes = 0;
    const backend = new PosixBackend({
      kind: 'local',
      root: repo,
      ops: {
        writeback: () => null,
        datasync: async (handle) => {
          flushes += 1;
          if (flushes >= 2) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
          await handle.datasync();
        },
      },
    });
    await expect(archive(SEGMENT, { backend, deadline: new Deadline(3_000, 'flush test') })).rejects.toMatchObject({ kind: 'backend', message: expect.stringContaining('EIO') });
    expect(flushes).toBeGreaterThan(2);
    expect((await filesUnder(repo)).filter((name) => !name.startsWith('walvault'))).toEqual([]);
  });
});

describe('archive, blocking copies for background pushes (local repository)', () => {
  /** A pulled body over `content` that can only be read the way `allowed` says. */
  const bodyOver = (content: Buffer, allowed: 'async' | 'blocking') => {
    let offset = 0;
    const take = (into: Buffer): number => {
      const n = content.copy(into, 0, offset, Math.min(content.length, offset + into.length));
      offset += n;
      return n;
    };
    return {
      pull: async (into: Buffer) => {
        if (allowed !== 'async') throw new Error('pull() called on a blocking copy');
        return take(into);
      },
      pullSync: (into: Buffer) => {
        if (allowed !== 'blocking') throw new Error('pullSync() called on a request copy');
        return take(into);
      },
    };
  };
  const meta = async (content: Buffer) => ({ contentHash: await hashBuffer(content), contentSize: content.length, codec: 'none', encryption: 'none' });

  it('copies with pullSync only when the caller says it is a background push, with the same early flushes', async () => {
    const content = pseudoRandomBytes(5 * MiB + 123, 'blocking copy');
    let flushes = 0;
    const backend = new PosixBackend({ kind: 'local', root: repo, ops: { writeback: () => null, datasync: async (handle) => { flushes += 1; await handle.datasync(); } } });
    const signal = new AbortController().signal;
    expect(await backend.putIfAbsent('wal/0000000100000000/000000010000000000000001', bodyOver(content, 'blocking'), await meta(content), { signal, blockingCopy: true })).toEqual({ created: true });
    expect(flushes).toBe(2);
    expect(await backend.putIfAbsent('wal/0000000100000000/000000010000000000000002', bodyOver(content, 'async'), await meta(content), { signal })).toEqual({ created: true });
    for (const name of ['000000010000000000000001', '000000010000000000000002']) expect((await readFile(storedPath(name))).equals(content)).toBe(true);
    // With early writeback (the default where it works), a blocking copy starts it for each 2 MiB written.
    const ranges: number[][] = [];
    const withWriteback = new PosixBackend({
      kind: 'local',
      root: repo,
      ops: { writeback: recordingWriteback(ranges) },
    });
    expect(await withWriteback.putIfAbsent('wal/0000000100000000/000000010000000000000003', bodyOver(content, 'blocking'), await meta(content), { signal, blockingCopy: true })).toEqual({ created: true });
    // Writes on the thread pool may end out of order; each range is started once, after its write.
    expect([...ranges].sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0))).toEqual([[0, 2 * MiB], [2 * MiB, 2 * MiB]]);
    expect((await readFile(storedPath('000000010000000000000003'))).equals(content)).toBe(true);
  });

  it('links no file into a new folder before that folder\'s entry is durable, also for parallel stores that found it already made', async () => {
    const content = pseudoRandomBytes(64 * 1024, 'new folder');
    const events: string[] = [];
    const backend = new PosixBackend({
      kind: 'local',
      root: repo,
      ops: {
        link: recordingLink(events),
        fsyncPath: async (target) => {
          // The parents' syncs are slow, so a store that did not wait for them would link first.
          if (target === repo || target === path.join(repo, 'wal')) await new Promise((resolve) => setTimeout(resolve, 150));
          await fsyncFile(target);
          if (target === repo || target === path.join(repo, 'wal')) events.push(`fsync ${path.relative(repo, target) || '.'}`);
        },
      },
    });
    const signal = new AbortController().signal;
    const names = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003'];
    const stored = await Promise.all(names.map(async (name) => backend.putIfAbsent(`wal/0000000100000000/${name}`, Buffer.from(content), await meta(content), { signal })));
    expect(stored).toEqual(names.map(() => ({ created: true })));
    // "." made durable the entry of wal, wal the entry of 0000000100000000: both before any link.
    expect(events.slice(0, 2).sort()).toEqual(['fsync .', 'fsync wal']);
    expect(events.slice(2).sort()).toEqual(names.map((name) => `link ${name}`));
  });

  it("runs blocking copies one at a time, first come first served (the others' disk work goes on meanwhile)", async () => {
    const content = pseudoRandomBytes(6 * MiB, 'turns');
    const backend = new PosixBackend({ kind: 'local', root: repo });
    const signal = new AbortController().signal;
    const order: string[] = [];
    const traced = (label: string) => {
      const body = bodyOver(content, 'blocking');
      return { ...body, pullSync: (into: Buffer) => (order.push(label), body.pullSync(into)) };
    };
    const names = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003'];
    await Promise.all(names.map(async (name) => backend.putIfAbsent(`wal/0000000100000000/${name}`, traced(name), await meta(content), { signal, blockingCopy: true })));
    // Each copy pulls 6 chunks and a final 0 with no other copy's pull in between (in whichever order they came).
    const runs = order.filter((label, index) => index === 0 || order[index - 1] !== label);
    expect([...runs].sort()).toEqual(names);
    for (const name of names) expect((await readFile(storedPath(name))).equals(content)).toBe(true);
  });

  it('archives through the blocking path with the hash of exactly the stored bytes, and still refuses a file that grew', async () => {
    const content = pseudoRandomBytes(3 * MiB + 5, 'pushed ahead');
    await writeWalFile(dataDir, SEGMENT, content);
    await archive(SEGMENT, { blockingCopy: true });
    expect((await readFile(storedPath(SEGMENT))).equals(content)).toBe(true);
    expect(JSON.parse(await readFile(`${storedPath(SEGMENT)}~meta`, 'utf8')).contentHash).toBe(await hashBuffer(content));

    const other = '00000001000000000000000B';
    const source = path.join(dataDir, await writeWalFile(dataDir, other, pseudoRandomBytes(MiB, 'growing too')));
    const local = createLocalBackend({ root: repo });
    const growing: Backend = Object.assign(Object.create(local) as Backend, {
      putIfAbsent: async (...args: Parameters<Backend['putIfAbsent']>) => {
        await appendFile(source, Buffer.alloc(4096, 1));
        return local.putIfAbsent(...args);
      },
    });
    await expect(archive(other, { backend: growing, blockingCopy: true })).rejects.toMatchObject({ kind: 'source' });
    expect((await filesUnder(repo)).filter((name) => name.includes(other))).toEqual([]);
  });
});

describe('archive with a codec to a POSIX repository: the backend pulls the encoded bytes (EncodingSource)', () => {
  const MiB16 = 16 * MiB;

  it.each(['lz4', 'zstd'] as const)('%s: several files at once, sizes not a multiple of 1 MiB, decoded by the standard tool to the original, with the hash of the original', async (codec) => {
    const names = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003', '000000010000000000000004'];
    const contents = [walLikeData(MiB16), walLikeData(3 * MiB + 12345), Buffer.alloc(MiB - 1, 7), walLikeData(2 * MiB)];
    for (const [index, name] of names.entries()) await writeWalFile(dataDir, name, contents[index] as Buffer);
    // At once, as the pusher runs them: they share the reused 1 MiB blocks (core/buffers.ts).
    await Promise.all(names.map((name) => archive(name, { encode: { compress: codec }, blockingCopy: true })));
    for (const [index, name] of names.entries()) {
      const stored = await readFile(storedPath(name));
      const content = contents[index] as Buffer;
      expect(stored.length, name).toBeLessThan(content.length);
      const decoded = execFileSync(codec, ['-d', '-c'], { input: stored, maxBuffer: 64 << 20 });
      expect(decoded.equals(content), name).toBe(true);
      const meta = JSON.parse(await readFile(`${storedPath(name)}~meta`, 'utf8'));
      expect(meta).toMatchObject({ contentHash: await hashBuffer(content), contentSize: content.length, codec });
    }
    expect((await filesUnder(repo)).filter((name) => name.includes('~tmp~'))).toEqual([]);
  });

  it('waits for the codec admission before it opens anything: a push waiting for its turn has no temp file, and goes on once a place is free', async () => {
    const { codecPoolState } = await import('../../src/codec/pool.js');
    const held: Array<() => void> = [];
    // Every place taken (the pool admits a few pipelines at once): two pipelines that never end.
    while (codecPoolState().admittedGroups < codecPoolState().admissionLimit) held.push(await (await createEncoder({ compress: 'lz4' })).admit());
    const content = walLikeData(3 * MiB);
    await writeWalFile(dataDir, SEGMENT, content);
    const busy = codecPoolState().busyStreams;
    let settled = false;
    const pushing = archive(SEGMENT, { encode: { compress: 'lz4' } }).finally(() => {
      settled = true;
    });
    // A bounded wait (10 s at the least): the push counts as a busy stream once it waits for its place.
    for (let turn = 0; turn < 2000 && codecPoolState().busyStreams === busy; turn += 1) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(codecPoolState().busyStreams).toBe(busy + 1);
    expect(settled).toBe(false);
    expect((await filesUnder(repo)).filter((name) => name.includes(SEGMENT))).toEqual([]);
    for (const release of held.splice(0)) release();
    await pushing;
    expect(execFileSync('lz4', ['-d', '-c'], { input: await readFile(storedPath(SEGMENT)), maxBuffer: 64 << 20 }).equals(content)).toBe(true);
    expect(codecPoolState().admittedGroups).toBe(0);
  });

  it('stores nothing when the file grows while it is read, nor for a level out of range', async () => {
    const source = path.join(dataDir, await writeWalFile(dataDir, SEGMENT, walLikeData(2 * MiB)));
    const local = createLocalBackend({ root: repo });
    const growing: Backend = Object.assign(Object.create(local) as Backend, {
      putIfAbsent: async (...args: Parameters<Backend['putIfAbsent']>) => {
        await appendFile(source, Buffer.alloc(4096, 1));
        return local.putIfAbsent(...args);
      },
    });
    await expect(archive(SEGMENT, { backend: growing, encode: { compress: 'zstd' } })).rejects.toMatchObject({ kind: 'source', message: `file to archive "${source}" changed while it was being archived` });
    expect((await filesUnder(repo)).filter((name) => !name.startsWith('walvault'))).toEqual([]);
    // A level out of range fails before any data moves.
    await expect(archive(SEGMENT, { encode: { compress: 'zstd', level: 99 } })).rejects.toMatchObject({ kind: 'usage' });
    expect((await filesUnder(repo)).filter((name) => !name.startsWith('walvault'))).toEqual([]);
  });
});

describe('archive, one read into a reused buffer (S3 repository)', () => {
  let server: S3TestServer;
  useS3Scenario({ scratch: false, bind: (scenario) => ({ server } = scenario) });

  it('stores consecutive files of different sizes intact through the reused buffer, each with its own hash', async () => {
    const prefix = 'onepass';
    const backend = s3Backend(server, prefix, { logger: memoryLogger() });
    const names = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003'];
    const contents = [pseudoRandomBytes(3 * MiB, 'a'), pseudoRandomBytes(MiB + 17, 'b'), pseudoRandomBytes(2 * MiB, 'c')];
    for (const [index, name] of names.entries()) await writeWalFile(dataDir, name, contents[index]!);
    server.resetRequests();
    await Promise.all(names.slice(0, 2).map((name) => archive(name, { backend })));
    await archive(names[2]!, { backend });
    for (const [index, name] of names.entries()) {
      const object = await getRaw(server, segmentKey(prefix, name));
      expect(object?.body.equals(contents[index]!), name).toBe(true);
      expect(object?.metadata['walvault-content-hash']).toBe(await hashBuffer(contents[index]!));
    }
    // One request per file: no multipart upload for a file that fits one part.
    expect(server.requests.filter((request) => request.method === 'PUT' && request.key.includes('/wal/')).length).toBe(3);
  });
});
