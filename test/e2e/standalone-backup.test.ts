// The standalone hot backup of PostgreSQL's docs (section 26.3.6.1) with --only-if-exists on a live
// PostgreSQL 15: WAL is archived only while the switch file exists; a backup taken inside that window
// is proven complete by walvault verify --backup and recovers with exactly the rows committed before
// pg_backup_stop; outside the window nothing is stored; with the switch present, failures still show.
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/policy/status.js';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';
import { chownToPostgres, copyDataDir, PsqlSession, run, shQuote, usePg, type PgCluster } from '../support/pg.js';

describe('standalone hot backup with walvault-archive --only-if-exists', () => {
  const pg = usePg({ prefix: 'walvault-standalone' });
  let walvault: InstalledWalvault;
  let server: PgCluster;
  let repo: string;
  let switchFile: string;

  beforeAll(async () => {
    walvault = await installedWalvault();
    repo = await pg.makeDir('repo', 0o700);
    switchFile = path.join(await pg.makeDir('switch', 0o755), 'archive-on');
    server = await pg.initCluster({
      name: 'server',
      walSegSizeMb: 1,
      settings: {
        archive_mode: true,
        archive_command: `${shQuote(walvault.archive)} --repo=${shQuote(repo)} --only-if-exists=${shQuote(switchFile)} %p %f`,
      },
    });
    await server.start();
  });

  /** Segment names stored in the repository, sorted. */
  const storedSegments = async (): Promise<string[]> => {
    const dirs = await readdir(path.join(repo, 'wal')).catch(() => [] as string[]);
    const names: string[] = [];
    for (const dir of dirs) {
      if (!/^[0-9A-F]{16}$/.test(dir)) continue;
      names.push(...(await readdir(path.join(repo, 'wal', dir))).filter((name) => /^[0-9A-F]{24}$/.test(name)));
    }
    return names.sort();
  };

  it('archives only inside the switch window; the backup taken there verifies and recovers with exactly the right rows', async () => {
    await server.sql('create table t(i int primary key)');
    await server.sql('insert into t select generate_series(1, 100)');
    const before: string[] = [];
    for (let index = 0; index < 3; index += 1) {
      await server.sql(`insert into t values (${1000 + index})`);
      before.push(await server.switchWalAndWaitArchived());
    }
    expect(await storedSegments()).toEqual([]);

    // The window: switch on, pg_backup_start, copy, pg_backup_stop (waits for its WAL), switch off.
    await writeFile(switchFile, '');
    const session = await PsqlSession.open(server);
    const target = path.join(await pg.root(), 'backup');
    const dataDir = path.join(target, 'data');
    let labelHex: string;
    try {
      await session.query("select pg_backup_start('standalone', fast => true)");
      await server.sql('insert into t select generate_series(101, 150)'); // after the start: only the WAL brings these
      await mkdir(target, { recursive: true });
      await copyDataDir(server.dataDir, dataDir);
      await server.sql('insert into t select generate_series(151, 160)'); // after the copy, before the stop
      const stop = await session.query("select encode(convert_to(labelfile, 'UTF8'), 'hex') from pg_backup_stop(wait_for_archive => true)");
      labelHex = stop[0] ?? '';
    } finally {
      await session.close();
    }
    await writeFile(path.join(dataDir, 'backup_label'), Buffer.from(labelHex, 'hex'));
    await chownToPostgres(dataDir, { recursive: true });
    await rm(switchFile);
    const inWindow = await storedSegments();
    expect(inWindow.length).toBeGreaterThan(0);

    // After the window: archived as far as PostgreSQL knows, stored nowhere.
    await server.sql('insert into t select generate_series(161, 200)');
    const after = await server.switchWalAndWaitArchived();
    expect(await storedSegments()).toEqual(inWindow);
    for (const name of [...before, after]) expect(inWindow).not.toContain(name);
    expect(inWindow[0]! > before.at(-1)!).toBe(true);
    expect(inWindow.at(-1)! < after).toBe(true);

    const verify = await run(walvault.walvault, ['verify', `--repo=${repo}`, '--backup=standalone'], { allowFailure: true });
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);
    const window = await run(walvault.walvault, ['status', `--repo=${repo}`, '--window', '--json'], { allowFailure: true });
    expect(window.code).toBe(0);
    const backups = (JSON.parse(window.stdout) as StatusReport).repository!.backups!;
    expect(backups.map((backup) => [backup.label, backup.restorable])).toEqual([['standalone', true]]);
    expect(backups[0]!.windows).toEqual([expect.objectContaining({ timeline: 1, lastSegment: inWindow.at(-1), latest: true })]);

    const copy = await pg.restoreCluster(
      { dataDir, label: 'standalone', startLsn: '', stopLsn: '', backupLabel: Buffer.from(labelHex, 'hex').toString('utf8'), tablespaceMap: '' },
      { name: 'copy', settings: { restore_command: `${shQuote(walvault.restore)} --repo=${shQuote(repo)} %f %p`, archive_mode: false } },
    );
    await copy.start();
    await copy.waitForRecoveryEnd();
    expect(await copy.scalar('select count(*) || \' \' || min(i) || \' \' || max(i) from t where i < 1000')).toBe('160 1 160');
    expect(await copy.scalar('select count(*) from t where i >= 1000')).toBe('3');
    await copy.stop();
  });

  it('while the switch file exists a failing repository is a failure, not a silent 0', async () => {
    await writeFile(switchFile, '');
    await rename(repo, `${repo}.away`);
    try {
      const failedBefore = (await server.archiverStats()).failedCount;
      await server.sql('insert into t values (5000)');
      const segment = await server.scalar('select pg_walfile_name(pg_switch_wal())');
      const until = Date.now() + 60_000;
      while ((await server.archiverStats()).failedCount <= failedBefore && Date.now() < until) await sleep(100);
      const stats = await server.archiverStats();
      expect(stats.failedCount).toBeGreaterThan(failedBefore);
      expect(stats.lastFailedWal).toBe(segment);
      expect(stats.lastArchivedWal < segment).toBe(true);
      await rename(`${repo}.away`, repo);
      await server.waitForArchived(segment);
      expect(await storedSegments()).toContain(segment);
    } finally {
      await rename(`${repo}.away`, repo).catch(() => undefined);
      await rm(switchFile, { force: true });
    }
  });
});
