#!/usr/bin/env node
// Codec benchmark: encode/decode MB/s and compression ratio per codec and level on WAL segments
// (real ones from --wal-dir, else generated WAL-like bytes). Uses the built dist/ (npm run build).
// Importable: `benchCodecs(options)` returns the rows; the throughput benchmark folds them into its table.
//
// Usage: node scripts/bench-codec.mjs [--segments N] [--wal-dir DIR] [--age] [--streams S] [--threads T] [--wasm-zstd]
//                                     [--cases codec:level,...] (e.g. --cases lz4:1,zstd:3; default: DEFAULT_CASES)
// --streams S encodes and decodes S segments at once (as the pusher and the prefetcher do), which
// starts the codec worker pool (src/codec/pool.ts); --threads T sets its worker threads (default:
// cores - 1; 0 runs every job on the calling thread); --wasm-zstd uses the WASM zstd even where
// node:zlib has zstd (Node 22.15 and later). The first line says which zstd and how many threads ran.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Codec/level pairs measured by default: each codec's fastest, default and strongest level. */
export const DEFAULT_CASES = [
  { codec: 'none' },
  { codec: 'lz4', level: 1 },
  { codec: 'gzip', level: 1 },
  { codec: 'gzip', level: 6 },
  { codec: 'zstd', level: 1 },
  { codec: 'zstd', level: 3 },
  { codec: 'zstd', level: 9 },
  { codec: 'zstd', level: 19 },
];

/** WAL-like bytes when no real WAL is at hand: 8 KiB pages of row-shaped records, a zeroed tail. */
export function walLikeSegment(size = 16 << 20, seed = 1) {
  const data = Buffer.alloc(size);
  let state = seed >>> 0;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
  const filled = Math.floor(size * 0.85);
  for (let page = 0; page < filled; page += 8192) {
    data.writeUInt16LE(0xd110, page);
    let offset = page + 24;
    const end = Math.min(page + 8192, filled);
    while (offset + 96 <= end) {
      const length = 48 + (next() % 48);
      data.writeUInt32LE(length, offset);
      data.writeUInt32LE(next() % 4096, offset + 4);
      data.write(`row ${next() % 997} customer name ${next() % 31} `, offset + 12, length - 28, 'latin1');
      for (let index = offset + length - 16; index < offset + length - 8; index += 1) data[index] = next() & 0xff;
      offset += length;
    }
  }
  return data;
}

/** Loads up to `limit` WAL segments (24-hex-digit names) from a directory. */
export async function loadWalSegments(directory, limit = 8) {
  const names = (await readdir(directory)).filter((name) => /^[0-9A-F]{24}$/.test(name)).sort().slice(0, limit);
  return Promise.all(names.map((name) => readFile(path.join(directory, name))));
}

async function drain(segment, transforms) {
  let bytes = 0;
  const sink = new Writable({ write(chunk, _encoding, done) { bytes += chunk.length; done(); } });
  const chunks = function* () { for (let offset = 0; offset < segment.length; offset += 1 << 20) yield segment.subarray(offset, offset + (1 << 20)); };
  await pipeline([Readable.from(chunks()), ...transforms, sink]);
  return bytes;
}

async function collect(segment, transforms) {
  const parts = [];
  const sink = new Writable({ write(chunk, _encoding, done) { parts.push(chunk); done(); } });
  await pipeline([Readable.from([segment]), ...transforms, sink]);
  return Buffer.concat(parts);
}

/**
 * Measures each case on `segments`: encode MB/s and decode MB/s (original bytes per second),
 * stored bytes per segment, ratio. `recipients`/`identities` add age encryption to every case.
 */
export async function benchCodecs({ segments, cases = DEFAULT_CASES, recipients = [], identities = [], streams = 1 } = {}) {
  const { createEncoder, createDecoder } = await import(pathToFileURL(path.join(root, 'dist/codec/index.js')).href);
  // `streams` segments at a time, each its own encoder (or decoder), as the pusher runs its archives.
  const inBatches = async (items, run) => {
    const out = [];
    for (let index = 0; index < items.length; index += streams) out.push(...(await Promise.all(items.slice(index, index + streams).map(run))));
    return out;
  };
  const original = segments.reduce((sum, segment) => sum + segment.length, 0);
  const rows = [];
  for (const { codec, level } of cases) {
    // Warm-up (module load, WASM instantiation, JIT) outside the timing: archive_command pays it per
    // process, but it is a start-up cost, not throughput.
    const warm = await createEncoder({ compress: codec, level, recipients });
    const warmStored = await collect(segments[0].subarray(0, 1 << 20), warm.transforms);
    await drain(warmStored, await createDecoder({ codec: warm.codec, encryption: warm.encryption }, { identities }));
    let started = performance.now();
    const stored = await inBatches(segments, async (segment) => collect(segment, (await createEncoder({ compress: codec, level, recipients })).transforms));
    const encodeSeconds = (performance.now() - started) / 1000;
    const meta = await createEncoder({ compress: codec, level, recipients });
    started = performance.now();
    await inBatches(stored, async (object) => drain(object, await createDecoder({ codec: meta.codec, encryption: meta.encryption }, { identities })));
    const decodeSeconds = (performance.now() - started) / 1000;
    const storedBytes = stored.reduce((sum, object) => sum + object.length, 0);
    rows.push({
      codec,
      level: level ?? null,
      encrypted: recipients.length > 0,
      segments: segments.length,
      encodeMBps: original / 1e6 / encodeSeconds,
      decodeMBps: original / 1e6 / decodeSeconds,
      segmentsPerSecond: segments.length / encodeSeconds,
      storedBytesPerSegment: Math.round(storedBytes / segments.length),
      ratio: original / storedBytes,
    });
  }
  return rows;
}

/** Formats rows as a fixed-width table. */
export function formatRows(rows) {
  const lines = ['codec  level  age  encode MB/s  decode MB/s  segments/s  stored bytes/segment  ratio'];
  for (const row of rows) {
    lines.push(
      [row.codec.padEnd(6), String(row.level ?? '-').padStart(5), (row.encrypted ? 'yes' : 'no').padStart(4), row.encodeMBps.toFixed(0).padStart(12), row.decodeMBps.toFixed(0).padStart(12), row.segmentsPerSecond.toFixed(1).padStart(11), String(row.storedBytesPerSegment).padStart(21), row.ratio.toFixed(2).padStart(6)].join(' '),
    );
  }
  return lines.join('\n');
}

async function main() {
  const args = process.argv.slice(2);
  const option = (name) => { const index = args.indexOf(name); return index >= 0 ? args[index + 1] : undefined; };
  const walDir = option('--wal-dir');
  const count = Number(option('--segments') ?? 4);
  const streams = Number(option('--streams') ?? 1);
  const pool = await import(pathToFileURL(path.join(root, 'dist/codec/pool.js')).href);
  const zstd = await import(pathToFileURL(path.join(root, 'dist/codec/zstd.js')).href);
  if (option('--threads') !== undefined) pool.configureCodecPool({ threads: Number(option('--threads')) });
  if (args.includes('--wasm-zstd')) zstd.preferNativeZstd(false);
  // Started ahead, so that the rows measure the running pool, not its start (the pusher pays that once).
  const ready = streams > 1 ? await pool.startCodecPool() : 0;
  console.log(`Node ${process.version}, zstd: ${zstd.hasNativeZstd() ? 'node:zlib' : 'WASM'}, ${streams} stream(s) at once, ${ready} worker thread(s) ready`);
  const segments = walDir ? await loadWalSegments(walDir, count) : Array.from({ length: count }, (_, index) => walLikeSegment(16 << 20, index + 1));
  if (segments.length === 0) throw new Error(`no WAL segments in "${walDir}"`);
  console.log(`${segments.length} segment(s) of ${walDir ? `real WAL from "${walDir}"` : 'generated WAL-like data'}, ${(segments[0].length / 2 ** 20).toFixed(0)} MiB each`);
  const cases = option('--cases')?.split(',').map((item) => { const [codec, level] = item.split(':'); return level === undefined ? { codec } : { codec, level: Number(level) }; });
  console.log(formatRows(await benchCodecs({ segments, streams, ...(cases ? { cases } : {}) })));
  if (args.includes('--age')) {
    const age = await import('age-encryption');
    const identity = await age.generateX25519Identity();
    const recipients = [await age.identityToRecipient(identity)];
    console.log(formatRows(await benchCodecs({ segments, cases: [{ codec: 'none' }, { codec: 'lz4', level: 1 }, { codec: 'zstd', level: 3 }], recipients, identities: [identity], streams })));
  }
  if (streams > 1) {
    const state = pool.codecPoolState();
    console.log(`pool: ${state.jobsInWorkers} jobs in worker threads, ${state.jobsOnCaller} on the calling thread, at most ${state.peakJobsInFlight} in flight (limit ${state.jobLimit})`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
