// Local-directory repositories for the end-to-end scenarios: where a file is stored, and how to damage it.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { PitrRepo } from './pitr.js';

/** A PITR repository in a local directory. */
export interface LocalRepo extends PitrRepo {
  dir: string;
}

/** Where the local backend keeps a segment (wal/<timeline+log>/<name>) or a .history file (wal/<name>). */
export function storedPath(repo: LocalRepo, walFileName: string): string {
  return walFileName.endsWith('.history')
    ? path.join(repo.dir, 'wal', walFileName)
    : path.join(repo.dir, 'wal', walFileName.slice(0, 16), walFileName);
}

/** Flips 16 bytes in the middle of the stored file (same size, same owner, other content); returns the repair. */
export async function corruptStoredFile(repo: LocalRepo, walFileName: string): Promise<() => Promise<void>> {
  const file = storedPath(repo, walFileName);
  const handle = await fs.open(file, 'r+');
  try {
    const { size } = await handle.stat();
    const original = Buffer.alloc(16);
    const offset = Math.floor(size / 2);
    await handle.read(original, 0, 16, offset);
    await handle.write(Buffer.from(original.map((byte) => byte ^ 0xff)), 0, 16, offset);
    return async () => {
      const again = await fs.open(file, 'r+');
      try {
        await again.write(original, 0, 16, offset);
      } finally {
        await again.close();
      }
    };
  } finally {
    await handle.close();
  }
}
