// Help and messages as an operator meets them: the packed-and-installed executables, their exact
// stderr line and exit code, from a pipe (as PostgreSQL runs them), from a terminal (script(1) gives
// them one) and as another OS user.
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeScratchDir, shQuote } from '../../scripts/lib/pg-harness.mjs';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';

const SEGMENT = '000000010000000000000001';
const version = (JSON.parse(await readFile(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../package.json'), 'utf8')) as { version: string }).version;

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command with no WALVAULT_* variables from the test's environment, stdin from /dev/null. */
function run(file: string, args: string[], options: { cwd?: string; asPostgres?: boolean } = {}): Promise<Outcome> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALVAULT_') && value !== undefined) env[key] = value;
  const [command, argv] = options.asPostgres === true && process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args];
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs a command on a terminal of its own (script(1)); its stdout and stderr both arrive as `stdout`, lines ending in \r\n. */
async function runOnTerminal(file: string, args: string[], cwd: string): Promise<Outcome> {
  const result = await run('script', ['-qec', [file, ...args].map(shQuote).join(' '), '/dev/null'], { cwd });
  return { ...result, stdout: result.stdout.replace(/\r\n/g, '\n') };
}

let walvault: InstalledWalvault;
let scratch: string;

beforeAll(async () => {
  walvault = await installedWalvault();
  scratch = await makeScratchDir('walvault-messages');
});

describe('help', () => {
  it('walvault with no command prints its help (exit 0): the commands, WALVAULT_* variables, the config file, walvault exit-codes', async () => {
    const result = await run(walvault.walvault, []);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout.split('\n')[0]).toBe('Usage: walvault <command> [options]');
    for (const text of ['  verify ', '  check ', '  cleanup ', '  exit-codes ', 'WALVAULT_TIMEOUT', 'WALVAULT_CONFIG', '--config', 'walvault exit-codes']) expect(result.stdout).toContain(text);
    expect((await run(walvault.walvault, ['--help'])).stdout).toBe(result.stdout);
  });

  it('--version and -h, for each program', async () => {
    for (const program of [walvault.archive, walvault.restore, walvault.walvault]) {
      expect(await run(program, ['--version'])).toEqual({ code: 0, stdout: `walvault ${version}\n`, stderr: '' });
      const help = await run(program, ['-h']);
      expect(help).toMatchObject({ code: 0, stderr: '' });
      expect(help.stdout).toMatch(/^Usage: walvault/);
    }
  });

  it('walvault verify --help lists --parallel and the required --repo first, and not the archive-only options', async () => {
    const result = await run(walvault.walvault, ['verify', '--help']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const lines = result.stdout.split('\n');
    expect(lines[0]).toBe('Usage: walvault verify [options]');
    expect(lines.find((line) => line.startsWith('  --'))).toMatch(/^ {2}--repo=URL +required: repository/);
    expect(result.stdout).toMatch(/^ {2}--parallel=N +archived objects read at once \(default 6\)$/m);
    for (const absent of ['--compress', '--file-mode', '--push-ahead', '--on-error', '--s3-sse']) expect(result.stdout).not.toContain(absent);
  });
});

describe('messages, exact, with their exit codes', () => {
  it('no repository: the program is named once, by the log prefix', async () => {
    expect(await run(walvault.archive, ['pg_wal/x', SEGMENT], { cwd: scratch })).toEqual({
      code: 2,
      stdout: '',
      stderr: 'walvault-archive: error: no repository given; HINT: pass --repo=URL, set WALVAULT_REPO, or put "repo" in the --config file\n',
    });
  });

  it('an unknown option names the close one, or the program it belongs to', async () => {
    expect(await run(walvault.archive, ['--rpo=/srv/wal', 'pg_wal/x', SEGMENT], { cwd: scratch })).toEqual({ code: 2, stdout: '', stderr: 'walvault-archive: error: unknown option "--rpo"; HINT: did you mean --repo?\n' });
    expect(await run(walvault.walvault, ['cleanup', '--repo=/srv/wal', '--dryrun'])).toEqual({ code: 2, stdout: '', stderr: 'walvault: error: unknown option "--dryrun"; HINT: did you mean --dry-run?\n' });
    expect(await run(walvault.walvault, ['verify', '--repo=/srv/wal', '--compress=zstd'])).toEqual({
      code: 2,
      stdout: '',
      stderr: 'walvault: error: unknown option "--compress"; HINT: --compress is an option of walvault-archive, walvault backup, not of walvault verify\n',
    });
    expect(await run(walvault.walvault, ['verfy', '--repo=/srv/wal'])).toEqual({ code: 2, stdout: '', stderr: 'walvault: error: unknown command "verfy"; HINT: did you mean walvault verify?\n' });
  });

  it('walvault-restore with %p and %f swapped: from a terminal, a usage error (exit 2) naming restore_command in the right order', async () => {
    const result = await runOnTerminal(walvault.restore, ['--repo=/srv/wal', 'pg_wal/RECOVERYXLOG', SEGMENT], scratch);
    expect(result).toEqual({
      code: 2,
      stdout: `walvault-restore: error: arguments in the wrong order: "pg_wal/RECOVERYXLOG" is not a WAL file name, "${SEGMENT}" is; walvault-restore takes the file name (%f), then the path (%p); HINT: set restore_command = 'walvault-restore --repo=URL %f %p'\n`,
      stderr: '',
    });
  });

  it('the same from PostgreSQL in archive recovery, or from anything without a terminal, stops recovery instead (exit 128)', async () => {
    const dataDir = path.join(scratch, 'data-recovering');
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, 'recovery.signal'), '');
    const expected = {
      code: 128,
      stdout: '',
      stderr: `walvault-restore: error: arguments in the wrong order: "pg_wal/RECOVERYXLOG" is not a WAL file name, "${SEGMENT}" is; walvault-restore takes the file name (%f), then the path (%p); stopping recovery (--on-error=abort) so it cannot end early at the wrong point; HINT: set restore_command = 'walvault-restore --repo=URL %f %p'; then start the server again to resume recovery\n`,
    };
    expect(await run(walvault.restore, ['--repo=/srv/wal', 'pg_wal/RECOVERYXLOG', SEGMENT], { cwd: dataDir })).toEqual(expected);
    expect(await run(walvault.restore, ['--repo=/srv/wal', 'pg_wal/RECOVERYXLOG', SEGMENT], { cwd: scratch })).toEqual(expected);
  });

  it('walvault-archive with %f and %p swapped names archive_command in the right order', async () => {
    expect(await run(walvault.archive, ['--repo=/srv/wal', SEGMENT, `pg_wal/${SEGMENT}`], { cwd: scratch })).toEqual({
      code: 2,
      stdout: '',
      stderr: `walvault-archive: error: arguments in the wrong order: "pg_wal/${SEGMENT}" is not a WAL file name, "${SEGMENT}" is; walvault-archive takes the path (%p), then the file name (%f); HINT: set archive_command = 'walvault-archive --repo=URL %p %f'\n`,
    });
  });

  it('a name that is no WAL file name, not swapped either: the setting with the right order', async () => {
    expect(await run(walvault.archive, ['--repo=/srv/wal', 'pg_wal/x', '../bad'], { cwd: scratch })).toEqual({
      code: 2,
      stdout: '',
      stderr: `walvault-archive: error: invalid WAL file name "../bad": expected 1 to 64 ASCII letters, digits and dots, no path separators; HINT: walvault-archive takes the path (%p), then the file name (%f): archive_command = 'walvault-archive --repo=URL %p %f'\n`,
    });
  });

  it('a restore failure run by hand from a terminal says what failed, with its own exit code, and nothing about stopping recovery', async () => {
    const missing = path.join(scratch, 'no-such-repository');
    const result = await runOnTerminal(walvault.restore, [`--repo=${missing}`, SEGMENT, 'pg_wal/RECOVERYXLOG'], scratch);
    expect(result).toEqual({
      code: 2,
      stdout: `walvault-restore: error: repository directory "${missing}" does not exist; HINT: create it (mkdir -m 700 "${missing}" && chown postgres "${missing}") or fix --repo\n`,
      stderr: '',
    });
  });

  it('a background pusher\'s lines have the one format, with the worker and its pid after the program', async () => {
    const dataDir = path.join(scratch, 'data-pushing');
    const repo = path.join(scratch, 'repo-pushing');
    await mkdir(path.join(dataDir, 'pg_wal', 'archive_status'), { recursive: true });
    await mkdir(repo);
    const names = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003'];
    for (const name of names) {
      await writeFile(path.join(dataDir, 'pg_wal', name), Buffer.alloc(1 << 20, name.slice(-1)));
      await writeFile(path.join(dataDir, 'pg_wal', 'archive_status', `${name}.ready`), '');
    }
    // Waits until every writer of its stderr is gone: the pusher too, once it has nothing left to push.
    // --timeout=5: a request helps push ahead while the pusher loads only with 6 s of its deadline to
    // spare (archive-async.ts, HELP_MAX_MS), so here the pusher itself stores 2 and 3.
    const result = await run(walvault.archive, [`--repo=${repo}`, '--timeout=5', `pg_wal/${names[0]}`, names[0]!], { cwd: dataDir });
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stderr.split('\n').filter((line) => line !== '');
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(/^walvault-archive(?: \[pusher \d+\])?: (?:debug|info|warning|error): /);
    expect(lines.some((line) => /^walvault-archive \[pusher \d+\]: info: archived "000000010000000000000002"/.test(line))).toBe(true);
  });

  it('verify as a user who cannot read the repository: run it as the repository\'s owner (exit 5)', async () => {
    const repo = path.join(scratch, 'root-only-repo');
    await mkdir(repo, { mode: 0o700 });
    const result = await run(walvault.walvault, ['verify', `--repo=${repo}`], { asPostgres: true });
    expect(result).toEqual({
      code: 5,
      stdout: '',
      stderr: `walvault: error: could not list "${repo}": permission denied (EACCES); HINT: run the command as the OS user that owns the repository (usually postgres: sudo -u postgres ...), or give this user read access\n`,
    });
  });
});
