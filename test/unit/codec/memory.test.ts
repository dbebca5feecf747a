// Bounded memory: 256 MiB streamed through encode and decode in a child process must not grow its RSS with the data.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const distCodec = path.join(root, 'dist/codec/index.js');
const child = path.join(root, 'test/support/codec-memory-child.mjs');

/** What the child reports. */
interface MemoryReport {
  codec: string;
  encrypted: boolean;
  same: boolean;
  baselineMiB: number;
  peakMiB: number;
  growthMiB: number;
  seconds: number;
}

let identity = '';
let recipient = '';

beforeAll(async () => {
  if (!existsSync(distCodec)) throw new Error(`"${distCodec}" is missing: run npm run build (npm test does) before this test`);
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
});

function stream(codec: string, mebibytes: number, encrypted: boolean): MemoryReport {
  const args = [child, distCodec, codec, String(mebibytes), ...(encrypted ? [recipient, identity] : [])];
  const report = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' })) as MemoryReport;
  console.log(`memory: ${codec}${encrypted ? '+age' : ''} ${mebibytes} MiB in ${report.seconds.toFixed(1)} s, RSS ${report.baselineMiB.toFixed(0)} -> peak ${report.peakMiB.toFixed(0)} MiB (+${report.growthMiB.toFixed(0)} MiB)`);
  return report;
}

describe('streaming keeps memory bounded', () => {
  // 256 MiB through zstd+age and lz4 (the codecs with native/WASM buffers); RSS may grow by allocator
  // caches and blocks in flight (measured 40-80 MiB), never by the data size: a leak of half the data fails.
  it.each([
    ['zstd', true],
    ['lz4', false],
    ['gzip', true],
  ] as const)('%s (encrypted %s): 256 MiB round trip with RSS growth under 128 MiB', (codec, encrypted) => {
    const report = stream(codec, 256, encrypted);
    expect(report.same).toBe(true);
    expect(report.growthMiB).toBeLessThan(128);
  });
});
