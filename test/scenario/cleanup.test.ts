// walvault cleanup on copies of a REAL three-timeline archive: --before (pg_archivecleanup semantics),
// --keep-backups N (only complete backups count), --dry-run; verify stays clean afterwards.
import * as fs from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import { cleanupArchive } from '../../src/policy/cleanup.js';
import { verifyArchive } from '../../src/policy/verify.js';
import { makeScratchDir, run } from '../support/pg.js';
import { copyArchive, layoutOf, objectPath, realArchive, type ArchiveLayout, type RealArchive } from '../support/real-archive.js';
import { parseSegmentName, segmentFileName, segmentNumber } from '../../src/wal/names.js';

let archive: RealArchive;
let scratch: string;
let copies = 0;

const freshCopy = async (): Promise<string> => copyArchive(archive, scratch, `repo-${(copies += 1)}`);

/** Every WAL file name in a local repository, sorted. */
const filesIn = async (repo: string): Promise<string[]> => (await layoutOf(repo)).all;

let layout: ArchiveLayout;
/** Files of the intact archive older (by segment position) than `name`, i.e. what a cutoff at `name` removes; never history files. */
const olderThan = (name: string): string[] =>
  layout.all.filter((file) => !file.endsWith('.history') && file.slice(8, 24) < name.slice(8, 24)).sort((a, b) => (a.slice(8) < b.slice(8) ? -1 : a.slice(8) > b.slice(8) ? 1 : a < b ? -1 : 1));
const startOf = (label: 'base-a' | 'base-b' | 'base-c'): string => archive.backups[label].slice(0, 24);

beforeAll(async () => {
  archive = await realArchive();
  layout = await layoutOf(archive.template);
  scratch = await makeScratchDir('walvault-cleanup');
  return async () => {
    await fs.rm(scratch, { recursive: true, force: true });
  };
}, 600_000);

describe('walvault cleanup', () => {
  it('the real archive has the shape these cases rely on: three backups, two history files', async () => {
    expect(layout.backups).toHaveLength(3);
    expect(layout.histories).toEqual(['00000002.history', '00000003.history']);
    expect(startOf('base-a') < startOf('base-b')).toBe(true);
  });

  it('--before SEGMENT removes older segments of every timeline and the backups they start, never history files', async () => {
    const repo = await freshCopy();
    const cutoff = layout.segments[2]![0]!; // where timeline 2 forks from timeline 1
    const report = await cleanupArchive(createLocalBackend({ root: repo }), { before: cutoff });
    expect(report.removed).toEqual(olderThan(cutoff));
    expect(report.removed).toContain(archive.backups['base-a']);
    expect(report.cutoff).toBe(cutoff);
    expect(await filesIn(repo)).toEqual(layout.all.filter((name) => !report.removed.includes(name)));
    const after = await verifyArchive(createLocalBackend({ root: repo }));
    expect(after.findings.filter((finding) => finding.severity === 'error')).toEqual([]);
    expect(after.backups.map((backup) => backup.label)).toEqual(['base-b', 'base-c']);
  });

  it('--keep-backups 1 keeps the newest backup (base-c on timeline 2) and everything from its start on', async () => {
    const repo = await freshCopy();
    const report = await cleanupArchive(createLocalBackend({ root: repo }), { keepBackups: 1 });
    expect(report.keptBackups.map((backup) => backup.label)).toEqual(['base-c']);
    expect(report.cutoff).toBe(startOf('base-c'));
    expect(report.removed).toEqual(olderThan(startOf('base-c')));
    expect((await filesIn(repo)).filter((name) => name.endsWith('.history'))).toEqual(['00000002.history', '00000003.history']);
    const after = await verifyArchive(createLocalBackend({ root: repo }), { backup: 'base-c' });
    expect(after.ok).toBe(true);
    expect(after.backups[0]!.windows.map((window) => window.timeline)).toEqual([2, 3]);
  });

  it('--keep-backups skips a backup whose WAL is incomplete, so the older good one keeps its WAL', async () => {
    const repo = await freshCopy();
    await fs.rm(objectPath(repo, startOf('base-b'))); // base-b can no longer be restored
    const report = await cleanupArchive(createLocalBackend({ root: repo }), { keepBackups: 2 });
    expect(report.incompleteBackups.map((backup) => backup.label)).toEqual(['base-b']);
    expect(report.keptBackups.map((backup) => backup.label)).toEqual(['base-c', 'base-a']);
    expect(report.removed).toEqual(olderThan(startOf('base-a')));
    expect(report.removed.length).toBeGreaterThan(0);
  });

  it('--dry-run lists the same files and removes nothing', async () => {
    const repo = await freshCopy();
    const dry = await cleanupArchive(createLocalBackend({ root: repo }), { keepBackups: 1, dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(dry.removed).toEqual(olderThan(startOf('base-c')));
    expect(await filesIn(repo)).toEqual(layout.all);
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
    const cutoff = segmentFileName(1, segmentNumber(parseSegmentName(startOf('base-a'))!, 1048576) + 1n, 1048576);
    const doomed = olderThan(cutoff);
    const dry = await run(archive.walvault.walvault, ['cleanup', `--repo=${repo}`, '--before', cutoff, '--dry-run'], { allowFailure: true });
    expect(dry.code).toBe(0);
    const [summary, ...listed] = dry.stdout.trimEnd().split('\n');
    // The figure is the original (uncompressed) size each file's ~meta records, in MiB with one decimal.
    let doomedBytes = 0;
    for (const name of doomed) doomedBytes += (JSON.parse(await fs.readFile(`${objectPath(repo, name)}~meta`, 'utf8')) as { contentSize: number }).contentSize;
    expect(doomedBytes).toBeGreaterThan(1 << 20);
    expect(summary).toBe(`would remove ${doomed.length} files (${(doomedBytes / (1 << 20)).toFixed(1)} MiB) older than ${cutoff} from "${repo}": ${doomed[0]} .. ${doomed.at(-1)}`);
    expect(listed).toEqual(doomed.map((name) => `  would remove ${name}`));
    const real = await run(archive.walvault.walvault, ['cleanup', `--repo=${repo}`, '--before', cutoff, '--quiet'], { allowFailure: true });
    expect(real).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(await filesIn(repo)).toEqual(layout.all.filter((name) => !doomed.includes(name)));
    const bad = await run(archive.walvault.walvault, ['cleanup', `--repo=${repo}`], { allowFailure: true });
    expect(bad.code).toBe(2);
  });
});
