// The launcher's record (src/policy/SPOOL.md, "Records"): written by Node as sh assignments, sourced by
// the launcher's wv_record (src/cli/fast-path-record.sh) under dash. A record matches exactly the call
// it was made for; values with quotes, spaces, `$` and backslashes survive; a file of the old
// line format is never sourced (its lines would run as commands) and never matches.
import { spawn } from 'node:child_process';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../../support/tmp.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const tricky = `it's "odd" $HOME \\n \`x\` *`;

let temp: { dir: string; remove(): Promise<void> };
let record: string;
let config: string;
let cwd: string;

/** Runs a program and collects its output. */
function exec(program: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { cwd: options.cwd, env: options.env ?? {}, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** wv_record under dash, as the launcher runs it: exit code and the values it set. */
async function match(args: string[], env: Record<string, string>, dir = cwd): Promise<{ code: number | null; stdout: string }> {
  const script = `. '${path.join(root, 'src/cli/fast-path-record.sh')}'\nwv_record "$@"\nwv_rc=$?\nprintf '%s|%s|%s' "$wv_rc" "$wv_v_markers" "$wv_v_id"`;
  const result = await exec('dash', ['-c', script, 'sh', record, ...args], { cwd: dir, env: { PATH: process.env.PATH, ...env } });
  expect(result.stderr).toBe('');
  return result;
}

beforeAll(async () => {
  temp = await makeTempDir();
  cwd = path.join(temp.dir, `data ${tricky.replace(/[/\\]/g, '')}`);
  await mkdir(cwd);
  config = path.join(temp.dir, 'walvault.conf');
  await writeFile(config, `repo: ${tricky}\n\n  spool: '/x'\n`);
  record = path.join(temp.dir, 'archive.record.sh');
  // The record is refused for a config file changed less than a second before the writer started.
  await sleep(1100);
  const writer = `import(${JSON.stringify(path.join(root, 'dist/policy/spool.js'))}).then(async (m) => {
    const ok = await m.writeLaunchRecord(${JSON.stringify(record)}, { side: 'archive', id: '0123456789abcdef', values: [['markers', ${JSON.stringify(tricky)}], ['quiet', '1']], args: ['--repo', ${JSON.stringify(tricky)}, ''], configFile: ${JSON.stringify(config)} }, ['WALVAULT_UNSET_ONE', 'AWS_PROFILE'], process.env);
    process.exit(ok ? 0 : 3);
  })`;
  const written = await exec(process.execPath, ['-e', writer], { cwd, env: { PATH: process.env.PATH, PWD: cwd, WALVAULT_REPO: tricky, AWS_PROFILE: 'p' } });
  expect(written.stderr).toBe('');
  expect(written.code).toBe(0);
}, 30_000);
afterAll(async () => {
  await temp.remove();
});

const env = { WALVAULT_REPO: tricky, AWS_PROFILE: 'p' };
const args = ['--repo', tricky, '', 'pg_wal/X', 'X'];

describe('launcher record', () => {
  it('matches the call it was made for and sets the values Node decided', async () => {
    expect((await match(args, env)).stdout).toBe(`0|${tricky}|0123456789abcdef`);
  });

  it.each([
    ['an argument differs', ['--repo', `${tricky} `, '', 'pg_wal/X', 'X'], env],
    ['an argument more', ['--repo', tricky, '', '-v', 'pg_wal/X', 'X'], env],
    ['an argument less', ['--repo', tricky, 'pg_wal/X', 'X'], env],
    ['a recorded variable differs', args, { ...env, WALVAULT_REPO: 'other' }],
    ['a recorded variable is unset', args, { AWS_PROFILE: 'p' }],
    ['a variable recorded as unset is set', args, { ...env, WALVAULT_UNSET_ONE: '' }],
  ])('does not match when %s', async (_what, callArgs, callEnv) => {
    expect((await match(callArgs, callEnv)).stdout).toMatch(/^1\|/);
  });

  it('does not match in another working directory', async () => {
    expect((await match(args, env, temp.dir)).stdout).toMatch(/^1\|/);
  });

  it('does not match once the config file changed (a line, a line more, a line less)', async () => {
    const original = await readFile(config, 'utf8');
    try {
      for (const content of [original.replace('/x', '/y'), `${original}more\n`, original.replace("  spool: '/x'\n", '')]) {
        await writeFile(config, content);
        expect((await match(args, env)).stdout, content).toMatch(/^1\|/);
      }
    } finally {
      await writeFile(config, original);
    }
    expect((await match(args, env)).stdout).toMatch(/^0\|/);
  });

  it('never sources nor matches a record of the old line format', async () => {
    const current = await readFile(record, 'utf8');
    const marker = path.join(temp.dir, 'ran');
    try {
      // Sourced, `env` would print the environment and `unset` would clear a variable the call compares.
      await writeFile(record, `walvault-record 2\nid 0123456789abcdef\nmarkers /m\nenv AWS_PROFILE=p\nunset WALVAULT_REPO\ntouch ${marker}\nconfig -\nend\n`);
      const result = await match(args, env);
      expect(result.stdout).toBe('1||');
      await expect(readFile(marker)).rejects.toThrow();
    } finally {
      await writeFile(record, current);
    }
  });
});
