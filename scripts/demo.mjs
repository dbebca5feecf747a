// `npm run demo`: the whole walvault story on a throwaway PostgreSQL cluster in a temp dir, step by
// step: archive through walvault-archive, an online base backup into the repository with `walvault
// backup`, an accident, `walvault restore-backup` and point-in-time recovery to a named restore point
// through walvault-restore, and a check of the recovered rows. Uses the built dist/ executables and the same harness as the e2e tests.
// It ends with nothing of its own running: the servers are stopped, and so are the background workers
// walvault started for them (the archive pusher, the restore prefetcher), before the temp dir goes.

import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { PROJECT_DIR, builtCommand, packAndInstall } from './lib/install.mjs';
import { IS_ROOT, PG_OS_USER, PgHarness, run, shQuote } from './lib/pg-harness.mjs';

const ORDERS_AT_BACKUP = 1000;
const ORDERS_AFTER_BACKUP = 500;
const RESTORE_POINT = 'before-the-accident';

// A closed stdout (e.g. `npm run demo | head`) must not kill the demo before it cleans up.
process.stdout.on('error', () => {});

const bold = (/** @type {string} */ text) => (process.stdout.isTTY ? `\x1b[1m${text}\x1b[0m` : text);
let stepNumber = 0;
const step = (/** @type {string} */ title) => console.log(`\n${bold(`[${++stepNumber}/6] ${title}`)}`);
const say = (/** @type {string} */ text) => console.log(`      ${text.replaceAll('\n', '\n      ')}`);

/**
 * The commands PostgreSQL will run: the built executables in dist/ (package.json `bin`), or, when
 * the postgres OS user cannot read the project (e.g. it lives under /root), a packed copy installed
 * in the demo's temp dir.
 */
async function commands(/** @type {PgHarness} */ harness) {
  const archive = builtCommand('walvault-archive');
  const restore = builtCommand('walvault-restore');
  const walvault = builtCommand('walvault');
  for (const file of [archive, restore, walvault]) {
    if (!existsSync(file)) throw new Error(`"${file}" is missing: run "npm run build" (npm run demo does)`);
  }
  const readable = await run('test', ['-r', restore, '-a', '-r', path.join(PROJECT_DIR, 'node_modules', 'yargs', 'package.json')], {
    asPostgres: true,
    allowFailure: true,
  });
  if (readable.code === 0) {
    return { archive: shQuote(archive), restore: shQuote(restore), walvault, where: `the built executables in ${path.dirname(restore)}` };
  }
  say(`the ${PG_OS_USER} user cannot read ${PROJECT_DIR}; installing a packed copy (npm pack + npm install -g --prefix) into the temp dir`);
  const installed = await packAndInstall({ prefix: path.join(await harness.root(), 'install') });
  return { archive: shQuote(installed.archive), restore: shQuote(installed.restore), walvault: installed.walvault, where: `a packed copy installed in ${installed.prefix}` };
}

async function main() {
  const harness = new PgHarness({ prefix: 'walvault-demo' });
  let ok = false;
  const interrupt = () => {
    console.log('\ninterrupted: cleaning up');
    harness.cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  process.once('SIGHUP', interrupt);
  try {
    console.log(bold('walvault demo: WAL archiving and point-in-time recovery on a throwaway cluster'));
    console.log(`PostgreSQL binaries: ${harness.binDir}${IS_ROOT ? ` (run as the "${PG_OS_USER}" OS user via runuser)` : ''}`);
    const root = await harness.root();
    console.log(`temp dir: ${root} (removed at the end)`);
    const bins = await commands(harness);
    const repo = await harness.makeDir('repo', 0o700);
    const archiveCommand = `${bins.archive} --repo=${shQuote(repo)} %p %f`;

    step('initdb a primary cluster that archives every WAL segment through walvault-archive');
    const primary = await harness.initCluster({
      name: 'primary',
      walSegSizeMb: 1,
      settings: { archive_mode: true, archive_command: archiveCommand },
    });
    say(`walvault: ${bins.where}`);
    say(`repository: ${repo}`);
    say(`postgresql.conf:\n  wal_level = replica\n  archive_mode = on\n  archive_command = '${archiveCommand}'`);
    await primary.start();
    await primary.sql(`create table orders(id int primary key, customer text not null, amount numeric not null);
      insert into orders select g, 'customer ' || (g % 97), (g % 250) + 0.99 from generate_series(1, ${ORDERS_AT_BACKUP}) g`);
    say(`started (socket ${primary.socketDir}); created table "orders" with ${ORDERS_AT_BACKUP} rows`);

    step('online base backup into the repository: walvault backup');
    const connection = { PGHOST: primary.socketDir, PGPORT: String(primary.port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
    const backup = await run(bins.walvault, ['backup', `--repo=${repo}`], { asPostgres: true, env: connection, cwd: root });
    say(`walvault backup --repo=${repo}     (pg_backup_start, the data directory as tar, pg_backup_stop, its WAL checked)`);
    say(`${[...backup.stderr.trim().split('\n'), backup.stdout.trim()].join('\n')}`);

    step('more work, a named restore point, then an accident');
    await primary.sql(`insert into orders select g, 'customer ' || (g % 97), (g % 250) + 0.99 from generate_series(${ORDERS_AT_BACKUP + 1}, ${ORDERS_AT_BACKUP + ORDERS_AFTER_BACKUP}) g`);
    const expected = await primary.count('orders');
    const expectedSum = await primary.scalar('select sum(amount) from orders');
    say(`inserted ${ORDERS_AFTER_BACKUP} more orders: ${expected} rows, total amount ${expectedSum}`);
    const restorePointLsn = await primary.scalar(`select pg_create_restore_point('${RESTORE_POINT}')`);
    say(`select pg_create_restore_point('${RESTORE_POINT}');         -- ${restorePointLsn}`);
    await primary.sql("delete from orders where customer like 'customer 1%'");
    await primary.sql('update orders set amount = 0');
    const afterAccident = await primary.count('orders');
    say(`the accident: delete from orders where customer like 'customer 1%'; update orders set amount = 0;`);
    say(`the primary now has ${afterAccident} orders, all with amount 0`);
    const lastSegment = await primary.switchWalAndWaitArchived();
    const stats = await primary.archiverStats();
    say(`select pg_switch_wal(); waited until "${lastSegment}" was archived`);
    say(`pg_stat_archiver: archived_count = ${stats.archivedCount}, failed_count = ${stats.failedCount}, last_archived_wal = ${stats.lastArchivedWal}`);
    const archived = (await primary.log()).split('\n').filter((line) => line.startsWith('walvault-archive:'));
    say(`walvault-archive's lines in the primary's server log:\n  ${archived.join('\n  ')}`);
    const stored = await listRepository(repo);
    say(`the repository holds ${stored.length} files (WAL, and the base backup under backups/):\n  ${stored.join('\n  ')}`);

    step(`walvault restore-backup, then point-in-time recovery to the restore point "${RESTORE_POINT}"`);
    const recovered = await harness.emptyCluster({ name: 'recovered' });
    const restored = await run(bins.walvault, ['restore-backup', `--repo=${repo}`, `--pgdata=${recovered.dataDir}`, `--target-name=${RESTORE_POINT}`, '--target-action=promote'], {
      asPostgres: true,
      cwd: root,
    });
    say(`walvault restore-backup --repo=${repo} --pgdata=${recovered.dataDir} --target-name=${RESTORE_POINT} --target-action=promote`);
    say(restored.stdout.trim());
    await recovered.configure({});
    const written = (await fs.readFile(path.join(recovered.dataDir, 'postgresql.auto.conf'), 'utf8')).split('\n').filter((line) => /^(restore_command|recovery_target)/.test(line));
    say(`it wrote recovery.signal and, in postgresql.auto.conf:\n  ${written.join('\n  ')}`);
    const started = Date.now();
    await recovered.start();
    await recovered.waitForRecoveryEnd();
    say(`recovery finished and the server promoted in ${((Date.now() - started) / 1000).toFixed(1)} s; from its log:`);
    const interesting = (await recovered.log())
      .split('\n')
      .filter((line) => /walvault-restore:|restored log file|recovery stopping|selected new timeline|archive recovery complete|starting point-in-time recovery/.test(line))
      .map((line) => line.replace(/^\d{4}-\d\d-\d\d (\S+) UTC \[\d+\] /, ''));
    say(`  ${interesting.join('\n  ')}`);

    step('verify the recovered cluster');
    const recoveredCount = await recovered.count('orders');
    const recoveredSum = await recovered.scalar('select sum(amount) from orders');
    say(`orders: ${recoveredCount} rows (expected ${expected}), total amount ${recoveredSum} (expected ${expectedSum})`);
    say(`the primary, after the accident: ${afterAccident} rows`);
    ok = recoveredCount === expected && recoveredSum === expectedSum && stats.failedCount === 0;

    step('stop both servers and walvault\'s background workers, remove the temp dir');
    await recovered.stop();
    await primary.stop();
    const stopped = await stopWorkers(root);
    say(stopped.length === 0 ? 'no walvault worker was left running' : `stopped walvault's background workers: ${stopped.join(', ')}`);
  } finally {
    // After a failure the servers are stopped first (by cleanup, which also removes the temp dir), then
    // what is left of walvault's workers, found by their deleted working directory.
    const root = harness.rootDir;
    await harness.cleanup();
    if (root !== null) await stopWorkers(root).catch((error) => console.error(`demo: ${error instanceof Error ? error.message : String(error)}`));
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    process.off('SIGHUP', interrupt);
  }
  console.log(ok ? `\n${bold('OK')}: the recovered cluster has exactly the rows from before the accident.` : `\n${bold('FAILED')}: the recovered rows do not match (see above).`);
  return ok;
}

/**
 * Pids and command names of the processes working in `root` (their working directory is inside it, as
 * the pusher's and the prefetcher's are: they run in the data directory), from /proc; on a system
 * without /proc, the workers' pid files in each cluster's spool (pg_wal/walvault/{archive,restore}.pid).
 */
function processesIn(/** @type {string} */ root) {
  /** @type {Map<number, string>} */
  const found = new Map();
  const inside = (/** @type {string} */ dir) => dir === root || dir.startsWith(`${root}/`);
  if (existsSync('/proc/self/cwd')) {
    for (const entry of readdirSync('/proc')) {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || pid === process.pid) continue;
      try {
        if (inside(readlinkSync(`/proc/${pid}/cwd`).replace(/ \(deleted\)$/, ''))) {
          found.set(pid, readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean).slice(0, 3).join(' '));
        }
      } catch {
        // gone meanwhile, or not ours to inspect
      }
    }
    return found;
  }
  for (const cluster of readdirSync(root, { withFileTypes: true })) {
    for (const side of ['archive', 'restore']) {
      try {
        const pid = Number.parseInt(readFileSync(path.join(root, cluster.name, 'pg_wal', 'walvault', `${side}.pid`), 'utf8'), 10);
        if (alive(pid)) found.set(pid, `walvault ${side} worker`);
      } catch {
        // no worker of that side
      }
    }
  }
  return found;
}

const alive = (/** @type {number} */ pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Stops what still works in the demo's temp dir once the servers are down (the prefetcher would
 * otherwise wait for requests that never come, for over a minute): SIGTERM, up to 10 s to exit,
 * then SIGKILL. Killing a worker at any moment is safe (it never reports success before durability).
 * Returns what it stopped.
 */
async function stopWorkers(/** @type {string} */ root) {
  const found = processesIn(root);
  for (const pid of found.keys()) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      found.delete(pid);
    }
  }
  for (const signal of ['SIGKILL', null]) {
    const until = Date.now() + 10_000;
    while ([...found.keys()].some(alive) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
    const left = [...found.keys()].filter(alive);
    if (left.length === 0) break;
    if (signal === null) throw new Error(`processes ${left.join(', ')} in "${root}" did not exit after SIGKILL`);
    for (const pid of left) process.kill(pid, signal);
  }
  return [...found].map(([pid, command]) => `${pid} (${command})`);
}

/** The archived files (relative names and sizes), for the printout; walvault's own `~meta` sidecars and repository documents are not archived files. */
async function listRepository(/** @type {string} */ repo) {
  /** @type {string[]} */
  const found = [];
  const walk = async (/** @type {string} */ dir) => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (!entry.name.includes('~') && dir !== repo) found.push(`${path.relative(repo, full)} (${(await fs.stat(full)).size} bytes)`);
    }
  };
  await walk(repo);
  return found.sort();
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (error) => {
    console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);
