// The postgresql.conf snippets in examples/ must only use options walvault knows: a typo there would be copied into production.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { run } from '../support/cli.js';

const examples = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples');

/** Every archive_command / restore_command / archive_cleanup_command line of every example, commented out or not. */
const commands = readdirSync(examples)
  .filter((file) => file.endsWith('.conf'))
  .flatMap((file) =>
    readFileSync(path.join(examples, file), 'utf8')
      .split('\n')
      .map((line) => /^#?\s*(archive_command|restore_command|archive_cleanup_command)\s*=\s*'(.*)'\s*$/.exec(line))
      .filter((match): match is RegExpExecArray => match !== null)
      .map((match) => ({ file, setting: match[1] ?? '', command: match[2] ?? '' })),
  );

describe('examples/', () => {
  it('has a command line for every backend', () => {
    expect(commands.length).toBeGreaterThanOrEqual(10);
    expect(commands.some((entry) => entry.command.includes('--repo=s3://'))).toBe(true);
    expect(commands.some((entry) => entry.command.includes('--repo=nfs://'))).toBe(true);
  });

  it.each(commands.map((entry) => [`${entry.file}: ${entry.setting}`, entry.command] as const))('%s uses only known options', async (_label, command) => {
    // The whole command line, then --help: the parser reads every word (unknown flags, missing values) before it prints the help.
    const [program, ...words] = command.split(/\s+/);
    const result = await run(program as 'walvault-archive' | 'walvault-restore' | 'walvault', [...words, '--help']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
