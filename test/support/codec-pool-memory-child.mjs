// Child process for the pool memory test: STREAMS streams of N MiB of WAL-like bytes each, at once, through
// encode then decode with the codec pool in use (built dist/), checks the bytes that come out, and prints
// the process's RSS (main thread and worker threads together) at its start, baseline and peak as JSON.
// THREADS in the environment overrides the pool's thread count (0: every job on the calling thread);
// ENCODE_ONLY=1 encodes only (as walvault-archive does), else encode then decode in one pipeline.
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const [distDir, codec, mebibytes, streams, recipient, identity] = process.argv.slice(2);
if (streams === undefined) throw new Error('usage: codec-pool-memory-child.mjs DIST_DIR CODEC MIB STREAMS [RECIPIENT IDENTITY]');
const startRss = process.memoryUsage().rss;
const { createEncoder, createDecoder } = await import(`${distDir}/codec/index.js`);
const pool = await import(`${distDir}/codec/pool.js`);
const { HashingStream } = await import(`${distDir}/core/hash.js`);
// One stream alone would run on the calling thread: count it as enough to start the pool.
pool.configureCodecPool({ minStreams: 1, ...(process.env.THREADS ? { threads: Number(process.env.THREADS) } : {}) });
await pool.startCodecPool();
const total = Number(mebibytes) * 2 ** 20;

// One MiB of WAL-like data, varied per chunk so that compressors cannot just repeat a long match.
const base = Buffer.alloc(1 << 20);
for (let offset = 0; offset < base.length; offset += 64) base.write(`row ${offset % 9973} name ${(offset * 7) % 131} `, offset, 'latin1');

/** @param {number} seed */
async function oneStream(seed) {
  const inputHash = createHash('sha1');
  const outputHash = createHash('sha1');
  let outputBytes = 0;
  const input = Readable.from((function* () {
    for (let index = 0; index < total / 2 ** 20; index += 1) {
      const chunk = Buffer.from(base);
      for (let offset = 0; offset < chunk.length; offset += 4096) chunk.writeUInt32LE((index * 2654435761 + offset + seed) >>> 0, offset);
      inputHash.update(chunk);
      yield chunk;
    }
  })());
  const sink = new Writable({ highWaterMark: 1 << 16, write(chunk, _e, done) { outputHash.update(chunk); outputBytes += chunk.length; done(); } });
  const encoder = await createEncoder({ compress: codec, recipients: recipient ? [recipient] : [] });
  const decoder = await createDecoder({ codec: encoder.codec, encryption: encoder.encryption }, { identities: identity ? [identity] : [] });
  // As archive and restore run them: hashing the original before encoding and after decoding (which also
  // collects the garbage of the main thread's transfers, see collectGarbageAfter in src/core/hash.ts).
  if (process.env.ENCODE_ONLY) { await pipeline([input, await HashingStream.create(), ...encoder.transforms, new Writable({ write(_chunk, _encoding, done) { done(); } })]); return true; }
  await pipeline([input, await HashingStream.create(), ...encoder.transforms, ...decoder, await HashingStream.create(), sink]);
  return outputBytes === total && inputHash.digest('hex') === outputHash.digest('hex');
}

global.gc?.();
const baseline = process.memoryUsage().rss;
let peak = baseline;
const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 10);
const started = performance.now();
const results = await Promise.all(Array.from({ length: Number(streams) }, (_, index) => oneStream(index * 7919)));
clearInterval(sampler);
peak = Math.max(peak, process.memoryUsage().rss);
const state = pool.codecPoolState();
process.stdout.write(JSON.stringify({ codec, encrypted: Boolean(recipient), streams: Number(streams), same: results.every(Boolean), startMiB: startRss / 2 ** 20, baselineMiB: baseline / 2 ** 20, peakMiB: peak / 2 ** 20, seconds: (performance.now() - started) / 1000, workers: state.workers, jobsInWorkers: state.jobsInWorkers }) + '\n');
