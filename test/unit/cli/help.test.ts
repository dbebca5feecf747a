// --help pages printed from OPTION_TABLE: each command lists only its options, its own first, with
// --repo required, --parallel described per program and --timeout described one way everywhere.
import { describe, expect, it } from 'vitest';
import { formatHelp } from '../../../src/cli/help.js';
import type { Command } from '../../../src/cli/options.js';

const page = (program: Command): string => formatHelp({ program, describe: 'what it does', positionals: [] });
/** The option names a help page lists, in order. */
const listed = (text: string): string[] => [...text.matchAll(/^ {2}(?:-h, )?--([a-z0-9-]+)/gm)].map((match) => match[1]!);
/** The text of one option's entry (its lines joined). */
const entry = (text: string, name: string): string => {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`  --${name}`));
  const rest = lines.slice(start + 1).findIndex((line) => !line.startsWith('    '));
  return lines.slice(start, start + 1 + (rest < 0 ? 0 : rest)).map((line) => line.trim()).join(' ').replace(/ +/g, ' ');
};

describe('per-command help', () => {
  it('archive lists no restore or decrypt option; restore lists none of archive\'s writing options', () => {
    const archive = listed(page('archive'));
    expect(archive).not.toContain('decrypt-identity-file');
    expect(archive).not.toContain('on-error');
    expect(archive).not.toContain('prefetch');
    const restore = listed(page('restore'));
    for (const absent of ['file-mode', 'dir-mode', 's3-sse', 's3-storage-class', 's3-conditional-writes', 'compress', 'push-ahead']) expect(restore).not.toContain(absent);
    expect(restore).toContain('decrypt-identity-file');
  });

  it('puts --repo first, marked required, then the command\'s own options before the shared ones', () => {
    for (const program of ['archive', 'restore', 'verify', 'check', 'cleanup'] as const) {
      const text = page(program);
      expect(listed(text)[0]).toBe('repo');
      expect(entry(text, 'repo')).toMatch(/^--repo=URL required: repository/);
      const own = { archive: 'push-ahead', restore: 'on-error', verify: 'quick', check: 'db', cleanup: 'before' }[program];
      expect(listed(text).indexOf(own)).toBeLessThan(listed(text).indexOf('timeout'));
    }
  });

  it('describes --parallel per program, with its default, and --timeout the same way everywhere', () => {
    expect(entry(page('archive'), 'parallel')).toBe('--parallel=N files the background pusher stores at once (default 5; s3://: 2)');
    expect(entry(page('restore'), 'parallel')).toBe('--parallel=N files the background prefetcher fetches at once (default 4)');
    expect(entry(page('verify'), 'parallel')).toBe('--parallel=N archived objects read at once (default 6)');
    expect(entry(page('cleanup'), 'parallel')).toBe('--parallel=N deletions at once (default 6)');
    expect(listed(page('check'))).not.toContain('parallel');
    const timeouts = new Set((['archive', 'restore', 'verify', 'check', 'cleanup'] as const).map((program) => entry(page(program), 'timeout')));
    expect([...timeouts]).toEqual([
      '--timeout=SECONDS seconds before storage that hangs is an error (exit 6): for walvault-archive and walvault-restore the whole call for one WAL file, retries included; for verify, check and cleanup each storage operation (default 60)',
    ]);
  });

  it('ends with the environment variables, the config file and walvault exit-codes', () => {
    const text = page('restore').replace(/\s+/g, ' ');
    expect(text).toContain('can also be set as a WALVAULT_* environment variable (--prefetch: WALVAULT_PREFETCH) or as a key of the JSON file named by --config or WALVAULT_CONFIG');
    expect(text).toContain('Exit codes: walvault exit-codes.');
    expect(page('verify').replace(/\s+/g, ' ')).toContain('Every option but --quick, --backup, --from, --to, --json can also be set');
  });
});
