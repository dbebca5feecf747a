// Synthetic WAL-named files for tests that do not need a real server: deterministic pseudo-random content.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Deterministic bytes (so two calls with one seed give identical files). */
export function pseudoRandomBytes(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/**
 * Bytes this process has had fetched from storage (/proc/self/io read_bytes), or null without task
 * I/O accounting: tells a read from the page cache from one that went to the disk.
 */
export function readBytesFromStorage(): number | null {
  try {
    const match = /^read_bytes: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}

/** Writes a file into `<dataDir>/pg_wal` and returns its path relative to dataDir (as PostgreSQL's %p). */
export async function writeWalFile(dataDir: string, name: string, content: Buffer): Promise<string> {
  await mkdir(path.join(dataDir, 'pg_wal'), { recursive: true });
  await writeFile(path.join(dataDir, 'pg_wal', name), content);
  return `pg_wal/${name}`;
}
