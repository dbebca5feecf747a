// The POSIX backend's directory syncs on the per-file path: the parent of every folder on a key's path is
// fsynced before a file in it is reported durable, whether this process made the folder or found it
// (another process may have made it and not synced its parent yet). What a process synced itself it
// need not sync again: a pusher storing every segment of a timeline into one folder syncs that folder's
// parents once, not once per segment, as long as the folder is the very one it synced (same inode).
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PosixBackend } from '../../src/backend/posix/core.js';
import { hashBuffer } from '../../src/core/hash.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes } from '../support/walfile.js';

let temp: { dir: string; remove(): Promise<void> };
let repo: string;
beforeEach(async () => {
  temp = await makeTempDir();
  repo = path.join(temp.dir, 'repo');
  await (await import('node:fs/promises')).mkdir(repo);
});
afterEach(async () => {
  await temp.remove();
});

const signal = new AbortController().signal;
const content = pseudoRandomBytes(64 * 1024, 'dir sync');

/** A backend (one process's view) that records the syncs of the repository's folders ('.', 'wal', 'wal/0000000100000000'). */
function recordingBackend(events: string[]): PosixBackend {
  return new PosixBackend({
    kind: 'local',
    root: repo,
    ops: {
      fsyncPath: async (target) => {
        const handle = await open(target, 'r');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        const relative = path.relative(repo, target) || '.';
        if (!relative.includes('~') && !/^wal\/[0-9A-F]{16}\/[0-9A-F]{24}$/.test(relative)) events.push(`fsync ${relative}`);
      },
    },
  });
}

async function store(backend: PosixBackend, n: number): Promise<void> {
  const name = `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`;
  const meta = { contentHash: await hashBuffer(content), contentSize: content.length, codec: 'none', encryption: 'none' };
  expect(await backend.putIfAbsent(`wal/0000000100000000/${name}`, Buffer.from(content), meta, { signal })).toEqual({ created: true });
}

describe('directory syncs of the POSIX backend', () => {
  it('one process syncs the parents of a folder once, not once per file stored in it', async () => {
    const events: string[] = [];
    const backend = recordingBackend(events);
    for (const n of [1, 2, 3, 4]) await store(backend, n);
    const parents = events.filter((event) => event === 'fsync .' || event === 'fsync wal');
    expect(parents.sort()).toEqual(['fsync .', 'fsync wal']);
  });

  it('another process that finds the folders made syncs their parents itself', async () => {
    const first: string[] = [];
    await store(recordingBackend(first), 1);
    const second: string[] = [];
    await store(recordingBackend(second), 2);
    expect(second.filter((event) => event === 'fsync .' || event === 'fsync wal').sort()).toEqual(['fsync .', 'fsync wal']);
  });

  it('a folder replaced since (removed and made again by someone else) is synced again', async () => {
    const events: string[] = [];
    const backend = recordingBackend(events);
    await store(backend, 1);
    await rm(path.join(repo, 'wal', '0000000100000000'), { recursive: true });
    await (await import('node:fs/promises')).mkdir(path.join(repo, 'wal', '0000000100000000'));
    await store(backend, 2);
    // wal's entry in "." was made durable before and wal is the same folder: only the new folder's parent is synced.
    expect(events.filter((event) => event === 'fsync .' || event === 'fsync wal')).toEqual(['fsync .', 'fsync wal', 'fsync wal']);
  });
});
