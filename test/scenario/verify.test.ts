// walvault verify against a REAL archive (three timelines from PITR and a promotion, three base
// backups), intact and then damaged one way at a time: each case asserts that verify reports exactly
// that damage and nothing else.
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import { hashBuffer } from '../../src/core/hash.js';
import { verifyArchive, type VerifyOptions, type VerifyReport } from '../../src/policy/verify.js';
import { formatLsn, objectKey, parseSegmentName, segmentFileName, segmentNumber } from '../../src/wal/names.js';
import { makeScratchDir, run } from '../support/pg.js';
import { copyArchive, layoutOf, objectPath, realArchive, type ArchiveLayout, type RealArchive } from '../support/real-archive.js';

const MiB = 1048576;
/** Segment number of a segment name (1 MiB segments). */
const segno = (name: string): bigint => segmentNumber(parseSegmentName(name)!, MiB);
/** The segment `offset` segments after `name`, on timeline `timeline` (default: the same). */
const step = (name: string, offset: number, timeline = parseSegmentName(name)!.timeline): string => segmentFileName(timeline, segno(name) + BigInt(offset), MiB);
/** The LSN just past a segment: how far recovery gets when it is the last one. */
const endOf = (name: string): string => formatLsn((segno(name) + 1n) * BigInt(MiB));

let archive: RealArchive;
let layout: ArchiveLayout;
/** First and last segment of each timeline. */
const first = (timeline: number): string => layout.segments[timeline]![0]!;
const last = (timeline: number): string => layout.segments[timeline]!.at(-1)!;
/** Start segment of a backup, from its history file name. */
const startOf = (label: 'base-a' | 'base-b' | 'base-c'): string => archive.backups[label].slice(0, 24);
let scratch: string;
let copies = 0;

/** A fresh copy of the real archive for one case. */
async function freshCopy(): Promise<string> {
  copies += 1;
  return copyArchive(archive, scratch, `repo-${copies}`);
}

const verify = (repo: string, options: VerifyOptions = {}): Promise<VerifyReport> => verifyArchive(createLocalBackend({ root: repo }), options);

/** Findings as "severity code file" lines, the form the assertions compare. */
const findingsOf = (report: VerifyReport): string[] => report.findings.map((finding) => `${finding.severity} ${finding.code} ${finding.file ?? ''}`);

/** The one warning the intact archive has: base-b is on timeline 1 after the fork of timeline 2, so 'latest' (3) is not its descendant. */
const bySeverityThenFile = (a: string, b: string): number => {
  const [severityA = '', , fileA = ''] = a.split(' ');
  const [severityB = '', , fileB = ''] = b.split(' ');
  return severityA !== severityB ? (severityA === 'error' ? -1 : 1) : fileA < fileB ? -1 : fileA > fileB ? 1 : 0;
};
const baseline = (): string => `warning latest-timeline ${archive.backups['base-b']}`;

beforeAll(async () => {
  archive = await realArchive();
  layout = await layoutOf(archive.template);
  scratch = await makeScratchDir('walvault-verify');
  return async () => {
    await fs.rm(scratch, { recursive: true, force: true });
  };
}, 600_000);

describe('walvault verify on an intact real archive', () => {
  it('finds every object intact, three timelines without gaps and three restorable backups', async () => {
    const report = await verify(archive.template);
    expect(report.ok).toBe(true);
    expect(findingsOf(report)).toEqual([baseline()]);
    const segmentCount = layout.segments[1]!.length + layout.segments[2]!.length + layout.segments[3]!.length;
    expect(report.objects).toMatchObject({ segments: segmentCount, histories: 2, backups: 3, other: 0, temp: 0, documents: 1 });
    expect(report.clusters).toEqual([{ systemIdentifier: archive.systemIdentifier, serverVersions: ['15'], segmentSize: MiB, segments: segmentCount, recorded: true }]);
    expect(report.timelines.map((timeline) => [timeline.timeline, timeline.parent, timeline.ranges.map((range) => `${range.first}..${range.last}`), timeline.gaps])).toEqual([
      [1, null, [`${first(1)}..${last(1)}`], []],
      [2, 1, [`${first(2)}..${last(2)}`], []],
      [3, 2, [`${first(3)}..${last(3)}`], []],
    ]);
    // The shape this suite relies on: timeline 2 forks from timeline 1 after base-a and before base-b; timeline 3 after base-c.
    expect(segno(startOf('base-a')) < segno(first(2)) && segno(first(2)) <= segno(startOf('base-b'))).toBe(true);
    expect(segno(startOf('base-c')) + 1n < segno(first(3))).toBe(true);
    const windows = Object.fromEntries(report.backups.map((backup) => [backup.label, backup.windows.map((window) => `${window.timeline}:${window.untilLsn}${window.latest ? ' latest' : ''}`)]));
    expect(windows).toEqual({
      'base-a': [`1:${endOf(last(1))}`, `2:${endOf(last(2))}`, `3:${endOf(last(3))} latest`],
      'base-b': [`1:${endOf(last(1))}`],
      'base-c': [`2:${endOf(last(2))}`, `3:${endOf(last(3))} latest`],
    });
    expect(report.backups.every((backup) => backup.restorable)).toBe(true);
  });

  it("the base-b warning is real: PostgreSQL refuses to recover base-b with recovery_target_timeline = 'latest'", async () => {
    expect(archive.baseBLatestFatal).toBe("FATAL:  requested timeline 3 is not a child of this server's history");
    const report = await verify(archive.template, { backup: 'base-b' });
    expect(report.findings.map((finding) => finding.hint)).toEqual(['set recovery_target_timeline to one of: 1']);
  });

  it('--quick checks names, sizes and recorded hashes without reading segment content and agrees', async () => {
    const report = await verify(archive.template, { quick: true });
    expect(report.mode).toBe('quick');
    expect(report.objects.bytesRead).toBe(0);
    expect(findingsOf(report)).toEqual([baseline()]);
    expect(report.backups.map((backup) => backup.windows.length)).toEqual([3, 1, 2]);
  });

  it('--backup LABEL narrows the check to what that backup needs and says how far it restores', async () => {
    const report = await verify(archive.template, { backup: 'base-c' });
    expect(report.backups.map((backup) => backup.label)).toEqual(['base-c']);
    expect(report.ok).toBe(true);
    expect(report.findings).toEqual([]);
    expect(report.backups[0]!.windows.map((window) => window.untilLsn)).toEqual([endOf(last(2)), endOf(last(3))]);
    await expect(verify(archive.template, { backup: 'no-such' })).rejects.toMatchObject({
      kind: 'usage',
      message: `no backup with label or backup history file "no-such" in repository "${archive.template}"`,
      hint: `known backups: "base-a" (${archive.backups['base-a']}), "base-b" (${archive.backups['base-b']}), "base-c" (${archive.backups['base-c']})`,
    });
  });

  it('--from/--to restrict the segments checked', async () => {
    const from = startOf('base-b');
    const to = step(from, 1, 1);
    const report = await verify(archive.template, { from, to });
    const inRange = (timeline: number): number => layout.segments[timeline]!.filter((name) => name.slice(8) >= from.slice(8) && name.slice(8) <= to.slice(8)).length;
    expect(report.objects.checked).toBe(5 + inRange(1) + inRange(2) + inRange(3)); // backup and history files, then the segments in range
    expect(report.timelines.map((timeline) => timeline.segments)).toEqual([inRange(1), inRange(2), inRange(3)]);
    expect(report.backups.map((backup) => backup.label)).toEqual(['base-b', 'base-c']);
    expect(report.ok).toBe(true);
  });
});

describe('walvault verify on a damaged real archive reports exactly the damage', () => {
  it('a flipped byte in a segment: hash mismatch for that file, and base-a now restores only up to it', async () => {
    const repo = await freshCopy();
    const victim = step(startOf('base-a'), 1);
    expect(segno(victim) < segno(first(2))).toBe(true);
    const handle = await fs.open(objectPath(repo, victim), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 500_000);
    await handle.write(Buffer.from([byte[0]! ^ 0x01]), 0, 1, 500_000);
    await handle.close();
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([`error hash-mismatch ${victim}`, baseline()]);
    expect(report.findings[0]!.message).toMatch(/^".*[0-9A-F]{24}" does not match the hash recorded when it was archived \(recorded [0-9a-f]{16}, read [0-9a-f]{16}\)$/);
    expect(report.ok).toBe(false);
    const baseA = report.backups.find((backup) => backup.label === 'base-a')!;
    expect(baseA.restorable).toBe(true);
    expect(baseA.windows.map((window) => `${window.timeline}:${window.untilLsn}`)).toEqual([`1:${endOf(startOf('base-a'))}`]);
    // --quick reads no content, so it cannot see this: that is what the full check is for.
    expect(findingsOf(await verify(repo, { quick: true }))).toEqual([baseline()]);
  });

  it('a deleted segment: one gap on its timeline, nothing else', async () => {
    const repo = await freshCopy();
    const victim = step(startOf('base-c'), 1);
    await fs.rm(objectPath(repo, victim));
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([`error missing-segments ${victim}`, baseline()]);
    expect(report.findings[0]!.message).toBe(`segment "${victim}" is missing from timeline 2`);
    expect(report.timelines[1]!.gaps).toEqual([{ first: victim, last: victim, count: 1 }]);
    expect(report.backups.find((backup) => backup.label === 'base-c')!.windows.map((window) => window.untilLsn)).toEqual([endOf(startOf('base-c'))]);
  });

  it('a deleted segment a backup needs between start and stop: the gap, and that backup is not restorable', async () => {
    const repo = await freshCopy();
    const victim = startOf('base-c');
    await fs.rm(objectPath(repo, victim));
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([`error missing-segments ${victim}`, `error backup-incomplete ${archive.backups['base-c']}`, baseline()].sort(bySeverityThenFile));
    const baseC = report.backups.find((backup) => backup.label === 'base-c')!;
    expect(baseC).toMatchObject({ restorable: false, windows: [], missing: [{ first: victim, last: victim, count: 1 }] });
  });

  it('a truncated segment: named as truncated (full and quick), nothing else', async () => {
    const repo = await freshCopy();
    const victim = step(first(3), 1);
    await fs.truncate(objectPath(repo, victim), 8192);
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([`error truncated ${victim}`, baseline()]);
    expect(report.findings[0]!.message).toBe(`"${objectPath(repo, victim)}" holds 8192 bytes, but 1048576 were archived`);
    expect(findingsOf(await verify(repo, { quick: true }))).toEqual([`error truncated ${victim}`, baseline()]);
  });

  it('a segment from a second cluster: one error naming both system identifiers, nothing else', async () => {
    const repo = await freshCopy();
    const content = await fs.readFile(archive.foreign.file);
    const meta = { contentHash: await hashBuffer(content), contentSize: content.length, codec: 'none', encryption: 'none' };
    const put = await createLocalBackend({ root: repo }).putIfAbsent(objectKey(archive.foreign.name), createReadStream(archive.foreign.file), meta, { signal: new AbortController().signal });
    expect(put.created).toBe(true);
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([`error several-clusters ${archive.foreign.name}`, baseline()]);
    expect(report.findings[0]!.message).toBe(
      `the archive holds WAL of more than one database system: ${archive.systemIdentifier} (recorded in walvault.json) and ${archive.foreign.systemIdentifier} (1 segment: "${archive.foreign.name}")`,
    );
    expect(report.timelines[0]!.ranges).toHaveLength(1); // the foreign segment is not counted as timeline 1's WAL
  });

  it('a missing timeline history file: that timeline cannot be followed', async () => {
    const repo = await freshCopy();
    await fs.rm(objectPath(repo, '00000003.history'));
    const report = await verify(repo);
    expect(report.findings.filter((finding) => finding.severity === 'error').map((finding) => `${finding.code} ${finding.file}`)).toEqual(['missing-history 00000003.history']);
    expect(report.backups.find((backup) => backup.label === 'base-a')!.windows.map((window) => window.timeline)).toEqual([1, 2]);
  });

  it('a segment stored under another segment\'s name: the header check names the mismatch', async () => {
    const repo = await freshCopy();
    const victim = last(1);
    const source = step(victim, -1);
    await fs.copyFile(objectPath(repo, source), objectPath(repo, victim));
    await fs.copyFile(`${objectPath(repo, source)}~meta`, `${objectPath(repo, victim)}~meta`);
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([`error header ${victim}`, baseline()]);
    expect(report.findings[0]!.message).toBe(
      `"${victim}" header page address ${formatLsn(segno(source) * BigInt(MiB))} does not match its name (expected ${formatLsn(segno(victim) * BigInt(MiB))} for 1048576-byte segments)`,
    );
  });

  it('an object without recorded metadata: a warning that its content cannot be checked, header still checked', async () => {
    const repo = await freshCopy();
    const victim = step(first(3), 1);
    await fs.rm(`${objectPath(repo, victim)}~meta`);
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([baseline(), `warning no-hash ${victim}`]);
    expect(report.ok).toBe(true);
    expect(report.clusters[0]!.segments).toBe(layout.segments[1]!.length + layout.segments[2]!.length + layout.segments[3]!.length);
  });

  it('a damaged timeline history file (content and recorded hash agree, but it does not parse): named once', async () => {
    const repo = await freshCopy();
    const file = objectPath(repo, '00000002.history');
    const text = Buffer.from('1\tnot-an-lsn\tbroken\n');
    await fs.writeFile(file, text);
    const meta = JSON.parse(await fs.readFile(`${file}~meta`, 'utf8')) as Record<string, unknown>;
    await fs.writeFile(`${file}~meta`, `${JSON.stringify({ ...meta, contentHash: await hashBuffer(text), contentSize: text.length })}\n`);
    const report = await verify(repo);
    expect(report.findings.filter((finding) => finding.severity === 'error').map((finding) => `${finding.code} ${finding.file}: ${finding.message}`)).toEqual([
      'bad-history 00000002.history: timeline history for timeline 2 has a malformed line 1: "1\tnot-an-lsn\tbroken"',
    ]);
  });

  it('leftover temp files and foreign files are warnings: reported, exit still 0', async () => {
    const repo = await freshCopy();
    await fs.writeFile(path.join(repo, 'wal', '0000000100000000', '000000010000000000000010~tmp~host~123~abcd'), 'partial upload');
    await fs.writeFile(path.join(repo, 'wal', 'notes.txt'), 'hello');
    const report = await verify(repo);
    expect(report.ok).toBe(true);
    expect(findingsOf(report)).toEqual([
      baseline(),
      'warning temp-file wal/0000000100000000/000000010000000000000010~tmp~host~123~abcd',
      'warning not-wal wal/notes.txt',
    ]);
  });
});

describe('walvault verify (installed command line)', () => {
  it('prints the report and exits 0 on the intact archive, 12 with a one-line error on a damaged one; --json is machine-readable', async () => {
    const ok = await run(archive.walvault.walvault, ['verify', `--repo=${archive.template}`], { allowFailure: true });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('result: OK with 1 warning');
    expect(ok.stdout).toContain(`\n  3: ${first(3)} .. ${last(3)} (${layout.segments[3]!.length} segments)  (from timeline 2 at `);

    const repo = await freshCopy();
    const victim = step(startOf('base-c'), 1);
    await fs.rm(objectPath(repo, victim));
    const failed = await run(archive.walvault.walvault, ['verify', `--repo=${repo}`], { allowFailure: true });
    expect(failed.code).toBe(12);
    expect(failed.stdout).toContain(`     MISSING ${victim} (1 segment)`);
    expect(failed.stdout).toContain('result: FAILED, 1 error, 1 warning');
    expect(failed.stderr).toBe(`walvault: error: verify found 1 problem in repository "${repo}"; HINT: see the report on stdout: each problem has its own HINT\n`);

    const json = await run(archive.walvault.walvault, ['verify', `--repo=${repo}`, '--json', '--quick'], { allowFailure: true });
    expect(json.code).toBe(12);
    const parsed = JSON.parse(json.stdout) as VerifyReport;
    expect(parsed.findings.map((finding) => finding.code)).toEqual(['missing-segments', 'latest-timeline']);
    expect(parsed.mode).toBe('quick');
  });
});

describe('walvault-archive refuses WAL of a second cluster (installed command line)', () => {
  it('exits 10 naming both system identifiers and stores nothing; --force-new-cluster re-records deliberately', async () => {
    const repo = await freshCopy();
    const refused = await run(archive.walvault.archive, [`--repo=${repo}`, archive.foreign.file, archive.foreign.name], { allowFailure: true });
    expect(refused.code).toBe(10);
    expect(refused.stderr).toContain(
      `walvault-archive: error: refusing to archive "${archive.foreign.name}": it comes from database system ${archive.foreign.systemIdentifier} (PostgreSQL 15), but repository "${repo}" holds WAL of database system ${archive.systemIdentifier} (PostgreSQL 15)`,
    );
    await expect(fs.stat(objectPath(repo, archive.foreign.name))).rejects.toMatchObject({ code: 'ENOENT' });
    const forced = await run(archive.walvault.archive, [`--repo=${repo}`, '--force-new-cluster', archive.foreign.file, archive.foreign.name], { allowFailure: true });
    expect(forced.code).toBe(0);
    const document = JSON.parse(await fs.readFile(path.join(repo, 'walvault.json'), 'utf8')) as { cluster: { systemIdentifier: string }; previousClusters: Array<{ systemIdentifier: string }> };
    expect(document.cluster.systemIdentifier).toBe(archive.foreign.systemIdentifier);
    expect(document.previousClusters.map((record) => record.systemIdentifier)).toEqual([archive.systemIdentifier]);
  });
});
