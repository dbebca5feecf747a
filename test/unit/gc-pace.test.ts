// The pace of the forced collections (core/hash.ts, collectGarbage): a major collection only once
// dead buffers have piled up, never more often than every 4th tick. Seen through V8's --trace-gc in a
// child process, which names the collections gc() asks for "testing".
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('forced collections', () => {
  it('stay minor while buffers die young, and turn major every 4th to 10th tick once promoted buffers pile up', () => {
    const hashJs = path.join(root, 'dist/core/hash.js');
    if (!existsSync(hashJs)) throw new Error(`"${hashJs}" is missing: run npm run build (npm test does) before this test`);
    const child = spawnSync(process.execPath, ['--trace-gc', '--max-semi-space-size=1', path.join(root, 'test/support/gc-pace-child.mjs'), hashJs], { encoding: 'utf8' });
    expect(child.status, child.stderr).toBe(0);
    const lines = child.stdout.split('\n');
    const split = lines.indexOf('PHASE promoted');
    expect(split).toBeGreaterThan(0);
    const forced = (part: string[], kind: RegExp): number => part.filter((line) => line.includes('testing') && kind.test(line)).length;
    const major = /Mark-Compact/;
    const young = lines.slice(0, split);
    const promoted = lines.slice(split);
    // 40 ticks each: every tick a minor collection, and the majors as the rule says.
    expect(forced(young, /Scavenge|Minor/)).toBeGreaterThanOrEqual(40);
    expect(forced(young, major)).toBeLessThanOrEqual(1);
    expect(forced(promoted, major)).toBeGreaterThanOrEqual(4);
    expect(forced(promoted, major)).toBeLessThanOrEqual(10);
  });
});
