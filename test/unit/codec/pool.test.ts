// The codec worker pool (src/codec/pool.ts) through the built dist/ (a worker thread runs dist/codec/worker.js):
// round trips, many streams at once, the same bytes as on the calling thread, and a worker lost mid-stream.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { runThrough, walLikeData } from '../../support/codec.js';
import { makeTempDir } from '../../support/tmp.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dist = (file: string): string => pathToFileURL(path.join(root, 'dist', file)).href;

let codec: typeof import('../../../src/codec/index.js');
let pool: typeof import('../../../src/codec/pool.js');
let identity = '';
let recipient = '';
let temp: { dir: string; remove(): Promise<void> };

beforeAll(async () => {
  if (!existsSync(path.join(root, 'dist/codec/worker.js'))) throw new Error('dist/codec/worker.js is missing: run npm run build (npm test does) before this test');
  codec = (await import(dist('codec/index.js'))) as typeof codec;
  pool = (await import(dist('codec/pool.js'))) as typeof pool;
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  temp = await makeTempDir();
});
afterAll(() => temp.remove());

beforeEach(async () => {
  // Every stream goes through the pool, even alone (the default waits for two busy streams), zstd
  // too where Node has its own (which would otherwise run in libuv's threads: native-zstd.test.ts),
  // with its workers ready (jobs would run on the calling thread while they start).
  pool.configureCodecPool({ threads: 2, minStreams: 1 });
  ((await import(dist('codec/zstd.js'))) as typeof import('../../../src/codec/zstd.js')).preferNativeZstd(false);
  expect(await pool.startCodecPool()).toBe(2);
});

const COMBOS = ['lz4', 'zstd', 'gzip', 'none'].flatMap((compress) => [
  { compress, encrypted: false },
  { compress, encrypted: true },
]);

async function roundTrip(data: Buffer, compress: string, encrypted: boolean, chunk = 100_003): Promise<{ stored: Buffer; restored: Buffer }> {
  const encoder = await codec.createEncoder({ compress, recipients: encrypted ? [recipient] : [] });
  const stored = await runThrough(data, encoder.transforms, chunk);
  const decoder = await codec.createDecoder({ codec: encoder.codec, encryption: encoder.encryption }, { identities: [identity] });
  return { stored, restored: await runThrough(stored, decoder, 77_777) };
}

describe('round trips through the worker pool', () => {
  it.each(COMBOS)('$compress, encrypted $encrypted: awkward sizes come back byte for byte, and the jobs ran in worker threads', async ({ compress, encrypted }) => {
    const before = pool.codecPoolState().jobsInWorkers;
    for (const size of [0, 1, 65_537, (4 << 20) - 1, (4 << 20) + 1, 9 << 20]) {
      const data = walLikeData(size, size + 7);
      const { restored } = await roundTrip(data, compress, encrypted);
      expect(restored.length, `${size} bytes`).toBe(data.length);
      expect(restored.equals(data), `${size} bytes`).toBe(true);
    }
    // gzip runs in node:zlib's own threads, and 'none' without encryption has no transforms: no jobs.
    if (encrypted || compress === 'lz4' || compress === 'zstd') {
      expect(pool.codecPoolState().state).toBe('running');
      expect(pool.codecPoolState().jobsInWorkers).toBeGreaterThan(before);
    }
  });

  it.each(['lz4', 'zstd'])('%s: the pool stores the same bytes as the calling thread does', async (compress) => {
    const data = walLikeData((16 << 20) + 333, 11);
    const pooled = (await roundTrip(data, compress, false, 65_536)).stored;
    pool.configureCodecPool({ threads: 0 });
    const before = pool.codecPoolState().jobsInWorkers;
    const inline = (await roundTrip(data, compress, false, 65_536)).stored;
    expect(pool.codecPoolState().jobsInWorkers).toBe(before);
    expect(pooled.equals(inline)).toBe(true);
  });

  it('a damaged frame decoded in a worker is reported as a damaged stored object (corrupt), not as a worker failure', async () => {
    const data = walLikeData(9 << 20, 5);
    const stored = (await roundTrip(data, 'zstd', false)).stored;
    stored[stored.length >> 1] = (stored[stored.length >> 1] ?? 0) ^ 0xff;
    const decoder = await codec.createDecoder({ codec: 'zstd', encryption: 'none' }, {});
    await expect(runThrough(stored, decoder)).rejects.toMatchObject({ kind: 'corrupt' });
  });

  it('a tampered age chunk opened in a worker fails authentication (corrupt)', async () => {
    const data = walLikeData(3 << 20, 6);
    const stored = (await roundTrip(data, 'none', true)).stored;
    stored[stored.length - 100_000] = (stored[stored.length - 100_000] ?? 0) ^ 1;
    const decoder = await codec.createDecoder({ codec: 'none', encryption: 'age' }, { identities: [identity] });
    await expect(runThrough(stored, decoder)).rejects.toMatchObject({ kind: 'corrupt', message: expect.stringMatching(/does not authenticate/) });
  });
});

describe('blocks handed over by their writer (core/owned.ts)', () => {
  it.each([
    ['lz4', 2],
    ['lz4', 0],
    ['zstd', 2],
    ['zstd', 0],
  ] as const)('%s with %i worker threads: each whole 1 MiB block is compressed as it is and given back once its job is done, still whole; the output equals that of copied blocks', async (compress, threads) => {
    pool.configureCodecPool({ threads });
    const owned = (await import(dist('core/owned.js'))) as typeof import('../../../src/core/owned.js');
    const data = walLikeData((5 << 20) + 4321, 5);
    const copied = await runThrough(data, (await codec.createEncoder({ compress })).transforms, 1 << 20);
    const given: Buffer[] = [];
    const blocks: Buffer[] = [];
    const encoder = (await codec.createEncoder({ compress })).transforms;
    const chunks = function* (): Generator<Buffer> {
      for (let offset = 0; offset < data.length; offset += 1 << 20) {
        const block = Buffer.from(data.subarray(offset, offset + (1 << 20)));
        // Whole blocks are handed over; the short last one is an ordinary chunk (copied by the encoder).
        if (block.length === 1 << 20) blocks.push(owned.handOver(block, (chunk) => given.push(chunk)));
        yield block;
      }
    };
    const parts: Buffer[] = [];
    await pipeline([Readable.from(chunks()), ...encoder, new Writable({
        write: (chunk: Buffer, _encoding, done) => {
          parts.push(chunk);
          done();
        },
      })]);
    expect(Buffer.concat(parts).equals(copied)).toBe(true);
    expect(blocks.length).toBe(5);
    // Jobs in two workers may finish in either order: each block once, whole and unchanged.
    expect(given.length).toBe(5);
    expect(new Set(given).size).toBe(5);
    for (const block of given) {
      const index = blocks.indexOf(block);
      expect(index).toBeGreaterThanOrEqual(0);
      expect(block.length).toBe(1 << 20);
      expect(block.equals(data.subarray(index << 20, (index + 1) << 20))).toBe(true);
    }
  });
});

describe('many streams at once', () => {
  it('24 concurrent encode+decode streams of every codec come back byte for byte, within the global job limit', async () => {
    pool.configureCodecPool({ threads: 2, minStreams: 2 });
    const before = pool.codecPoolState();
    const jobs = Array.from({ length: 24 }, (_, index) => {
      const { compress, encrypted } = COMBOS[index % COMBOS.length] as { compress: string; encrypted: boolean };
      const data = walLikeData((3 << 20) + index * 100_001, index + 100);
      return roundTrip(data, compress, encrypted, 65_536 + index).then(({ restored }) => ({ same: restored.equals(data), compress, encrypted }));
    });
    const results = await Promise.all(jobs);
    for (const result of results) expect(result, JSON.stringify(result)).toMatchObject({ same: true });
    const state = pool.codecPoolState();
    expect(state.peakJobsInFlight).toBeLessThanOrEqual(state.jobLimit);
    expect(state.jobsInFlight).toBe(0);
    expect(state.busyStreams).toBe(0);
    expect(state.workers).toBeLessThanOrEqual(2);
    expect(state.jobsInWorkers).toBeGreaterThan(before.jobsInWorkers);
  });
});

/** Waits (event loop turns, bounded) until a worker holds a job; false when `settled` came first. */
async function untilWorkerBusy(settled: () => boolean): Promise<boolean> {
  const until = Date.now() + 120_000;
  while (Date.now() < until && !settled()) {
    if (pool.codecPoolState().busyWorkers > 0) return true;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return false;
}

describe('a worker thread lost in the middle of a stream', () => {
  it('fails the stream with an internal error, never a short output; the next stream gets new workers', async () => {
    const data = walLikeData(64 << 20, 9);
    const encoder = await codec.createEncoder({ compress: 'zstd' });
    let outputBytes = 0;
    let settled = false;
    const source = Readable.from((function* () {
      for (let offset = 0; offset < data.length; offset += 1 << 16) yield data.subarray(offset, offset + (1 << 16));
    })());
    const sink = new Writable({ write(chunk: Buffer, _encoding, done) { outputBytes += chunk.length; done(); } });
    const running = pipeline([source, ...encoder.transforms, sink]).finally(() => (settled = true));
    running.catch(() => undefined);
    expect(await untilWorkerBusy(() => settled)).toBe(true);
    expect(await pool.terminateCodecWorkers()).toBeGreaterThan(0);
    await expect(running).rejects.toMatchObject({ kind: 'internal', message: expect.stringMatching(/codec worker thread stopped in the middle of a job/) });
    expect(outputBytes).toBeLessThan(data.length);
    const again = walLikeData(5 << 20, 10);
    expect(await pool.startCodecPool()).toBe(2);
    const before = pool.codecPoolState().jobsInWorkers;
    expect((await roundTrip(again, 'zstd', true)).restored.equals(again)).toBe(true);
    expect(pool.codecPoolState().state).toBe('running');
    expect(pool.codecPoolState().jobsInWorkers).toBeGreaterThan(before);
  });

  it('walvault-archive\'s policy stores nothing when the worker is lost: an error, no object, no temp file left', async () => {
    const { archiveFile } = (await import(dist('policy/archive.js'))) as typeof import('../../../src/policy/archive.js');
    const { createLocalBackend } = (await import(dist('backend/local.js'))) as typeof import('../../../src/backend/local.js');
    const { Deadline } = (await import(dist('core/deadline.js'))) as typeof import('../../../src/core/deadline.js');
    const { createLogger } = (await import(dist('core/log.js'))) as typeof import('../../../src/core/log.js');
    const repo = path.join(temp.dir, 'repo-lost');
    const dataDir = path.join(temp.dir, 'data-lost');
    await mkdir(repo);
    await mkdir(path.join(dataDir, 'pg_wal'), { recursive: true });
    const name = '000000010000000000000042';
    const source = path.join(dataDir, 'pg_wal', name);
    await writeFile(source, walLikeData(64 << 20, 42));
    const backend = createLocalBackend({ root: repo });
    const lines: string[] = [];
    let settled = false;
    const archiving = archiveFile({ backend, sourcePath: source, fileName: name, encode: { compress: 'lz4', recipients: [recipient] }, deadline: new Deadline(300_000, 'test'), log: createLogger('test', 'normal', (line) => lines.push(line)) }).finally(() => (settled = true));
    archiving.catch(() => undefined);
    expect(await untilWorkerBusy(() => settled)).toBe(true);
    await pool.terminateCodecWorkers();
    await expect(archiving).rejects.toMatchObject({ kind: 'internal' });
    expect((await backend.stat(`wal/${name.slice(0, 16)}/${name}`, { signal: new AbortController().signal })).exists).toBe(false);
    const left = (await readdir(repo, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile() && entry.name.includes(name));
    expect(left.map((entry) => entry.name)).toEqual([]);
  });
});

const TOOLS = { lz4: spawnSync('lz4', ['--version']).error === undefined, zstd: spawnSync('zstd', ['--version']).error === undefined, age: spawnSync('age', ['--version']).error === undefined };

describe('objects encoded in the pool decode with the standard tools', () => {
  it.runIf(TOOLS.lz4 && TOOLS.zstd && TOOLS.age)('`lz4 -d`, `zstd -d`, and `age -d` before them, give back the original', async () => {
    const keyFile = path.join(temp.dir, 'pool-key.txt');
    await writeFile(keyFile, `${identity}\n`, { mode: 0o600 });
    const data = walLikeData((16 << 20) + 12_345, 77);
    const tool = (command: string[], input: Buffer): Buffer => execFileSync(command[0] as string, command.slice(1), { input, maxBuffer: 64 << 20, stdio: ['pipe', 'pipe', 'ignore'] });
    for (const [compress, decompress] of [['lz4', ['lz4', '-dc']], ['zstd', ['zstd', '-dcq']]] as const) {
      const plain = (await roundTrip(data, compress, false)).stored;
      expect(tool([...decompress], plain).equals(data), compress).toBe(true);
      const sealed = (await roundTrip(data, compress, true)).stored;
      expect(tool([...decompress], tool(['age', '-d', '-i', keyFile], sealed)).equals(data), `${compress}+age`).toBe(true);
    }
    expect(pool.codecPoolState().jobsInWorkers).toBeGreaterThan(0);
  });
});
