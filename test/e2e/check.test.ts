// walvault check against a live PostgreSQL 15 that archives through the installed walvault-archive:
// the OK case end to end, and misconfigured ones (another repository, restore_command from elsewhere).
import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import { checkSetup, type CheckReport } from '../../src/policy/check.js';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';
import { shQuote, usePg, type PgCluster } from '../support/pg.js';

const statuses = (report: CheckReport): string[] => report.steps.map((step) => `${step.status} ${step.name}`);

describe('walvault check on a live server', () => {
  const pg = usePg({ prefix: 'walvault-check' });
  let walvault: InstalledWalvault;
  let server: PgCluster;
  let repo: string;
  let db: string;

  beforeAll(async () => {
    walvault = await installedWalvault();
    repo = await pg.makeDir('repo', 0o700);
    server = await pg.initCluster({
      name: 'server',
      walSegSizeMb: 1,
      settings: {
        archive_mode: true,
        archive_command: `${shQuote(walvault.archive)} --repo=${shQuote(repo)} %p %f`,
        restore_command: `${shQuote(walvault.restore)} --repo=${shQuote(repo)} %f %p`,
      },
    });
    await server.start();
    db = `host=${server.socketDir} port=${server.port} user=postgres dbname=postgres`;
  });

  it('reports every step OK when archiving and restoring work, and fetches the switched segment back identical', async () => {
    const report = await checkSetup({ repo, backend: createLocalBackend({ root: repo }), connection: db, waitMs: 30_000 });
    expect(statuses(report)).toEqual(['ok connect', 'ok wal_level', 'ok archive_mode', 'ok archive_command', 'ok restore_command', 'ok switch WAL', 'ok archived', 'ok restore', 'ok compare']);
    expect(report.ok).toBe(true);
    expect(report.segment).toMatch(/^00000001[0-9A-F]{16}$/);
    expect(report.steps.at(-1)!.detail).toMatch(/^identical to the server's pg_wal copy; header: database system \d+, PostgreSQL 15, 1048576-byte segments$/);
  });

  it('the installed command prints the steps and exits 0; file:// and plain paths name the same repository', async () => {
    const { run } = await import('../support/pg.js');
    const result = await run(walvault.walvault, ['check', `--repo=file://${repo}`, '--db', db, '--wait=30'], { allowFailure: true });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ {2}OK {4}archived {9}"[0-9A-F]{24}" is in the repository at ".*" after [0-9.]+ s$/m);
    expect(result.stdout.trimEnd().split('\n').at(-1)).toBe('result: OK, archiving and restoring work end to end');
  });

  it('passes with a boolean flag right before %p %f, as examples/s3-compatible.postgresql.conf writes both commands', async () => {
    await server.sql(`alter system set archive_command = ${shQuote(`${shQuote(walvault.archive)} --repo=${shQuote(repo)} --s3-force-path-style %p %f`)}`);
    await server.sql(`alter system set restore_command = ${shQuote(`${shQuote(walvault.restore)} --repo=${shQuote(repo)} --s3-force-path-style %f %p`)}`);
    await server.sql('select pg_reload_conf()');
    try {
      const { run } = await import('../support/pg.js');
      const result = await run(walvault.walvault, ['check', `--repo=${repo}`, '--db', db, '--wait=30'], { allowFailure: true });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^ {2}OK {4}archive_command {2}.* --s3-force-path-style %p %f$/m);
      expect(result.stdout).toMatch(/^ {2}OK {4}restore_command {2}.* --s3-force-path-style %f %p$/m);
    } finally {
      await server.sql('alter system reset archive_command');
      await server.sql('alter system reset restore_command');
      await server.sql('select pg_reload_conf()');
    }
  });

  it('reads the repository from the --config file archive_command names, as walvault-archive does', async () => {
    const configDir = await pg.makeDir('config', 0o755);
    const config = `${configDir}/walvault.json`;
    const { writeFile } = await import('node:fs/promises');
    await writeFile(config, JSON.stringify({ repo }), { mode: 0o644 });
    await server.sql(`alter system set archive_command = ${shQuote(`${shQuote(walvault.archive)} --config=${shQuote(config)} %p %f`)}`);
    await server.sql('select pg_reload_conf()');
    try {
      const report = await checkSetup({ repo, backend: createLocalBackend({ root: repo }), connection: db, waitMs: 30_000 });
      expect(statuses(report)).toEqual(['ok connect', 'ok wal_level', 'ok archive_mode', 'ok archive_command', 'ok restore_command', 'ok switch WAL', 'ok archived', 'ok restore', 'ok compare']);
    } finally {
      await server.sql('alter system reset archive_command');
      await server.sql('select pg_reload_conf()');
    }
  });

  it('FAILs with what walvault-archive would say when archive_command has an option it refuses', async () => {
    await server.sql(`alter system set archive_command = ${shQuote(`${shQuote(walvault.archive)} --repo=${shQuote(repo)} --compres=zstd %p %f`)}`);
    await server.sql('select pg_reload_conf()');
    try {
      const report = await checkSetup({ repo, backend: createLocalBackend({ root: repo }), connection: db, waitMs: 10_000 });
      expect(report.steps[3]).toMatchObject({ name: 'archive_command', status: 'fail' });
      expect(report.steps[3]!.detail).toMatch(/': walvault-archive would refuse it: unknown option "--compres"; HINT: did you mean --compress\?$/);
    } finally {
      await server.sql('alter system reset archive_command');
      await server.sql('select pg_reload_conf()');
    }
  });

  it('FAILs (exit 13) when archive_command archives into another repository, and skips the steps that depend on it', async () => {
    const elsewhere = await pg.makeDir('elsewhere', 0o700);
    await server.sql(`alter system set archive_command = ${shQuote(`${walvault.archive} --repo=${elsewhere} %p %f`)}`);
    await server.sql('select pg_reload_conf()');
    try {
      const report = await checkSetup({ repo, backend: createLocalBackend({ root: repo }), connection: db, waitMs: 10_000 });
      expect(statuses(report)).toEqual(['ok connect', 'ok wal_level', 'ok archive_mode', 'fail archive_command', 'ok restore_command', 'skip switch WAL', 'skip archived', 'skip restore', 'skip compare']);
      expect(report.steps[3]!.detail).toBe(`archive_command archives to "${elsewhere}", not to "${repo}"`);
      const { run } = await import('../support/pg.js');
      const result = await run(walvault.walvault, ['check', `--repo=${repo}`, '--db', db], { allowFailure: true });
      expect(result.code).toBe(13);
      expect(result.stdout).toContain('  FAIL  archive_command  archive_command archives to');
      expect(result.stderr).toBe('walvault: error: check failed at: archive_command; HINT: see the FAIL lines above and their HINTs\n');
    } finally {
      await server.sql('alter system reset archive_command');
      await server.sql('select pg_reload_conf()');
    }
  });

  it('FAILs when restore_command fetches from another repository than archive_command writes to', async () => {
    await server.sql(`alter system set restore_command = ${shQuote(`${walvault.restore} --repo=/srv/other %f %p`)}`);
    await server.sql('select pg_reload_conf()');
    try {
      const report = await checkSetup({ repo, backend: createLocalBackend({ root: repo }), connection: db, waitMs: 30_000 });
      expect(report.ok).toBe(false);
      expect(report.steps.filter((step) => step.status !== 'ok').map((step) => `${step.status} ${step.name}: ${step.detail}`)).toEqual([
        `fail restore_command: restore_command restores from "/srv/other", not from "${repo}" where archive_command archives`,
      ]);
    } finally {
      await server.sql('alter system reset restore_command');
      await server.sql('select pg_reload_conf()');
    }
  });

  it('FAILs at connect with a hint when the server cannot be reached', async () => {
    const report = await checkSetup({ repo, backend: createLocalBackend({ root: repo }), connection: `host=${server.socketDir} port=1 user=postgres`, waitMs: 1000 });
    expect(report.steps[0]).toMatchObject({ name: 'connect', status: 'fail', hint: expect.stringContaining('PGHOST') });
    expect(report.ok).toBe(false);
  });
});
