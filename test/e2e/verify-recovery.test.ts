// verify's "restorable up to" is what PostgreSQL really reaches: real base backups recovered through
// walvault-restore from the real archive (intact, and with a segment deleted) stop replaying in the
// last segment of the window verify reports, no earlier and no later.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import { verifyArchive } from '../../src/policy/verify.js';
import { parseLsn, parseSegmentName, segmentNumber } from '../../src/wal/names.js';
import { chownToPostgres, shQuote, usePg, type BaseBackup } from '../support/pg.js';
import { objectPath, realArchive, type RealArchive } from '../support/real-archive.js';

const MiB = 1048576;

describe("verify's restorable window matches real recovery", () => {
  const pg = usePg({ prefix: 'walvault-verify-recovery' });
  let archive: RealArchive;
  let copies = 0;

  beforeAll(async () => {
    archive = await realArchive();
  }, 600_000);

  /** Recovers `label` from `repo` to the end of the archive (recovery_target_timeline = latest); returns where redo ended. */
  async function recoverToEnd(label: 'base-a' | 'base-c', repo: string): Promise<{ redoDone: bigint; newTimeline: number }> {
    copies += 1;
    const restore = (await import('../support/install.js')).installedWalvault;
    const walvault = await restore();
    const backup = { dataDir: archive.backupDirs[label] } as BaseBackup;
    const cluster = await pg.restoreCluster(backup, {
      name: `recovery-${copies}`,
      settings: { restore_command: `${shQuote(walvault.restore)} --repo=${shQuote(repo)} --quiet %f %p`, recovery_target_timeline: 'latest', archive_mode: false },
    });
    await cluster.start();
    await cluster.waitForRecoveryEnd();
    const log = await cluster.log();
    await cluster.stop();
    const redo = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log);
    const selected = /selected new timeline ID: (\d+)/.exec(log);
    if (redo === null || selected === null) throw new Error(`no "redo done" line\n${log}`);
    return { redoDone: parseLsn(redo[1]!), newTimeline: Number(selected[1]) };
  }

  /** A copy of the template readable by the postgres OS user (restore_command runs as postgres). */
  async function repoCopy(): Promise<string> {
    const target = path.join(await pg.root(), `repo-${copies + 1}`);
    await fs.cp(archive.template, target, { recursive: true, preserveTimestamps: true });
    await chownToPostgres(target, { recursive: true });
    return target;
  }

  const within = (lsn: bigint, lastSegment: string, untilLsn: string): boolean =>
    lsn >= segmentNumber(parseSegmentName(lastSegment)!, MiB) * BigInt(MiB) && lsn < parseLsn(untilLsn);

  it('base-a on the intact archive: replay ends on timeline 3 inside the last segment verify names', async () => {
    const repo = await repoCopy();
    const report = await verifyArchive(createLocalBackend({ root: repo }), { backup: 'base-a', quick: true });
    const window = report.backups[0]!.windows.find((candidate) => candidate.latest)!;
    expect(window.timeline).toBe(3);
    const reached = await recoverToEnd('base-a', repo);
    expect(reached.newTimeline).toBe(4);
    expect(within(reached.redoDone, window.lastSegment, window.untilLsn)).toBe(true);
  });

  it('base-c with a segment deleted after it: replay ends before the hole, exactly where verify says (and PostgreSQL promotes there)', async () => {
    const repo = await repoCopy();
    const start = archive.backups['base-c'].slice(0, 24);
    const victim = `${start.slice(0, 16)}${(Number.parseInt(start.slice(16), 16) + 1).toString(16).toUpperCase().padStart(8, '0')}`;
    await fs.rm(objectPath(repo, victim));
    const report = await verifyArchive(createLocalBackend({ root: repo }), { backup: 'base-c' });
    expect(report.findings.map((finding) => `${finding.code} ${finding.file}`)).toEqual([`missing-segments ${victim}`]);
    const window = report.backups[0]!.windows.find((candidate) => candidate.latest)!;
    expect(window.lastSegment).toBe(start);
    const reached = await recoverToEnd('base-c', repo);
    expect(reached.newTimeline).toBe(4); // PostgreSQL ended recovery at the hole and promoted: the danger verify warns about
    expect(within(reached.redoDone, window.lastSegment, window.untilLsn)).toBe(true);
  });
});
