// The base-backup proof, reusable for every backend: a real PostgreSQL with a tablespace archives
// through the installed walvault-archive; `walvault backup` runs under pgbench load; a backup killed
// with SIGKILL halfway is never taken for a complete one; `walvault restore-backup` lays the good one
// out (tablespace mapped elsewhere) and point-in-time recovery reaches a restore point and the end
// with exact row counts and pgbench's balances; verify, status and cleanup know these backups.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/policy/status.js';
import type { VerifyReport } from '../../src/policy/verify.js';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';
import { IS_ROOT, PG_OS_USER, PgCluster, freePort, makePostgresDir, run, shQuote, usePg, type PgHarness } from '../support/pg.js';

/** What a backend hands the scenario. */
export interface BackupRepo {
  url: string;
  /** Environment of the servers and of walvault (credentials). */
  env?: Record<string, string>;
  /** More options for every walvault command (already split into words). */
  extraArgs?: string[];
  /** A local directory holding the stored objects, when the backend has one (enables the by-hand extraction). */
  dir?: string;
  /**
   * Whether a backup has begun to store its data in the repository (an object or an upload under
   * backups/): the scenario kills a backup once it has. With `dir`, a temp file under backups/ tells.
   */
  storingBackup?: () => Promise<boolean>;
  /**
   * Where the store can hold requests (the s3rver proxy): holds every write of a backup's base tar
   * unanswered until the returned release, so a backup killed while one is held is surely killed halfway.
   */
  holdBaseTar?: () => () => void;
}

/** Options of runBackupScenario. */
export interface BackupScenarioOptions {
  name: string;
  makeRepo: (context: { pg: PgHarness }) => Promise<BackupRepo>;
}

const ROWS = { beforeBackup: 100, inTablespace: 200, afterBackup: 1000, afterRestorePoint: 500 };

/** Registers the base-backup suite for one backend. */
export function runBackupScenario(options: BackupScenarioOptions): void {
  describe(`walvault backup and restore-backup through ${options.name}`, () => {
    const pg = usePg({ prefix: 'walvault-backup' });
    let walvault: InstalledWalvault;
    let repo: BackupRepo;
    let primary: PgCluster;
    let tablespaceDir: string;
    let tablespaceOid: string;
    let goodBackup: string;
    /** pgbench_history rows and the sum of the balances once the load stopped (unchanged at rp1). */
    let pgbench: { history: number; balance: string };
    let clusters = 0;
    /** The age identity of the encrypted backup, once one was taken (verify needs it to read its manifest). */
    let identityFile: string | undefined;
    let encryptedBackup: string | undefined;
    /** The killed backup got as far as storing something (always when the test waits for a stored object or holds the base tar). */
    let killedLeftObjects = false;

    const repoArgs = (): string[] => [`--repo=${repo.url}`, ...(repo.extraArgs ?? [])];
    const dbArg = (): string => `--db=host=${primary.socketDir} port=${primary.port} user=postgres dbname=postgres`;
    /** Runs the installed walvault as the server's OS user (it must read the data directory). */
    const walvaultAsPostgres = (args: string[]) => run(walvault.walvault, args, { asPostgres: true, env: repo.env, allowFailure: true, timeoutMs: 600_000 });

    /** A new, not yet existing data directory and a cluster object around it (the harness stops it at the end). */
    const newCluster = async (name: string): Promise<PgCluster> => {
      clusters += 1;
      const dir = await pg.makeDir(`${name}-${clusters}`);
      const cluster = new PgCluster({ dir, name, binDir: pg.binDir, port: await freePort(), env: repo.env });
      pg.clusters.push(cluster);
      await makePostgresDir(cluster.socketDir);
      return cluster;
    };
    /** After restore-backup: the harness settings (port, socket) on top of what the backup holds. */
    const configureRestored = async (cluster: PgCluster): Promise<void> => {
      await cluster.configure({ archive_mode: false });
    };

    beforeAll(async () => {
      walvault = await installedWalvault();
      repo = await options.makeRepo({ pg });
      primary = await pg.initCluster({
        name: 'primary',
        walSegSizeMb: 1,
        env: repo.env,
        settings: { archive_mode: true, archive_command: `${shQuote(walvault.archive)} ${repoArgs().map(shQuote).join(' ')} %p %f`, max_wal_size: '64MB' },
      });
      await primary.start();
      tablespaceDir = await pg.makeDir('tablespace', 0o700);
      await primary.sql(`create tablespace ts1 location '${tablespaceDir}'`);
      tablespaceOid = await primary.scalar("select oid from pg_tablespace where spcname = 'ts1'");
      await primary.sql(`create table items(id int primary key, phase text not null);
        insert into items select g, 'before-backup' from generate_series(1, ${ROWS.beforeBackup}) g;
        create table spaced(id int) tablespace ts1;
        insert into spaced select generate_series(1, ${ROWS.inTablespace})`);
      await primary.pgRun('pgbench', ['-i', '-s', '4', '-q', '-h', primary.socketDir, '-p', String(primary.port), '-U', 'postgres', 'postgres']);
    }, 300_000);

    it('a backup killed with SIGKILL halfway leaves no complete backup: restore-backup, verify and the server all see it as not there', async () => {
      const storing = repo.dir !== undefined ? async () => (await listTree(path.join(repo.dir!, 'backups'))).some((file) => file.includes('~tmp~')) : repo.storingBackup;
      if (storing === undefined) throw new Error('the repository tells neither by a directory nor by storingBackup when a backup stores its data');
      const release = repo.holdBaseTar?.();
      const child = spawnAsPostgres(walvault.walvault, ['backup', ...repoArgs(), dbArg()], repo.env);
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      let stderr = '';
      let stdout = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      try {
        // Halfway: once the backup stores its data in the repository (a tar's temp file, an object or an
        // upload of the backup, a held write of its base tar). Checked often: the kill must land before the end.
        await waitFor('the backup to store its data in the repository', async () => child.exitCode !== null || child.signalCode !== null || (await storing()), 60_000, 20);
        expect({ code: child.exitCode, signal: child.signalCode }, `walvault backup ended before the kill: ${stderr}`).toEqual({ code: null, signal: null });
        killGroup(child);
        expect(await exited, `the kill must interrupt the backup: ${stderr}`).toEqual({ code: null, signal: 'SIGKILL' });
      } finally {
        release?.();
        if (child.exitCode === null && child.signalCode === null) killGroup(child);
      }
      expect(stderr).toContain('started (pg_backup_start)');
      expect(stdout).not.toMatch(/complete/);
      if (repo.dir !== undefined) expect((await listTree(path.join(repo.dir, 'backups'))).filter((file) => /\/(complete|manifest\.json)$/.test(file))).toEqual([]);
      const restored = await run(walvault.walvault, ['restore-backup', ...repoArgs(), `--pgdata=${path.join(await pg.root(), 'never')}`], { env: repo.env, allowFailure: true });
      expect(restored.code).toBe(2);
      killedLeftObjects = restored.stderr.includes('(1 incomplete');
      expect(restored.stderr).toMatch(repo.dir === undefined && release === undefined
        ? /^walvault: error: no complete backup in repository ".*"( \(1 incomplete: interrupted or still running\))?; HINT: take one with walvault backup/m
        : /^walvault: error: no complete backup in repository ".*" \(1 incomplete: interrupted or still running\); HINT: take one with walvault backup/m);
      await expect(fs.access(path.join(await pg.root(), 'never'))).rejects.toThrow();
      // The server ended the backup with the connection.
      await waitFor('the server to drop the killed backup\'s session', async () => (await primary.scalar("select count(*) from pg_stat_activity where application_name = 'walvault backup'")) === '0');
    });

    it('takes a backup under pgbench load, waits for its WAL and marks it complete, with a one-line summary', async () => {
      const load = spawnAsPostgres(primary.bin('pgbench'), ['-c', '2', '-T', '600', '-n', '-h', primary.socketDir, '-p', String(primary.port), '-U', 'postgres', 'postgres'], {});
      load.stdout!.resume();
      load.stderr!.resume();
      try {
        await waitFor('pgbench to commit', async () => Number(await primary.scalar('select count(*) from pgbench_history')) > 50);
        const result = await walvaultAsPostgres(['backup', ...repoArgs(), dbArg()]);
        expect(result.stderr).not.toMatch(/error|warning/);
        expect(result.code).toBe(0);
        const match = /^backup (\d{8}T\d{6}Z-[0-9a-f]{6}) complete: [\d.]+ MiB \(stored [\d.]+ MiB\) in [\d.]+ m?s, WAL ([0-9A-F]{24}) \.\. ([0-9A-F]{24}) \(\S+ \.\. \S+, timeline 1\)\n$/.exec(result.stdout);
        expect(match, result.stdout).not.toBeNull();
        goodBackup = match![1]!;
        expect(Number(await primary.scalar('select count(*) from pgbench_history'))).toBeGreaterThan(50);
      } finally {
        process.kill(-load.pid!, 'SIGKILL');
        await once(load, 'exit').catch(() => undefined);
      }
      await waitFor('pgbench\'s sessions to end', async () => (await primary.scalar("select count(*) from pg_stat_activity where application_name = 'pgbench'")) === '0');
      pgbench = { history: Number(await primary.scalar('select count(*) from pgbench_history')), balance: await primary.scalar('select sum(abalance) from pgbench_accounts') };
      let next = ROWS.beforeBackup;
      await primary.sql(`insert into items select g, 'after-backup' from generate_series(${next + 1}, ${next + ROWS.afterBackup}) g`);
      next += ROWS.afterBackup;
      await primary.scalar("select pg_create_restore_point('rp1')");
      await primary.sql(`insert into items select g, 'after-restore-point' from generate_series(${next + 1}, ${next + ROWS.afterRestorePoint}) g`);
      await primary.switchWalAndWaitArchived();
    });

    it('refuses a non-empty target directory and changes nothing in it', async () => {
      const target = await pg.makeDir('occupied', 0o700);
      await fs.writeFile(path.join(target, 'precious'), 'keep me');
      const result = await run(walvault.walvault, ['restore-backup', ...repoArgs(), `--pgdata=${target}`], { env: repo.env, allowFailure: true });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^walvault: error: data directory ".*occupied" is not empty; nothing was restored; HINT: give an empty or new directory with --pgdata\n$/);
      expect(await fs.readdir(target)).toEqual(['precious']);
    });

    it('restore-backup with the tablespace mapped elsewhere recovers to the restore point "rp1" with exactly the rows and balances committed before it', async () => {
      const copy = await newCluster('at-rp1');
      const mapped = path.join(copy.dir, 'ts1');
      const result = await run(walvault.walvault, ['restore-backup', ...repoArgs(), `--pgdata=${copy.dataDir}`, `--tablespace-map=${tablespaceOid}=${mapped}`, '--target-name=rp1', '--target-action=promote'], { env: repo.env, allowFailure: true });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^restored backup ${goodBackup} into ".*": \\d+ files, [\\d.]+ MiB, 1 tablespace\\(s\\); consistent once WAL up to \\S+ is replayed`));
      expect((await fs.stat(copy.dataDir)).mode & 0o777).toBe(0o700);
      expect(await fs.readlink(path.join(copy.dataDir, 'pg_tblspc', tablespaceOid))).toBe(mapped);
      expect(await fs.readFile(path.join(copy.dataDir, 'recovery.signal'), 'utf8')).toBe('');
      if (IS_ROOT) expect((await fs.stat(path.join(copy.dataDir, 'PG_VERSION'))).uid).toBe((await fs.stat(copy.dir)).uid);
      await configureRestored(copy);
      await copy.start();
      await copy.waitForRecoveryEnd();
      expect(await copy.count('items')).toBe(ROWS.beforeBackup + ROWS.afterBackup);
      expect(await copy.count('spaced')).toBe(ROWS.inTablespace);
      expect(await copy.count('pgbench_history')).toBe(pgbench.history);
      expect(await copy.scalar('select sum(abalance) from pgbench_accounts')).toBe(pgbench.balance);
      expect(await copy.scalar("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts1'")).toBe(mapped);
      const log = await copy.log();
      expect(log).toContain('recovery stopping at restore point "rp1"');
      expect(log).toMatch(/walvault-restore: info: restored/);
      await copy.stop();
    });

    it('restore-backup of "latest" recovers to the end of the archive with every row', async () => {
      const copy = await newCluster('at-end');
      const result = await run(walvault.walvault, ['restore-backup', ...repoArgs(), `--pgdata=${copy.dataDir}`, `--tablespace-map=${tablespaceOid}=${path.join(copy.dir, 'ts1')}`, '--backup=latest'], { env: repo.env, allowFailure: true });
      expect(result.code).toBe(0);
      await configureRestored(copy);
      await copy.start();
      await copy.waitForRecoveryEnd();
      expect(await copy.count('items')).toBe(ROWS.beforeBackup + ROWS.afterBackup + ROWS.afterRestorePoint);
      expect(await copy.count('pgbench_history')).toBe(pgbench.history);
      expect(await copy.log()).toContain('archive recovery complete');
      await copy.stop();
    });

    it('verify checks the backup (objects, hashes, the WAL it needs) and status shows it as the newest complete backup', async () => {
      const verify = await run(walvault.walvault, ['verify', ...repoArgs(), '--json'], { env: repo.env, allowFailure: true });
      const report = JSON.parse(verify.stdout) as VerifyReport & { baseBackups: Array<{ id: string; complete: boolean; restorable: boolean }> };
      expect(verify.code, verify.stdout).toBe(0);
      expect(report.baseBackups.map((backup) => [backup.id === goodBackup, backup.complete, backup.restorable])).toEqual([
        [true, true, true],
        ...(killedLeftObjects ? [[false, false, false]] : []),
      ]);
      if (repo.dir !== undefined || repo.holdBaseTar !== undefined) expect(killedLeftObjects).toBe(true);
      const status = await run(walvault.walvault, ['status', ...repoArgs(), '--json'], { env: repo.env, allowFailure: true });
      expect(status.code, status.stderr).toBe(0);
      const repository = (JSON.parse(status.stdout) as StatusReport).repository as StatusReport['repository'] & { newestBackup: { id: string; ageSeconds: number } | null };
      expect(repository.newestBackup?.id).toBe(goodBackup);
      expect(repository.newestBackup!.ageSeconds).toBeGreaterThanOrEqual(0);
    });

    if (options.name.includes('local')) it('an encrypted, zstd-compressed backup is restored by hand with age -d | zstd -d | tar -x and recovers', async () => {
      const identity = path.join(await pg.makeDir('keys', 0o755), 'key.txt');
      await run('age-keygen', ['-o', identity]);
      await fs.chmod(identity, 0o644);
      const recipient = (await run('age-keygen', ['-y', identity])).stdout.trim();
      const result = await walvaultAsPostgres(['backup', ...repoArgs(), dbArg(), '--compress=zstd', `--encrypt-recipient=${recipient}`]);
      expect(result.code, result.stderr).toBe(0);
      const id = /^backup (\S+) complete: .*zstd, encrypted/.exec(result.stdout)![1]!;
      const folder = path.join(repo.dir!, 'backups', id);
      expect((await fs.readdir(folder)).sort()).toEqual(['base.tar.zst.age', 'complete', 'manifest.json', 'manifest.json~meta', `${tablespaceOid}.tar.zst.age`].sort());
      identityFile = identity;
      encryptedBackup = id;
      const copy = await newCluster('by-hand');
      await fs.mkdir(copy.dataDir, { mode: 0o700 });
      const mapped = path.join(copy.dir, 'ts1');
      await fs.mkdir(mapped, { mode: 0o700 });
      const extract = async (object: string, into: string): Promise<void> => {
        await run('sh', ['-c', `age -d -i ${shQuote(identity)} ${shQuote(path.join(folder, object))} | zstd -d | tar -x -C ${shQuote(into)}`]);
      };
      await extract('base.tar.zst.age', copy.dataDir);
      await extract(`${tablespaceOid}.tar.zst.age`, mapped);
      expect(await fs.readFile(path.join(copy.dataDir, 'backup_label'), 'utf8')).toContain(`LABEL: walvault backup ${id}\n`);
      const map = await fs.readFile(path.join(copy.dataDir, 'tablespace_map'), 'utf8');
      expect(map).toBe(`${tablespaceOid} ${tablespaceDir}\n`);
      // The operator points the tablespace at its new place, creates recovery.signal and restore_command.
      await fs.writeFile(path.join(copy.dataDir, 'tablespace_map'), `${tablespaceOid} ${mapped}\n`);
      await fs.mkdir(path.join(copy.dataDir, 'pg_wal', 'archive_status'), { recursive: true });
      await fs.writeFile(path.join(copy.dataDir, 'recovery.signal'), '');
      await run('chown', ['-R', `${PG_OS_USER}:`, copy.dataDir, mapped]);
      await copy.configure({ archive_mode: false, restore_command: `${shQuote(walvault.restore)} ${repoArgs().map(shQuote).join(' ')} %f %p` });
      await copy.start();
      await copy.waitForRecoveryEnd();
      expect(await copy.count('items')).toBe(ROWS.beforeBackup + ROWS.afterBackup + ROWS.afterRestorePoint);
      expect(await copy.count('spaced')).toBe(ROWS.inTablespace);
      await copy.stop();
    });

    it('cleanup --keep-backups 1 keeps the newest complete backup and its WAL, removes the older one and the interrupted one', async () => {
      const keys = identityFile === undefined ? [] : [`--decrypt-identity-file=${identityFile}`];
      const before = await run(walvault.walvault, ['verify', ...repoArgs(), ...keys, '--json'], { env: repo.env, allowFailure: true });
      const ids = (JSON.parse(before.stdout) as { baseBackups: Array<{ id: string; complete: boolean }> }).baseBackups;
      const newest = ids.find((backup) => backup.complete)!.id;
      const result = await run(walvault.walvault, ['cleanup', ...repoArgs(), '--keep-backups=1', '--incomplete-grace=0', '--json'], { env: repo.env, allowFailure: true });
      expect(result.code, result.stderr).toBe(0);
      const after = await run(walvault.walvault, ['verify', ...repoArgs(), ...keys, '--json'], { env: repo.env, allowFailure: true });
      expect(after.code, after.stdout).toBe(0);
      expect((JSON.parse(after.stdout) as { baseBackups: Array<{ id: string; complete: boolean; restorable: boolean }> }).baseBackups).toEqual([expect.objectContaining({ id: newest, complete: true, restorable: true })]);
    });

    if (options.name.includes('local')) it('restore-backup of a backup damaged in the repository fails with exit 7 and leaves no directory behind', async () => {
      const file = path.join(repo.dir!, 'backups', encryptedBackup!, 'base.tar.zst.age');
      const handle = await fs.open(file, 'r+');
      const { size } = await handle.stat();
      await handle.write(Buffer.alloc(16, 0x5a), 0, 16, Math.floor(size / 2));
      await handle.close();
      const parent = await pg.makeDir('damaged-parent');
      const target = path.join(parent, 'data');
      const result = await run(walvault.walvault, ['restore-backup', ...repoArgs(), `--pgdata=${target}`, `--tablespace-map=${tablespaceOid}=${path.join(parent, 'ts1')}`, `--decrypt-identity-file=${identityFile!}`], { env: repo.env, allowFailure: true });
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(new RegExp(`^walvault: error: restore of backup "${encryptedBackup}" failed: .*; nothing was left behind; HINT: .+\n$`));
      expect(result.code).toBe(7);
      expect(await fs.readdir(parent)).toEqual([]);
      const verify = await run(walvault.walvault, ['verify', ...repoArgs(), `--decrypt-identity-file=${identityFile!}`], { env: repo.env, allowFailure: true });
      expect(verify.code).toBe(12);
      expect(verify.stdout).toContain(`ERROR [base-backup] base backup "${encryptedBackup}" cannot be restored: "${file}" does not match the hash of the stored bytes in the manifest`);
    });
  });
}

/** Starts a program as the postgres OS user (when root) in its own process group, so the test can kill all of it. */
function spawnAsPostgres(program: string, args: string[], env: Record<string, string> | undefined): ChildProcess {
  const [file, argv] = IS_ROOT ? ['runuser', ['-u', PG_OS_USER, '--', program, ...args]] : [program, args];
  return spawn(file, argv, { cwd: '/tmp', env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Sends SIGKILL to a child's process group; one already gone is no error (its exit status tells how it ended). */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Every file under a directory (relative paths); none when it does not exist. */
async function listTree(root: string): Promise<string[]> {
  const entries = await fs.readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)));
}

/** Polls `condition` every `intervalMs` until it holds; fails after `timeoutMs` naming what it waited for. */
async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 120_000, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
