// The prefetcher's priority rule (src/policy/restore-priority.ts): which downloads hold while a request
// is served, that a held download resumes when the request settles, and that holding never changes a byte.
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { admissionQueued, onAdmissionQueued } from '../../../src/codec/admission.js';
import { createDecoder, createEncoder } from '../../../src/codec/index.js';
import { DownloadPriority, HoldStream, holdsWindowDownloads } from '../../../src/policy/restore-priority.js';
import { runThrough, walLikeData } from '../../support/codec.js';

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
  it('applies to repositories behind a server (S3, NFS), not to a local directory', () => {
    expect(['local', 'nfs', 's3'].map(holdsWindowDownloads)).toEqual([false, true, true]);
  });

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

  it('a download held for one request goes on at once when its own file is asked for while that request is still open', async () => {
    const priority = new DownloadPriority(600_000);
    const data = randomBytes(512 * 1024);
    let releaseFirst = (): void => undefined;
    const first = priority.urgently('00000002.history', () => new Promise<void>((done) => (releaseFirst = done)));
    let passed = 0;
    const download = through(data, priority, '000000010000000000000004', (count) => (passed = count));
    // The download sits on the hold of the first request, having passed nothing.
    await new Promise((done) => setImmediate(done));
    expect(passed).toBe(0);
    const out = await priority.urgently('000000010000000000000004', () => download);
    expect(out.equals(data)).toBe(true);
    expect(priority.waiting).toBe(true);
    releaseFirst();
    await first;
  }, 30_000);

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

  it('held downloads whose decoders hold the codec admissions let the asked-for file decode (no hold waits out its bound)', async () => {
    // As the prefetcher wires it: a decoder waiting for an admission frees the holds. The pool admits two
    // pipelines at once here (no worker threads); two window downloads take both and are then held.
    const priority = new DownloadPriority(600_000, () => !admissionQueued());
    const stop = onAdmissionQueued(() => priority.releaseHolds());
    try {
      const data = walLikeData(4 << 20, 5);
      const stored = await runThrough(data, (await createEncoder({ compress: 'lz4' })).transforms, 1 << 20);
      const decodeThrough = async (name: string, hold: boolean): Promise<Buffer> => {
        const chunks: Buffer[] = [];
        const source = Readable.from((function* () {
          for (let at = 0; at < stored.length; at += 64 * 1024) yield stored.subarray(at, at + 64 * 1024);
        })());
        const decoders = await createDecoder({ codec: 'lz4', encryption: 'none' }, {});
        const sink = new Writable({
          write(chunk: Buffer, _encoding, callback) {
            chunks.push(chunk);
            callback();
          },
        });
        const holdOnce = (): Promise<void> | null => {
          const wait = priority.holdFor(name);
          if (wait !== null) heldOnce.get(name)?.();
          return wait;
        };
        await pipeline([source, ...decoders, ...(hold ? [new HoldStream(holdOnce)] : []), sink]);
        return Buffer.concat(chunks);
      };
      const heldOnce = new Map<string, () => void>();
      const bothHeld = ['000000010000000000000004', '000000010000000000000005'].map((name) => new Promise<void>((done) => heldOnce.set(name, done)));
      let release = (): void => undefined;
      const asked = priority.urgently('000000010000000000000003', async () => {
        await new Promise<void>((done) => (release = done));
        return decodeThrough('000000010000000000000003', false);
      });
      const window = ['000000010000000000000004', '000000010000000000000005'].map((name) => decodeThrough(name, true));
      // Both window decoders have their admissions (they decoded a block) and are held before the asked-for one starts.
      await Promise.all(bothHeld);
      release();
      expect((await asked).equals(data)).toBe(true);
      for (const out of await Promise.all(window)) expect(out.equals(data)).toBe(true);
    } finally {
      stop();
    }
  }, 30_000);
});
