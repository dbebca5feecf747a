// The exit codes the README promises, produced through the installed executables (npm pack + install):
// 7 (corrupt) and 11 (key) from walvault-archive, 70 from the launcher when Node itself crashes, and
// `walvault exit-codes` against the exit code table in README.md.
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes } from '../support/walfile.js';

const SEGMENT = '000000010000000000000005';
const README = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../README.md');

let walvault: InstalledWalvault;
let temp: { dir: string; remove(): Promise<void> };
let counter = 0;

beforeAll(async () => {
  walvault = await installedWalvault();
  temp = await makeTempDir();
});
afterAll(async () => {
  await temp.remove();
});

/** Runs an installed executable to its end (WALVAULT_* and NODE_OPTIONS of the test runner left out). */
function run(file: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALVAULT_') && key !== 'NODE_OPTIONS' && value !== undefined) base[key] = value;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A fresh repository and a 1 MiB file to archive. */
async function fresh(): Promise<{ repo: string; source: string }> {
  counter += 1;
  const repo = path.join(temp.dir, `repo-${counter}`);
  await mkdir(repo);
  const source = path.join(temp.dir, `source-${counter}`);
  await writeFile(source, pseudoRandomBytes(1 << 20, `exit-${counter}`));
  return { repo, source };
}

describe('exit codes through the installed executables', () => {
  it('7 (corrupt): walvault-archive finds the stored copy\'s metadata unreadable', async () => {
    const { repo, source } = await fresh();
    expect((await run(walvault.archive, [`--repo=${repo}`, '--push-ahead=0', source, SEGMENT])).code).toBe(0);
    const meta = path.join(repo, 'wal', SEGMENT.slice(0, 16), `${SEGMENT}~meta`);
    await writeFile(meta, 'not json\n');
    const result = await run(walvault.archive, [`--repo=${repo}`, '--push-ahead=0', source, SEGMENT]);
    expect(result.stderr).toBe(`walvault-archive: error: metadata file "${meta}" is not valid; HINT: run walvault verify; restore the file from another copy of the archive\n`);
    expect(result.code).toBe(7);
  });

  it('11 (key): walvault-archive with a recipient that is not an age key, or a recipients file it cannot read; nothing stored', async () => {
    const { repo, source } = await fresh();
    const bad = await run(walvault.archive, [`--repo=${repo}`, '--push-ahead=0', '--encrypt-recipient=age1notakey', source, SEGMENT]);
    expect(bad.stderr).toMatch(/^walvault-archive: error: invalid age recipient "age1notakey": .*; HINT: use the public key printed by `age-keygen`/);
    expect(bad.code).toBe(11);
    const missing = path.join(temp.dir, 'no-recipients.txt');
    const unreadable = await run(walvault.archive, [`--repo=${repo}`, '--push-ahead=0', `--encrypt-recipients-file=${missing}`, source, SEGMENT]);
    expect(unreadable.stderr).toContain(`walvault-archive: error: could not read the age recipients file "${missing}" (ENOENT)`);
    expect(unreadable.code).toBe(11);
    expect(await readFile(path.join(repo, 'wal', SEGMENT.slice(0, 16), SEGMENT)).catch(() => null)).toBeNull();
  });

  // A 1 MiB old-space limit makes V8 abort while it starts (a real crash, status 133 or 134): the
  // launcher must turn that into 70 for archive_command (above 125 PostgreSQL would restart the
  // archiver) and for walvault, and keep it above 125 for restore_command (recovery stops).
  it('70 (internal): the launcher maps a crash of Node to 70 for walvault-archive and walvault, with its error line', async () => {
    const { repo, source } = await fresh();
    const crash = { NODE_OPTIONS: '--max-old-space-size=1' };
    const archived = await run(walvault.archive, [`--repo=${repo}`, '--push-ahead=0', source, SEGMENT], crash);
    expect(archived.stderr).toMatch(/^walvault-archive: error: node exited with status 1\d\d \(crash\); HINT: this is a bug or the machine ran out of memory$/m);
    expect(archived.code).toBe(70);
    const verified = await run(walvault.walvault, ['verify', `--repo=${repo}`], crash);
    expect(verified.stderr).toMatch(/^walvault: error: node exited with status 1\d\d \(crash\); HINT: /m);
    expect(verified.code).toBe(70);
    const restored = await run(walvault.restore, [`--repo=${repo}`, '--prefetch=0', SEGMENT, path.join(temp.dir, 'RECOVERYXLOG')], crash);
    expect(restored.code).toBeGreaterThan(125);
    // Without the limit the same archive call succeeds: the crash came from the environment alone.
    expect((await run(walvault.archive, [`--repo=${repo}`, '--push-ahead=0', source, SEGMENT])).code).toBe(0);
  });

  it('`walvault exit-codes` lists exactly the codes and kinds of the exit code table in README.md', async () => {
    const listed = await run(walvault.walvault, ['exit-codes']);
    expect(listed.code).toBe(0);
    const printed = listed.stdout.trimEnd().split('\n').map((line) => {
      const match = /^\s*(\d+)\s+([a-z-]+)\s+\S/.exec(line);
      expect(match, `line of walvault exit-codes: ${JSON.stringify(line)}`).not.toBeNull();
      return { code: Number(match![1]), kind: match![2]! };
    });
    const table = readmeExitCodeTable(await readFile(README, 'utf8'));
    // The README's table may list 0 (success), which the command does not print.
    const documented = table.filter((row) => row.code !== 0);
    expect(printed.map((row) => row.code)).toEqual(documented.map((row) => row.code));
    if (documented.every((row) => row.kind !== undefined)) expect(printed).toEqual(documented);
    expect(printed.map((row) => row.code)).toContain(70);
    expect(printed.map((row) => row.code)).toContain(128);
  });
});

/**
 * The README's exit code table: the markdown table whose header row's first cell is "exit", "code" or
 * "exit code" (any case, backticks allowed); each body row's first cell is the number, and a column headed
 * "kind", when there is one, names the kind. Fails when there is no such table or a row's code is not a number.
 */
function readmeExitCodeTable(readme: string): Array<{ code: number; kind?: string }> {
  const cells = (line: string): string[] => line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((cell) => cell.trim().replaceAll('`', ''));
  const lines = readme.split('\n');
  const header = lines.findIndex((line) => line.trim().startsWith('|') && /^(exit|code|exit code)$/i.test(cells(line)[0] ?? ''));
  expect(header, 'README.md has a markdown table whose first column is headed "exit", "code" or "exit code"').toBeGreaterThanOrEqual(0);
  const kindColumn = cells(lines[header]!).findIndex((cell) => /^kind$/i.test(cell));
  const rows: Array<{ code: number; kind?: string }> = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.trim().startsWith('|')) break;
    const row = cells(line);
    expect(row[0], `README exit code row ${JSON.stringify(line)}`).toMatch(/^\d+$/);
    rows.push(kindColumn > 0 && row[kindColumn] !== '' ? { code: Number(row[0]), kind: row[kindColumn] } : { code: Number(row[0]) });
  }
  return rows;
}
