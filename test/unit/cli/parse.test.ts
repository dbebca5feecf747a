// The archive/restore command-line parser: flags, WALVAULT_* variables, the JSON config file, their precedence, and every refusal.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { closestName, optionEnvironmentNames, parseCommandLine, readCommandLine, wantsHelp, type CommandLineSpec } from '../../../src/cli/parse.js';

const archiveSpec: CommandLineSpec = { program: 'archive', positionals: ['path', 'name'], extraFlags: ['internal-worker'] };
const restoreSpec: CommandLineSpec = { program: 'restore', positionals: ['name', 'path'], extraFlags: ['internal-worker'] };
const SEGMENT = '000000010000000000000001';

const dir = mkdtempSync(path.join(tmpdir(), 'walvault-parse-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let configs = 0;
/** Writes a config file and returns its path. */
function config(content: unknown): string {
  configs += 1;
  const file = path.join(dir, `config-${configs}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

const parse = (args: string[], env: NodeJS.ProcessEnv = {}, spec = archiveSpec): Record<string, unknown> => parseCommandLine(args, spec, env).raw;
const refusal = (args: string[], env: NodeJS.ProcessEnv = {}, spec = archiveSpec): unknown => {
  try {
    parseCommandLine(args, spec, env);
  } catch (error) {
    return error;
  }
  throw new Error(`accepted ${JSON.stringify(args)}`);
};

describe('flags and positionals', () => {
  it('takes --x=v and --x v, and the positionals %p %f in order, file names never turned into numbers', () => {
    const raw = parse(['--repo=/a', '--timeout', '5', 'pg_wal/000000010000000000000010', '000000010000000000000010']);
    expect(raw).toMatchObject({ repo: '/a', timeout: 5, path: 'pg_wal/000000010000000000000010', name: '000000010000000000000010', _: [] });
    expect(parse(['--repo=/a', '0001', '1e3'])).toMatchObject({ path: '0001', name: '1e3' });
    expect(parse(['--repo=/a', SEGMENT, 'pg_wal/RECOVERYXLOG'], {}, restoreSpec)).toMatchObject({ name: SEGMENT, path: 'pg_wal/RECOVERYXLOG' });
  });

  it('fills every option with its default, under the kebab-case and the camelCase name', () => {
    const raw = parse(['p', 'n']);
    expect(raw).toMatchObject({ timeout: 60, quiet: false, 'push-ahead': 16, pushAhead: 16, 'file-mode': '0600', fileMode: '0600', compress: 'none', 's3-conditional-writes': 'auto', s3ConditionalWrites: 'auto', prefetch: 8 });
    expect(raw.repo).toBeUndefined();
    expect(raw['internal-worker']).toBeUndefined();
  });

  it('reads booleans as --x, --no-x, --x=true|false and --x true|false', () => {
    expect(parse(['--quiet', 'p', 'n']).quiet).toBe(true);
    expect(parse(['--no-quiet', 'p', 'n']).quiet).toBe(false);
    expect(parse(['--quiet=false', 'p', 'n']).quiet).toBe(false);
    expect(parse(['--quiet', 'false', 'p', 'n'])).toMatchObject({ quiet: false, path: 'p', name: 'n' });
    expect(parse(['--s3-force-path-style', 'p', 'n'])).toMatchObject({ 's3-force-path-style': true, s3ForcePathStyle: true });
    expect(refusal(['--quiet=yes', 'p', 'n'])).toMatchObject({ kind: 'usage', message: 'invalid --quiet "yes": expected true or false' });
    expect(refusal(['--no-quiet=true', 'p', 'n'])).toMatchObject({ kind: 'usage', message: 'option "--no-quiet" takes no value' });
  });

  it('collects a repeated --encrypt-recipient, and refuses any other option given twice', () => {
    expect(parse(['--encrypt-recipient=age1a', '--encrypt-recipient', 'age1b', 'p', 'n'])['encrypt-recipient']).toEqual(['age1a', 'age1b']);
    expect(refusal(['--repo=/a', '--repo=/b', 'p', 'n'])).toMatchObject({ kind: 'usage', message: 'option "--repo" is given more than once' });
  });

  it('takes everything after -- as positionals', () => {
    expect(parse(['--repo=/a', '--', '--odd', 'n'])).toMatchObject({ path: '--odd', name: 'n' });
  });

  it('keeps the hidden worker flag, on the command line only', () => {
    expect(parse(['--internal-worker=push', 'p', 'n'])['internal-worker']).toBe('push');
    expect(parse(['p', 'n'], { WALVAULT_INTERNAL_WORKER: 'push' })['internal-worker']).toBeUndefined();
  });

  it('keeps extra positionals aside, as before', () => {
    expect(parse(['p', 'n', 'extra'])).toMatchObject({ path: 'p', name: 'n', _: ['extra'] });
  });

  it.each([
    [['--compresion=zstd', 'p', 'n'], 'unknown option "--compresion"'],
    [['--pushAhead=1', 'p', 'n'], 'unknown option "--pushAhead"'],
    [['-x', 'p', 'n'], 'unknown option "-x"'],
    [['--prefetch=2', 'p', 'n'], 'unknown option "--prefetch"'],
    [['--repo'], 'option "--repo" needs a value'],
    [['--repo', '--quiet', 'p', 'n'], 'option "--repo" needs a value'],
    [['--compress=brotli', 'p', 'n'], 'invalid --compress "brotli": expected one of none, gzip, lz4, zstd'],
    [['p'], 'missing arguments: expected <path> <name>, got "p"'],
    [[], 'missing arguments: expected <path> <name>, got none'],
  ])('refuses %j: %s', (args, message) => {
    expect(refusal(args)).toMatchObject({ kind: 'usage', message });
  });

  it('refuses an archive-only flag in restore (options of the other program are env/config only)', () => {
    expect(refusal(['--compress=zstd', SEGMENT, 'p'], {}, restoreSpec)).toMatchObject({ kind: 'usage', message: 'unknown option "--compress"' });
    expect(parse([SEGMENT, 'p'], { WALVAULT_COMPRESS: 'zstd' }, restoreSpec).compress).toBe('zstd');
  });

  it('keeps a number that does not parse as given, for the option\'s own check to quote', () => {
    expect(parse(['--timeout=abc', 'p', 'n']).timeout).toBe('abc');
    expect(parse(['--push-ahead=0', 'p', 'n'])['push-ahead']).toBe(0);
  });

  it('sees --help before anything else but unknown flags', () => {
    expect(parseCommandLine(['--help'], archiveSpec, {}).help).toBe(true);
    expect(wantsHelp(['--repo=/a', '--help'])).toBe(true);
    expect(wantsHelp(['--', '--help'])).toBe(false);
    expect(refusal(['--help', '--bogus'])).toMatchObject({ message: 'unknown option "--bogus"' });
  });
});

describe('environment and config file', () => {
  it('reads WALVAULT_* variables, converting numbers and booleans, and ignores unrelated ones', () => {
    const raw = parse(['p', 'n'], { WALVAULT_REPO: '/env', WALVAULT_TIMEOUT: '7', WALVAULT_QUIET: 'true', WALVAULT_PUSH_AHEAD: '0', WALVAULT_PG_BIN: '/x', WALVAULT_ENCRYPT_RECIPIENT: 'age1a, age1b' });
    expect(raw).toMatchObject({ repo: '/env', timeout: 7, quiet: true, 'push-ahead': 0, 'encrypt-recipient': 'age1a, age1b' });
    expect(raw['pg-bin']).toBeUndefined();
    expect(refusal(['p', 'n'], { WALVAULT_COMPRESS: 'brotli' })).toMatchObject({ kind: 'usage', message: 'invalid WALVAULT_COMPRESS "brotli": expected one of none, gzip, lz4, zstd' });
    expect(refusal(['p', 'n'], { WALVAULT_QUIET: 'yes' })).toMatchObject({ kind: 'usage', message: 'invalid WALVAULT_QUIET "yes": expected true or false' });
  });

  it('reads the config file named by --config or WALVAULT_CONFIG, kebab-case or camelCase keys', () => {
    const file = config({ repo: '/cfg', pushAhead: 3, 's3-force-path-style': true, quiet: 'true', timeout: '9', 'encrypt-recipient': ['age1a', 'age1b'] });
    const expected = { repo: '/cfg', 'push-ahead': 3, s3ForcePathStyle: true, quiet: true, timeout: 9, 'encrypt-recipient': ['age1a', 'age1b'] };
    expect(parse([`--config=${file}`, 'p', 'n'])).toMatchObject(expected);
    expect(parse(['p', 'n'], { WALVAULT_CONFIG: file })).toMatchObject(expected);
  });

  it('gives flags precedence over the environment, the environment over the file, the file over defaults', () => {
    const file = config({ repo: '/cfg', timeout: 7, spool: '/cfg-spool', 'file-mode': '0640' });
    const raw = parse([`--config=${file}`, '--timeout=9', 'p', 'n'], { WALVAULT_TIMEOUT: '8', WALVAULT_REPO: '/env' });
    expect(raw).toMatchObject({ timeout: 9, repo: '/env', spool: '/cfg-spool', 'file-mode': '0640', 'dir-mode': '0700' });
    expect(parse(['--no-quiet', 'p', 'n'], { WALVAULT_QUIET: 'true' }).quiet).toBe(false);
  });

  it('refuses unknown keys, bad JSON, a missing file and values outside the choices', () => {
    const typo = config({ repo: '/x', tiemout: 5 });
    expect(refusal([`--config=${typo}`, 'p', 'n'])).toMatchObject({ kind: 'usage', message: `config file "${typo}" has unknown option "tiemout"` });
    const notObject = config('[1]');
    expect(refusal([`--config=${notObject}`, 'p', 'n'])).toMatchObject({ kind: 'usage', message: `config file "${notObject}" is not a JSON object` });
    const broken = config('{"repo": ');
    expect(refusal(['p', 'n'], { WALVAULT_CONFIG: broken })).toMatchObject({ kind: 'usage', message: expect.stringContaining(`cannot read config file "${broken}": `) });
    const missing = path.join(dir, 'missing.json');
    expect(refusal([`--config=${missing}`, 'p', 'n'])).toMatchObject({ kind: 'usage', message: expect.stringContaining(`cannot read config file "${missing}": ENOENT`) });
    const badChoice = config({ 'on-error': 'sometimes' });
    expect(refusal([`--config=${badChoice}`, SEGMENT, 'p'], {}, restoreSpec)).toMatchObject({ kind: 'usage', message: expect.stringContaining('"sometimes": expected one of auto, missing, abort') });
  });
});

describe('one table for every command', () => {
  const command = (program: CommandLineSpec['program']): CommandLineSpec => ({ program, positionals: [] });

  it('fills defaults per command, and the backend-dependent one from the repository scheme', () => {
    expect(parse(['--repo=/a', 'p', 'n']).parallel).toBe(5);
    expect(parse(['--repo=s3://bucket/wal', 'p', 'n']).parallel).toBe(2);
    expect(parse(['p', 'n'], { WALVAULT_REPO: 's3://bucket/wal' }).parallel).toBe(2);
    expect(parse(['--repo=s3://bucket/wal', SEGMENT, 'p'], {}, restoreSpec).parallel).toBe(4);
    expect(parse(['--repo=/a'], {}, command('verify')).parallel).toBe(6);
    expect(parse(['--repo=/a'], {}, command('cleanup')).parallel).toBe(6);
    expect(parse(['--repo=/a'], {}, command('check')).parallel).toBeUndefined();
    expect(parse(['--repo=/a', '--parallel=3', 'p', 'n'])).toMatchObject({ parallel: 3, 'push-ahead': 16 });
    expect(parse(['--repo=/a', SEGMENT, 'p'], {}, restoreSpec)).toMatchObject({ prefetch: 8, 'prefetch-max-bytes': 268435456 });
  });

  it('parses the walvault subcommands with the same rules, their flag-only options from the command line only', () => {
    expect(parse(['--repo=/a', '--before', '000000010000000000000005', '--dry-run'], {}, command('cleanup'))).toMatchObject({ before: '000000010000000000000005', 'dry-run': true, dryRun: true });
    expect(parse(['--repo=/a'], { WALVAULT_DRY_RUN: 'true', WALVAULT_QUICK: 'true' }, command('cleanup'))['dry-run']).toBe(false);
    const withBefore = config({ repo: '/a', before: '000000010000000000000005' });
    expect(refusal([`--config=${withBefore}`], {}, command('cleanup'))).toMatchObject({ kind: 'usage', message: `config file "${withBefore}" has unknown option "before"` });
    expect(refusal(['--repo=/a', 'extra'], {}, command('verify'))).toMatchObject({ kind: 'usage', message: 'unexpected argument "extra"' });
    expect(refusal(['--repo=/a', '--prefetch=2'], {}, command('verify'))).toMatchObject({ kind: 'usage', message: 'unknown option "--prefetch"', hint: '--prefetch is an option of walvault-restore, not of walvault verify' });
  });

  it('names the close option when one is, and otherwise points at --help', () => {
    expect(refusal(['--rpeo=/a', 'p', 'n'])).toMatchObject({ message: 'unknown option "--rpeo"', hint: 'did you mean --repo?' });
    expect(refusal(['--push-ahaed=1', 'p', 'n'])).toMatchObject({ hint: 'did you mean --push-ahead?' });
    expect(refusal(['--frobnicate', 'p', 'n'])).toMatchObject({ message: 'unknown option "--frobnicate"', hint: 'see walvault-archive --help for the options' });
    expect(closestName('verfy', ['verify', 'check', 'cleanup'])).toBe('verify');
    expect(closestName('x', ['verify', 'check'])).toBeUndefined();
    const typo = config({ repo: '/a', prefetsh: 2 });
    expect(refusal([`--config=${typo}`, SEGMENT, 'p'], {}, restoreSpec)).toMatchObject({ hint: 'did you mean "prefetch"?' });
  });

  it('takes -h as --help and sees --version', () => {
    expect(parseCommandLine(['-h'], archiveSpec, {})).toMatchObject({ help: true, version: false });
    expect(parseCommandLine(['--version'], archiveSpec, {})).toMatchObject({ help: false, version: true });
    expect(wantsHelp(['-h'])).toBe(true);
  });

  it('reads an archive_command the way the program does: a boolean flag never takes %p', () => {
    const words = readCommandLine(['--repo=s3://b/p', '--s3-force-path-style', '%p', '%f'], { program: 'archive' });
    expect(words.positionals).toEqual(['%p', '%f']);
    expect(words.flags.get('s3-force-path-style')).toBe(true);
  });

  it('lists the WALVAULT_* variables options read, flag-only ones excluded', () => {
    const names = optionEnvironmentNames();
    expect(names).toContain('WALVAULT_REPO');
    expect(names).toContain('WALVAULT_CONFIG');
    expect(names).toContain('WALVAULT_S3_ENDPOINT');
    expect(names).toContain('WALVAULT_PREFETCH');
    expect(names).not.toContain('WALVAULT_DRY_RUN');
    expect(names.every((name) => /^WALVAULT_[A-Z0-9_]+$/.test(name))).toBe(true);
  });
});
