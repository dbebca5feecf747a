// archive_cleanup_command = 'walvault cleanup --repo=... --before %r' on a real standby fed from the
// archive: at each restartpoint the server passes %r (the oldest file it still needs) and walvault
// removes the older segments, never history files, never %r itself or anything after it.
import { readdir } from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { installedWalvault } from '../support/install.js';
import { shQuote, usePg } from '../support/pg.js';

const segmentsIn = async (repo: string): Promise<string[]> =>
  (await readdir(path.join(repo, 'wal'), { recursive: true })).map((entry) => path.basename(String(entry))).filter((name) => /^[0-9A-F]{24}$/.test(name)).sort();

describe('walvault cleanup as archive_cleanup_command', () => {
  const pg = usePg({ prefix: 'walvault-cleanup-standby' });

  it('removes exactly the segments older than %r at a standby restartpoint', async () => {
    const walvault = await installedWalvault();
    const repo = await pg.makeDir('repo', 0o700);
    const repoArg = `--repo=${shQuote(repo)}`;
    const primary = await pg.initCluster({
      name: 'primary',
      walSegSizeMb: 1,
      settings: { archive_mode: true, archive_command: `${shQuote(walvault.archive)} ${repoArg} %p %f` },
    });
    await primary.start();
    await primary.sql('create table t(i int)');
    const backup = await primary.baseBackup({ label: 'standby-seed', targetDir: path.join(await pg.root(), 'seed') });
    for (let round = 0; round < 4; round += 1) {
      await primary.sql(`insert into t select generate_series(1, 20000)`);
      await primary.switchWalAndWaitArchived();
    }
    await primary.sql('checkpoint');
    // The restartpoint the standby makes below is at this checkpoint, so %r is its REDO file.
    const [checkpointLsn, expectedRedo] = (await primary.sql('select checkpoint_lsn, pg_walfile_name(redo_lsn) from pg_control_checkpoint()'))[0]!;
    await primary.sql(`insert into t select generate_series(1, 1000)`);
    const last = await primary.switchWalAndWaitArchived();
    const before = await segmentsIn(repo);

    const standby = await pg.restoreCluster(backup, {
      name: 'standby',
      signal: 'standby',
      settings: {
        restore_command: `${shQuote(walvault.restore)} ${repoArg} %f %p`,
        archive_cleanup_command: `${shQuote(walvault.walvault)} cleanup ${repoArg} --before %r --verbose`,
        log_min_messages: 'debug1',
      },
    });
    await standby.start();
    // "restored log file" is logged before the file is replayed: wait until replay has passed the
    // primary's checkpoint record, or the restartpoint below would be at an older checkpoint.
    const deadline = Date.now() + 90_000;
    const replayed = async (): Promise<boolean> =>
      (await standby.scalar(`select coalesce(pg_last_wal_replay_lsn() > '${checkpointLsn}'::pg_lsn, false)`)) === 't';
    while (!(await replayed())) {
      if (Date.now() > deadline) throw new Error(`standby never replayed the checkpoint at ${checkpointLsn} (archived up to ${last})\n${await standby.logTail()}`);
      await sleep(200);
    }
    await standby.sql('checkpoint'); // a restartpoint: runs archive_cleanup_command with %r
    const redo = (await standby.controlData())["Latest checkpoint's REDO WAL file"]!;
    expect(redo).toBe(expectedRedo);
    // cleanup's summary line (stdout, which the server log collects) says it has finished.
    const summary = new RegExp(`^removed \\d+ files? .* older than ${redo} from `, 'm');
    while (!summary.test(await standby.log())) {
      if (Date.now() > deadline) throw new Error(`archive_cleanup_command never reported for ${redo}\n${await standby.logTail()}`);
      await sleep(200);
    }
    const after = await segmentsIn(repo);
    expect(after).toEqual(before.filter((name) => name.slice(8) >= redo.slice(8)));
    expect(after.length).toBeLessThan(before.length);
    expect(await standby.log()).toMatch(/^walvault: debug: removed ".*[0-9A-F]{24}"$/m);
    await standby.stop();
    await primary.stop();
  });
});
