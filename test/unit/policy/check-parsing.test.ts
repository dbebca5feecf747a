import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { analyseCommand, connectionConfig, sameRepository, splitShellWords, withConfigRepository } from '../../../src/policy/check.js';

describe('reading archive_command / restore_command', () => {
  it('splits like /bin/sh: quotes, escapes, operators', () => {
    expect(splitShellWords(`'/opt/wal vault/bin/walvault-archive' --repo="/srv/a b" %p %f && echo\\ done; true`)).toEqual([
      '/opt/wal vault/bin/walvault-archive', '--repo=/srv/a b', '%p', '%f', '&', '&', 'echo done', ';', 'true',
    ]);
  });

  it('finds the walvault call, its repository and positional arguments', () => {
    expect(analyseCommand('/usr/local/bin/walvault-archive --repo=s3://bucket/wal --quiet %p %f', 'walvault-archive')).toEqual({ calls: true, repo: 's3://bucket/wal', positionals: ['%p', '%f'], config: null });
    expect(analyseCommand('walvault-archive --timeout 30 --repo /srv/wal %p %f', 'walvault-archive')).toMatchObject({ repo: '/srv/wal', positionals: ['%p', '%f'] });
    expect(analyseCommand('WALVAULT_REPO=/srv/wal walvault-restore %f %p', 'walvault-restore')).toMatchObject({ repo: '/srv/wal', positionals: ['%f', '%p'] });
    expect(analyseCommand('walvault-archive --config=/etc/walvault.json %p %f', 'walvault-archive')).toMatchObject({ repo: null, config: '/etc/walvault.json' });
    expect(analyseCommand('cp %p /mnt/archive/%f', 'walvault-archive').calls).toBe(false);
    expect(analyseCommand('walvault-archive --repo=/srv/wal %f %p', 'walvault-archive').positionals).toEqual(['%f', '%p']);
  });

  it('compares repositories by what they name, not by spelling', () => {
    expect(sameRepository('/srv/wal', 'file:///srv/wal')).toBe(true);
    expect(sameRepository('/srv/wal/', '/srv/wal')).toBe(true);
    expect(sameRepository('/srv/wal', 'nfs:///srv/wal')).toBe(false);
    expect(sameRepository('s3://bucket/a', 's3://bucket/b')).toBe(false);
  });

  it('builds pg client settings from a libpq string, a URL or a database name', () => {
    expect(connectionConfig("host=/tmp/s port=5433 user=postgres dbname='my db' connect_timeout=5", {})).toEqual({
      host: '/tmp/s', port: '5433', user: 'postgres', database: 'my db', connectionTimeoutMillis: 5000, application_name: 'walvault check',
    });
    expect(connectionConfig('postgresql://u@h:5432/d', {})).toEqual({ connectionString: 'postgresql://u@h:5432/d' });
    expect(connectionConfig('mydb', { PGHOST: 'h' })).toEqual({ database: 'mydb', application_name: 'walvault check' });
  });
});

describe('the example postgresql.conf files, read as walvault check reads a server', () => {
  const examples = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../examples');
  const settings = readdirSync(examples)
    .filter((file) => file.endsWith('.conf'))
    .flatMap((file) =>
      readFileSync(path.join(examples, file), 'utf8')
        .split('\n')
        .map((line) => /^#?\s*(archive_command|restore_command)\s*=\s*'(.*)'\s*$/.exec(line))
        .filter((match): match is RegExpExecArray => match !== null)
        .map((match) => [`${file}: ${match[1]}`, match[1] as 'archive_command' | 'restore_command', match[2]!] as const),
    );

  it('covers the boolean flag before %p %f (examples/s3-compatible.postgresql.conf)', () => {
    expect(settings.some(([, , command]) => / --s3-force-path-style %[pf] %[pf]$/.test(command))).toBe(true);
  });

  it.each(settings)('%s passes %p/%f in the right order, with nothing walvault would refuse', (_label, setting, command) => {
    const analysis = analyseCommand(command, setting === 'archive_command' ? 'walvault-archive' : 'walvault-restore');
    expect(analysis.problem).toBeUndefined();
    expect(analysis.calls).toBe(true);
    expect(analysis.positionals).toEqual(setting === 'archive_command' ? ['%p', '%f'] : ['%f', '%p']);
    expect(analysis.repo ?? analysis.config).toBe(/--repo=(\S+)/.exec(command)?.[1] ?? /--config=(\S+)/.exec(command)?.[1]);
  });
});

describe('what walvault-archive itself would refuse', () => {
  it('names an unknown flag, a flag of the other program and a missing value, as the program would', () => {
    expect(analyseCommand('walvault-archive --rpo=/srv/wal %p %f', 'walvault-archive').problem).toBe('unknown option "--rpo"; HINT: did you mean --repo?');
    expect(analyseCommand('walvault-restore --repo=/srv/wal --compress=zstd %f %p', 'walvault-restore').problem).toBe('unknown option "--compress"; HINT: --compress is an option of walvault-archive, walvault backup, not of walvault-restore');
    expect(analyseCommand('walvault-archive %p %f --repo', 'walvault-archive').problem).toBe('option "--repo" needs a value; HINT: write --repo=URL');
  });
});

describe('a command whose repository comes from its --config file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'walvault-check-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes the repository from the file when check can read it, and reports a file the program would refuse', () => {
    const good = path.join(dir, 'good.json');
    writeFileSync(good, JSON.stringify({ repo: '/srv/wal', timeout: 30 }));
    expect(withConfigRepository(analyseCommand(`walvault-archive --config=${good} %p %f`, 'walvault-archive'))).toMatchObject({ repo: '/srv/wal', config: good });
    const typo = path.join(dir, 'typo.json');
    writeFileSync(typo, JSON.stringify({ rpeo: '/srv/wal' }));
    expect(withConfigRepository(analyseCommand(`walvault-archive --config=${typo} %p %f`, 'walvault-archive')).problem).toBe(`config file "${typo}" has unknown option "rpeo"; HINT: did you mean "repo"?`);
    expect(withConfigRepository(analyseCommand(`walvault-archive --repo=/a --config=${typo} %p %f`, 'walvault-archive'))).toMatchObject({ repo: '/a' });
    const elsewhere = path.join(dir, 'on-another-host.json');
    expect(withConfigRepository(analyseCommand(`walvault-archive --config=${elsewhere} %p %f`, 'walvault-archive'))).toEqual({ calls: true, repo: null, positionals: ['%p', '%f'], config: elsewhere });
  });
});
