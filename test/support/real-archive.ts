// A REAL walvault archive for verify/cleanup tests, built once per test run from real PostgreSQL 15
// clusters (1 MiB segments) through the installed walvault-archive:
//
//   timeline 1: primary; backup "base-a"; restore point rp1; more WAL; backup "base-b"; more WAL
//   timeline 2: point-in-time recovery of base-a to rp1 (promote); more WAL; backup "base-c"; more WAL
//   timeline 3: a standby restored from base-c, replaying from the archive, then promoted; more WAL
//
// plus one segment of a second, unrelated cluster (not in the archive) for the "two clusters" case.
// Tests never touch the template: copyArchive() gives each case its own copy to damage.

import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inject } from 'vitest';
import { installedWalvault, type InstalledWalvault } from './install.js';
import { makeScratchDir, PgHarness, shQuote, type PgCluster } from './pg.js';

/** What the tests need to know about the archive they got. */
export interface RealArchive {
  /** The template repository (never modify; use copyArchive). */
  template: string;
  walvault: InstalledWalvault;
  systemIdentifier: string;
  segmentSize: number;
  /** Label → backup history file name. */
  backups: Record<'base-a' | 'base-b' | 'base-c', string>;
  /** Last segment archived on each timeline. */
  lastSegment: Record<1 | 2 | 3, string>;
  /** A complete segment of a second cluster, as a plain file, and its name (not present in the archive). */
  foreign: { file: string; name: string; systemIdentifier: string };
  /** Data directories of two of the base backups (never started; restoreCluster copies them). */
  backupDirs: Record<'base-a' | 'base-c', string>;
  /** The FATAL line of a recovery of base-b with recovery_target_timeline = 'latest'. */
  baseBLatestFatal: string;
  /** Seconds the build took (for the report). */
  buildSeconds: number;
}

let cached: Promise<RealArchive> | undefined;

/** The shared archive; the first caller in a test run builds it, the others wait for it. */
export function realArchive(): Promise<RealArchive> {
  cached ??= buildOnce();
  return cached;
}

/** A private copy of the template repository under `parent`, preserving modes and times. */
export async function copyArchive(archive: RealArchive, parent: string, name: string): Promise<string> {
  const target = path.join(parent, name);
  await fs.cp(archive.template, target, { recursive: true, preserveTimestamps: true });
  return target;
}

/** Path of a file's object in a local repository (the POSIX layout: wal/<first 16>/<name>). */
export function objectPath(repo: string, name: string): string {
  return /^[0-9A-F]{24}/.test(name) ? path.join(repo, 'wal', name.slice(0, 16), name) : path.join(repo, 'wal', name);
}

async function buildOnce(): Promise<RealArchive> {
  const walvault = await installedWalvault();
  let runDir: string;
  try {
    runDir = inject('walvaultRunDir');
  } catch {
    runDir = await makeScratchDir('walvault-verify-archive');
  }
  const home = path.join(runDir, 'real-archive');
  const lock = `${home}.lock`;
  const done = path.join(home, 'archive.json');
  try {
    await fs.mkdir(lock);
  } catch {
    const deadline = Date.now() + 600_000;
    while (Date.now() < deadline) {
      if (existsSync(done)) return JSON.parse(await fs.readFile(done, 'utf8')) as RealArchive;
      if (existsSync(`${home}.error`)) throw new Error(`building the real archive failed in another worker:\n${await fs.readFile(`${home}.error`, 'utf8')}`);
      await sleep(500);
    }
    throw new Error('timed out waiting for another worker to build the real archive');
  }
  try {
    const archive = await build(walvault, home);
    await fs.writeFile(done, JSON.stringify(archive));
    return archive;
  } catch (error) {
    await fs.writeFile(`${home}.error`, String(error instanceof Error ? error.stack : error));
    throw error;
  }
}

async function build(walvault: InstalledWalvault, home: string): Promise<RealArchive> {
  const started = Date.now();
  await fs.mkdir(home, { recursive: true, mode: 0o755 });
  const pg = new PgHarness({ prefix: 'walvault-verify-build' });
  try {
    const repo = await pg.makeDir('repo', 0o700);
    const archiveCommand = `${shQuote(walvault.archive)} --repo=${shQuote(repo)} --quiet %p %f`;
    const restoreCommand = `${shQuote(walvault.restore)} --repo=${shQuote(repo)} --quiet %f %p`;
    const root = await pg.root();
    const segmentSize = 1024 * 1024;

    // Timeline 1.
    const primary = await pg.initCluster({ name: 'primary', walSegSizeMb: 1, settings: { archive_mode: true, archive_command: archiveCommand } });
    await primary.start();
    const systemIdentifier = (await primary.controlData())['Database system identifier']!;
    await primary.sql("create table t(i int, phase text); insert into t select g, 'one' from generate_series(1, 2000) g");
    await primary.switchWalAndWaitArchived();
    const backupA = await primary.baseBackup({ label: 'base-a', targetDir: path.join(root, 'backup-a') });
    await primary.sql("insert into t select g, 'one' from generate_series(1, 5000) g");
    await primary.switchWalAndWaitArchived();
    await primary.sql("select pg_create_restore_point('rp1')");
    await primary.sql("insert into t select g, 'one-after-rp1' from generate_series(1, 5000) g");
    await primary.switchWalAndWaitArchived();
    const backupB = await primary.baseBackup({ label: 'base-b', targetDir: path.join(root, 'backup-b') });
    await primary.sql("insert into t select g, 'one-late' from generate_series(1, 5000) g");
    const last1 = await primary.switchWalAndWaitArchived();
    await primary.stop();

    // Timeline 2: point-in-time recovery of base-a to rp1.
    const pitr = await pg.restoreCluster(backupA, {
      name: 'pitr',
      settings: { restore_command: restoreCommand, recovery_target_name: 'rp1', recovery_target_action: 'promote', archive_mode: true, archive_command: archiveCommand },
    });
    await pitr.start();
    await pitr.waitForRecoveryEnd();
    await pitr.sql("insert into t select g, 'two' from generate_series(1, 5000) g");
    await pitr.switchWalAndWaitArchived();
    const backupC = await pitr.baseBackup({ label: 'base-c', targetDir: path.join(root, 'backup-c') });
    await pitr.sql("insert into t select g, 'two-late' from generate_series(1, 5000) g");
    await pitr.switchWalAndWaitArchived();
    await pitr.sql("insert into t select g, 'two-later' from generate_series(1, 3000) g");
    const last2 = await pitr.switchWalAndWaitArchived();
    await pitr.stop();

    // Timeline 3: a standby of base-c fed from the archive, promoted once it has replayed everything.
    const standby = await pg.restoreCluster(backupC, {
      name: 'standby',
      signal: 'standby',
      settings: { restore_command: restoreCommand, archive_mode: true, archive_command: archiveCommand },
    });
    await standby.start();
    await waitForLog(standby, `restored log file "${last2}" from archive`);
    await standby.pgRun('pg_ctl', ['-D', standby.dataDir, '-w', 'promote']);
    await standby.waitForRecoveryEnd();
    await standby.sql("insert into t select g, 'three' from generate_series(1, 5000) g");
    await standby.switchWalAndWaitArchived();
    await standby.sql("insert into t select g, 'three-late' from generate_series(1, 3000) g");
    const last3 = await standby.switchWalAndWaitArchived();
    await standby.stop();

    // What really happens when base-b (timeline 1, after the fork of timeline 2) is restored with the
    // default recovery_target_timeline = 'latest': verify warns about exactly this.
    const latestB = await pg.restoreCluster(backupB, { name: 'base-b-latest', settings: { restore_command: restoreCommand } });
    await latestB.start({ allowFailure: true });
    await latestB.waitForStopped();
    const baseBLatestFatal = /FATAL: {2}requested timeline \d+ is not a child of this server's history/.exec(await latestB.log())?.[0] ?? `(no such FATAL)\n${await latestB.logTail()}`;

    // A second cluster: one of its completed segments, at a position past everything in the archive.
    const other = await pg.initCluster({ name: 'other', walSegSizeMb: 1, settings: {} });
    await other.start();
    const highest = [last1, last2, last3].map((name) => name.slice(8)).sort().at(-1)!;
    let current = await other.scalar('select pg_walfile_name(pg_current_wal_lsn())');
    await other.sql('create table f(i int)');
    while (current.slice(8) <= highest) {
      await other.sql('insert into f values (1); select pg_switch_wal()');
      current = await other.scalar('select pg_walfile_name(pg_current_wal_lsn())');
    }
    // The segment before the current one is complete; copy it before a shutdown checkpoint recycles it.
    const foreignName = await other.scalar('select pg_walfile_name(pg_current_wal_lsn() - 1048576)');
    const foreignFile = path.join(home, foreignName);
    await fs.copyFile(path.join(other.dataDir, 'pg_wal', foreignName), foreignFile);
    const foreignSysid = (await other.controlData())['Database system identifier']!;
    await other.stop();

    const template = path.join(home, 'repo');
    await fs.cp(repo, template, { recursive: true, preserveTimestamps: true });
    // Kept so tests can recover them and compare where PostgreSQL stops with what verify predicts.
    const backupDirs = { 'base-a': path.join(home, 'backup-a'), 'base-c': path.join(home, 'backup-c') };
    await fs.cp(backupA.dataDir, backupDirs['base-a'], { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    await fs.cp(backupC.dataDir, backupDirs['base-c'], { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    const backupNames = (await fs.readdir(path.join(template, 'wal'), { recursive: true })).map(String).filter((name) => name.endsWith('.backup'));
    const labels: Record<string, string> = {};
    for (const name of backupNames) {
      const text = await fs.readFile(path.join(template, 'wal', name), 'utf8');
      labels[/^LABEL: (.*)$/m.exec(text)![1]!] = path.basename(name);
    }
    return {
      template,
      walvault,
      systemIdentifier,
      segmentSize,
      backups: { 'base-a': labels['base-a']!, 'base-b': labels['base-b']!, 'base-c': labels['base-c']! },
      lastSegment: { 1: last1, 2: last2, 3: last3 },
      foreign: { file: foreignFile, name: foreignName, systemIdentifier: foreignSysid },
      baseBLatestFatal,
      backupDirs,
      buildSeconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    await pg.cleanup();
  }
}

async function waitForLog(cluster: PgCluster, text: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cluster.log()).includes(text)) {
    if (Date.now() > deadline) throw new Error(`"${cluster.name}" never logged ${JSON.stringify(text)}\n${await cluster.logTail()}`);
    await sleep(200);
  }
}

/** The WAL files of a local repository, by kind: segments per timeline (sorted), history and backup history files. */
export interface ArchiveLayout {
  segments: Record<number, string[]>;
  histories: string[];
  backups: string[];
  /** Every WAL file name, sorted. */
  all: string[];
}

/** Lists what a local repository holds (the tests derive expected names from it: WAL volume varies a little run to run). */
export async function layoutOf(repo: string): Promise<ArchiveLayout> {
  const names = (await fs.readdir(path.join(repo, 'wal'), { recursive: true }))
    .map((entry) => path.basename(String(entry)))
    .filter((name) => /^([0-9A-F]{24}(\.[0-9A-F]{8}\.backup|\.partial)?|[0-9A-F]{8}\.history)$/.test(name))
    .sort();
  const segments: Record<number, string[]> = {};
  for (const name of names.filter((candidate) => /^[0-9A-F]{24}$/.test(candidate))) {
    (segments[Number.parseInt(name.slice(0, 8), 16)] ??= []).push(name);
  }
  return { segments, histories: names.filter((name) => name.endsWith('.history')), backups: names.filter((name) => name.endsWith('.backup')), all: names };
}
