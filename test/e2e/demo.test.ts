// `npm run demo` is the README's first command: it must keep telling the whole story, succeed, and
// leave nothing behind.

import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_DIR } from '../../scripts/lib/install.mjs';
import { run } from '../support/pg.js';

describe('npm run demo (scripts/demo.mjs)', () => {
  it('archives, takes a base backup with walvault backup, restores it with restore-backup, recovers to the restore point with exactly the rows from before the accident, and cleans up', async () => {
    const result = await run(process.execPath, [path.join(PROJECT_DIR, 'scripts', 'demo.mjs')], { cwd: PROJECT_DIR, allowFailure: true, timeoutMs: 170_000 });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = result.stdout;
    expect(out).toMatch(/archive_command = '.*walvault-archive --repo=\S+ %p %f'/);
    expect(out).toMatch(/^ +walvault-archive: info: archived "[0-9A-F]{24}" to /m);
    expect(out).toMatch(/^ +walvault: info: backup "\S+" started \(pg_backup_start\)/m);
    expect(out).toMatch(/^ +backup (\S+) complete: [\d.]+ MiB \(stored [\d.]+ MiB\) in [\d.]+ m?s, WAL [0-9A-F]{24} \.\. [0-9A-F]{24} /m);
    expect(out).toMatch(/^ +backups\/\S+\/complete \(\d+ bytes\)$/m);
    expect(out).toMatch(/^ +restored backup \S+ into "\S+": \d+ files/m);
    expect(out).toMatch(/^ +recovery_target_name = 'before-the-accident'$/m);
    expect(out).toContain('pg_stat_archiver: archived_count = ');
    expect(out).toContain('failed_count = 0');
    expect(out).toMatch(/restore_command = '.*walvault-restore --repo=\S+ %f %p'/);
    expect(out).toContain('LOG:  recovery stopping at restore point "before-the-accident"');
    expect(out).toMatch(/orders: 1500 rows \(expected 1500\), total amount (\S+) \(expected \1\)/);
    expect(out).toContain('OK: the recovered cluster has exactly the rows from before the accident.');
    const tempDir = /^temp dir: (\S+)/m.exec(out)?.[1];
    expect(tempDir).toBeDefined();
    expect(existsSync(tempDir!)).toBe(false);
    // Nothing the demo started is still running once it has returned: no process works in its temp dir
    // (the servers and walvault's background workers run in the data directories inside it).
    expect(processesIn(tempDir!)).toEqual([]);
  }, 180_000);
});

/** Command lines of the processes whose working directory is in `root` or that name it (Linux /proc). */
function processesIn(root: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`).replace(/ \(deleted\)$/, '');
      const command = readFileSync(`/proc/${entry}/cmdline`, 'latin1').replaceAll('\0', ' ');
      if (cwd === root || cwd.startsWith(`${root}/`) || command.includes(root)) found.push(`${entry}: ${command}`);
    } catch {
      // the process ended meanwhile
    }
  }
  return found;
}
