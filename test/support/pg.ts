// The PostgreSQL harness for tests: everything from scripts/lib/pg-harness.mjs (shared with
// `npm run demo`) plus usePg(), which ties a harness to the current test file's lifetime.
//
//   const pg = usePg();                                   // at describe/file level
//   const primary = await pg.initCluster({ name: 'primary', walSegSizeMb: 1, settings: {...} });
//   await primary.start();
//   await primary.sql('create table t(i int)');           // rows as string[][]
//   const backup = await primary.baseBackup({ label: 'b1', targetDir: path.join(await pg.root(), 'backup') });
//   const copy = await pg.restoreCluster(backup, { name: 'copy', settings: { restore_command: '...' } });
//   await copy.start(); await copy.waitForRecoveryEnd();
//
// Servers run as the postgres OS user (runuser) when the tests run as root. afterAll stops every
// server with pg_ctl -m immediate and removes the temp dir, also after failures
// (WALVAULT_KEEP_TMP=1 keeps it).

import { afterAll } from 'vitest';
import { PgHarness } from '../../scripts/lib/pg-harness.mjs';

export {
  IS_ROOT,
  PG_OS_USER,
  PgCluster,
  PgHarness,
  PsqlSession,
  chownToPostgres,
  confValue,
  copyDataDir,
  findPgBin,
  freePort,
  makePostgresDir,
  makeScratchDir,
  run,
  shQuote,
} from '../../scripts/lib/pg-harness.mjs';
export type { BaseBackup, ClusterOptions, RestoreOptions, RunOptions, RunResult, SettingValue } from '../../scripts/lib/pg-harness.mjs';

/** A harness whose clusters and temp dir are cleaned up by afterAll of the calling suite. */
export function usePg(options: { prefix?: string } = {}): PgHarness {
  const harness = new PgHarness({ prefix: options.prefix ?? 'walvault-e2e' });
  afterAll(async () => {
    await harness.cleanup();
  }, 120_000);
  return harness;
}
