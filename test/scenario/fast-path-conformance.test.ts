// Conformance of the fast path (issue 17): each scenario runs once through the installed launcher and
// once through Node alone (the compiled entry point, no launcher), from identical starting states; both
// must give the same exit code and leave the same repository (and, restore, the same file at %p).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { run, type RunResult } from '../support/cli.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';
import { killWorker, makeReady, markDone, waitForWorkerExit } from '../support/spool.js';
import { segmentFileName } from '../../src/wal/names.js';

const MiB = 1 << 20;
const seg = (timeline: number, n: number): string => segmentFileName(timeline, BigInt(n), 16 * MiB);
const dist = fileURLToPath(new URL('../../dist/cli/', import.meta.url));

type Via = 'launcher' | 'node';
type Program = 'walvault-archive' | 'walvault-restore';

/** One run of a scenario: its own data directory, repositories and spool. */
interface World {
  via: Via;
  dir: string;
  dataDir: string;
  spool: string;
  repo: (name: string) => string;
  /** Runs a program as PostgreSQL would (through the launcher, or Node alone); resolves when it exits. */
  call: (program: Program, args: string[], env?: Record<string, string>) => Promise<RunResult>;
}

const temps: Array<{ dir: string; remove(): Promise<void> }> = [];
const worlds: World[] = [];
afterEach(async () => {
  for (const world of worlds.splice(0)) {
    await killWorker(world.spool, 'archive');
    await killWorker(world.spool, 'restore');
  }
  for (const temp of temps.splice(0)) await temp.remove();
});

/** Runs the compiled entry point with node (no launcher), with the same environment rules as run(). */
function runNode(program: Program, args: string[], cwd: string, env: Record<string, string>): Promise<RunResult> {
  const clean: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALVAULT_') && value !== undefined) clean[key] = value;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(dist, `${program}.js`), ...args], { cwd, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => setTimeout(() => resolve({ code, signal, stdout, stderr, durationMs: performance.now() - started }), 30));
  });
}

async function makeWorld(via: Via): Promise<World> {
  const temp = await makeTempDir();
  temps.push(temp);
  const dataDir = path.join(temp.dir, 'data');
  await mkdir(path.join(dataDir, 'pg_wal', 'archive_status'), { recursive: true });
  const world: World = {
    via,
    dir: temp.dir,
    dataDir,
    spool: path.join(dataDir, 'pg_wal', 'walvault'),
    repo: (name) => path.join(temp.dir, `repo-${name}`),
    call: (program, args, env = {}) => (via === 'launcher' ? run(program, args, { cwd: dataDir, env, waitFor: 'exit' }) : runNode(program, args, dataDir, env)),
  };
  for (const name of ['A', 'B']) await mkdir(world.repo(name));
  worlds.push(world);
  return world;
}

/** Every stored object of a repository, by key, with a hash of its bytes (temp files left by a kill excluded; the cluster record by presence). */
async function repositoryState(root: string): Promise<Record<string, string>> {
  const state: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (!entry.name.includes('~tmp~')) state[path.relative(root, full)] = entry.name === 'walvault.json' ? 'present' : createHash('sha256').update(await readFile(full)).digest('hex');
    }
  };
  await walk(root);
  return state;
}

/** What a scenario leaves: the exit code of its last request and the state of everything it could change. */
interface Outcome {
  code: number | null;
  repoA: Record<string, string>;
  repoB: Record<string, string>;
  restored: string | null;
}

async function outcome(world: World, result: RunResult): Promise<Outcome> {
  await waitForWorkerExit(world.spool, 'archive', { expectWorker: false, timeoutMs: 30_000, startMs: 500 });
  const restored = await readFile(path.join(world.dataDir, 'pg_wal', 'RECOVERYXLOG')).catch(() => null);
  return {
    code: result.code,
    repoA: await repositoryState(world.repo('A')),
    repoB: await repositoryState(world.repo('B')),
    restored: restored === null ? null : createHash('sha256').update(restored).digest('hex'),
  };
}

/** Runs a scenario in both worlds and compares what they leave. */
async function conforms(scenario: (world: World) => Promise<RunResult>): Promise<Outcome> {
  // Side by side: the two worlds share nothing but the machine.
  const [launcher, alone] = await Promise.all(
    (['launcher', 'node'] as const).map(async (via) => {
      const world = await makeWorld(via);
      return outcome(world, await scenario(world));
    }),
  );
  expect(launcher).toEqual(alone);
  return launcher!;
}

// --- archive ---

const backlog = [1, 2, 3, 4].map((n) => seg(1, n));

/** A backlog in pg_wal, the first file archived (which starts the pusher) and acknowledged, the pusher done. */
async function pushedAhead(world: World, args: string[], env: Record<string, string> = {}): Promise<void> {
  for (const name of backlog) await makeReady(world.dataDir, name, pseudoRandomBytes(MiB, name));
  const first = await world.call('walvault-archive', [...args, `pg_wal/${backlog[0]}`, backlog[0]!], env);
  expect(first.code, first.stderr).toBe(0);
  await waitForWorkerExit(world.spool, 'archive');
  await markDone(world.dataDir, backlog[0]!);
}

const archiveNext = (world: World, args: string[], env: Record<string, string> = {}, name = backlog[1]!): Promise<RunResult> => world.call('walvault-archive', [...args, `pg_wal/${name}`, name], env);

describe('fast path conformance: archive', () => {
  it('marker present', async () => {
    const result = await conforms(async (world) => {
      await pushedAhead(world, [`--repo=${world.repo('A')}`]);
      return archiveNext(world, [`--repo=${world.repo('A')}`]);
    });
    expect(result.code).toBe(0);
  });

  it('stale marker: the file under that name was replaced (another inode, other bytes)', async () => {
    const result = await conforms(async (world) => {
      await pushedAhead(world, [`--repo=${world.repo('A')}`]);
      const walPath = path.join(world.dataDir, 'pg_wal', backlog[1]!);
      await writeFile(`${walPath}.new`, pseudoRandomBytes(MiB, 'replaced'));
      await rename(`${walPath}.new`, walPath);
      return archiveNext(world, [`--repo=${world.repo('A')}`]);
    });
    expect(result.code).toBe(4);
  });

  it('options changed in argv (another repository)', async () => {
    const result = await conforms(async (world) => {
      await pushedAhead(world, [`--repo=${world.repo('A')}`]);
      return archiveNext(world, [`--repo=${world.repo('B')}`]);
    });
    expect(result.code).toBe(0);
    expect(Object.keys(result.repoB)).toContain(`wal/${backlog[1]!.slice(0, 16)}/${backlog[1]}`);
  });

  it('options changed in the environment (WALVAULT_REPO)', async () => {
    const result = await conforms(async (world) => {
      await pushedAhead(world, [], { WALVAULT_REPO: world.repo('A') });
      return archiveNext(world, [], { WALVAULT_REPO: world.repo('B') });
    });
    expect(result.code).toBe(0);
    expect(Object.keys(result.repoB)).toContain(`wal/${backlog[1]!.slice(0, 16)}/${backlog[1]}`);
  });

  it('options changed in the config file (repository A to B)', async () => {
    const result = await conforms(async (world) => {
      const config = path.join(world.dir, 'walvault.json');
      await writeFile(config, JSON.stringify({ repo: world.repo('A') }));
      await pushedAhead(world, [`--config=${config}`]);
      await writeFile(config, JSON.stringify({ repo: world.repo('B') }));
      return archiveNext(world, [`--config=${config}`]);
    });
    expect(result.code).toBe(0);
    expect(Object.keys(result.repoB)).toContain(`wal/${backlog[1]!.slice(0, 16)}/${backlog[1]}`);
  });

  it('spool deleted', async () => {
    const result = await conforms(async (world) => {
      await pushedAhead(world, [`--repo=${world.repo('A')}`]);
      await rm(world.spool, { recursive: true, force: true });
      return archiveNext(world, [`--repo=${world.repo('A')}`]);
    });
    expect(result.code).toBe(0);
  });

  it('worker dead (its pid file and its claim name a killed process; it placed no marker for the file)', async () => {
    const result = await conforms(async (world) => {
      await pushedAhead(world, [`--repo=${world.repo('A')}`]);
      const id = await recordId(world);
      const dead = spawn('true');
      await new Promise((resolve) => dead.on('exit', resolve));
      await writeFile(path.join(world.spool, 'archive.pid'), `${dead.pid} pushing ${id}\n`);
      await writeFile(path.join(world.spool, 'archive.work', backlog[1]!), `${dead.pid} ${id}\n`);
      await rm(path.join(world.spool, `archive.${id}`, backlog[1]!), { force: true });
      return archiveNext(world, [`--repo=${world.repo('A')}`]);
    });
    expect(result.code).toBe(0);
  });

  it('worker loading (a live process reserved the lock for these options and has not taken it yet)', async () => {
    const result = await conforms(async (world) => {
      await pushedAhead(world, [`--repo=${world.repo('A')}`]);
      const id = await recordId(world);
      await rm(path.join(world.spool, `archive.${id}`, backlog[1]!), { force: true });
      const loading = spawn('sleep', ['20'], { stdio: 'ignore' });
      try {
        await writeFile(path.join(world.spool, 'archive.pid'), `${loading.pid} starting ${id}\n`);
        return await archiveNext(world, [`--repo=${world.repo('A')}`]);
      } finally {
        loading.kill('SIGKILL');
      }
    });
    expect(result.code).toBe(0);
  });
});

/** The fingerprint in the archive record Node wrote (src/policy/SPOOL.md, "Records"). */
async function recordId(world: World): Promise<string> {
  const record = await readFile(path.join(world.spool, 'archive.record.sh'), 'utf8');
  const id = /^wv_v_id='([0-9a-f]{16})'$/m.exec(record)?.[1];
  expect(id).toBeDefined();
  return id!;
}

// --- restore ---

/** Fills repository A with segments of timelines 1 and 2, archived synchronously. */
async function archived(world: World, names: string[]): Promise<void> {
  const source = path.join(world.dir, 'primary');
  await mkdir(source, { recursive: true });
  for (const name of names) {
    const walPath = await writeWalFile(source, name, pseudoRandomBytes(MiB, name));
    const result = await run('walvault-archive', [`--repo=${world.repo('A')}`, '--push-ahead=0', walPath, name], { cwd: source });
    expect(result.code, result.stderr).toBe(0);
  }
  await writeFile(path.join(world.dataDir, 'recovery.signal'), '');
}

const restore = (world: World, name: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> => world.call('walvault-restore', [`--repo=${world.repo('A')}`, ...args, name, 'pg_wal/RECOVERYXLOG'], env);

describe('fast path conformance: restore', () => {
  const tl1 = [1, 2, 3, 4].map((n) => seg(1, n));
  const ways: Array<[string, (world: World) => Promise<{ args: string[]; env: Record<string, string> }>]> = [
    ['by flag', async () => ({ args: ['--prefetch', '0'], env: {} })],
    ['by environment', async () => ({ args: [], env: { WALVAULT_PREFETCH: '0' } })],
    [
      'by config file',
      async (world) => {
        const config = path.join(world.dir, 'off.json');
        await writeFile(config, JSON.stringify({ prefetch: 0 }));
        return { args: [`--config=${config}`], env: {} };
      },
    ],
  ];
  for (const [how, setting] of ways) {
    it(`prefetch off ${how}`, async () => {
      const result = await conforms(async (world) => {
        await archived(world, tl1);
        const { args, env } = await setting(world);
        expect((await restore(world, tl1[0]!, args, env)).code).toBe(0);
        await sleep(200);
        expect((await readdir(world.spool).catch(() => [] as string[])).filter((name) => name.startsWith('restore.'))).toEqual([]);
        return restore(world, tl1[1]!, args, env);
      });
      expect(result.code).toBe(0);
    });
  }

  it('recovery on another timeline: what was prefetched for the old one is never handed over', async () => {
    const tl2 = seg(2, 3);
    const result = await conforms(async (world) => {
      await archived(world, [...tl1, tl2]);
      expect((await restore(world, tl1[0]!, ['--prefetch=2'])).code).toBe(0);
      expect((await restore(world, tl1[1]!, ['--prefetch=2'])).code).toBe(0);
      return restore(world, tl2, ['--prefetch=2']);
    });
    expect(result.code).toBe(0);
    expect(result.restored).toBe(createHash('sha256').update(pseudoRandomBytes(MiB, tl2)).digest('hex'));
  });
});
