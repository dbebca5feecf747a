// The backend contract: one suite every backend must pass (local, nfs, s3...).
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend, ObjectMeta } from '../../src/backend/types.js';
import { WalvaultError } from '../../src/core/errors.js';
import { hashBuffer } from '../../src/core/hash.js';
import { handOver } from '../../src/core/owned.js';

/** A backend under test plus how to dispose of it. */
export interface BackendFixture {
  backend: Backend;
  cleanup(): Promise<void>;
}

const ctx = (): { signal: AbortSignal } => ({ signal: new AbortController().signal });

async function metaFor(data: Buffer): Promise<ObjectMeta> {
  return { contentHash: await hashBuffer(data), contentSize: data.length, codec: 'none', encryption: 'none' };
}

async function readAll(backend: Backend, key: string): Promise<Buffer | null> {
  const object = await backend.read(key, ctx());
  if (object === null) return null;
  const chunks: Buffer[] = [];
  for await (const chunk of object.body) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

async function listKeys(backend: Backend, prefix = ''): Promise<{ key: string; temp: boolean; storedSize: number }[]> {
  const out: { key: string; temp: boolean; storedSize: number }[] = [];
  for await (const entry of backend.list(prefix, ctx())) out.push({ key: entry.key, temp: entry.temp, storedSize: entry.storedSize });
  return out.sort((a, b) => a.key.localeCompare(b.key));
}

/** A body that yields some bytes, then fails: an interrupted upload. */
function failingBody(bytes: number): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(Buffer.alloc(bytes, 7));
      } else {
        this.destroy(new Error('source went away'));
      }
    },
  });
}

let counter = 0;
/** A fresh key per test so tests never see each other's objects. */
const freshKey = (): string => `wal/0000000100000000/0000000100000000000000${(counter++).toString(16).toUpperCase().padStart(2, '0')}`;

/** What a backend cannot promise; each weaker guarantee must be documented in the README. */
export interface ContractOptions {
  /**
   * false: concurrent creates of one key are not atomic (S3 stores that ignore If-None-Match, where
   * walvault falls back to look-up-then-write); the racing-writers test then checks the weaker promise:
   * no torn object, and the metadata matches the stored body.
   */
  atomicCreate?: boolean;
  /** The backend has putLarge (default true): the large-object cases run. */
  putLarge?: boolean;
  /** Bytes of putLarge's first part where the backend cuts streams into parts (S3); the cases cut bodies at and around it. Default 8 MiB. */
  largePartBytes?: number;
  /** Leaves an unfinished large upload under `key`, as a kill -9 mid-backup does (S3: a multipart upload neither completed nor aborted). */
  leaveUnfinishedUpload?: (key: string) => Promise<void>;
}

const MiB = 1024 * 1024;

/** `size` bytes where every 4-byte word holds its own offset (a part stored out of order or twice shows), plus the tail. */
export function patternedBytes(size: number, seed = 0): Buffer {
  const data = Buffer.alloc(size);
  for (let offset = 0; offset + 4 <= size; offset += 4) data.writeUInt32LE((offset + seed) >>> 0, offset);
  return data;
}

/** A body that hands `data` over in odd-sized chunks (they straddle every part boundary). */
export function chunkedBody(data: Buffer, chunk = 1_000_003): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < data.length; offset += chunk) yield data.subarray(offset, offset + chunk);
    })(),
    { objectMode: false },
  );
}

/**
 * A body that hands over `before` bytes, then calls `then` with itself (to fail it, or to abort the
 * caller's signal) and hands over nothing more: event-driven, whatever the load.
 */
function interruptedBody(before: number, then: (body: Readable) => void): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= before) {
        then(this);
        return;
      }
      const size = Math.min(1_000_003, before - sent);
      sent += size;
      this.push(Buffer.alloc(size, 0x42));
    },
  });
}

let backupCounter = 0;
/** A fresh key of a base-backup archive. */
const freshBackupKey = (): string => `backup/20261207T0300${String(backupCounter).padStart(2, '0')}/base-${backupCounter++}.tar`;

/** Runs the whole contract against the backends `factory` makes (a fresh one per describe block). */
export function runBackendContract(label: string, factory: () => Promise<BackendFixture>, options: ContractOptions = {}): void {
  describe(`backend contract: ${label}`, () => {
    let fixture: BackendFixture;
    let backend: Backend;
    beforeAll(async () => {
      fixture = await factory();
      backend = fixture.backend;
    });
    afterAll(async () => {
      await fixture?.cleanup();
    });

    it('reports a missing object as a value, not an exception', async () => {
      const key = freshKey();
      expect(await backend.stat(key, ctx())).toEqual({ exists: false });
      expect(await backend.read(key, ctx())).toBeNull();
    });

    it('creates a new object with its metadata and reads it back byte for byte', async () => {
      const key = freshKey();
      const data = Buffer.from('first segment contents '.repeat(1000));
      const meta = await metaFor(data);
      expect(await backend.putIfAbsent(key, Readable.from([data]), meta, ctx())).toEqual({ created: true });
      const info = await backend.stat(key, ctx());
      expect(info.exists).toBe(true);
      if (info.exists) {
        expect(info.storedSize).toBe(data.length);
        expect(info.meta).toEqual(meta);
      }
      const object = await backend.read(key, ctx());
      expect(object?.meta).toEqual(meta);
      expect(object?.storedSize).toBe(data.length);
      object?.body.destroy();
      expect(await readAll(backend, key)).toEqual(data);
    });

    it('refuses to overwrite: an existing object stays as it was', async () => {
      const key = freshKey();
      const original = Buffer.from('original');
      const other = Buffer.from('something else entirely');
      await backend.putIfAbsent(key, Readable.from([original]), await metaFor(original), ctx());
      expect(await backend.putIfAbsent(key, Readable.from([other]), await metaFor(other), ctx())).toEqual({ created: false });
      expect(await readAll(backend, key)).toEqual(original);
      const info = await backend.stat(key, ctx());
      expect(info.exists && info.meta?.contentHash).toBe(await hashBuffer(original));
    });

    const racingWriters = async () => {
      const key = freshKey();
      const bodies = await Promise.all([1, 2, 3, 4].map(async (n) => {
        const data = Buffer.alloc(256 * 1024 + n, n);
        return { data, meta: await metaFor(data) };
      }));
      const results = await Promise.all(bodies.map(({ data, meta }) => backend.putIfAbsent(key, Readable.from([data]), meta, ctx())));
      const stored = await readAll(backend, key);
      const info = await backend.stat(key, ctx());
      return { bodies, results, stored, info };
    };

    if (options.atomicCreate === false) {
      it('racing writers without an atomic create: at least one wins, the stored object is one whole body and its metadata is that body\'s', async () => {
        const { bodies, results, stored, info } = await racingWriters();
        expect(results.filter((result) => result.created).length).toBeGreaterThanOrEqual(1);
        const whole = bodies.find(({ data }) => stored !== null && data.equals(stored));
        expect(whole, `stored ${stored?.length} bytes that are none of the bodies (a torn object)`).toBeDefined();
        expect(info.exists && info.meta).toEqual(whole?.meta);
      });
    } else {
      it('lets exactly one of several racing writers win, and keeps the winner intact', async () => {
        const { bodies, results, stored, info } = await racingWriters();
        expect(results.filter((result) => result.created)).toHaveLength(1);
        const winner = bodies[results.findIndex((result) => result.created)];
        expect(stored).toEqual(winner?.data);
        expect(info.exists && info.meta).toEqual(winner?.meta);
      });
    }

    it('leaves no object and no temporary data behind when the body fails midway', async () => {
      const key = freshKey();
      const meta = await metaFor(Buffer.alloc(0));
      await expect(backend.putIfAbsent(key, failingBody(100_000), meta, ctx())).rejects.toThrow();
      expect(await backend.stat(key, ctx())).toEqual({ exists: false });
      const leftovers = (await listKeys(backend, 'wal/')).filter((entry) => entry.key.includes(key.split('/').pop() ?? ''));
      expect(leftovers).toEqual([]);
    });

    it('stops an upload when the deadline aborts it, storing nothing', async () => {
      const key = freshKey();
      const controller = new AbortController();
      const body = new Readable({ read() {} });
      body.push(Buffer.alloc(64 * 1024, 1));
      const put = backend.putIfAbsent(key, body, await metaFor(Buffer.alloc(0)), { signal: controller.signal });
      setTimeout(() => controller.abort(new Error('deadline passed')), 50);
      await expect(put).rejects.toThrow();
      expect(await backend.stat(key, ctx())).toEqual({ exists: false });
    });

    it('stores empty objects', async () => {
      const key = freshKey();
      const meta = await metaFor(Buffer.alloc(0));
      expect(await backend.putIfAbsent(key, Readable.from([]), meta, ctx())).toEqual({ created: true });
      expect(await readAll(backend, key)).toEqual(Buffer.alloc(0));
    });

    it('streams a large object without holding it whole', async () => {
      const key = freshKey();
      const chunk = Buffer.alloc(1 << 20, 0x5a);
      const chunks = 24;
      const body = Readable.from((function* () {
        for (let index = 0; index < chunks; index += 1) yield chunk;
      })());
      const whole = Buffer.concat(Array.from({ length: chunks }, () => chunk));
      expect(await backend.putIfAbsent(key, body, await metaFor(whole), ctx())).toEqual({ created: true });
      const info = await backend.stat(key, ctx());
      expect(info.exists && info.storedSize).toBe(whole.length);
      expect((await readAll(backend, key))?.equals(whole)).toBe(true);
    });

    it('stores a pulled body with metadata computed once the body has ended (or before, for before-body backends)', async () => {
      const key = freshKey();
      const data = Buffer.concat([Buffer.alloc(3 << 20, 0x11), Buffer.from('tail')]);
      let offset = 0;
      let pulledAll = false;
      const body = {
        pull: async (into: Buffer): Promise<number> => {
          const count = data.copy(into, 0, offset, Math.min(data.length, offset + into.length));
          offset += count;
          if (count === 0) pulledAll = true;
          return count;
        },
      };
      const meta = await metaFor(data);
      let calledAfterBody: boolean | undefined;
      const lateMeta = (): ObjectMeta => {
        calledAfterBody = pulledAll;
        return meta;
      };
      expect(await backend.putIfAbsent(key, body, lateMeta, ctx())).toEqual({ created: true });
      expect(calledAfterBody).toBe(backend.metaTiming.when === 'after-body');
      const info = await backend.stat(key, ctx());
      expect(info.exists && info.meta).toEqual(meta);
      expect((await readAll(backend, key))?.equals(data)).toBe(true);
      // The same key again: refused, and the body was still consumed to its end.
      offset = 0;
      pulledAll = false;
      expect(await backend.putIfAbsent(key, body, lateMeta, ctx())).toEqual({ created: false });
      expect(offset).toBe(data.length);
    });

    it('stores a buffer body, and stores nothing when the metadata function throws', async () => {
      const key = freshKey();
      const data = Buffer.from('buffered segment '.repeat(5000));
      const meta = await metaFor(data);
      expect(await backend.putIfAbsent(key, data, meta, ctx())).toEqual({ created: true });
      expect(await backend.stat(key, ctx())).toMatchObject({ exists: true, storedSize: data.length, meta });
      expect((await readAll(backend, key))?.equals(data)).toBe(true);
      const other = freshKey();
      const refuse = (): ObjectMeta => {
        throw new Error('source changed while it was read');
      };
      await expect(backend.putIfAbsent(other, data, refuse, ctx())).rejects.toThrow('source changed while it was read');
      expect(await backend.stat(other, ctx())).toEqual({ exists: false });
      expect((await listKeys(backend, other.slice(0, other.lastIndexOf('/') + 1))).filter((entry) => entry.key.startsWith(other))).toEqual([]);
    });

    it('lists stored objects with their sizes and hides its own metadata', async () => {
      const key = freshKey();
      const data = Buffer.from('listed');
      await backend.putIfAbsent(key, Readable.from([data]), await metaFor(data), ctx());
      const entries = await listKeys(backend, 'wal/');
      expect(entries).toContainEqual({ key, temp: false, storedSize: data.length });
      expect(entries.every((entry) => !entry.key.endsWith('~meta'))).toBe(true);
    });

    it('deletes objects, and deleting a missing one is not an error', async () => {
      const key = freshKey();
      const data = Buffer.from('to be deleted');
      await backend.putIfAbsent(key, Readable.from([data]), await metaFor(data), ctx());
      await backend.delete(key, ctx());
      expect(await backend.stat(key, ctx())).toEqual({ exists: false });
      await backend.delete(key, ctx());
      expect((await listKeys(backend, 'wal/')).some((entry) => entry.key === key)).toBe(false);
    });

    it('makes an existing object durable without changing it (persist)', async () => {
      const key = freshKey();
      const data = Buffer.from('persist me');
      const meta = await metaFor(data);
      await backend.putIfAbsent(key, Readable.from([data]), meta, ctx());
      await backend.persist(key, meta, ctx());
      expect(await readAll(backend, key)).toEqual(data);
      const info = await backend.stat(key, ctx());
      expect(info.exists && info.meta).toEqual(meta);
    });

    it('keeps small repository documents, creating them only once with ifAbsent', async () => {
      const key = `test-doc-${counter++}.json`;
      expect(await backend.readText(key, ctx())).toBeNull();
      expect(await backend.writeText(key, '{"a":1}', ctx(), { ifAbsent: true })).toBe(true);
      expect(await backend.writeText(key, '{"a":2}', ctx(), { ifAbsent: true })).toBe(false);
      expect(await backend.readText(key, ctx())).toBe('{"a":1}');
      expect(await backend.writeText(key, '{"a":3}', ctx())).toBe(true);
      expect(await backend.readText(key, ctx())).toBe('{"a":3}');
    });

    it('describes where a key lives, for log lines', () => {
      expect(backend.describe('wal/000000010000000000000001')).toContain('000000010000000000000001');
    });

    if (options.putLarge !== false) runLargeObjectCases(() => backend, options);
  });
}

/** What a large put left under a key's folder: the key itself, and temp entries (leftover files or uploads) of it. */
async function leftoversOf(backend: Backend, key: string): Promise<{ key: string; temp: boolean; storedSize: number }[]> {
  const folder = key.slice(0, key.lastIndexOf('/') + 1);
  return (await listKeys(backend, folder)).filter((entry) => entry.key.startsWith(key));
}

/** putLarge: streams of unknown length, many GiB (base backups). */
function runLargeObjectCases(current: () => Backend, options: ContractOptions): void {
  const partBytes = options.largePartBytes ?? 8 * MiB;
  const putLarge = (key: string, body: Readable, context = ctx()) => {
    const backend = current();
    expect(backend.putLarge, `${backend.kind} has no putLarge`).toBeTypeOf('function');
    return backend.putLarge!(key, body, context);
  };
  const storesWhole = async (size: number, seed: number): Promise<void> => {
    const backend = current();
    const key = freshBackupKey();
    const data = patternedBytes(size, seed);
    expect(await putLarge(key, chunkedBody(data))).toEqual({ storedSize: size });
    const info = await backend.stat(key, ctx());
    expect(info).toMatchObject({ exists: true, storedSize: size, meta: null });
    const stored = await readAll(backend, key);
    expect(stored?.length).toBe(size);
    expect(stored?.equals(data), 'the stored bytes differ from the stream').toBe(true);
    expect(await leftoversOf(backend, key)).toEqual([{ key, temp: false, storedSize: size }]);
  };

  describe('large objects (putLarge)', () => {
    it('stores a stream shorter than one part (1 MiB)', () => storesWhole(1 * MiB + 7, 1));
    it('stores a stream of several parts, the last one short', () => storesWhole(4 * partBytes + 3 * MiB + 5, 2));
    it('stores a stream ending exactly on a part boundary', () => storesWhole(2 * partBytes, 3));
    it('stores an empty stream as an empty object', () => storesWhole(0, 4));

    it('gives each chunk its writer handed over back once it holds a copy (or wrote it); the writer scribbling over it at once changes no stored byte', async () => {
      const backend = current();
      const key = freshBackupKey();
      // 256 KiB chunks after an odd first one (a tar header), so that parts cut chunks in two.
      const data = patternedBytes(3 * partBytes + 100_000, 13);
      const chunkBytes = 256 * 1024;
      const spare: Buffer[] = [];
      let handed = 0;
      let givenBack = 0;
      const body = Readable.from(
        (function* () {
          yield data.subarray(0, 512);
          for (let offset = 512; offset < data.length; offset += chunkBytes) {
            const buffer = spare.pop() ?? Buffer.allocUnsafeSlow(chunkBytes);
            const length = data.copy(buffer, 0, offset, offset + chunkBytes);
            handed += 1;
            yield handOver(buffer.subarray(0, length), () => {
              givenBack += 1;
              buffer.fill(0xa5);
              spare.push(buffer);
            });
          }
        })(),
        { objectMode: false },
      );
      expect(await putLarge(key, body)).toEqual({ storedSize: data.length });
      expect((await readAll(backend, key))?.equals(data), 'the stored bytes differ from the stream').toBe(true);
      // Every chunk comes back but those a part boundary cut in two (those are left to the collector).
      expect(givenBack).toBeGreaterThanOrEqual(handed - Math.ceil(data.length / partBytes));
      expect(spare.length).toBeGreaterThan(0);
    });

    it('refuses a key that exists with kind "mismatch", leaving the object as it was', async () => {
      const backend = current();
      const key = freshBackupKey();
      const original = Buffer.from('an archive that is already there');
      expect(await putLarge(key, chunkedBody(original))).toEqual({ storedSize: original.length });
      for (const size of [1000, 3 * partBytes]) {
        const error = await putLarge(key, chunkedBody(patternedBytes(size, 5))).then(
          () => null,
          (caught: unknown) => caught,
        );
        expect(error).toBeInstanceOf(WalvaultError);
        expect((error as WalvaultError).kind).toBe('mismatch');
        expect(await readAll(backend, key)).toEqual(original);
        expect(await leftoversOf(backend, key)).toEqual([{ key, temp: false, storedSize: original.length }]);
      }
    });

    it('refuses with "mismatch" when the key comes to exist while the stream is read, leaving that object as it was', async () => {
      const backend = current();
      const key = freshBackupKey();
      const theirs = Buffer.from('created by another writer while the archive was streamed');
      const data = patternedBytes(3 * partBytes, 6);
      const body = Readable.from(
        (async function* () {
          yield data.subarray(0, partBytes + partBytes / 2);
          expect(await backend.putIfAbsent(key, theirs, await metaFor(theirs), ctx())).toEqual({ created: true });
          yield data.subarray(partBytes + partBytes / 2);
        })(),
        { objectMode: false },
      );
      await expect(putLarge(key, body)).rejects.toMatchObject({ kind: 'mismatch' });
      expect(await readAll(backend, key)).toEqual(theirs);
      expect(await leftoversOf(backend, key)).toEqual([{ key, temp: false, storedSize: theirs.length }]);
    });

    it('leaves nothing under the key, and no upload, when the stream fails midway', async () => {
      const backend = current();
      const key = freshBackupKey();
      const body = interruptedBody(Math.floor(2.5 * partBytes), (self) => self.destroy(new Error('tar went away')));
      await expect(putLarge(key, body)).rejects.toThrow('tar went away');
      expect(await backend.stat(key, ctx())).toEqual({ exists: false });
      expect(await leftoversOf(backend, key)).toEqual([]);
    });

    it('leaves nothing under the key, and no upload, when the signal aborts midway', async () => {
      const backend = current();
      const key = freshBackupKey();
      const controller = new AbortController();
      const body = interruptedBody(Math.floor(2.5 * partBytes), () => controller.abort(new Error('backup cancelled')));
      await expect(putLarge(key, body, { signal: controller.signal })).rejects.toThrow();
      expect(await backend.stat(key, ctx())).toEqual({ exists: false });
      expect(await leftoversOf(backend, key)).toEqual([]);
    });

    if (options.leaveUnfinishedUpload !== undefined) {
      const leave = options.leaveUnfinishedUpload;
      it('lists an upload left unfinished by a crash as a temp entry, and removes it on delete', async () => {
        const backend = current();
        const key = freshBackupKey();
        await leave(key);
        const listed = await leftoversOf(backend, key);
        expect(listed).toHaveLength(1);
        expect(listed[0]).toMatchObject({ temp: true });
        expect((await listKeys(backend, '')).filter((entry) => entry.key.startsWith(key))).toEqual(listed);
        expect(await backend.stat(key, ctx())).toEqual({ exists: false });
        await backend.delete(listed[0]!.key, ctx());
        expect(await leftoversOf(backend, key)).toEqual([]);
        await backend.delete(listed[0]!.key, ctx());
      });
    }
  });
}
