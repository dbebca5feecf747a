// The prefetcher's priority rule (src/policy/restore-priority.ts): which downloads hold while a request
// is served, that a held download resumes when the request settles, and that holding never changes a byte.
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DownloadPriority, HoldStream } from '../../../src/policy/restore-priority.js';

/** Runs `data` in 64 KiB chunks through a HoldStream and returns what came out. */
async function through(data: Buffer, priority: DownloadPriority, name: string, onChunk?: (count: number) => void): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const source = Readable.from((function* () {
    for (let at = 0; at < data.length; at += 64 * 1024) yield data.subarray(at, at + 64 * 1024);
  })());
  await pipeline(
    source,
    new HoldStream(() => priority.holdFor(name)),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        onChunk?.(chunks.length);
        callback();
      },
    }),
  );
  return Buffer.concat(chunks);
}

describe('download priority while PostgreSQL waits for a file', () => {
  it('holds nothing while no request waits, and never the download a request waits for', async () => {
    const priority = new DownloadPriority();
    expect(priority.holdFor('000000010000000000000004')).toBeNull();
    let inside: (Promise<void> | null)[] = [];
    await priority.urgently('000000010000000000000003', async () => {
      inside = [priority.holdFor('000000010000000000000003'), priority.holdFor('000000010000000000000004')];
    });
    expect(inside[0]).toBeNull();
    expect(inside[1]).toBeInstanceOf(Promise);
    expect(priority.waiting).toBe(false);
    expect(priority.holdFor('000000010000000000000004')).toBeNull();
  });

  it('a held download passes no chunk until the request settles, then resumes with every byte unchanged', async () => {
    const priority = new DownloadPriority(600_000);
    const data = randomBytes(1024 * 1024 + 17);
    let release = (): void => undefined;
    const served = priority.urgently('000000010000000000000003', () => new Promise<void>((done) => (release = done)));
    let passed = 0;
    const held = through(data, priority, '000000010000000000000004', (count) => (passed = count));
    // The asked-for download itself goes through while the other one holds.
    const asked = await through(data, priority, '000000010000000000000003');
    expect(createHash('sha256').update(asked).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    await new Promise((done) => setImmediate(done));
    expect(passed).toBe(0);
    release();
    await served;
    const out = await held;
    expect(out.equals(data)).toBe(true);
    expect(passed).toBe(Math.ceil(data.length / (64 * 1024)));
  });

  it('two requests for the same file: the hold lasts until both settled', async () => {
    const priority = new DownloadPriority(600_000);
    let first = (): void => undefined;
    let second = (): void => undefined;
    const a = priority.urgently('00000002.history', () => new Promise<void>((done) => (first = done)));
    const b = priority.urgently('00000002.history', () => new Promise<void>((done) => (second = done)));
    first();
    await a;
    expect(priority.waiting).toBe(true);
    expect(priority.holdFor('000000010000000000000005')).toBeInstanceOf(Promise);
    second();
    await b;
    expect(priority.waiting).toBe(false);
  });

  it('a hold ends after its bound even when the request never settles', async () => {
    const priority = new DownloadPriority(20);
    void priority.urgently('000000010000000000000003', () => new Promise<void>(() => undefined));
    const hold = priority.holdFor('000000010000000000000004');
    expect(hold).toBeInstanceOf(Promise);
    await expect(hold).resolves.toBeUndefined();
  });
});
