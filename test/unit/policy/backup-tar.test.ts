// The tar of a base backup: what GNU tar reads back, what our reader reads back, and what happens to
// files that shrink, grow or vanish while the backup reads them (forced between the chunks the
// generator yields, beyond the one chunk it reads ahead, so the race is the same on every run).
import { spawnSync } from 'node:child_process';
import { appendFile, mkdir, readFile, readlink, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { tarOfTree, type TarProgress } from '../../../src/policy/backup.js';
import { readTar, type TarEntry } from '../../../src/policy/backup-tar.js';
import { hashBuffer } from '../../../src/core/hash.js';
import { makeTempDir } from '../../support/tmp.js';

let temp: { dir: string; remove(): Promise<void> };
beforeEach(async () => {
  temp = await makeTempDir('walvault-tar-');
});
afterEach(async () => {
  await temp.remove();
});

/** Everything a generator yields, as one buffer. */
async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(part);
  return Buffer.concat(parts);
}

/** Entries and file contents our reader finds. */
async function readBack(tar: Buffer): Promise<Array<TarEntry & { data: Buffer }>> {
  const entries: Array<TarEntry & { data: Buffer }> = [];
  await readTar(
    (async function* () {
      // Odd chunk sizes: headers and data split across chunks.
      for (let at = 0; at < tar.length; at += 777) yield tar.subarray(at, at + 777);
    })(),
    async (entry) => {
      const parts: Buffer[] = [];
      const record = { ...entry, data: Buffer.alloc(0) };
      entries.push(record);
      return { write: (data) => void parts.push(Buffer.from(data)), end: async () => void (record.data = Buffer.concat(parts)) };
    },
  );
  return entries;
}

describe('the tar of a tree', () => {
  it('holds files, a long path (pax), an empty directory and a symlink, as GNU tar and our reader read them', async () => {
    const root = path.join(temp.dir, 'tree');
    const deep = path.join('d'.repeat(60), 'e'.repeat(60));
    await mkdir(path.join(root, deep), { recursive: true });
    await mkdir(path.join(root, 'empty'));
    await writeFile(path.join(root, 'PG_VERSION'), '15\n');
    await writeFile(path.join(root, deep, 'f'.repeat(30)), Buffer.alloc(70_000, 7));
    await symlink('/somewhere/else', path.join(root, 'link'));
    const progress: TarProgress = { files: [], bytes: 0 };
    const tar = await collect(tarOfTree(root, { top: false, progress, onProgress: () => undefined }));
    expect(tar.length % 512).toBe(0);
    await writeFile(path.join(temp.dir, 'out.tar'), tar);
    const into = path.join(temp.dir, 'extracted');
    await mkdir(into);
    const extracted = spawnSync('tar', ['-xf', path.join(temp.dir, 'out.tar'), '-C', into], { encoding: 'utf8' });
    expect(extracted.stderr).toBe('');
    expect(extracted.status).toBe(0);
    expect(await readFile(path.join(into, deep, 'f'.repeat(30)))).toEqual(Buffer.alloc(70_000, 7));
    expect(await readFile(path.join(into, 'PG_VERSION'), 'utf8')).toBe('15\n');
    expect(await readlink(path.join(into, 'link'))).toBe('/somewhere/else');
    const entries = await readBack(tar);
    expect(entries.map((entry) => [entry.path, entry.type, entry.size])).toEqual([
      ['PG_VERSION', 'file', 3],
      ['d'.repeat(60), 'directory', 0],
      ['empty', 'directory', 0],
      ['link', 'symlink', 0],
      [path.join('d'.repeat(60), 'e'.repeat(60)), 'directory', 0],
      [`${deep}/${'f'.repeat(30)}`, 'file', 70_000],
    ]);
    expect(progress.files.map((file) => file.path).sort()).toEqual(['PG_VERSION', `${deep}/${'f'.repeat(30)}`]);
    expect(progress.files.find((file) => file.path === 'PG_VERSION')!.hash).toBe(await hashBuffer(Buffer.from('15\n')));
  });

  it('a file that shrinks while it is read is padded with zeros to the size its header announced, one that grows is cut there, one that vanishes before it is opened is left out', async () => {
    const root = path.join(temp.dir, 'tree');
    await mkdir(root);
    const shrinking = Buffer.alloc(3 << 20, 0x41);
    await writeFile(path.join(root, 'a-shrinks'), shrinking);
    await writeFile(path.join(root, 'b-grows'), Buffer.alloc(1000, 0x42));
    await writeFile(path.join(root, 'c-vanishes'), 'gone soon');
    await writeFile(path.join(root, 'd-stays'), 'here');
    const progress: TarProgress = { files: [], bytes: 0 };
    const chunks = tarOfTree(root, { top: false, progress, onProgress: () => undefined })[Symbol.asyncIterator]();
    const parts: Buffer[] = [];
    const first = await chunks.next();
    // The first chunk is the header of a-shrinks, written once the file was opened with its size.
    expect(first.value!.subarray(0, 8).toString('latin1')).toBe('a-shrink');
    parts.push(first.value!);
    parts.push((await chunks.next()).value!); // its first chunk (256 KiB); the read of the next one is already under way
    // Cut well beyond that read: every later read starts after the cut.
    await truncate(path.join(root, 'a-shrinks'), 2_500_000);
    await rm(path.join(root, 'c-vanishes'));
    for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) {
      parts.push(next.value);
      // b-grows was opened with 1000 bytes and its header written: it grows before its data is read.
      if (next.value.length === 512 && next.value.subarray(0, 7).toString('latin1') === 'b-grows') await appendFile(path.join(root, 'b-grows'), Buffer.alloc(5000, 0x43));
    }
    const entries = await readBack(Buffer.concat(parts));
    expect(entries.map((entry) => [entry.path, entry.size])).toEqual([
      ['a-shrinks', 3 << 20],
      ['b-grows', 1000],
      ['d-stays', 4],
    ]);
    const padded = Buffer.concat([Buffer.alloc(2_500_000, 0x41), Buffer.alloc((3 << 20) - 2_500_000)]);
    expect(entries[0]!.data.equals(padded)).toBe(true);
    expect(entries[1]!.data).toEqual(Buffer.alloc(1000, 0x42));
    // The manifest records what the tar holds.
    expect(progress.files.map((file) => file.path)).toEqual(['a-shrinks', 'b-grows', 'd-stays']);
    expect(progress.files[0]!.hash).toBe(await hashBuffer(padded));
  });

  it('a tar abandoned in the middle of a file (the pipeline failed) ends its read ahead cleanly and leaves nothing open', async () => {
    const root = path.join(temp.dir, 'tree');
    await mkdir(root);
    await writeFile(path.join(root, 'big'), Buffer.alloc(3 << 20, 0x44));
    const chunks = tarOfTree(root, { top: false, progress: { files: [], bytes: 0 }, onProgress: () => undefined })[Symbol.asyncIterator]();
    expect((await chunks.next()).value!.subarray(0, 3).toString('latin1')).toBe('big');
    expect((await chunks.next()).value!.length).toBeGreaterThan(0); // a read of the next chunk is now in flight
    expect(await chunks.return!(undefined)).toEqual({ done: true, value: undefined });
    // The handle was closed after the read in flight ended: the file is gone without an open descriptor holding it.
    const open = spawnSync('sh', ['-c', `ls -l /proc/${process.pid}/fd | grep -c "${path.join(root, 'big')}" || true`], { encoding: 'utf8' });
    expect(open.stdout.trim()).toBe('0');
  });

  it('the reader refuses a damaged header and an archive cut short', async () => {
    const root = path.join(temp.dir, 'tree');
    await mkdir(root);
    await writeFile(path.join(root, 'file'), Buffer.alloc(2000, 1));
    const tar = await collect(tarOfTree(root, { top: false, progress: { files: [], bytes: 0 }, onProgress: () => undefined }));
    const damaged = Buffer.from(tar);
    damaged[10] = 0x5a;
    await expect(readBack(damaged)).rejects.toThrow('tar archive has a damaged header (checksum mismatch)');
    await expect(readBack(tar.subarray(0, 1024))).rejects.toThrow(/tar archive ends inside "file"/);
    await expect(readBack(tar.subarray(0, 512 + 2048))).rejects.toThrow('tar archive ends without its end-of-archive blocks');
  });
});
