// The end-to-end proof, reusable for every backend: a real PostgreSQL archives through the installed
// walvault-archive, a low-level base backup is taken, and copies of it are recovered through the
// installed walvault-restore to a named restore point and to the end, with exact row counts.
// When the repository can be damaged or cut off (corrupt / outages), it also proves that recovery
// STOPS with our message instead of ending early and promoting with rows missing.

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';
import { chownToPostgres, shQuote, usePg, type BaseBackup, type PgCluster, type PgHarness } from '../support/pg.js';

/** What a backend hands the scenario. */
export interface PitrRepo {
  /** The --repo URL both commands get. */
  url: string;
  /** Environment of the servers, hence of archive_command and restore_command (e.g. credentials). */
  env?: Record<string, string>;
  /** More options for both commands, already shell-quoted (e.g. "--endpoint=http://127.0.0.1:9000"). */
  extraArgs?: string;
}

/** A way the repository becomes unreachable partway through a recovery, and how it comes back. */
export interface RepoOutage<R extends PitrRepo = PitrRepo> {
  /** Cuts the server's access to the repository. */
  begin: (repo: R) => Promise<void>;
  /** Restores it exactly as it was. */
  end: (repo: R) => Promise<void>;
  /** What walvault-restore's error line in the server log must say about it. */
  message: RegExp;
}

/** Options of runPitrScenario. */
export interface PitrScenarioOptions<R extends PitrRepo = PitrRepo> {
  /** Names the describe block, e.g. "a local directory". */
  name: string;
  /** Creates an empty repository (called once, in beforeAll, after the harness exists). */
  makeRepo: (context: { pg: PgHarness }) => Promise<R>;
  /** Damages the stored copy of one archived WAL file (same size, other bytes) and returns the repair; enables the corruption scenario. */
  corrupt?: (repo: R, walFileName: string) => Promise<() => Promise<void>>;
  /** The walvault-restore log line the corruption must produce (default: the content hash mismatch of an unencrypted object). */
  corruptMessage?: RegExp;
  /** Ways to make the repository unreachable, by scenario name; each adds an outage scenario (the first also runs the --on-error=missing control). */
  outages?: Record<string, RepoOutage<R>>;
  /** initdb --wal-segsize in MiB (default 1: many segments from little data, so "partway" is real). */
  walSegSizeMb?: number;
  /** --timeout of restore_command in seconds (default 10, so outage scenarios do not sit out a 60 s retry budget); archive_command keeps walvault's default. */
  commandTimeoutSec?: number;
}

/** Exact row counts at a point in time. */
interface Counts {
  items: number;
  late: number;
}

const ROWS = { beforeBackup: 100, beforeRestorePoint: 1000, lateBeforeRestorePoint: 500, afterRestorePoint: 1000, lateAfterRestorePoint: 300 };
const AT_RESTORE_POINT: Counts = { items: ROWS.beforeBackup + ROWS.beforeRestorePoint, late: ROWS.lateBeforeRestorePoint };
const AT_END: Counts = {
  items: ROWS.beforeBackup + ROWS.beforeRestorePoint + 2 * ROWS.afterRestorePoint,
  late: ROWS.lateBeforeRestorePoint + ROWS.lateAfterRestorePoint,
};

/** Registers the point-in-time-recovery suite for one backend. */
export function runPitrScenario<R extends PitrRepo>(options: PitrScenarioOptions<R>): void {
  describe(`point-in-time recovery through ${options.name}`, () => {
    const pg = usePg({ prefix: 'walvault-pitr' });
    let walvault: InstalledWalvault;
    let repo: R;
    let primary: PgCluster;
    let backup: BaseBackup;
    /** Segment holding the restore point record. */
    let restorePointSegment: string;
    /** First segment written after the restore point (pg_switch_wal right after it). */
    let firstSegmentAfterRestorePoint: string;
    /** Last segment archived. */
    let lastSegment: string;
    let copies = 0;

    // The short --timeout is for restore_command only (outages make each call sit it out); archive_command
    // keeps the default, since one archive call slowed past a short deadline on a loaded machine would
    // fail it, and the scenario wants failed_count = 0.
    const repoArgs = (): string => [`--repo=${shQuote(repo.url)}`, ...(repo.extraArgs ? [repo.extraArgs] : [])].join(' ');
    const restoreCommand = (onError?: 'missing' | 'abort'): string =>
      `${shQuote(walvault.restore)} ${repoArgs()} --timeout=${options.commandTimeoutSec ?? 10}${onError ? ` --on-error=${onError}` : ''} %f %p`;

    /** A fresh copy of the base backup, set up for archive recovery through walvault-restore. */
    const recoveryCopy = async (settings: Record<string, string | boolean | null>): Promise<PgCluster> => {
      copies += 1;
      const copy = await pg.restoreCluster(backup, {
        name: `recovery-${copies}`,
        env: repo.env,
        settings: { archive_mode: false, restore_command: restoreCommand(), recovery_target_timeline: 'latest' },
      });
      await copy.updateSettings(settings);
      return copy;
    };

    const countsOf = async (cluster: PgCluster): Promise<Counts> => ({ items: await cluster.count('items'), late: await cluster.count('late') });

    /** Asserts the server stopped recovery with FATAL (exit 128 from walvault-restore), with walvault-restore's reason in its log, and did not promote. */
    const expectStoppedRecovery = async (cluster: PgCluster, logSince: number, expected: { reason: RegExp }): Promise<string> => {
      await cluster.waitForStopped({ timeoutMs: 90_000 });
      expect(await cluster.isRunning()).toBe(false);
      const log = (await cluster.log()).slice(logSince);
      expect(log).toMatch(/FATAL: {2}could not restore file "[0-9A-F]+(\.history)?" from archive: child process exited with exit code 128/);
      expect(log).toMatch(/^walvault-restore: error: .*stopping recovery \(--on-error=abort\)/m);
      expect(log).toMatch(expected.reason);
      expect(log).not.toMatch(/selected new timeline ID|archive recovery complete|database system is ready to accept connections/);
      expect((await cluster.controlData())['Database cluster state']).toMatch(/^(in archive recovery|shut down in recovery)$/);
      expect((await cluster.controlData())["Latest checkpoint's TimeLineID"]).toBe('1');
      return log;
    };

    beforeAll(async () => {
      walvault = await installedWalvault();
      repo = await options.makeRepo({ pg });
      primary = await pg.initCluster({
        name: 'primary',
        walSegSizeMb: options.walSegSizeMb ?? 1,
        env: repo.env,
        settings: { archive_mode: true, archive_command: `${shQuote(walvault.archive)} ${repoArgs()} %p %f` },
      });
      await primary.start();
      await primary.sql(`create table items(id int primary key, phase text not null);
        insert into items select g, 'before-backup' from generate_series(1, ${ROWS.beforeBackup}) g`);

      backup = await primary.baseBackup({ label: 'walvault-e2e', targetDir: path.join(await pg.root(), 'base-backup') });

      let next = ROWS.beforeBackup;
      await primary.sql(`insert into items select g, 'before-restore-point' from generate_series(${next + 1}, ${next + ROWS.beforeRestorePoint}) g;
        create table late(id int);
        insert into late select generate_series(1, ${ROWS.lateBeforeRestorePoint})`);
      next += ROWS.beforeRestorePoint;
      restorePointSegment = await primary.scalar("select pg_walfile_name(pg_create_restore_point('rp1'))");
      await primary.switchWalAndWaitArchived();
      firstSegmentAfterRestorePoint = await primary.scalar('select pg_walfile_name(pg_current_wal_insert_lsn())');
      await primary.sql(`insert into items select g, 'after-restore-point' from generate_series(${next + 1}, ${next + ROWS.afterRestorePoint}) g;
        insert into late select generate_series(1, ${ROWS.lateAfterRestorePoint})`);
      next += ROWS.afterRestorePoint;
      await primary.switchWalAndWaitArchived();
      await primary.sql(`insert into items select g, 'after-restore-point' from generate_series(${next + 1}, ${next + ROWS.afterRestorePoint}) g`);
      lastSegment = await primary.switchWalAndWaitArchived();
      expect(await countsOf(primary)).toEqual(AT_END);
      expect(firstSegmentAfterRestorePoint > restorePointSegment).toBe(true);
    });

    it('archives every segment through walvault-archive without a single failure', async () => {
      const stats = await primary.archiverStats();
      expect(stats.failedCount).toBe(0);
      expect(stats.lastFailedWal).toBe('');
      expect(stats.archivedCount).toBeGreaterThanOrEqual(4);
      expect(stats.lastArchivedWal >= lastSegment).toBe(true);
      expect(backup.backupLabel).toMatch(/^START WAL LOCATION: .*\nCHECKPOINT LOCATION: .*\nBACKUP METHOD: streamed\n(.|\n)*LABEL: walvault-e2e\n/);
    });

    it('recovers a copy of the base backup to the restore point "rp1" with exactly the rows committed before it', async () => {
      const copy = await recoveryCopy({ recovery_target_name: 'rp1', recovery_target_action: 'promote' });
      await copy.start();
      await copy.waitForRecoveryEnd();
      expect(await countsOf(copy)).toEqual(AT_RESTORE_POINT);
      const log = await copy.log();
      expect(log).toContain('recovery stopping at restore point "rp1"');
      expect(log).toContain(`restored log file "${restorePointSegment}" from archive`);
      expect(log).toMatch(/^walvault-restore: info: restored "[0-9A-F]{24}" (from |to "pg_wal\/RECOVERYXLOG" \(prefetched and verified)/m);
      await copy.stop();
    });

    it('recovers another copy to the end of the archive with every row, ending on an ordinary "not found"', async () => {
      const copy = await recoveryCopy({});
      await copy.start();
      await copy.waitForRecoveryEnd();
      expect(await countsOf(copy)).toEqual(AT_END);
      const log = await copy.log();
      expect(log).toContain(`restored log file "${lastSegment}" from archive`);
      expect(log).toContain('archive recovery complete');
      expect(log).not.toMatch(/^walvault-restore: error:/m);
      await copy.stop();
    });

    // Scenarios the backend cannot stage (no corrupt(), no outages) are not defined at all: never skipped.
    const corrupt = options.corrupt;
    if (corrupt !== undefined) it('stops recovery with FATAL (no early promotion) when a segment in the archive is corrupt, and resumes once it is repaired', async () => {
      const repair = await corrupt(repo, firstSegmentAfterRestorePoint);
      const copy = await recoveryCopy({});
      try {
        await copy.start({ allowFailure: true });
        const log = await expectStoppedRecovery(copy, 0, { reason: options.corruptMessage ?? /^walvault-restore: error: .*is corrupt: content hash [0-9a-f]{16} .* does not match the recorded [0-9a-f]{16}/m });
        // It got partway: everything up to the restore point came back before the corrupt segment.
        expect(log).toContain(`restored log file "${restorePointSegment}" from archive`);
        expect(log).toContain(`could not restore file "${firstSegmentAfterRestorePoint}" from archive`);
      } finally {
        await repair();
      }
      const logSize = (await copy.log()).length;
      await copy.start();
      await copy.waitForRecoveryEnd();
      expect(await countsOf(copy)).toEqual(AT_END);
      expect((await copy.log()).slice(logSize)).toContain(`restored log file "${firstSegmentAfterRestorePoint}" from archive`);
      await copy.stop();
    });

    /** Recovers a copy to rp1 and shuts it down there (recovery_target_action=shutdown), still in recovery, ready to continue to the end. */
    const copyStoppedAtRestorePoint = async (onError?: 'missing' | 'abort'): Promise<PgCluster> => {
      const copy = await recoveryCopy({ recovery_target_name: 'rp1', recovery_target_action: 'shutdown' });
      await copy.start({ allowFailure: true });
      await copy.waitForStopped();
      expect(await copy.log()).toContain('recovery stopping at restore point "rp1"');
      await copy.updateSettings({ recovery_target_name: null, recovery_target_action: null, restore_command: restoreCommand(onError) });
      return copy;
    };

    const outages = Object.entries(options.outages ?? {});
    const firstOutage = outages[0];
    if (firstOutage !== undefined) it(`control: with --on-error=missing, "${firstOutage[0]}" partway ends recovery early at the wrong point (what abort prevents)`, async () => {
      const [, outage] = firstOutage;
      const copy = await copyStoppedAtRestorePoint('missing');
      await outage.begin(repo);
      try {
        await copy.start();
        await copy.waitForRecoveryEnd();
      } finally {
        await outage.end(repo);
      }
      // Promoted on a new timeline with rows the archive holds silently missing (how many depends on
      // how far the server read ahead before the restore point shutdown; never all of them).
      const counts = await countsOf(copy);
      expect(counts.items).toBeGreaterThanOrEqual(AT_RESTORE_POINT.items);
      expect(counts.items).toBeLessThan(AT_END.items);
      expect(await copy.log()).toContain('selected new timeline ID: 2');
      expect(await copy.log()).toMatch(/^walvault-restore: error: .*reporting "not available" to PostgreSQL \(--on-error=missing\)/m);
      await copy.stop();
    });

    for (const [outageName, outage] of outages) {
      it(`${outageName} partway: recovery stops with FATAL and our message instead of promoting, and resumes after the repair`, async () => {
        const copy = await copyStoppedAtRestorePoint();
        const logSize = (await copy.log()).length;
        await outage.begin(repo);
        try {
          await copy.start({ allowFailure: true });
          await expectStoppedRecovery(copy, logSize, { reason: outage.message });
        } finally {
          await outage.end(repo);
        }
        const logSizeAfterOutage = (await copy.log()).length;
        await copy.start();
        await copy.waitForRecoveryEnd();
        expect(await countsOf(copy)).toEqual(AT_END);
        expect((await copy.log()).slice(logSizeAfterOutage)).toContain(`restored log file "${lastSegment}" from archive`);
        await copy.stop();
      });
    }

    // Last on purpose: the primary writes more WAL here (into its own table, so the counts above hold).
    if (firstOutage !== undefined) it(`a standby (standby.signal) survives "${firstOutage[0]}": --on-error=auto reports "not available", the standby retries and catches up afterwards`, async () => {
      const [, outage] = firstOutage;
      const standby = await recoveryCopy({ wal_retrieve_retry_interval: '200ms' });
      await fs.rm(path.join(standby.dataDir, 'recovery.signal'));
      await fs.writeFile(path.join(standby.dataDir, 'standby.signal'), '');
      await chownToPostgres(path.join(standby.dataDir, 'standby.signal'));
      await standby.start();
      await waitFor('the standby to replay the whole archive', async () => (await standby.count('items')) === AT_END.items);
      const logSize = (await standby.log()).length;
      await outage.begin(repo);
      try {
        await waitFor('walvault-restore to report the outage', async () => /reporting "not available" to PostgreSQL \(--on-error=missing\)/.test((await standby.log()).slice(logSize)));
        await new Promise((resolve) => setTimeout(resolve, 1000));
        expect(await standby.isRunning()).toBe(true);
        expect(await standby.scalar('select pg_is_in_recovery()')).toBe('t');
        expect((await standby.log()).slice(logSize)).toMatch(outage.message);
        expect((await standby.log()).slice(logSize)).not.toMatch(/FATAL|PANIC/);
      } finally {
        await outage.end(repo);
      }
      await primary.sql('create table standby_probe as select generate_series(1, 250) as id');
      await primary.switchWalAndWaitArchived();
      await waitFor('the standby to catch up after the outage', async () => (await standby.scalar("select count(*) from pg_class where relname = 'standby_probe'")) === '1');
      expect(await standby.count('standby_probe')).toBe(250);
      expect(await standby.scalar('select pg_is_in_recovery()')).toBe('t');
      await standby.stop();
    });
  });
}

/** Polls `condition` every 200 ms until it holds; fails after `timeoutMs` naming what it waited for. */
async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
