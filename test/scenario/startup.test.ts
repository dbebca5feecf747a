// Start-up cost: PostgreSQL starts walvault-archive / walvault-restore once per WAL file, so the plain
// local paths must not load what they do not use (yargs, the codecs, age, the S3 SDK, the other side's
// background machinery, and Node built-ins a call that moves no bytes never needs). Checked through
// the real launcher, both ways it starts node: from the start-up bundle (the default; its loader
// reports what it loaded) and from the ES modules (WALVAULT_NO_BUNDLE, with a module-resolution
// trace). Then the bundle itself: used when it fits, with the code cache the build recorded.
import { spawn, spawnSync } from 'node:child_process';
import { cp, mkdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, run, type RunResult } from '../support/cli.js';
import { killWorker, waitForWorkerExit } from '../support/spool.js';
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
type StartMode = 'bundle' | 'modules';
/**
 * Runs a command with the module trace on; returns its result and what it loaded: paths below the
 * package (dist/..., node_modules/...) or node: names. From the bundle, packages appear as
 * node_modules/<name> and the first line says whether V8 took the code cache (code-cache:...).
 */
async function traced(name: 'walvault-archive' | 'walvault-restore', args: string[], mode: StartMode): Promise<{ result: RunResult; modules: string[] }> {
  traces += 1;
  const traceFile = path.join(temp.dir, `trace-${traces}`);
  const env: Record<string, string> = mode === 'modules' ? { NODE_OPTIONS: `--import=${tracer}`, WALVAULT_NO_BUNDLE: '1', WALVAULT_TEST_MODULE_TRACE: traceFile } : { WALVAULT_TEST_MODULE_TRACE: traceFile };
  const result = await run(name, args, { cwd: dataDir, env });
  const text = await readFile(traceFile, 'utf8').catch(() => '');
  await rm(traceFile, { force: true });
  const modules = [...new Set(text.split('\n').filter((line) => line !== ''))].map((entry) =>
    entry.startsWith('file:') ? entry.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/') : /^(node|code-cache):/.test(entry) ? entry : `node_modules/${entry}`,
  );
  return { result, modules };
}

/** Modules the plain local paths must never load. */
const HEAVY = [/node_modules\/yargs/, /node_modules\/@aws-sdk/, /node_modules\/age-encryption/, /node_modules\/@bokuweb/, /node_modules\/lz4-wasm/, /dist\/codec\/(gzip|lz4|zstd|age|relay)\.js/, /dist\/backend\/s3\.js/, /^node:zlib$/];

const loadedHeavy = (modules: string[]): string[] => modules.filter((module) => HEAVY.some((pattern) => pattern.test(module)));

/** Our modules of one side's background machinery (seen only in the ES-module trace: the bundle has them all inside). */
const machinery = (modules: string[], pattern: RegExp): string[] => modules.filter((module) => pattern.test(module));

describe.each<StartMode>(['bundle', 'modules'])('what a plain local call loads, started from the %s', (mode) => {
  it('archive --push-ahead=0 stores the segment without yargs, codecs, the S3 SDK or the push-ahead machinery', async () => {
    const name = mode === 'bundle' ? '000000010000000000000003' : '000000010000000000000013';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, `startup-${name}`));
    const { result, modules } = await traced('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', source, name], mode);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(loadedHeavy(modules)).toEqual([]);
    if (mode === 'bundle') {
      expect(modules[0]).toBe('code-cache:accepted');
      // The file is pulled, not streamed, and temp file names need no node:crypto (each ~1.5-2.7 ms to load).
      expect(modules.filter((module) => ['node:stream', 'node:crypto', 'node:perf_hooks', 'node:child_process'].includes(module))).toEqual([]);
      expect(modules).toContain('node:fs/promises');
    } else {
      expect(modules).toContain('dist/policy/archive.js');
      expect(machinery(modules, /policy\/(archive-async|restore-prefetch|spool)\.js/)).toEqual([]);
    }
  });

  it('archive with push-ahead (the default) loads the pusher side but not the prefetcher nor the heavy modules', async () => {
    const name = mode === 'bundle' ? '000000010000000000000004' : '000000010000000000000014';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, `startup-${name}`));
    const { result, modules } = await traced('walvault-archive', [`--repo=${repo}`, '--spool=walvault-spool', source, name], mode);
    expect(result, result.stderr).toMatchObject({ code: 0 });
    expect(loadedHeavy(modules)).toEqual([]);
    if (mode === 'modules') {
      expect(modules).toContain('dist/policy/archive-async.js');
      expect(machinery(modules, /policy\/restore-prefetch\.js/)).toEqual([]);
    }
  });

  it('restore --prefetch=0 restores the segment, and answers "not found", without the heavy modules or the prefetcher', async () => {
    const name = mode === 'bundle' ? '000000010000000000000003' : '000000010000000000000013';
    const restored = await traced('walvault-restore', [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG'], mode);
    expect(restored.result, restored.result.stderr).toMatchObject({ code: 0 });
    expect(loadedHeavy(restored.modules)).toEqual([]);
    if (mode === 'modules') {
      expect(restored.modules).toContain('dist/policy/restore.js');
      expect(machinery(restored.modules, /policy\/(archive-async|restore-prefetch|spool)\.js/)).toEqual([]);
    }
    const missing = await traced('walvault-restore', [`--repo=${repo}`, '--prefetch=0', '00000002.history', 'pg_wal/RECOVERYHISTORY'], mode);
    expect(missing.result.code).toBe(1);
    expect(loadedHeavy(missing.modules)).toEqual([]);
  });

  it('the trace sees what a call does load: --compress=zstd loads the zstd codec, --help the help page (and nothing heavy)', async () => {
    const name = mode === 'bundle' ? '000000010000000000000005' : '000000010000000000000015';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, `startup-${name}`));
    const compressed = await traced('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', '--compress=zstd', source, name], mode);
    expect(compressed.result, compressed.result.stderr).toMatchObject({ code: 0 });
    // The bundle's zstd: Node's own where this Node has it (22.15 and later, src/codec/zstd.ts), else the WASM build.
    const nativeZstd = typeof (zlib as unknown as { zstdCompress?: unknown }).zstdCompress === 'function';
    const zstdModule = (module: string): boolean => (nativeZstd ? module === 'node:zlib' : module.startsWith('node_modules/@bokuweb/zstd-wasm'));
    expect(compressed.modules.some((module) => (mode === 'bundle' ? zstdModule(module) : module === 'dist/codec/zstd.js'))).toBe(true);
    expect(compressed.modules.some((module) => module.startsWith('node_modules/yargs'))).toBe(false);
    const help = await traced('walvault-archive', ['--help'], mode);
    expect(help.result.code).toBe(0);
    expect(help.result.stdout).toContain('archive_command');
    expect(loadedHeavy(help.modules)).toEqual([]);
    if (mode === 'modules') {
      expect(help.modules).toContain('dist/cli/help.js');
      expect(compressed.modules).not.toContain('dist/cli/help.js');
    }
  });
});

describe('a call from the bundle that moves no bytes', () => {
  // Each of these built-ins costs ~1-3 ms to load, paid by every call PostgreSQL makes: a bad file
  // name and a "not found" (history files probed at every recovery start) need none of them.
  const NOT_NEEDED = ['node:stream', 'node:fs/promises', 'node:crypto', 'node:os', 'node:perf_hooks', 'node:v8', 'node:child_process'];

  it('a bad file name: refused, with the code cache and none of the built-ins a transfer needs', async () => {
    const { result, modules } = await traced('walvault-archive', ['--repo=/nonexistent', '--push-ahead=0', 'pg_wal/x', '../bad'], 'bundle');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('invalid WAL file name "../bad"');
    expect(modules[0]).toBe('code-cache:accepted');
    expect(modules.filter((module) => NOT_NEEDED.includes(module))).toEqual([]);
  });

  it('a history file not in the archive: exit 1, and none of them either', async () => {
    const { result, modules } = await traced('walvault-restore', [`--repo=${repo}`, '--prefetch=0', '00000009.history', 'pg_wal/RECOVERYHISTORY'], 'bundle');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('"00000009.history" not found');
    expect(modules[0]).toBe('code-cache:accepted');
    expect(modules.filter((module) => NOT_NEEDED.includes(module))).toEqual([]);
  });
});

describe('NODE_EXTRA_CA_CERTS (Node parses the whole bundle at every start)', () => {
  /** Runs a launcher through a node wrapper that records the variables as node would see them. */
  async function seenByNode(name: 'walvault-archive' | 'walvault-restore' | 'walvault', args: string[], env: Record<string, string> = {}): Promise<{ result: RunResult; seen: string[] }> {
    const record = path.join(temp.dir, `ca-seen-${name}-${Date.now()}`);
    const wrapper = path.join(temp.dir, 'node-recording-ca');
    await writeFile(wrapper, `#!/bin/sh\necho "\${NODE_EXTRA_CA_CERTS-unset} \${WALVAULT_NODE_EXTRA_CA_CERTS-unset}" >> '${record}'\nexec node "$@"\n`, { mode: 0o755 });
    const bundle = path.join(temp.dir, 'extra-ca.pem');
    await writeFile(bundle, '');
    const result = await run(name, args, { cwd: dataDir, env: { WALVAULT_NODE: wrapper, NODE_EXTRA_CA_CERTS: bundle, ...env } });
    const seen = (await readFile(record, 'utf8').catch(() => '')).split('\n').filter((line) => line !== '');
    await rm(record, { force: true });
    return { result, seen: seen.map((value) => value.replaceAll(bundle, 'bundle')) };
  }

  it('archive and restore never start Node with it, whatever the repository, with or without a record: it is passed on as WALVAULT_NODE_EXTRA_CA_CERTS', async () => {
    const names = ['00000001000000000000000A', '00000001000000000000000C', '00000001000000000000000D'];
    const sources = await Promise.all(names.map((name) => writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, `startup-${name}`))));
    await mkdir(path.join(dataDir, 'pg_wal', 'archive_status'), { recursive: true });
    for (const name of names.slice(0, 2)) await writeFile(path.join(dataDir, 'pg_wal', 'archive_status', `${name}.ready`), '');
    // No record yet: Node starts the pusher for the backlog and writes one (src/policy/SPOOL.md).
    const first = await seenByNode('walvault-archive', [`--repo=${repo}`, sources[0]!, names[0]!]);
    expect(first.result, first.result.stderr).toMatchObject({ code: 0 });
    expect(first.seen).toEqual(['unset bundle']);
    // run() returns once every writer of its stderr is gone, the pusher too: it may be over already.
    await waitForWorkerExit(path.join(dataDir, 'pg_wal', 'walvault'), 'archive', { expectWorker: false });
    // A file the pusher did not push: the record matches, the launcher starts Node, without it too.
    const second = await seenByNode('walvault-archive', [`--repo=${repo}`, sources[2]!, names[2]!]);
    expect(second.result, second.result.stderr).toMatchObject({ code: 0 });
    expect(second.seen).toEqual(['unset bundle']);
    const restored = await seenByNode('walvault-restore', ['--repo', `file://${repo}`, '--prefetch=0', names[0]!, 'pg_wal/RECOVERYXLOG']);
    expect(restored.result, restored.result.stderr).toMatchObject({ code: 0 });
    expect(restored.seen).toEqual(['unset bundle']);
    // An S3 repository, or one named only in a config file: the same (the S3 backend reads the certificates itself).
    const s3 = await seenByNode('walvault-restore', ['--repo=s3://walvault-test/ca', '--s3-endpoint=http://127.0.0.1:9', '--prefetch=0', '--timeout=2', SEGMENT, 'pg_wal/RECOVERYXLOG']);
    expect(s3.seen).toEqual(['unset bundle']);
    const config = path.join(temp.dir, 'walvault-ca.json');
    await writeFile(config, JSON.stringify({ repo }));
    const name = '00000001000000000000000B';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-b'));
    const fromConfig = await seenByNode('walvault-archive', [`--config=${config}`, '--push-ahead=0', source, name]);
    expect(fromConfig.result, fromConfig.result.stderr).toMatchObject({ code: 0 });
    expect(fromConfig.seen).toEqual(['unset bundle']);
    // Unset or empty: nothing is passed on.
    const empty = await seenByNode('walvault-restore', ['--repo', `file://${repo}`, '--prefetch=0', names[0]!, 'pg_wal/RECOVERYXLOG'], { NODE_EXTRA_CA_CERTS: '' });
    expect(empty.seen).toEqual(['unset unset']);
  });

  it('an --on-failure command gets it back', async () => {
    const out = path.join(temp.dir, 'ca-notified');
    await mkdir(path.join(dataDir, 'pg_wal'), { recursive: true });
    // A file that does not exist: exit 3, and the command is told (no earlier alert holds it back: interval 0).
    const failed = await seenByNode('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', '--on-failure-interval=0', `--on-failure=echo "\${NODE_EXTRA_CA_CERTS-unset} \${WALVAULT_NODE_EXTRA_CA_CERTS-unset}" > '${out}.tmp' && mv '${out}.tmp' '${out}'`, 'pg_wal/000000010000000000000077', '000000010000000000000077']);
    expect(failed.result.code).toBe(3);
    expect(failed.seen).toEqual(['unset bundle']);
    // The command runs detached: wait for its file (bounded).
    const deadline = Date.now() + 60_000;
    let notified = '';
    while (notified === '' && Date.now() < deadline) {
      notified = await readFile(out, 'utf8').catch(() => '');
      if (notified === '') await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(notified.trim()).toBe(`${path.join(temp.dir, 'extra-ca.pem')} unset`);
  });

  it('walvault keeps it (check and status may connect to PostgreSQL over TLS)', async () => {
    const help = await seenByNode('walvault', ['--help']);
    expect(help.result, help.result.stderr).toMatchObject({ code: 0 });
    expect(help.seen).toEqual(['bundle unset']);
  });
});

/** Runs a launcher with `sh -x` (in `cwd`, the data directory by default): its stderr then also shows the commands the launcher ran. */
function runTraced(launcher: string, args: string[], env: Record<string, string> = {}, cwd = dataDir): Promise<RunResult> {
  const clean: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALVAULT_') && key !== 'NODE_OPTIONS' && value !== undefined) clean[key] = value;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-x', launcher, ...args], { cwd, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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

describe('node options per launcher', () => {
  it('walvault (operator commands) runs Node with a 1 MiB young generation, backup also without the compilers and with a fixed mmap threshold; archive and restore with the defaults', async () => {
    const record = path.join(temp.dir, 'node-args');
    const wrapper = path.join(temp.dir, 'node-recording-args');
    // Records node's options (its arguments before the script) and glibc's mmap threshold from the environment.
    await writeFile(wrapper, `#!/bin/sh\nfor a in "$@"; do case $a in -*) printf '%s ' "$a" >> '${record}' ;; *) break ;; esac; done\necho "mmap=\${MALLOC_MMAP_THRESHOLD_-unset}" >> '${record}'\nexec node "$@"\n`, { mode: 0o755 });
    const env = { WALVAULT_NODE: wrapper };
    expect((await run('walvault', ['exit-codes'], { cwd: dataDir, env })).code).toBe(0);
    expect((await run('walvault', ['backup', '--help'], { cwd: dataDir, env })).code).toBe(0);
    expect((await run('walvault', ['--quiet', 'backup', '--help'], { cwd: dataDir, env })).code).toBe(0);
    expect((await run('walvault', ['restore-backup', '--help'], { cwd: dataDir, env })).code).toBe(0);
    expect((await run('walvault', ['verify', '--help'], { cwd: dataDir, env })).code).toBe(0);
    expect((await run('walvault-restore', [`--repo=${repo}`, '--prefetch=0', '00000009.history', 'pg_wal/RECOVERYHISTORY'], { cwd: dataDir, env })).code).toBe(1);
    const operator = '--max-semi-space-size=1 mmap=unset';
    const backup = '--max-semi-space-size=1 --no-turbofan --no-maglev --no-sparkplug --optimize-for-size mmap=2097152';
    expect((await readFile(record, 'utf8')).split('\n').map((line) => line.trim())).toEqual([operator, backup, backup, operator, operator, 'mmap=unset', '']);
  });
});

describe('forced collections without --expose-gc', () => {
  it('a 16 MiB restore collects every 4 MiB (gc() made at run time; node starts without the flag)', async () => {
    const name = '000000010000000000000008';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(16 << 20, 'startup-8'));
    const archived = await run('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', source, name], { cwd: dataDir });
    expect(archived.code, archived.stderr).toBe(0);
    const loader = path.join(path.dirname(bin('walvault-restore')), 'walvault-restore.cjs');
    const traced = spawnSync(process.execPath, ['--trace-gc', loader, `--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, encoding: 'utf8' });
    expect(traced.status, traced.stderr).toBe(0);
    // V8's --trace-gc names a collection that gc() asked for "testing".
    const forced = traced.stdout.split('\n').filter((line) => line.includes('testing'));
    expect(forced.length).toBeGreaterThanOrEqual(3);
  });
});

describe('the start-up bundle', () => {
  const projectDist = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../dist');
  const fromBundle = (line: string | undefined): boolean => line !== undefined && /walvault-(archive|restore)\.cjs /.test(line);

  it('archive and restore start from it, in one node run, with the code cache the build recorded', async () => {
    const name = '000000010000000000000006';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-6'));
    const archived = await runTraced(bin('walvault-archive'), [`--repo=${repo}`, '--push-ahead=0', source, name]);
    expect(archived.code, archived.stderr).toBe(0);
    expect(nodeRuns(archived.stderr)).toHaveLength(1);
    expect(fromBundle(nodeRuns(archived.stderr)[0])).toBe(true);
    expect(archived.stderr).toContain(`walvault-archive: info: archived "${name}"`);
    const restored = await runTraced(bin('walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG']);
    expect(restored.code, restored.stderr).toBe(0);
    expect(nodeRuns(restored.stderr)).toHaveLength(1);
    expect(fromBundle(nodeRuns(restored.stderr)[0])).toBe(true);
    expect((await readFile(path.join(dataDir, 'pg_wal/RECOVERYXLOG'))).equals(await readFile(path.join(dataDir, source)))).toBe(true);
    // --help's code is initialised on first use.
    const help = await runTraced(bin('walvault-restore'), ['--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(nodeRuns(help.stderr)).toHaveLength(1);
    expect(help.stdout).toContain("restore_command = 'walvault-restore --repo=URL %f %p'");
  });

  it('through a symbolic link (npm links the bin entries), and by a relative path, the launcher finds its bundle', async () => {
    const linkDir = path.join(temp.dir, 'bin');
    await mkdir(linkDir, { recursive: true });
    // A relative link, as npm makes them (node_modules/.bin/walvault-restore -> ../walvault/dist/cli/walvault-restore).
    await symlink(path.relative(linkDir, bin('walvault-restore')), path.join(linkDir, 'walvault-restore'));
    const linked = await runTraced(path.join(linkDir, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', '00000009.history', 'pg_wal/RECOVERYHISTORY']);
    expect(linked.code, linked.stderr).toBe(1);
    expect(linked.stderr).toContain('"00000009.history" not found');
    expect(fromBundle(nodeRuns(linked.stderr)[0])).toBe(true);
    // Started as `sh walvault-restore` from its own folder ($0 without a slash).
    const cliDir = path.dirname(bin('walvault-restore'));
    const relative = await runTraced('walvault-restore', [`--repo=${repo}`, '--prefetch=0', '00000009.history', path.join(dataDir, 'pg_wal/RECOVERYHISTORY')], {}, cliDir);
    expect(relative.code, relative.stderr).toBe(1);
    expect(fromBundle(nodeRuns(relative.stderr)[0])).toBe(true);
  });

  it('a damaged, foreign or missing code cache only costs the compilation; without the bundle the ES modules run', async () => {
    // A private copy of dist, to damage; it records its cache again, as an install may (package.json
    // postinstall), which checks make-code-cache itself.
    const copy = path.join(temp.dir, 'package');
    await cp(projectDist, path.join(copy, 'dist'), { recursive: true, preserveTimestamps: true });
    await symlink(path.join(projectDist, '../node_modules'), path.join(copy, 'node_modules'));
    const cli = path.join(copy, 'dist/cli');
    const cacheFile = path.join(cli, 'walvault-bundle.cjs.cache');
    await rm(cacheFile);
    const made = spawnSync(process.execPath, [path.join(cli, 'make-code-cache.js')], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    expect(made.stderr).toBe('');
    const recorded = await readFile(cacheFile);
    const header = recorded.subarray(0, recorded.indexOf(10) + 1);
    const name = '000000010000000000000007';
    const source = await writeWalFile(dataDir, name, pseudoRandomBytes(1 << 20, 'startup-7'));
    let archivedOnce = false;
    /** Archives (then "already archived"), restores and asks for a missing file; returns what the trace said of the cache. */
    const roundTrip = async (): Promise<string[]> => {
      const seen: string[] = [];
      const trace = path.join(temp.dir, 'cache-trace');
      const env = { WALVAULT_TEST_MODULE_TRACE: trace };
      const archived = await runTraced(path.join(cli, 'walvault-archive'), [`--repo=${repo}`, '--push-ahead=0', source, name], env);
      expect(archived.code, archived.stderr).toBe(0);
      expect(archived.stderr).toContain(archivedOnce ? 'already archived' : `archived "${name}"`);
      archivedOnce = true;
      const restored = await runTraced(path.join(cli, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG'], env);
      expect(restored.code, restored.stderr).toBe(0);
      expect((await readFile(path.join(dataDir, 'pg_wal/RECOVERYXLOG'))).equals(await readFile(path.join(dataDir, source)))).toBe(true);
      const missing = await runTraced(path.join(cli, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', '00000009.history', 'pg_wal/RECOVERYHISTORY'], env);
      expect(missing.code, missing.stderr).toBe(1);
      expect(missing.stderr).toContain('"00000009.history" not found');
      for (const result of [archived, restored, missing]) expect(nodeRuns(result.stderr)).toHaveLength(1);
      seen.push(...(await readFile(trace, 'utf8')).split('\n').filter((line) => line.startsWith('code-cache:')));
      await rm(trace, { force: true });
      return seen;
    };
    expect(await roundTrip()).toEqual(['code-cache:accepted', 'code-cache:accepted', 'code-cache:accepted']);
    // Garbage under this bundle's header: V8 rejects it and compiles.
    await writeFile(cacheFile, Buffer.concat([header, Buffer.alloc(100_000, 7)]));
    expect(await roundTrip()).toEqual(['code-cache:rejected', 'code-cache:rejected', 'code-cache:rejected']);
    // The recorded cache and a bundle of another build: not even offered to V8. Another build id at
    // the same size, then the same id with other content (another size).
    await writeFile(cacheFile, recorded);
    const bundleFile = path.join(cli, 'walvault-bundle.cjs');
    const original = await readFile(bundleFile, 'utf8');
    const later = new Date(Date.now() + 60_000);
    await writeFile(bundleFile, original.replace(/^\/\/ walvault-bundle [0-9a-f]{32}\n/, `// walvault-bundle ${'0'.repeat(32)}\n`));
    await utimes(bundleFile, later, later);
    expect(await roundTrip()).toEqual(['code-cache:none', 'code-cache:none', 'code-cache:none']);
    await writeFile(bundleFile, `${original}\n// another build`);
    await utimes(bundleFile, later, later);
    expect(await roundTrip()).toEqual(['code-cache:none', 'code-cache:none', 'code-cache:none']);
    // Copied or installed elsewhere (another inode, another mtime), the same build keeps its cache.
    await writeFile(bundleFile, original);
    await utimes(bundleFile, later, later);
    expect(await roundTrip()).toEqual(['code-cache:accepted', 'code-cache:accepted', 'code-cache:accepted']);
    await rm(cacheFile);
    expect(await roundTrip()).toEqual(['code-cache:none', 'code-cache:none', 'code-cache:none']);

    // The bundle missing (a build stopped before it): the ES modules run.
    await rm(bundleFile);
    const noBundle = await runTraced(path.join(cli, 'walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG']);
    expect(noBundle.code, noBundle.stderr).toBe(0);
    expect(nodeRuns(noBundle.stderr).map(fromBundle)).toEqual([false]);
    expect(nodeRuns(noBundle.stderr)[0]).toContain('walvault-restore.js');
    // WALVAULT_NO_BUNDLE asks for the ES modules too.
    const asked = await runTraced(bin('walvault-restore'), [`--repo=${repo}`, '--prefetch=0', name, 'pg_wal/RECOVERYXLOG'], { WALVAULT_NO_BUNDLE: '1' });
    expect(asked.code, asked.stderr).toBe(0);
    expect(nodeRuns(asked.stderr).map(fromBundle)).toEqual([false]);
  });
});
