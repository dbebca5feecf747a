// The pace of the forced collections (core/hash.ts, collectGarbage): every 4th tick a major one by
// default; paced by memory (paceMajorCollections, as walvault backup sets it) a major one only once
// dead buffers have piled up, never more often than every 4th tick. Seen through V8's --trace-gc in a
// child process, which names the collections gc() asks for "testing".
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Forced minor and major collections in each phase of gc-pace-child.mjs (40 ticks each). */
function collections(margin?: number): Record<'young' | 'promoted', { minor: number; major: number }> {
  const hashJs = path.join(root, 'dist/core/hash.js');
  if (!existsSync(hashJs)) throw new Error(`"${hashJs}" is missing: run npm run build (npm test does) before this test`);
  const args = ['--trace-gc', '--max-semi-space-size=1', path.join(root, 'test/support/gc-pace-child.mjs'), hashJs, ...(margin === undefined ? [] : [String(margin)])];
  const child = spawnSync(process.execPath, args, { encoding: 'utf8' });
  expect(child.status, child.stderr).toBe(0);
  const lines = child.stdout.split('\n');
  const split = lines.indexOf('PHASE promoted');
  expect(split).toBeGreaterThan(0);
  const count = (part: string[]): { minor: number; major: number } => {
    const forced = part.filter((line) => line.includes('testing'));
    return { minor: forced.filter((line) => !/Mark-Compact/.test(line)).length, major: forced.filter((line) => /Mark-Compact/.test(line)).length };
  };
  return { young: count(lines.slice(0, split)), promoted: count(lines.slice(split)) };
}

describe('forced collections', () => {
  it('by default: a minor one every tick and a major one (a real one, on every Node) every 4th', () => {
    const seen = collections();
    expect(seen.young).toEqual({ minor: 40, major: 10 });
    expect(seen.promoted).toEqual({ minor: 40, major: 10 });
  });

  it('paced by an 8 MiB margin: no major one while buffers die young, one every 4th to 10th tick once promoted buffers pile up', () => {
    const seen = collections(8);
    expect(seen.young).toMatchObject({ minor: 40 });
    expect(seen.young.major).toBeLessThanOrEqual(1);
    expect(seen.promoted).toMatchObject({ minor: 40 });
    expect(seen.promoted.major).toBeGreaterThanOrEqual(4);
    expect(seen.promoted.major).toBeLessThanOrEqual(10);
  });
});
