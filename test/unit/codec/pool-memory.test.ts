// Bounded memory through the codec worker pool: a 1 GiB segment (the largest wal_segment_size) grows the RSS
// (worker threads' heaps included) by less than the bound the calling thread is held to (memory.test.ts),
// and little more than a 256 MiB one. Measured: RSS still creeps up with the data through a worker
// (lz4 encode: 131 MiB peak at 256 MiB, 164 at 1 GiB, 174 at 2 GiB; 105 at 1 GiB on the calling thread).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const child = path.join(root, 'test/support/codec-pool-memory-child.mjs');

/** What the child reports. */
interface PoolMemoryReport {
  same: boolean;
  baselineMiB: number;
  peakMiB: number;
  seconds: number;
  workers: number;
  jobsInWorkers: number;
}

let identity = '';
let recipient = '';

beforeAll(async () => {
  if (!existsSync(path.join(root, 'dist/codec/worker.js'))) throw new Error('dist/ is missing: run npm run build (npm test does) before this test');
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
});

function stream(codec: string, mebibytes: number, options: { encrypted: boolean; encodeOnly: boolean }): PoolMemoryReport {
  const args = [child, path.join(root, 'dist'), codec, String(mebibytes), '1', ...(options.encrypted ? [recipient, identity] : [])];
  const env = { ...process.env, THREADS: '1', ...(options.encodeOnly ? { ENCODE_ONLY: '1' } : {}) };
  const report = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', env })) as PoolMemoryReport;
  console.log(`pool memory: ${codec}${options.encrypted ? '+age' : ''}${options.encodeOnly ? ' encode' : ' encode+decode'} ${mebibytes} MiB in ${report.seconds.toFixed(1)} s, RSS ${report.baselineMiB.toFixed(0)} -> peak ${report.peakMiB.toFixed(0)} MiB, ${report.jobsInWorkers} jobs in ${report.workers} worker(s)`);
  return report;
}

describe('the codec pool keeps memory bounded at any segment size', () => {
  it.each([
    ['zstd', true, true],
    ['lz4', false, true],
  ] as const)('%s (encrypted %s, encode only %s): 1 GiB peaks within 48 MiB of 256 MiB, growth under 128 MiB, through a worker thread', (codec, encrypted, encodeOnly) => {
    const small = stream(codec, 256, { encrypted, encodeOnly });
    const large = stream(codec, 1024, { encrypted, encodeOnly });
    expect(small.same).toBe(true);
    expect(large.same).toBe(true);
    expect(large.workers).toBe(1);
    expect(large.jobsInWorkers).toBeGreaterThan(0);
    expect(large.peakMiB - small.peakMiB).toBeLessThan(48);
    // The existing bound for the calling thread (memory.test.ts): growth by caches and blocks in flight, never by the data.
    expect(large.peakMiB - large.baselineMiB).toBeLessThan(128);
  });
});
