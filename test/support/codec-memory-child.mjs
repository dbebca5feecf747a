// Child process for the memory test: streams N MiB of WAL-like bytes through encode then decode (built dist/),
// checks the bytes that come out, and prints the process's RSS before and at its peak as JSON.
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';

const [distCodec, codec, mebibytes, recipient, identity] = process.argv.slice(2);
if (distCodec === undefined) throw new Error('usage: codec-memory-child.mjs DIST_CODEC CODEC MIB [RECIPIENT IDENTITY]');
const { createEncoder, createDecoder } = await import(distCodec);
const total = Number(mebibytes) * 2 ** 20;

// One MiB of WAL-like data, varied per chunk so that compressors cannot just repeat a long match.
const base = Buffer.alloc(1 << 20);
for (let offset = 0; offset < base.length; offset += 64) base.write(`row ${offset % 9973} name ${(offset * 7) % 131} `, offset, 'latin1');
function* source() {
  for (let index = 0; index < total / 2 ** 20; index += 1) {
    const chunk = Buffer.from(base);
    for (let offset = 0; offset < chunk.length; offset += 4096) chunk.writeUInt32LE((index * 2654435761 + offset) >>> 0, offset);
    yield chunk;
  }
}

const inputHash = createHash('sha1');
const outputHash = createHash('sha1');
let outputBytes = 0;
const input = Readable.from((function* () { for (const chunk of source()) { inputHash.update(chunk); yield chunk; } })());
const sink = new Writable({ highWaterMark: 1 << 16, write(chunk, _e, done) { outputHash.update(chunk); outputBytes += chunk.length; done(); } });

const encoder = await createEncoder({ compress: codec, recipients: recipient ? [recipient] : [] });
const decoder = await createDecoder({ codec: encoder.codec, encryption: encoder.encryption }, { identities: identity ? [identity] : [] });
global.gc?.();
const baseline = process.memoryUsage().rss;
let peak = baseline;
const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
const started = performance.now();
await pipeline([input, ...encoder.transforms, ...decoder, sink]);
clearInterval(sampler);
peak = Math.max(peak, process.memoryUsage().rss);
const seconds = (performance.now() - started) / 1000;
process.stdout.write(JSON.stringify({ codec, encrypted: Boolean(recipient), bytes: outputBytes, same: outputBytes === total && inputHash.digest('hex') === outputHash.digest('hex'), baselineMiB: baseline / 2 ** 20, peakMiB: peak / 2 ** 20, growthMiB: (peak - baseline) / 2 ** 20, seconds }) + '\n');
