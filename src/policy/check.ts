// `walvault check`: checks a live setup end to end, the way an operator would, step by step with OK/FAIL and a hint.
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseRepoUrl } from '../backend/registry.js';
import type { Backend } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { hashBuffer } from '../core/hash.js';
import { silentLogger, type Logger } from '../core/log.js';
import { checkSegmentHeader } from '../wal/header.js';
import { objectKey } from '../wal/names.js';
import { loadConfigFile, readCommandLine } from '../cli/parse.js';
import { restoreFile } from './restore.js';

/** Options of checkSetup. */
export interface CheckOptions {
  /** The repository as given with --repo: the server's commands must name the same one. */
  repo: string;
  backend: Backend;
  /** libpq connection string or postgresql:// URL; libpq environment variables (PGHOST, PGPORT, ...) when absent. */
  connection?: string;
  /** How long to wait for the switched segment to be archived (default 60 s). */
  waitMs?: number;
  /** Deadline of each storage operation (default 60 s). */
  timeoutMs?: number;
  decode?: DecodeOptions;
  log?: Logger;
  /** Called as each step finishes, to print progress live. */
  onStep?: (step: CheckStep) => void;
}

/** One step of the check. */
export interface CheckStep {
  name: string;
  status: 'ok' | 'fail' | 'warn' | 'skip';
  detail: string;
  hint?: string;
}

/** Every step, and whether the setup works. */
export interface CheckReport {
  repository: string;
  steps: CheckStep[];
  /** The segment switched to and fetched back, when the check got that far. */
  segment: string | null;
  ok: boolean;
  durationMs: number;
}

/** What a shell command line says about a walvault call in it. */
export interface CommandAnalysis {
  /** The command calls the program (by file name, any directory). */
  calls: boolean;
  /** --repo value (or WALVAULT_REPO=... before the program); null when the command does not say. */
  repo: string | null;
  /** The positional arguments after the program, e.g. ['%p', '%f']. */
  positionals: string[];
  /** The command names a --config file (which may set the repository). */
  config: string | null;
  /** Why the program would refuse its own command line (an unknown option, a missing value), if it would. */
  problem?: string;
}

/** Splits a /bin/sh command line into words (quotes and backslashes as sh does; operators become their own words). */
export function splitShellWords(command: string): string[] {
  const words: string[] = [];
  let current: string | null = null;
  for (let at = 0; at < command.length; at += 1) {
    const char = command[at]!;
    if (char === "'") {
      const end = command.indexOf("'", at + 1);
      current = (current ?? '') + command.slice(at + 1, end < 0 ? undefined : end);
      at = end < 0 ? command.length : end;
    } else if (char === '"') {
      let value = '';
      at += 1;
      while (at < command.length && command[at] !== '"') {
        if (command[at] === '\\' && at + 1 < command.length && '"\\$`'.includes(command[at + 1]!)) at += 1;
        value += command[at];
        at += 1;
      }
      current = (current ?? '') + value;
    } else if (char === '\\' && at + 1 < command.length) {
      current = (current ?? '') + command[at + 1];
      at += 1;
    } else if (/\s/.test(char) || ';&|'.includes(char)) {
      if (current !== null) words.push(current);
      current = null;
      if (!/\s/.test(char)) words.push(char);
    } else {
      current = (current ?? '') + char;
    }
  }
  if (current !== null) words.push(current);
  return words;
}

/**
 * Finds the call of `program` in an archive_command / restore_command and what it passes, reading its
 * words with the program's own parser (src/cli/parse.ts), so check and the program agree on which
 * flags take a value.
 */
export function analyseCommand(command: string, program: 'walvault-archive' | 'walvault-restore'): CommandAnalysis {
  const words = splitShellWords(command);
  const index = words.findIndex((word) => path.posix.basename(word) === program);
  if (index < 0) return { calls: false, repo: null, positionals: [], config: null };
  let repo: string | null = null;
  let config: string | null = null;
  for (let at = index - 1; at >= 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[at]!); at -= 1) {
    const [name, ...rest] = words[at]!.split('=');
    if (name === 'WALVAULT_REPO') repo = rest.join('=');
    if (name === 'WALVAULT_CONFIG') config = rest.join('=');
  }
  const end = words.findIndex((word, at) => at > index && [';', '&', '|'].includes(word));
  const args = words.slice(index + 1, end < 0 ? undefined : end);
  try {
    const { flags, positionals } = readCommandLine(args, { program: program === 'walvault-archive' ? 'archive' : 'restore' });
    const flag = (name: string): string | null => (typeof flags.get(name) === 'string' ? (flags.get(name) as string) : null);
    return { calls: true, repo: flag('repo') ?? repo, positionals, config: flag('config') ?? config };
  } catch (error) {
    const problem = error instanceof WalvaultError ? error.oneLine() : String(error);
    return { calls: true, repo, positionals: args.filter((word) => !word.startsWith('-')), config, problem };
  }
}

/**
 * The repository a command's --config file names, when the command names none itself and the file
 * is readable here (check often runs on the server's host): read with the programs' own loader. A file
 * check cannot read (another host, another user) tells nothing; one the programs would refuse is a problem.
 */
export function withConfigRepository(analysis: CommandAnalysis): CommandAnalysis {
  if (analysis.repo !== null || analysis.config === null || analysis.problem !== undefined) return analysis;
  try {
    accessSync(analysis.config, constants.R_OK);
  } catch {
    return analysis;
  }
  try {
    const repo = loadConfigFile(analysis.config).repo;
    return typeof repo === 'string' && repo !== '' ? { ...analysis, repo } : analysis;
  } catch (error) {
    return { ...analysis, problem: error instanceof WalvaultError ? error.oneLine() : String(error) };
  }
}

/** Whether two --repo values name the same repository (file:///x and /x are the same). */
export function sameRepository(a: string, b: string): boolean {
  try {
    const left = parseRepoUrl(a);
    const right = parseRepoUrl(b);
    const trim = (target: string): string => (target.length > 1 ? target.replace(/\/+$/, '') : target);
    return left.scheme === right.scheme && trim(left.target) === trim(right.target);
  } catch {
    return a === b;
  }
}

/** Connection settings for the pg client from a libpq keyword/value string, a URL or nothing (libpq environment variables). */
export function connectionConfig(connection: string | undefined, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  const text = connection?.trim() ?? '';
  if (/^postgres(ql)?:\/\//.test(text)) return { connectionString: text };
  if (text !== '' && !text.includes('=')) config.database = text;
  else if (text !== '') {
    const names: Record<string, string> = { host: 'host', hostaddr: 'host', port: 'port', user: 'user', dbname: 'database', password: 'password', application_name: 'application_name', connect_timeout: 'connectionTimeoutMillis' };
    for (const match of text.matchAll(/(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/g)) {
      const key = names[match[1]!];
      if (key === undefined) continue;
      let value: unknown = match[2]!.startsWith("'") ? match[2]!.slice(1, -1).replace(/\\(.)/g, '$1') : match[2]!;
      if (key === 'connectionTimeoutMillis') value = Number(value) * 1000;
      config[key] = value;
    }
  }
  // libpq's default is the local socket directory; the pg client's default would be TCP to localhost.
  if (config.host === undefined && env.PGHOST === undefined && existsSync('/var/run/postgresql')) config.host = '/var/run/postgresql';
  config.application_name ??= 'walvault check';
  return config;
}

/** Runs the check; never throws for a failed step (that is a FAIL line), only for bad options. */
export async function checkSetup(options: CheckOptions): Promise<CheckReport> {
  const started = Date.now();
  const log = options.log ?? silentLogger;
  const steps: CheckStep[] = [];
  const step = (name: string, status: CheckStep['status'], detail: string, hint?: string): CheckStep => {
    const entry: CheckStep = hint === undefined ? { name, status, detail } : { name, status, detail, hint };
    steps.push(entry);
    options.onStep?.(entry);
    return entry;
  };
  const finish = (segment: string | null): CheckReport => ({
    repository: options.backend.describe(''),
    steps,
    segment,
    ok: steps.every((entry) => entry.status !== 'fail'),
    durationMs: Date.now() - started,
  });
  const skipRest = (names: string[], why: string): void => {
    for (const name of names) step(name, 'skip', why);
  };

  const { default: pg } = await import('pg');
  const client = new pg.Client(connectionConfig(options.connection));
  try {
    await client.connect();
  } catch (error) {
    step('connect', 'fail', `cannot connect to PostgreSQL: ${(error as Error).message}`, 'pass --db with a connection string or URL, or set PGHOST, PGPORT, PGUSER, PGDATABASE as for psql');
    skipRest(['settings', 'switch WAL', 'archived', 'restore', 'compare'], 'needs a connection');
    return finish(null);
  }
  client.on('error', (error) => log.warn(`connection error: ${error.message}`));
  try {
    const query = async (sql: string, params: unknown[] = []): Promise<Array<Record<string, string | null>>> => (await client.query(sql, params)).rows as Array<Record<string, string | null>>;
    const [info] = await query("select current_setting('server_version') as version, current_user as who, (select system_identifier::text from pg_control_system()) as sysid, pg_is_in_recovery()::text as recovery");
    step('connect', 'ok', `PostgreSQL ${info!.version} as ${info!.who}, database system ${info!.sysid}${info!.recovery === 'true' ? ' (in recovery: a standby)' : ''}`);
    const settings = new Map(
      (await query("select name, setting from pg_settings where name in ('wal_level', 'archive_mode', 'archive_command', 'archive_library', 'restore_command', 'wal_segment_size', 'archive_timeout')")).map((row) => [row.name!, row.setting ?? '']),
    );
    let archivingOk = true;
    const walLevel = settings.get('wal_level') ?? '';
    if (walLevel === 'minimal') {
      archivingOk = false;
      step('wal_level', 'fail', 'wal_level = minimal: WAL is not enough for archive recovery', "set wal_level = replica in postgresql.conf and restart the server");
    } else step('wal_level', 'ok', walLevel);
    const archiveMode = settings.get('archive_mode') ?? 'off';
    if (archiveMode === 'off') {
      archivingOk = false;
      step('archive_mode', 'fail', 'archive_mode = off: nothing is archived', 'set archive_mode = on in postgresql.conf and restart the server');
    } else step('archive_mode', 'ok', archiveMode);
    const archiveLibrary = settings.get('archive_library') ?? '';
    const archiveCommand = settings.get('archive_command') ?? '';
    const archive = withConfigRepository(analyseCommand(archiveCommand, 'walvault-archive'));
    if (archiveLibrary !== '') {
      archivingOk = false;
      step('archive_command', 'fail', `archive_library = '${archiveLibrary}' is set, so archive_command is ignored`, "set archive_library = '' and archive_command = 'walvault-archive --repo=URL %p %f', then reload");
    } else if (!archive.calls) {
      archivingOk = false;
      step('archive_command', 'fail', `archive_command = '${archiveCommand}' does not call walvault-archive`, `set archive_command = 'walvault-archive --repo=${options.repo} %p %f' and reload (pg_ctl reload or select pg_reload_conf())`);
    } else if (archive.problem !== undefined) {
      archivingOk = false;
      step('archive_command', 'fail', `archive_command = '${archiveCommand}': walvault-archive would refuse it: ${archive.problem}`, `fix archive_command, e.g. 'walvault-archive --repo=${options.repo} %p %f', and reload`);
    } else if (archive.positionals.join(' ') !== '%p %f') {
      archivingOk = false;
      step('archive_command', 'fail', `archive_command = '${archiveCommand}' must pass %p then %f to walvault-archive`, `set archive_command = 'walvault-archive --repo=${options.repo} %p %f' and reload`);
    } else if (archive.repo === null) {
      step('archive_command', 'warn', `archive_command = '${archiveCommand}' names no --repo (it may come from WALVAULT_REPO or a config file in the server's environment); the next steps tell whether it reaches this repository`);
    } else if (!sameRepository(archive.repo, options.repo)) {
      archivingOk = false;
      step('archive_command', 'fail', `archive_command archives to "${archive.repo}", not to "${options.repo}"`, `check which repository you meant; walvault check --repo must name the one in archive_command`);
    } else step('archive_command', 'ok', archiveCommand);
    const restoreCommand = settings.get('restore_command') ?? '';
    const restore = withConfigRepository(analyseCommand(restoreCommand, 'walvault-restore'));
    if (restoreCommand === '') {
      step('restore_command', 'warn', 'restore_command is not set (needed only when recovering: put it in the configuration of the server you restore)', `restore_command = 'walvault-restore --repo=${options.repo} %f %p'`);
    } else if (restore.calls && restore.problem !== undefined) {
      step('restore_command', 'fail', `restore_command = '${restoreCommand}': walvault-restore would refuse it: ${restore.problem}`, `fix restore_command, e.g. 'walvault-restore --repo=${options.repo} %f %p'`);
    } else if (!restore.calls || restore.positionals.join(' ') !== '%f %p') {
      step('restore_command', 'fail', `restore_command = '${restoreCommand}' does not call walvault-restore with %f %p`, `set restore_command = 'walvault-restore --repo=${options.repo} %f %p'`);
    } else if (restore.repo !== null && !sameRepository(restore.repo, options.repo)) {
      step('restore_command', 'fail', `restore_command restores from "${restore.repo}", not from "${options.repo}" where archive_command archives`, 'point both commands at the same repository');
    } else step('restore_command', restore.repo === null ? 'warn' : 'ok', restore.repo === null ? `${restoreCommand} (names no --repo; cannot tell which repository)` : restoreCommand);

    if (!archivingOk || info!.recovery === 'true') {
      skipRest(['switch WAL', 'archived', 'restore', 'compare'], info!.recovery === 'true' ? 'the server is a standby: run the check against the primary' : 'fix the archiving settings above first');
      return finish(null);
    }

    // A record first, so the switch always completes a segment even on an idle server.
    let segment: string;
    try {
      const [before] = await query('select failed_count::text as failed from pg_stat_archiver');
      await query("select pg_logical_emit_message(false, 'walvault-check', 'check')");
      const [switched] = await query('select pg_walfile_name(pg_switch_wal()) as segment');
      segment = switched!.segment!;
      step('switch WAL', 'ok', `forced a WAL switch; "${segment}" must now be archived`);
      const waitMs = options.waitMs ?? 60_000;
      const key = objectKey(segment);
      const waitStarted = Date.now();
      for (;;) {
        const deadline = new Deadline(options.timeoutMs ?? 60_000, `looking up "${segment}"`);
        const found = await deadline.race(options.backend.stat(key, { signal: deadline.signal })).finally(() => deadline.dispose());
        if (found.exists) {
          step('archived', 'ok', `"${segment}" is in the repository at "${options.backend.describe(key)}" after ${((Date.now() - waitStarted) / 1000).toFixed(1)} s`);
          break;
        }
        const [now] = await query('select failed_count::text as failed, coalesce(last_failed_wal, \'\') as last_failed from pg_stat_archiver');
        const failing = Number(now!.failed) > Number(before!.failed);
        if (Date.now() - waitStarted > waitMs) {
          step(
            'archived',
            'fail',
            `"${segment}" did not appear in the repository within ${waitMs / 1000} s${failing ? ` and the archiver reports failures (last failed: "${now!.last_failed}")` : ''}`,
            failing ? 'read walvault-archive\'s error lines in the server log and fix what they name' : 'check pg_stat_archiver and the server log; is archive_command reaching this repository?',
          );
          skipRest(['restore', 'compare'], 'nothing to fetch');
          return finish(segment);
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    } catch (error) {
      step('switch WAL', 'fail', `could not force a WAL switch: ${(error as Error).message}`, 'run walvault check as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() and pg_logical_emit_message(boolean, text, text) to the checking role');
      skipRest(['archived', 'restore', 'compare'], 'no segment to follow');
      return finish(null);
    }

    const scratch = await mkdtemp(path.join(tmpdir(), 'walvault-check-'));
    try {
      const target = path.join(scratch, 'RESTORED');
      const deadline = new Deadline(options.timeoutMs ?? 60_000, `restoring "${segment}"`);
      try {
        const restored = await restoreFile({ backend: options.backend, fileName: segment, targetPath: target, decode: options.decode ?? {}, onError: 'missing', deadline, log: silentLogger });
        step('restore', 'ok', `fetched "${segment}" back through walvault-restore's policy: ${restored.bytes} bytes${restored.verified ? ', content hash verified' : ''}`);
      } catch (error) {
        step('restore', 'fail', `could not fetch "${segment}" back: ${error instanceof WalvaultError ? error.oneLine() : (error as Error).message}`, 'run walvault verify on the repository');
        skipRest(['compare'], 'nothing fetched');
        return finish(segment);
      } finally {
        deadline.dispose();
      }
      const content = await readFile(target);
      const header = checkSegmentHeader(segment, content.subarray(0, 40), { fileSize: content.length });
      const problems = [...header.problems];
      if (header.header !== null && header.header.systemIdentifier !== info!.sysid) {
        problems.push(`it belongs to database system ${header.header.systemIdentifier}, this server is ${info!.sysid}`);
      }
      if (problems.length > 0) {
        step('compare', 'fail', problems.join('; '), 'another cluster may archive into this repository; run walvault verify');
        return finish(segment);
      }
      let serverCopy: string;
      try {
        const [copy] = await query('select encode(pg_read_binary_file($1), \'base64\') as data', [`pg_wal/${segment}`]);
        const bytes = Buffer.from(copy!.data ?? '', 'base64');
        serverCopy = (await hashBuffer(bytes)) === (await hashBuffer(content)) ? 'identical to the server\'s pg_wal copy' : 'DIFFERENT';
        if (serverCopy === 'DIFFERENT') {
          step('compare', 'fail', `"${segment}" fetched from the repository differs from the server's pg_wal copy`, 'another cluster may archive into this repository; run walvault verify');
          return finish(segment);
        }
      } catch {
        serverCopy = 'the server\'s pg_wal copy is gone or unreadable to this role, so compared by header only';
      }
      step('compare', 'ok', `${serverCopy}; header: database system ${header.header!.systemIdentifier}, PostgreSQL ${header.header!.serverVersion ?? '?'}, ${header.header!.segmentSize}-byte segments`);
      return finish(segment);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Renders a check report as the text `walvault check` prints. */
export function formatCheckReport(report: CheckReport): string {
  const lines = [`repository: ${report.repository}`];
  const width = Math.max(...report.steps.map((entry) => entry.name.length));
  for (const entry of report.steps) {
    lines.push(`  ${entry.status.toUpperCase().padEnd(4)}  ${entry.name.padEnd(width)}  ${entry.detail}`);
    if (entry.hint !== undefined && entry.status !== 'ok') lines.push(`  ${''.padEnd(4)}  ${''.padEnd(width)}  HINT: ${entry.hint}`);
  }
  lines.push(report.ok ? 'result: OK, archiving and restoring work end to end' : 'result: FAILED');
  return `${lines.join('\n')}\n`;
}
