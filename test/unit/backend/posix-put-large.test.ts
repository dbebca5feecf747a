// putLarge on the POSIX backends (base-backup tars): a stream of unknown length lands under its key
// whole, with no sidecar; an existing key is refused and left alone; a stream that fails leaves
// nothing, not even a temp file.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../../src/backend/local.js';
import type { Backend } from '../../../src/backend/types.js';
import { WalvaultError } from '../../../src/core/errors.js';
import { makeTempDir } from '../../support/tmp.js';

let temp: { dir: string; remove(): Promise<void> };
let backend: Backend;
const ctx = () => ({ signal: new AbortController().signal });
beforeEach(async () => {
  temp = await makeTempDir('walvault-putlarge-');
  backend = createLocalBackend({ root: temp.dir });
});
afterEach(async () => {
  await temp.remove();
});

/** 40 MiB in 1 MiB chunks, each chunk filled with its index. */
function chunks(count: number, failAt?: number): Readable {
  return Readable.from(
    (async function* () {
      for (let index = 0; index < count; index += 1) {
        if (index === failAt) throw new Error('the source broke');
        yield Buffer.alloc(1 << 20, index);
      }
    })(),
    { objectMode: false },
  );
}

describe('putLarge on a local repository', () => {
  it('stores a stream of unknown length whole under its key, mode 0600, without walvault metadata', async () => {
    const result = await backend.putLarge!('backups/x/base.tar', chunks(40), ctx());
    expect(result).toEqual({ storedSize: 40 << 20 });
    const file = path.join(temp.dir, 'backups', 'x', 'base.tar');
    const data = await readFile(file);
    expect(data.length).toBe(40 << 20);
    expect(data[(7 << 20) + 5]).toBe(7);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readdir(path.dirname(file))).toEqual(['base.tar']);
    const found = await backend.stat('backups/x/base.tar', ctx());
    expect(found).toMatchObject({ exists: true, storedSize: 40 << 20, meta: null });
  });

  it("refuses a key that exists with 'mismatch' and leaves it untouched", async () => {
    await backend.putLarge!('backups/x/base.tar', chunks(1), ctx());
    const error = await backend.putLarge!('backups/x/base.tar', chunks(2), ctx()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(WalvaultError);
    expect((error as WalvaultError).kind).toBe('mismatch');
    expect((error as WalvaultError).message).toMatch(/^".*base\.tar" already exists; nothing was changed$/);
    expect((await stat(path.join(temp.dir, 'backups', 'x', 'base.tar'))).size).toBe(1 << 20);
  });

  it('a source that fails partway leaves nothing under the key and no temp file', async () => {
    await writeFile(path.join(temp.dir, 'keep'), '');
    const error = await backend.putLarge!('backups/y/base.tar', chunks(10, 5), ctx()).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(WalvaultError);
    expect((error as WalvaultError).message).toContain('the source broke');
    expect(await readdir(path.join(temp.dir, 'backups', 'y'))).toEqual([]);
  });
});
