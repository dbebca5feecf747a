// walvault cleanup on copies of a REAL three-timeline archive: --before (pg_archivecleanup semantics),
// --keep-backups N (only complete backups count), --dry-run; verify stays clean afterwards.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import { cleanupArchive } from '../../src/policy/cleanup.js';
import { verifyArchive } from '../../src/policy/verify.js';
import { makeScratchDir, run } from '../support/pg.js';
import { copyArchive, objectPath, realArchive, type RealArchive } from '../support/real-archive.js';

let archive: RealArchive;
let scratch: string;
let copies = 0;

const freshCopy = async (): Promise<string> => copyArchive(archive, scratch, `repo-${(copies += 1)}`);

/** Every WAL file name in a local repository, sorted. */
async function filesIn(repo: string): Promise<string[]> {
  const entries = await fs.readdir(path.join(repo, 'wal'), { recursive: true });
  return entries.map((entry) => path.basename(String(entry))).filter((name) => /^([0-9A-F]{24}(\.[0-9A-F]{8}\.backup|\.partial)?|[0-9A-F]{8}\.history)$/.test(name)).sort();
}

const ALL = [
  '000000010000000000000006', '000000010000000000000007', '000000010000000000000007.00000028.backup', '000000010000000000000008',
  '000000010000000000000009', '00000001000000000000000A', '00000001000000000000000A.00000028.backup', '00000001000000000000000B',
  '00000002.history', '000000020000000000000009', '00000002000000000000000A', '00000002000000000000000A.00000028.backup',
  '00000002000000000000000B', '00000002000000000000000C', '00000003.history', '00000003000000000000000D', '00000003000000000000000E',
  '00000003000000000000000F',
];

beforeAll(async () => {
  archive = await realArchive();
  scratch = await makeScratchDir('walvault-cleanup');
  return async () => {
    await fs.rm(scratch, { recursive: true, force: true });
  };
}, 600_000);

describe('walvault cleanup', () => {
  it('the real archive holds what these cases expect', async () => {
    expect(await filesIn(archive.template)).toEqual(ALL);
  });

  it('--before SEGMENT removes older segments of every timeline and the backups they start, never history files', async () => {
    const repo = await freshCopy();
    const report = await cleanupArchive(createLocalBackend({ root: repo }), { before: '000000020000000000000009' });
    expect(report.removed).toEqual(['000000010000000000000006', '000000010000000000000007', '000000010000000000000007.00000028.backup', '000000010000000000000008']);
    expect(report.cutoff).toBe('000000020000000000000009');
    expect(await filesIn(repo)).toEqual(ALL.filter((name) => !report.removed.includes(name)));
    const after = await verifyArchive(createLocalBackend({ root: repo }));
    expect(after.findings.filter((finding) => finding.severity === 'error')).toEqual([]);
    expect(after.backups.map((backup) => backup.label)).toEqual(['base-b', 'base-c']);
  });

  it('--keep-backups 1 keeps the newest backup (base-c on timeline 2) and everything from its start on', async () => {
    const repo = await freshCopy();
    const report = await cleanupArchive(createLocalBackend({ root: repo }), { keepBackups: 1 });
    expect(report.keptBackups.map((backup) => backup.label)).toEqual(['base-c']);
    expect(report.cutoff).toBe('00000002000000000000000A');
    expect(report.removed).toEqual([
      '000000010000000000000006', '000000010000000000000007', '000000010000000000000007.00000028.backup', '000000010000000000000008',
      '000000010000000000000009', '000000020000000000000009',
    ]);
    expect((await filesIn(repo)).filter((name) => name.endsWith('.history'))).toEqual(['00000002.history', '00000003.history']);
    const after = await verifyArchive(createLocalBackend({ root: repo }), { backup: 'base-c' });
    expect(after.ok).toBe(true);
    expect(after.backups[0]!.windows.map((window) => window.untilLsn)).toEqual(['0/D00000', '0/1000000']);
  });

  it('--keep-backups skips a backup whose WAL is incomplete, so the older good one keeps its WAL', async () => {
    const repo = await freshCopy();
    await fs.rm(objectPath(repo, '00000001000000000000000A')); // base-b can no longer be restored
    const report = await cleanupArchive(createLocalBackend({ root: repo }), { keepBackups: 2 });
    expect(report.incompleteBackups.map((backup) => backup.label)).toEqual(['base-b']);
    expect(report.keptBackups.map((backup) => backup.label)).toEqual(['base-c', 'base-a']);
    expect(report.removed).toEqual(['000000010000000000000006']);
  });

  it('--dry-run lists the same files and removes nothing', async () => {
    const repo = await freshCopy();
    const dry = await cleanupArchive(createLocalBackend({ root: repo }), { keepBackups: 1, dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(dry.removed).toHaveLength(6);
    expect(await filesIn(repo)).toEqual(ALL);
  });

  it('refuses without a rule, with a bad --before, and --keep-backups without any backup', async () => {
    const backend = createLocalBackend({ root: await freshCopy() });
    await expect(cleanupArchive(backend, {})).rejects.toMatchObject({ kind: 'usage', message: 'cleanup needs --before SEGMENT or --keep-backups N' });
    await expect(cleanupArchive(backend, { before: '00000002.history' })).rejects.toMatchObject({ kind: 'usage', message: '--before "00000002.history" is not a WAL segment name' });
    const empty = await makeScratchDir('walvault-cleanup-empty');
    await expect(cleanupArchive(createLocalBackend({ root: empty }), { keepBackups: 1 })).rejects.toMatchObject({ kind: 'usage' });
    await fs.rm(empty, { recursive: true, force: true });
  });

  it('works from the installed command line as archive_cleanup_command would call it (%r), and --dry-run prints the files', async () => {
    const repo = await freshCopy();
    const dry = await run(archive.walvault.walvault, ['cleanup', `--repo=${repo}`, '--before', '000000010000000000000008', '--dry-run'], { allowFailure: true });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe(
      [
        `would remove 3 files (2.0 MiB) older than 000000010000000000000008 from "${repo}": 000000010000000000000006 .. 000000010000000000000007.00000028.backup`,
        '  would remove 000000010000000000000006',
        '  would remove 000000010000000000000007',
        '  would remove 000000010000000000000007.00000028.backup',
        '',
      ].join('\n'),
    );
    const real = await run(archive.walvault.walvault, ['cleanup', `--repo=${repo}`, '--before', '000000010000000000000008', '--quiet'], { allowFailure: true });
    expect(real).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(await filesIn(repo)).toEqual(ALL.slice(3));
    const bad = await run(archive.walvault.walvault, ['cleanup', `--repo=${repo}`], { allowFailure: true });
    expect(bad.code).toBe(2);
  });
});
