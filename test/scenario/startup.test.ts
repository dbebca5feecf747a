// Start-up cost: PostgreSQL starts walvault-archive / walvault-restore once per WAL file, so the plain
// local paths must not load what they do not use (yargs, the codecs, age, the S3 SDK, the other side's
// background machinery). Checked through the real launcher with a module-resolution trace (which
// needs NODE_OPTIONS, so these calls take the normal start, not the start-up snapshot). Then the
// snapshot: used when it fits, and any snapshot that does not load falls back to the normal start.
import { spawn } from 'node:child_process';
import { cp, mkdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, run, type RunResult } from '../support/cli.js';
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

describe('NODE_EXTRA_CA_CERTS (Node parses the whole bundle at every start)', () => {
  /** Runs a launcher through a node wrapper that records the variable as node would see it. */
  async function seenByNode(name: 'walvault-archive' | 'walvault-restore', args: string[], env: Record<string, string> = {}): Promise<{ result: RunResult; seen: string[] }> {
    const record = path.join(temp.dir, `ca-seen-${name}-${Date.now()}`);
    const wrapper = path.join(temp.dir, 'node-recording-ca');
    await writeFile(wrapper, `#!/bin/sh\necho "\${NODE_EXTRA_CA_CERTS-unset}" >> '${record}'\nexec node "$@"\n`, { mode: 0o755 });
    const bundle = path.join(temp.dir, 'extra-ca.pem');
    await writeFile(bundle, '');
    const result = await run(name, args, { cwd: dataDir, env: { WALVAULT_NODE: wrapper, NODE_EXTRA_CA_CERTS: bundle, ...env } });
    const seen = (await readFile(record, 'utf8').catch(() => '')).split('\n').filter((line) => line !== '');
    await rm(record, { force: true });
    return { result, seen: seen.map((value) => (value === bundle ? 'bundle' : value)) };
  }

  it('a repository on a filesystem: archive and restore start node without it', async () => {
    const name = '00000001000000000000000A';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-a'));
    const archived = await seenByNode('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', source, name]);
    expect(archived.result, archived.result.stderr).toMatchObject({ code: 0 });
    expect(archived.seen).toEqual(['unset']);
    const restored = await seenByNode('walvault-restore', ['--repo', `file://${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG']);
    expect(restored.result, restored.result.stderr).toMatchObject({ code: 0 });
    expect(restored.seen).toEqual(['unset']);
    // The repository from WALVAULT_REPO counts too.
    const fromEnv = await seenByNode('walvault-restore', ['--prefetch=0', name, 'pg_wal/RECOVERYXLOG'], { WALVAULT_REPO: `nfs://${repo}` });
    expect(fromEnv.seen).toEqual(['unset']);
  });

  it('an S3 repository, or one the launcher cannot see (config file), keeps it for the TLS connections', async () => {
    const s3 = await seenByNode('walvault-restore', ['--repo=s3://walvault-test/ca', '--s3-endpoint=http://127.0.0.1:9', '--prefetch=0', '--timeout=2', SEGMENT, 'pg_wal/RECOVERYXLOG']);
    expect(s3.seen).toEqual(['bundle']);
    // A flag wins over the variable, as in the option table.
    const flagWins = await seenByNode('walvault-restore', ['--repo=s3://walvault-test/ca', '--s3-endpoint=http://127.0.0.1:9', '--prefetch=0', '--timeout=2', SEGMENT, 'pg_wal/RECOVERYXLOG'], { WALVAULT_REPO: repo });
    expect(flagWins.seen).toEqual(['bundle']);
    const config = path.join(temp.dir, 'walvault-ca.json');
    await writeFile(config, JSON.stringify({ repo }));
    const name = '00000001000000000000000B';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-b'));
    const fromConfig = await seenByNode('walvault-archive', [`--config=${config}`, '--push-ahead=0', source, name]);
    expect(fromConfig.result, fromConfig.result.stderr).toMatchObject({ code: 0 });
    expect(fromConfig.seen).toEqual(['bundle']);
  });
});

/** Runs a launcher with `sh -x`: its stderr then also shows the commands the launcher ran. */
function runTraced(launcher: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  const clean: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALVAULT_') && key !== 'NODE_OPTIONS' && value !== undefined) clean[key] = value;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-x', launcher, ...args], { cwd: dataDir, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, durationMs: performance.now() - started }));
  });
}

/** Node starts the launcher made (its `wv_run` calls, from the `sh -x` trace). */
const nodeRuns = (stderr: string): string[] => stderr.split('\n').filter((line) => /^\+ wv_run /.test(line));

describe('the start-up snapshot', () => {
  const projectDist = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../dist');

  it('archive and restore start from it when it fits this node, in one node run', async () => {
    const name = '000000010000000000000006';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-6'));
    const archived = await runTraced(bin('walvault-archive'), [`--repo=${repo}`, '--push-ahead=0', source, name]);
    expect(archived.code, archived.stderr).toBe(0);
    expect(nodeRuns(archived.stderr)).toHaveLength(1);
    expect(nodeRuns(archived.stderr)[0]).toContain('--snapshot-blob');
    expect(archived.stderr).toContain(`walvault-archive: info: archived "${name}"`);
    const restored = await runTraced(bin('walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG']);
    expect(restored.code, restored.stderr).toBe(0);
    expect(nodeRuns(restored.stderr)).toHaveLength(1);
    expect(nodeRuns(restored.stderr)[0]).toContain('--snapshot-blob');
    expect((await readFile(path.join(dataDir, 'pg_wal/RECOVERYXLOG'))).equals(await readFile(path.join(dataDir, source)))).toBe(true);
    // Packages outside the snapshot (here yargs, for --help) load on first use.
    const help = await runTraced(bin('walvault-restore'), ['--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(nodeRuns(help.stderr)).toHaveLength(1);
    expect(help.stdout).toContain("restore_command = 'walvault-restore --repo=URL %f %p'");
  });

  it('a blob that does not load (damaged, other node, other flags) never turns into "not found" or a failed archive: the normal start runs', async () => {
    // A private copy of dist with a damaged blob and a stamp that matches this node.
    const copy = path.join(temp.dir, 'package');
    await cp(projectDist, path.join(copy, 'dist'), { recursive: true });
    await symlink(path.join(projectDist, '../node_modules'), path.join(copy, 'node_modules'));
    const cli = path.join(copy, 'dist/cli');
    await writeFile(path.join(cli, 'walvault.blob'), Buffer.alloc(200_000, 7));
    const name = '000000010000000000000007';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-7'));
    const archived = await runTraced(path.join(cli, 'walvault-archive'), [`--repo=${repo}`, '--push-ahead=0', source, name]);
    expect(archived.code, archived.stderr).toBe(0);
    expect(nodeRuns(archived.stderr).map((line) => line.includes('--snapshot-blob'))).toEqual([true, false]);
    expect(archived.stderr).toContain(`walvault-archive: info: archived "${name}"`);
    const restored = await runTraced(path.join(cli, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG']);
    expect(restored.code, restored.stderr).toBe(0);
    expect(nodeRuns(restored.stderr)).toHaveLength(2);
    const missing = await runTraced(path.join(cli, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', '00000009.history', 'pg_wal/RECOVERYHISTORY']);
    expect(missing.code, missing.stderr).toBe(1);
    expect(missing.stderr).toContain('"00000009.history" not found');

    // Compiled code newer than the blob (tsc after the build): the blob would run stale code, so it is not tried.
    const future = new Date(Date.now() + 60_000);
    await utimes(path.join(cli, 'main.js'), future, future);
    const stale = await runTraced(path.join(cli, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG']);
    expect(stale.code, stale.stderr).toBe(0);
    expect(nodeRuns(stale.stderr).map((line) => line.includes('--snapshot-blob'))).toEqual([false]);
    await utimes(path.join(cli, 'walvault.blob'), new Date(Date.now() + 120_000), new Date(Date.now() + 120_000));
    expect(nodeRuns((await runTraced(path.join(cli, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG'])).stderr)).toHaveLength(2);

    // A stamp naming another node binary: the blob is not even tried.
    await writeFile(path.join(cli, 'walvault.blob.stamp'), '1:2:3:4\n');
    const other = await runTraced(path.join(cli, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG']);
    expect(other.code, other.stderr).toBe(0);
    expect(nodeRuns(other.stderr).map((line) => line.includes('--snapshot-blob'))).toEqual([false]);
  });
});
