// Early writeback through WASI's fd_advise (posix_fadvise POSIX_FADV_DONTNEED): it reaches the kernel,
// it never prints Node's ExperimentalWarning for WASI, and it gives null where it cannot work.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, fsyncSync, closeSync, writeSync, rmSync, symlinkSync, mkdirSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openWriteback, type Writeback } from '../../src/backend/posix/writeback.js';
import { pseudoRandomBytes, readBytesFromStorage } from '../support/walfile.js';

const distWriteback = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../dist/backend/posix/writeback.js');
const MiB = 1024 * 1024;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'walvault-writeback-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `content` to a new file and fsyncs it: its pages are then clean and cached. */
function writeDurably(file: string, content: Buffer): void {
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

describe('openWriteback', () => {
  /**
   * Writes `content` durably to `name` (cached), checks a read comes from the cache, opens the file
   * for writeback, lets `advise` use it and closes it; returns how many bytes reading the file again
   * fetched from the disk. Needs Linux's /proc/self/io (the test fails without it, it cannot tell otherwise).
   */
  const fromDiskAfter = (name: string, content: Buffer, advise: (writeback: Writeback) => void): number => {
    const file = path.join(dir, name);
    writeDurably(file, content);
    const before = readBytesFromStorage();
    expect(before, 'reading /proc/self/io (read_bytes)').not.toBeNull();
    if (before === null) throw new Error('unreachable');
    expect(readFileSync(file).equals(content)).toBe(true);
    // Read from the page cache first (nothing, or next to nothing, from the disk).
    expect((readBytesFromStorage() ?? 0) - before).toBeLessThan(MiB);
    const writeback = openWriteback(file);
    expect(writeback).not.toBeNull();
    advise(writeback!);
    writeback?.close();
    const again = readBytesFromStorage() ?? 0;
    expect(readFileSync(file).equals(content)).toBe(true);
    return (readBytesFromStorage() ?? 0) - again;
  };

  it('advises DONTNEED on the range: the kernel drops its clean cached pages, so reading them again goes to the disk', () => {
    const content = pseudoRandomBytes(4 * MiB, 'writeback');
    const fromDisk = fromDiskAfter('segment', content, (writeback) => writeback.start(0, content.length));
    expect(fromDisk).toBeGreaterThanOrEqual(3 * MiB);
  });

  it('drop() advises DONTNEED on the whole file: every page of a durable file leaves the cache', () => {
    const content = pseudoRandomBytes(6 * MiB + 4096, 'drop');
    const fromDisk = fromDiskAfter('stored', content, (writeback) => {
      writeback.drop();
      writeback.close();
      // After close it does nothing.
      writeback.drop();
    });
    expect(fromDisk).toBeGreaterThanOrEqual(6 * MiB);
  });

  it('follows symbolic links in the path (a repository under a linked directory)', () => {
    const real = path.join(dir, 'real');
    mkdirSync(real);
    symlinkSync(real, path.join(dir, 'linked'));
    writeDurably(path.join(real, 'file'), Buffer.alloc(8192, 1));
    const writeback = openWriteback(path.join(dir, 'linked', 'file'));
    expect(writeback).not.toBeNull();
    writeback?.start(0, 8192);
    writeback?.close();
    // A second close and a start after close do nothing.
    writeback?.close();
    writeback?.start(0, 8192);
  });

  it('gives null for a relative path, a missing file and a file it may not open (the caller then uses fdatasync)', () => {
    expect(openWriteback('relative/file')).toBeNull();
    expect(openWriteback(path.join(dir, 'missing'))).toBeNull();
    const locked = path.join(dir, 'write-only');
    writeDurably(locked, Buffer.alloc(10));
    chmodSync(locked, 0o200);
    if (process.getuid?.() === 0) {
      // Root opens any file: ask as the postgres OS user, in a child process.
      chmodSync(dir, 0o755);
      const script = `const { openWriteback } = await import(${JSON.stringify(pathToFileURL(distWriteback).href)});
        process.stdout.write(String(openWriteback(${JSON.stringify(locked)})));`;
      const asPostgres = spawnSync('runuser', ['-u', 'postgres', '--', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
      expect(asPostgres.stderr).toBe('');
      expect(asPostgres.stdout).toBe('null');
    } else {
      expect(openWriteback(locked)).toBeNull();
    }
  });

  it("never prints Node's ExperimentalWarning for WASI (it would land in the server log)", () => {
    const file = path.join(dir, 'quiet');
    writeDurably(file, Buffer.alloc(4096, 2));
    const script = `const { openWriteback } = await import(${JSON.stringify(pathToFileURL(distWriteback).href)});
      const writeback = openWriteback(${JSON.stringify(file)});
      if (writeback === null) throw new Error('no writeback');
      writeback.start(0, 4096);
      writeback.close();
      await new Promise((resolve) => setTimeout(resolve, 50));
      process.emitWarning('a later warning still shows');`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.status).toBe(0);
    expect(run.stderr).not.toMatch(/WASI|ExperimentalWarning/);
    expect(run.stderr).toContain('a later warning still shows');
  });
});
