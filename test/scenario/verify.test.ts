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
import { objectKey } from '../../src/wal/names.js';
import { run } from '../support/pg.js';
import { copyArchive, objectPath, realArchive, type RealArchive } from '../support/real-archive.js';
import { makeScratchDir } from '../support/pg.js';

let archive: RealArchive;
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
const baseline = (): string => `warning latest-timeline ${archive.backups['base-b']}`;

beforeAll(async () => {
  archive = await realArchive();
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
    expect(report.objects).toMatchObject({ segments: 13, histories: 2, backups: 3, other: 0, temp: 0 });
    expect(report.clusters).toEqual([{ systemIdentifier: archive.systemIdentifier, serverVersions: ['15'], segmentSize: 1048576, segments: 13, recorded: true }]);
    expect(report.timelines.map((timeline) => [timeline.timeline, timeline.parent, timeline.ranges.map((range) => `${range.first}..${range.last}`), timeline.gaps])).toEqual([
      [1, null, [`000000010000000000000006..${archive.lastSegment[1]}`], []],
      [2, 1, ['000000020000000000000009..00000002000000000000000C'], []],
      [3, 2, ['00000003000000000000000D..00000003000000000000000F'], []],
    ]);
    const windows = Object.fromEntries(report.backups.map((backup) => [backup.label, backup.windows.map((window) => `${window.timeline}:${window.untilLsn}${window.latest ? ' latest' : ''}`)]));
    expect(windows).toEqual({
      'base-a': ['1:0/C00000', '2:0/D00000', '3:0/1000000 latest'],
      'base-b': ['1:0/C00000'],
      'base-c': ['2:0/D00000', '3:0/1000000 latest'],
    });
    expect(report.backups.every((backup) => backup.restorable)).toBe(true);
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
    expect(report.backups[0]!.windows.map((window) => window.untilLsn)).toEqual(['0/D00000', '0/1000000']);
    await expect(verify(archive.template, { backup: 'no-such' })).rejects.toMatchObject({
      kind: 'usage',
      message: `no backup with label or backup history file "no-such" in repository "${archive.template}"`,
      hint: expect.stringMatching(/^known backups: "base-a" \(000000010000000000000007\.00000028\.backup\), "base-b"/),
    });
  });

  it('--from/--to restrict the segments checked', async () => {
    const report = await verify(archive.template, { from: '00000001000000000000000A', to: '00000001000000000000000C' });
    expect(report.objects.checked).toBe(5 + 3 + 2); // backup + history files, then segments A..C of timelines 1 and 2
    expect(report.timelines.map((timeline) => timeline.segments)).toEqual([2, 3, 0]);
    expect(report.ok).toBe(true);
  });
});

describe('walvault verify on a damaged real archive reports exactly the damage', () => {
  it('a flipped byte in a segment: hash mismatch for that file, and base-a now restores only up to it', async () => {
    const repo = await freshCopy();
    const victim = '000000010000000000000008';
    const handle = await fs.open(objectPath(repo, victim), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 500_000);
    await handle.write(Buffer.from([byte[0]! ^ 0x01]), 0, 1, 500_000);
    await handle.close();
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([`error hash-mismatch ${victim}`, baseline()]);
    expect(report.findings[0]!.message).toMatch(/^".*000000010000000000000008" does not match the hash recorded when it was archived \(recorded [0-9a-f]{16}, read [0-9a-f]{16}\)$/);
    expect(report.ok).toBe(false);
    const baseA = report.backups.find((backup) => backup.label === 'base-a')!;
    expect(baseA.restorable).toBe(true);
    expect(baseA.windows.map((window) => `${window.timeline}:${window.untilLsn}`)).toEqual(['1:0/800000']);
    // --quick reads no content, so it cannot see this: that is what the full check is for.
    expect(findingsOf(await verify(repo, { quick: true }))).toEqual([baseline()]);
  });

  it('a deleted segment: one gap on its timeline, nothing else', async () => {
    const repo = await freshCopy();
    await fs.rm(objectPath(repo, '00000002000000000000000B'));
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual(['error missing-segments 00000002000000000000000B', baseline()]);
    expect(report.findings[0]!.message).toBe('segment "00000002000000000000000B" is missing from timeline 2');
    expect(report.timelines[1]!.gaps).toEqual([{ first: '00000002000000000000000B', last: '00000002000000000000000B', count: 1 }]);
    expect(report.backups.find((backup) => backup.label === 'base-c')!.windows.map((window) => window.untilLsn)).toEqual(['0/B00000']);
  });

  it('a deleted segment a backup needs between start and stop: the gap, and that backup is not restorable', async () => {
    const repo = await freshCopy();
    await fs.rm(objectPath(repo, '00000002000000000000000A'));
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual([
      'error missing-segments 00000002000000000000000A',
      `error backup-incomplete ${archive.backups['base-c']}`,
      baseline(),
    ].sort((a, b) => (a.startsWith('warning') ? 1 : b.startsWith('warning') ? -1 : a.split(' ')[2]! < b.split(' ')[2]! ? -1 : 1)));
    const baseC = report.backups.find((backup) => backup.label === 'base-c')!;
    expect(baseC).toMatchObject({ restorable: false, windows: [], missing: [{ first: '00000002000000000000000A', last: '00000002000000000000000A', count: 1 }] });
  });

  it('a truncated segment: named as truncated (full and quick), nothing else', async () => {
    const repo = await freshCopy();
    await fs.truncate(objectPath(repo, '00000003000000000000000E'), 8192);
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual(['error truncated 00000003000000000000000E', baseline()]);
    expect(report.findings[0]!.message).toMatch(/00000003000000000000000E" holds 8192 bytes, but 1048576 were archived$/);
    expect(findingsOf(await verify(repo, { quick: true }))).toEqual(['error truncated 00000003000000000000000E', baseline()]);
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
    const victim = objectPath(repo, '00000001000000000000000B');
    await fs.copyFile(objectPath(repo, '00000001000000000000000A'), victim);
    await fs.copyFile(`${objectPath(repo, '00000001000000000000000A')}~meta`, `${victim}~meta`);
    const report = await verify(repo);
    expect(findingsOf(report)).toEqual(['error header 00000001000000000000000B', baseline()]);
    expect(report.findings[0]!.message).toBe('"00000001000000000000000B" header page address 0/A00000 does not match its name (expected 0/B00000 for 1048576-byte segments)');
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
    expect(ok.stdout).toMatch(/^ {2}3: 00000003000000000000000D \.\. 00000003000000000000000F \(3 segments\) {2}\(from timeline 2 at 0\/D00000\)$/m);

    const repo = await freshCopy();
    await fs.rm(objectPath(repo, '00000002000000000000000B'));
    const failed = await run(archive.walvault.walvault, ['verify', `--repo=${repo}`], { allowFailure: true });
    expect(failed.code).toBe(12);
    expect(failed.stdout).toContain('     MISSING 00000002000000000000000B (1 segment)');
    expect(failed.stdout).toContain('result: FAILED, 1 error, 1 warning');
    expect(failed.stderr).toBe(`walvault: error: verify found 1 problem in repository "${repo}"; HINT: see the report on stdout: each problem has its own HINT\n`);

    const json = await run(archive.walvault.walvault, ['verify', `--repo=${repo}`, '--json', '--quick'], { allowFailure: true });
    expect(json.code).toBe(12);
    const parsed = JSON.parse(json.stdout) as VerifyReport;
    expect(parsed.findings.map((finding) => finding.code)).toEqual(['missing-segments', 'latest-timeline']);
    expect(parsed.mode).toBe('quick');
  });
});
