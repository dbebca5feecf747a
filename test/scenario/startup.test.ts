// Start-up cost: PostgreSQL starts walvault-archive / walvault-restore once per WAL file, so the plain
// local paths must not load what they do not use (yargs, the codecs, age, the S3 SDK, the other side's
// background machinery). Checked through the real launcher with a module-resolution trace.
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type RunResult } from '../support/cli.js';
import { killWorker } from '../support/spool.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';

const SEGMENT = '000000010000000000000003';
const tracer = path.join(path.dirname(fileURLToPath(import.meta.url)), '../support/module-trace.mjs');

let temp: { dir: string; remove(): Promise<void> };
let dataDir: string;
let repo: string;

beforeAll(async () => {
  temp = await makeTempDir();
  dataDir = path.join(temp.dir, 'data');
  repo = path.join(temp.dir, 'repo');
  await mkdir(dataDir);
  await mkdir(repo);
});
afterAll(async () => {
  await killWorker(path.join(dataDir, 'walvault-spool'), 'archive');
  await temp.remove();
});

let traces = 0;
/** Runs a command with the module trace on; returns its result and the modules it resolved (paths below the package, or node: names). */
async function traced(name: 'walvault-archive' | 'walvault-restore', args: string[]): Promise<{ result: RunResult; modules: string[] }> {
  traces += 1;
  const traceFile = path.join(temp.dir, `trace-${traces}`);
  const result = await run(name, args, { cwd: dataDir, env: { NODE_OPTIONS: `--import=${tracer}`, WALVAULT_TEST_MODULE_TRACE: traceFile } });
  const text = await readFile(traceFile, 'utf8').catch(() => '');
  await rm(traceFile, { force: true });
  const modules = [...new Set(text.split('\n').filter((line) => line !== ''))].map((url) => url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/'));
  return { result, modules };
}

/** Modules the plain local paths must never load. */
const HEAVY = [/node_modules\/yargs/, /node_modules\/@aws-sdk/, /node_modules\/age-encryption/, /node_modules\/@bokuweb/, /node_modules\/lz4-wasm/, /dist\/codec\/(gzip|lz4|zstd|age|relay)\.js/, /dist\/backend\/s3\.js/, /node:zlib/];

const loadedHeavy = (modules: string[]): string[] => modules.filter((module) => HEAVY.some((pattern) => pattern.test(module)));

describe('what a plain local call loads', () => {
  it('archive --push-ahead=0 stores the segment without yargs, codecs, the S3 SDK or the push-ahead machinery', async () => {
    const source = await writeWalFile(dataDir, SEGMENT, pseudoRandomBytes(1 << 20, 'startup'));
    const { result, modules } = await traced('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', source, SEGMENT]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(modules).toContain('dist/policy/archive.js');
    expect(loadedHeavy(modules)).toEqual([]);
    expect(modules.filter((module) => /policy\/(archive-async|restore-prefetch|spool)\.js/.test(module))).toEqual([]);
  });

  it('archive with push-ahead (the default) loads the pusher side but not the prefetcher nor the heavy modules', async () => {
    const name = '000000010000000000000004';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-4'));
    const { result, modules } = await traced('walvault-archive', [`--repo=${repo}`, '--spool=walvault-spool', source, name]);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(modules).toContain('dist/policy/archive-async.js');
    expect(loadedHeavy(modules)).toEqual([]);
    expect(modules.filter((module) => /policy\/restore-prefetch\.js/.test(module))).toEqual([]);
  });

  it('restore --prefetch=0 restores the segment, and answers "not found", without the heavy modules or the prefetcher', async () => {
    const restored = await traced('walvault-restore', [`--repo=${repo}`, '--prefetch=0', SEGMENT, 'pg_wal/RECOVERYXLOG']);
    expect(restored.result, restored.result.stderr).toMatchObject({ code: 0 });
    expect(restored.modules).toContain('dist/policy/restore.js');
    expect(loadedHeavy(restored.modules)).toEqual([]);
    expect(restored.modules.filter((module) => /policy\/(archive-async|restore-prefetch|spool)\.js/.test(module))).toEqual([]);
    const missing = await traced('walvault-restore', [`--repo=${repo}`, '--prefetch=0', '00000002.history', 'pg_wal/RECOVERYHISTORY']);
    expect(missing.result.code).toBe(1);
    expect(loadedHeavy(missing.modules)).toEqual([]);
  });

  it('the trace sees what a call does load: --compress=zstd loads the zstd codec, --help loads yargs', async () => {
    const name = '000000010000000000000005';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-5'));
    const compressed = await traced('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', '--compress=zstd', source, name]);
    expect(compressed.result, compressed.result.stderr).toMatchObject({ code: 0 });
    expect(compressed.modules).toContain('dist/codec/zstd.js');
    expect(compressed.modules.some((module) => module.startsWith('node_modules/yargs'))).toBe(false);
    const help = await traced('walvault-archive', ['--help']);
    expect(help.result.code).toBe(0);
    expect(help.result.stdout).toContain('archive_command');
    expect(help.modules.some((module) => module.startsWith('node_modules/yargs'))).toBe(true);
  });
});
