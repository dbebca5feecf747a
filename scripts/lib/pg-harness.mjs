// A throwaway-PostgreSQL harness shared by the e2e tests (test/support/pg.ts) and `npm run demo`.
// Plain JavaScript with JSDoc types so the demo runs with bare `node`; the tests import it as is.
//
// Everything PostgreSQL touches (initdb, pg_ctl, psql, data directories) runs as the `postgres`
// OS user via `runuser -u postgres --` when we are root (the server refuses to run as root), and
// directly as the current user otherwise.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/** True when we run as root and must hand PostgreSQL work to the postgres OS user. */
export const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

/** The OS user that owns clusters when we run as root. */
export const PG_OS_USER = 'postgres';

/**
 * @typedef {object} RunOptions
 * @property {boolean} [asPostgres]  run via `runuser -u postgres --` when root (default false)
 * @property {Record<string, string>} [env]  extra environment variables
 * @property {string} [cwd]  working directory (default: the OS temp dir, reachable by everyone)
 * @property {boolean} [allowFailure]  resolve instead of reject on a nonzero exit
 * @property {number} [timeoutMs]  kill the process (SIGKILL) after this long (default 120 s)
 * @property {string} [input]  written to stdin
 */

/**
 * @typedef {object} RunResult
 * @property {number} code  exit code (-1 when killed by a signal)
 * @property {string} stdout
 * @property {string} stderr
 */

/** Runs a command to completion (as postgres when asked and root) and collects its output. */
export async function run(/** @type {string} */ command, /** @type {string[]} */ args, /** @type {RunOptions} */ options = {}) {
  const [file, argv] = options.asPostgres && IS_ROOT ? ['runuser', ['-u', PG_OS_USER, '--', command, ...args]] : [command, args];
  const child = spawn(file, argv, {
    cwd: options.cwd ?? os.tmpdir(),
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk));
  child.stdin.on('error', () => {});
  child.stdin.end(options.input ?? '');
  const timeoutMs = options.timeoutMs ?? 120_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  /** @type {[number | null, NodeJS.Signals | null]} */
  let exit;
  try {
    exit = /** @type {[number | null, NodeJS.Signals | null]} */ (await once(child, 'close'));
  } finally {
    clearTimeout(timer);
  }
  const code = exit[0] ?? -1;
  const result = { code, stdout, stderr };
  if (timedOut) throw new Error(`${describe(file, argv)} timed out after ${timeoutMs} ms\n${stderr}`);
  if (code !== 0 && !options.allowFailure) {
    throw new Error(`${describe(file, argv)} exited with ${exit[1] ?? code}\n${stderr}${stdout}`);
  }
  return result;
}

/** Quotes one word for /bin/sh (archive_command and restore_command are run by the shell). */
export function shQuote(/** @type {string} */ word) {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function describe(/** @type {string} */ file, /** @type {string[]} */ argv) {
  return [file, ...argv].map(shQuote).join(' ');
}

const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Finds the PostgreSQL server binaries: $WALVAULT_PG_BIN, else /usr/lib/postgresql/15/bin, else the
 * newest /usr/lib/postgresql/<major>/bin. Throws with a setup hint when none is installed.
 */
export function findPgBin() {
  const candidates = [];
  if (process.env.WALVAULT_PG_BIN) candidates.push(process.env.WALVAULT_PG_BIN);
  candidates.push('/usr/lib/postgresql/15/bin');
  if (existsSync('/usr/lib/postgresql')) {
    const majors = readdirSync('/usr/lib/postgresql')
      .filter((entry) => /^\d+$/.test(entry))
      .sort((a, b) => Number(b) - Number(a));
    for (const major of majors) candidates.push(`/usr/lib/postgresql/${major}/bin`);
  }
  for (const dir of candidates) {
    if (existsSync(path.join(dir, 'postgres')) && existsSync(path.join(dir, 'initdb'))) return dir;
  }
  throw new Error(
    `no PostgreSQL server binaries found (looked in ${candidates.join(', ')}); ` +
      'run "bash scripts/setup.sh" or set WALVAULT_PG_BIN to the directory holding initdb and postgres',
  );
}

/** Asks the kernel for a free TCP port (the socket file name carries it even with listen_addresses=''). */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('could not get a free port');
  return address.port;
}

/** Hands a path (recursively when asked) to the postgres OS user; a no-op when not root. */
export async function chownToPostgres(/** @type {string} */ target, /** @type {{ recursive?: boolean }} */ options = {}) {
  if (!IS_ROOT) return;
  await run('chown', [...(options.recursive ? ['-R'] : []), `${PG_OS_USER}:${PG_OS_USER}`, target]);
}

/**
 * Makes a fresh directory under the OS temp dir that the postgres user can use: mode 0755 (so root
 * and postgres can both reach what is inside) and owned by postgres when root.
 */
export async function makeScratchDir(/** @type {string} */ prefix) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
  await fs.chmod(dir, 0o755);
  await chownToPostgres(dir);
  return dir;
}

/**
 * Creates a directory (parents included) owned by postgres, with `mode` (default 0755).
 * Use it for repositories and other places the server's commands write to.
 */
export async function makePostgresDir(/** @type {string} */ dir, /** @type {number} */ mode = 0o755) {
  await fs.mkdir(dir, { recursive: true });
  await fs.chmod(dir, mode);
  await chownToPostgres(dir);
  return dir;
}

/** Clusters started and not yet stopped by this process: the exit safety net stops them. */
/** @type {Set<PgCluster>} */
const liveClusters = new Set();
let exitHookInstalled = false;

// Last line of defence when a process exits without cleanup() (an uncaught error, process.exit):
// stop our servers synchronously so none outlive the test run or demo.
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const cluster of liveClusters) {
      const args = [cluster.bin('pg_ctl'), '-D', cluster.dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'];
      const [file, argv] = IS_ROOT ? ['runuser', ['-u', PG_OS_USER, '--', ...args]] : [args[0] ?? '', args.slice(1)];
      spawnSync(file, argv, { cwd: os.tmpdir(), stdio: 'ignore', timeout: 40_000 });
    }
  });
}

/** @typedef {string | number | boolean} SettingValue */

/** Renders one postgresql.conf value: strings quoted (quotes doubled), booleans on/off, numbers bare. */
export function confValue(/** @type {SettingValue} */ value) {
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  if (typeof value === 'number') return String(value);
  return `'${value.replaceAll("'", "''")}'`;
}

// Data-directory entries a base backup must not copy (or must copy empty), as pg_basebackup does.
const SKIP_FILES = new Set(['postmaster.pid', 'postmaster.opts', 'backup_label', 'tablespace_map', 'backup_manifest', 'pg_internal.init']);
const EMPTY_DIRS = new Set(['pg_wal', 'pg_replslot', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans']);

/**
 * Copies a live data directory the way an online base backup may: files that vanish mid-copy are
 * skipped, pg_wal and the transient directories are created empty, the lock file is left out.
 */
export async function copyDataDir(/** @type {string} */ from, /** @type {string} */ to) {
  await fs.mkdir(to, { mode: 0o700 });
  await copyTree(from, to, true);
  await fs.mkdir(path.join(to, 'pg_wal', 'archive_status'), { recursive: true });
  await fs.chmod(to, 0o700);
  await chownToPostgres(to, { recursive: true });
}

async function copyTree(/** @type {string} */ from, /** @type {string} */ to, /** @type {boolean} */ top) {
  /** @type {import('node:fs').Dirent[]} */
  let entries;
  try {
    entries = await fs.readdir(from, { withFileTypes: true });
  } catch (error) {
    if (isNodeError(error, 'ENOENT')) return;
    throw error;
  }
  for (const entry of entries) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isDirectory()) {
      await fs.mkdir(target, { mode: 0o700 });
      if (top && EMPTY_DIRS.has(entry.name)) continue;
      await copyTree(source, target, false);
    } else if (entry.isSymbolicLink()) {
      await fs.symlink(await fs.readlink(source), target);
    } else if (entry.isFile()) {
      if (SKIP_FILES.has(entry.name) || entry.name.startsWith('pgsql_tmp')) continue;
      try {
        await fs.copyFile(source, target);
      } catch (error) {
        if (!isNodeError(error, 'ENOENT')) throw error;
      }
    }
  }
}

function isNodeError(/** @type {unknown} */ error, /** @type {string} */ code) {
  return error instanceof Error && /** @type {NodeJS.ErrnoException} */ (error).code === code;
}

/**
 * @typedef {object} BaseBackup
 * @property {string} dataDir  the copied data directory, with backup_label written in; never started
 * @property {string} label  the label passed to pg_backup_start
 * @property {string} startLsn  what pg_backup_start returned
 * @property {string} stopLsn  what pg_backup_stop returned
 * @property {string} backupLabel  the backup_label contents, byte for byte as pg_backup_stop returned them
 * @property {string} tablespaceMap  the tablespace_map contents ('' when there are no tablespaces)
 */

/**
 * @typedef {object} ClusterOptions
 * @property {string} name  directory name under the harness root; also used in messages
 * @property {number} [walSegSizeMb]  initdb --wal-segsize (1..1024, power of two); default 16
 * @property {Record<string, SettingValue>} [settings]  postgresql.conf settings on top of the harness defaults
 * @property {Record<string, string>} [env]  environment of the server (and so of archive/restore commands)
 */

/**
 * @typedef {object} RestoreOptions
 * @property {string} name  directory name of the new cluster
 * @property {Record<string, SettingValue>} [settings]  restore_command, recovery_target_* and so on
 * @property {'recovery' | 'standby' | 'none'} [signal]  which signal file to create (default recovery)
 * @property {Record<string, string>} [env]  environment of the server
 */

/**
 * One PostgreSQL cluster in its own directory: `<dir>/data`, `<dir>/server.log`, `<dir>/socket`.
 * Settings live in `<dir>/data/walvault-harness.conf`, included from postgresql.conf and rewritten as
 * a whole by `configure()`, so a copy restored from a backup never inherits the primary's settings.
 */
export class PgCluster {
  /**
   * @param {object} init
   * @param {string} init.dir
   * @param {string} init.name
   * @param {string} init.binDir
   * @param {number} init.port
   * @param {Record<string, string>} [init.env]
   */
  constructor(init) {
    /** Directory name, for messages. */
    this.name = init.name;
    /** The cluster's own directory (data, log, socket live inside). */
    this.dir = init.dir;
    /** PostgreSQL binaries directory. */
    this.binDir = init.binDir;
    /** The port (only names the socket file: listen_addresses is empty). */
    this.port = init.port;
    /** The data directory. */
    this.dataDir = path.join(init.dir, 'data');
    /** The server log (pg_ctl -l): where restore_command's stderr ends up. */
    this.logFile = path.join(init.dir, 'server.log');
    /** The unix socket directory. */
    this.socketDir = path.join(init.dir, 'socket');
    /** Environment of the server process. */
    this.env = init.env ?? {};
    /** @type {Record<string, SettingValue>} */
    this.settings = {};
  }

  /** The settings every harness cluster gets: private socket, no TCP, quiet and small. */
  baseSettings() {
    return {
      port: this.port,
      listen_addresses: '',
      unix_socket_directories: this.socketDir,
      unix_socket_permissions: '0777',
      logging_collector: false,
      log_line_prefix: '%m [%p] ',
      max_connections: 20,
      shared_buffers: '32MB',
      max_wal_senders: 2,
      wal_level: 'replica',
    };
  }

  /** Path of a PostgreSQL binary. */
  bin(/** @type {string} */ program) {
    return path.join(this.binDir, program);
  }

  /** Replaces the harness settings (defaults + `settings`) and writes them to walvault-harness.conf. */
  async configure(/** @type {Record<string, SettingValue>} */ settings) {
    this.settings = { ...this.baseSettings(), ...settings };
    await this.writeSettings();
  }

  /** Changes some settings, keeping the others (`null` removes one); takes effect at the next start. */
  async updateSettings(/** @type {Record<string, SettingValue | null>} */ changes) {
    for (const [key, value] of Object.entries(changes)) {
      if (value === null) delete this.settings[key];
      else this.settings[key] = value;
    }
    await this.writeSettings();
  }

  async writeSettings() {
    const lines = Object.entries(this.settings).map(([key, value]) => `${key} = ${confValue(value)}`);
    const file = path.join(this.dataDir, 'walvault-harness.conf');
    await fs.writeFile(file, `# written by walvault's test harness; rewritten on every configure()\n${lines.join('\n')}\n`);
    await chownToPostgres(file);
    const mainConf = path.join(this.dataDir, 'postgresql.conf');
    const text = await fs.readFile(mainConf, 'utf8');
    if (!text.includes("include_if_exists = 'walvault-harness.conf'")) {
      await fs.appendFile(mainConf, "\ninclude_if_exists = 'walvault-harness.conf'\n");
    }
  }

  /** Runs one of the PostgreSQL binaries as the cluster owner, in the cluster directory. */
  async pgRun(/** @type {string} */ program, /** @type {string[]} */ args, /** @type {RunOptions} */ options = {}) {
    return run(this.bin(program), args, { cwd: this.dir, ...options, asPostgres: true, env: { ...this.env, ...options.env } });
  }

  /**
   * Starts the server and waits (pg_ctl -w) until it accepts connections, which during archive
   * recovery with hot_standby means "consistent", not "recovery finished" (see waitForRecoveryEnd).
   * With `allowFailure` returns false instead of throwing when the server did not come up.
   */
  async start(/** @type {{ allowFailure?: boolean, timeoutSec?: number }} */ options = {}) {
    installExitHook();
    liveClusters.add(this);
    const result = await this.pgRun('pg_ctl', ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', String(options.timeoutSec ?? 90), 'start'], {
      allowFailure: true,
      timeoutMs: ((options.timeoutSec ?? 90) + 30) * 1000,
    });
    if (result.code === 0) return true;
    if (options.allowFailure) return false;
    throw new Error(`server "${this.name}" did not start (pg_ctl exit ${result.code})\n${result.stdout}${result.stderr}\n--- server log ---\n${await this.logTail()}`);
  }

  /** Stops the server (fast by default; `immediate` for cleanup) if it is running. */
  async stop(/** @type {{ mode?: 'smart' | 'fast' | 'immediate' }} */ options = {}) {
    if (existsSync(this.dataDir) && (await this.isRunning())) {
      await this.pgRun('pg_ctl', ['-D', this.dataDir, '-m', options.mode ?? 'fast', '-w', '-t', '60', 'stop'], { allowFailure: true });
    }
    if (!(await this.isRunning())) liveClusters.delete(this);
  }

  /** True while a postmaster runs on this data directory (pg_ctl status). */
  async isRunning() {
    const result = await this.pgRun('pg_ctl', ['-D', this.dataDir, 'status'], { allowFailure: true });
    return result.code === 0;
  }

  /** The psql arguments that reach this server over its private socket as the postgres superuser. */
  psqlArgs(/** @type {string} */ database = 'postgres') {
    return ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', this.socketDir, '-p', String(this.port), '-U', 'postgres', '-d', database];
  }

  /**
   * Runs SQL through psql and returns the rows of the last statement's result as arrays of text
   * (NULL and '' both come back as ''). Multiple statements are allowed; the call throws on any error.
   */
  async sql(/** @type {string} */ query, /** @type {{ database?: string }} */ options = {}) {
    const result = await this.pgRun('psql', [...this.psqlArgs(options.database), '-A', '-t', '-F', '\x1f', '-R', '\x1e', '-c', query]);
    const output = result.stdout.replace(/\n$/, '');
    if (output === '') return [];
    return output.split('\x1e').map((row) => row.split('\x1f'));
  }

  /** Runs SQL and returns the first column of the first row ('' when there is no row). */
  async scalar(/** @type {string} */ query, /** @type {{ database?: string }} */ options = {}) {
    const rows = await this.sql(query, options);
    return rows[0]?.[0] ?? '';
  }

  /** Counts the rows of a table (or any FROM-able expression) as a number. */
  async count(/** @type {string} */ table) {
    return Number(await this.scalar(`select count(*) from ${table}`));
  }

  /** The archiver statistics (pg_stat_archiver) as numbers and names. */
  async archiverStats() {
    const rows = await this.sql('select archived_count, coalesce(last_archived_wal, \'\'), failed_count, coalesce(last_failed_wal, \'\') from pg_stat_archiver');
    const row = rows[0] ?? [];
    return {
      archivedCount: Number(row[0]),
      lastArchivedWal: row[1] ?? '',
      failedCount: Number(row[2]),
      lastFailedWal: row[3] ?? '',
    };
  }

  /**
   * Switches to a new WAL segment and waits until the one just finished is archived; returns its
   * name. When nothing was written since the last switch, waits for the previous segment instead.
   */
  async switchWalAndWaitArchived(/** @type {{ timeoutMs?: number }} */ options = {}) {
    const segment = await this.scalar('select pg_walfile_name(pg_switch_wal())');
    await this.waitForArchived(segment, options);
    return segment;
  }

  /**
   * Waits until pg_stat_archiver says `walFile` (or a later segment of the same timeline) is
   * archived. Throws after the timeout with the archiver's last failure and the log tail.
   */
  async waitForArchived(/** @type {string} */ walFile, /** @type {{ timeoutMs?: number }} */ options = {}) {
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    for (;;) {
      const stats = await this.archiverStats();
      if (stats.lastArchivedWal.length === walFile.length && stats.lastArchivedWal >= walFile) return stats;
      if (existsSync(path.join(this.dataDir, 'pg_wal', 'archive_status', `${walFile}.done`))) return stats;
      if (Date.now() > deadline) {
        throw new Error(
          `"${walFile}" was not archived by "${this.name}" in time: ${JSON.stringify(stats)}\n--- server log ---\n${await this.logTail()}`,
        );
      }
      await sleep(100);
    }
  }

  /**
   * Waits until archive recovery has ended (pg_is_in_recovery() = false, i.e. promoted). Throws,
   * with the server log, when the server stops instead or the timeout passes.
   */
  async waitForRecoveryEnd(/** @type {{ timeoutMs?: number }} */ options = {}) {
    const deadline = Date.now() + (options.timeoutMs ?? 90_000);
    for (;;) {
      const inRecovery = await this.pgRun('psql', [...this.psqlArgs(), '-A', '-t', '-c', 'select pg_is_in_recovery()'], { allowFailure: true });
      if (inRecovery.code === 0 && inRecovery.stdout.trim() === 'f') return;
      if (inRecovery.code !== 0 && !(await this.isRunning())) {
        throw new Error(`server "${this.name}" stopped during recovery\n--- server log ---\n${await this.logTail()}`);
      }
      if (Date.now() > deadline) throw new Error(`recovery of "${this.name}" did not end in time\n--- server log ---\n${await this.logTail()}`);
      await sleep(200);
    }
  }

  /** Waits until the postmaster has exited (e.g. after a FATAL in the startup process). */
  async waitForStopped(/** @type {{ timeoutMs?: number }} */ options = {}) {
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    while (await this.isRunning()) {
      if (Date.now() > deadline) throw new Error(`server "${this.name}" is still running\n--- server log ---\n${await this.logTail()}`);
      await sleep(200);
    }
  }

  /** The whole server log ('' before the first start). */
  async log() {
    try {
      return await fs.readFile(this.logFile, 'utf8');
    } catch (error) {
      if (isNodeError(error, 'ENOENT')) return '';
      throw error;
    }
  }

  /** The last lines of the server log, for error messages. */
  async logTail(/** @type {number} */ lines = 40) {
    return (await this.log()).split('\n').slice(-lines - 1).join('\n');
  }

  /** pg_controldata's fields as a map (e.g. "Database cluster state", "Latest checkpoint's TimeLineID"). */
  async controlData() {
    const result = await this.pgRun('pg_controldata', ['-D', this.dataDir]);
    /** @type {Record<string, string>} */
    const fields = {};
    for (const line of result.stdout.split('\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) fields[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    }
    return fields;
  }

  /**
   * Takes an online base backup with the low-level API, exactly as an operator would:
   * pg_backup_start(label, fast) in one session that stays open, copy the data directory,
   * pg_backup_stop(wait_for_archive => true) in that same session, then write backup_label (and
   * tablespace_map when non-empty) byte for byte into the copy. Needs archive_mode=on and a
   * working archive_command: pg_backup_stop waits until the last segment is archived.
   */
  async baseBackup(/** @type {{ label: string, targetDir: string }} */ options) {
    const session = await PsqlSession.open(this);
    try {
      const startLsn = (await session.query(`select pg_backup_start(${confValue(options.label)}, fast => true)`))[0] ?? '';
      const dataDir = path.join(options.targetDir, 'data');
      await fs.mkdir(options.targetDir, { recursive: true });
      await copyDataDir(this.dataDir, dataDir);
      const stop = await session.query(
        "select lsn || '|' || encode(convert_to(labelfile, 'UTF8'), 'hex') || '|' || encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') from pg_backup_stop(wait_for_archive => true)",
      );
      const [stopLsn = '', labelHex = '', mapHex = ''] = (stop[0] ?? '').split('|');
      const backupLabel = Buffer.from(labelHex, 'hex').toString('utf8');
      const tablespaceMap = Buffer.from(mapHex, 'hex').toString('utf8');
      await fs.writeFile(path.join(dataDir, 'backup_label'), Buffer.from(labelHex, 'hex'));
      if (tablespaceMap !== '') await fs.writeFile(path.join(dataDir, 'tablespace_map'), Buffer.from(mapHex, 'hex'));
      await chownToPostgres(dataDir, { recursive: true });
      /** @type {BaseBackup} */
      const backup = { dataDir, label: options.label, startLsn, stopLsn, backupLabel, tablespaceMap };
      return backup;
    } finally {
      await session.close();
    }
  }
}

/**
 * A psql process kept open as one database session, for pg_backup_start/pg_backup_stop (the
 * non-exclusive low-level API ends the backup when the session that started it disconnects).
 */
export class PsqlSession {
  /** @param {import('node:child_process').ChildProcessWithoutNullStreams} child */
  constructor(child) {
    this.child = child;
    this.buffer = '';
    this.stderr = '';
    /** @type {((error: Error | null) => void) | null} */
    this.waiter = null;
    this.exited = false;
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      this.buffer += chunk;
      this.waiter?.(null);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk) => (this.stderr += chunk));
    child.on('close', () => {
      this.exited = true;
      this.waiter?.(new Error(`psql session ended: ${this.stderr}`));
    });
  }

  /** Opens a session to `cluster` as the postgres superuser. */
  static async open(/** @type {PgCluster} */ cluster) {
    const args = [...cluster.psqlArgs(), '-A', '-t'];
    const [file, argv] = IS_ROOT ? ['runuser', ['-u', PG_OS_USER, '--', cluster.bin('psql'), ...args]] : [cluster.bin('psql'), args];
    const child = spawn(file, argv, { cwd: cluster.dir, stdio: ['pipe', 'pipe', 'pipe'] });
    const session = new PsqlSession(child);
    await session.query('select 1');
    return session;
  }

  /** Runs one statement over this open connection and returns its output lines. */
  async query(/** @type {string} */ statement) {
    if (this.exited) throw new Error(`psql session already ended: ${this.stderr}`);
    const marker = `__walvault_done_${Math.random().toString(36).slice(2)}__`;
    this.buffer = '';
    this.child.stdin.write(`${statement};\n\\echo ${marker}\n`);
    for (;;) {
      const at = this.buffer.indexOf(`${marker}\n`);
      if (at >= 0) {
        const output = this.buffer.slice(0, at);
        this.buffer = this.buffer.slice(at + marker.length + 1);
        return output.split('\n').filter((line) => line !== '');
      }
      await new Promise((resolve, reject) => {
        this.waiter = (error) => {
          this.waiter = null;
          if (error) reject(error);
          else resolve(undefined);
        };
      });
    }
  }

  /** Ends the session (and so the psql process). */
  async close() {
    if (this.exited) return;
    this.child.stdin.end('\\q\n');
    await once(this.child, 'close');
  }
}

/**
 * Owns every cluster and directory a test (or the demo) creates, so one `cleanup()` call stops all
 * servers (pg_ctl -m immediate) and removes the temp directory, even after a failure.
 * Set WALVAULT_KEEP_TMP=1 to keep the directory for post-mortems.
 */
export class PgHarness {
  /** @param {{ prefix?: string, binDir?: string }} [options] */
  constructor(options = {}) {
    this.prefix = options.prefix ?? 'walvault-pg';
    this.binDir = options.binDir ?? findPgBin();
    /** @type {string | null} */
    this.rootDir = null;
    /** @type {PgCluster[]} */
    this.clusters = [];
  }

  /** The harness's temp directory (created on first use, reachable by postgres). */
  async root() {
    if (this.rootDir === null) this.rootDir = await makeScratchDir(this.prefix);
    return this.rootDir;
  }

  /** A new directory under the harness root, owned by postgres when root (e.g. a repository). */
  async makeDir(/** @type {string} */ name, /** @type {number} */ mode = 0o755) {
    return makePostgresDir(path.join(await this.root(), name), mode);
  }

  /** initdb a new cluster (superuser "postgres", trust auth on the private socket) and configure it; not started. */
  async initCluster(/** @type {ClusterOptions} */ options) {
    const dir = await this.makeDir(options.name);
    const cluster = new PgCluster({ dir, name: options.name, binDir: this.binDir, port: await freePort(), env: options.env });
    this.clusters.push(cluster);
    await makePostgresDir(cluster.socketDir);
    const args = ['-D', cluster.dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'];
    if (options.walSegSizeMb !== undefined) args.push(`--wal-segsize=${options.walSegSizeMb}`);
    await cluster.pgRun('initdb', args);
    await cluster.configure(options.settings ?? {});
    return cluster;
  }

  /**
   * A new cluster whose data directory does not exist yet (a tool such as `walvault restore-backup`
   * creates it); call configure() once it exists.
   */
  async emptyCluster(/** @type {{ name: string, env?: Record<string, string> }} */ options) {
    const dir = await this.makeDir(options.name);
    const cluster = new PgCluster({ dir, name: options.name, binDir: this.binDir, port: await freePort(), env: options.env });
    this.clusters.push(cluster);
    await makePostgresDir(cluster.socketDir);
    return cluster;
  }

  /**
   * A new cluster whose data directory is a fresh copy of `backup` (the backup itself stays
   * untouched, so one backup serves many recoveries), configured with `settings` only (nothing of
   * the primary's harness settings) and with recovery.signal (default) or standby.signal.
   */
  async restoreCluster(/** @type {BaseBackup} */ backup, /** @type {RestoreOptions} */ options) {
    const dir = await this.makeDir(options.name);
    const cluster = new PgCluster({ dir, name: options.name, binDir: this.binDir, port: await freePort(), env: options.env });
    this.clusters.push(cluster);
    await makePostgresDir(cluster.socketDir);
    await fs.cp(backup.dataDir, cluster.dataDir, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    await fs.chmod(cluster.dataDir, 0o700);
    const signal = options.signal ?? 'recovery';
    if (signal !== 'none') await fs.writeFile(path.join(cluster.dataDir, `${signal}.signal`), '');
    await chownToPostgres(cluster.dataDir, { recursive: true });
    await cluster.configure(options.settings ?? {});
    return cluster;
  }

  /** Stops every server immediately and removes the temp directory (unless WALVAULT_KEEP_TMP is set). */
  async cleanup() {
    const errors = [];
    for (const cluster of this.clusters) {
      try {
        await cluster.stop({ mode: 'immediate' });
      } catch (error) {
        errors.push(error);
      }
    }
    this.clusters = [];
    if (this.rootDir !== null) {
      if (process.env.WALVAULT_KEEP_TMP) {
        console.error(`walvault test harness: kept "${this.rootDir}" (WALVAULT_KEEP_TMP is set)`);
      } else {
        await fs.chmod(this.rootDir, 0o755).catch(() => {});
        await run('chmod', ['-R', 'u+rwX', this.rootDir], { allowFailure: true });
        await fs.rm(this.rootDir, { recursive: true, force: true });
      }
      this.rootDir = null;
    }
    if (errors.length > 0) throw new AggregateError(errors, 'some servers could not be stopped');
  }
}
