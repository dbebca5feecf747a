// Content hashes (xxh64 of the original bytes) recorded at archive time and checked on every read.
import { Transform, type TransformCallback } from 'node:stream';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import xxhash from 'xxhash-wasm';

/** The xxhash-wasm API (xxh32/xxh64), loaded once per process and shared by hashing and the codecs' frame checksums. */
export type XxhashApi = Awaited<ReturnType<typeof xxhash>>;
type Hasher64 = ReturnType<XxhashApi['create64']>;

let api: Promise<XxhashApi> | undefined;

/** Loads the WASM hasher once per process. */
export function loadXxhash(): Promise<XxhashApi> {
  api ??= xxhash();
  return api;
}

/** Formats a 64-bit digest as 16 lower-case hex digits, the form stored in object metadata. */
export function formatHash(digest: bigint): string {
  return digest.toString(16).padStart(16, '0');
}

/** Bytes between forced collections; see collectGarbage. */
const GC_INTERVAL_BYTES = 4 * 1024 * 1024;

/** Minor collections between two major ones (at least, when paced by memory; see collectGarbage). */
const MAJOR_EVERY = 4;
let sinceMajor = 0;
/** Set by paceMajorCollections: the growth of external memory that calls for a major collection. */
let majorMargin: number | undefined;
/** The lowest external memory seen after a collection since the last major one (paced mode). */
let externalFloor: number | undefined;

/**
 * Every chunk a stream reads is a fresh buffer, freed only when V8 collects it; left alone it lets
 * ~35 MiB of dead chunks stay resident, on top of Node's own ~60 MiB, breaking the 100 MiB bound.
 * So transfers run a minor collection (which frees young buffers) every 4 MiB. Measured on a 1 GiB
 * restore: peak RSS 97 MiB without, 71 MiB with, no measurable time cost (a scavenge of a few-MiB heap
 * takes well under a millisecond).
 * A chunk still in the pipeline at two minor collections is promoted, and dead promoted chunks wait
 * for a major collection, which V8 runs on its own only after tens of MiB: so every 4th (every 16 MiB
 * of transfer) is a major one. Measured with the S3 SDK loaded, a 1 GiB restore from s3rver, six runs
 * each: peak RSS 88-96 MiB with minor collections only, 84-89 MiB with this. It goes through gc()
 * without options: Node 20's V8 runs a scavenge for gc({ type: 'major' }) (--trace-gc shows it).
 * A major collection costs 2-5 ms on Node 22 and later, though (0.04 ms for Node 20's scavenge): a
 * 1.5 GiB backup spent 0.7 s of its 2.8 s of CPU on 95 of them. See paceMajorCollections.
 */
function collectGarbage(): void {
  gc ??= exposeGc();
  if (gc === null) return;
  gc({ type: 'minor' });
  sinceMajor += 1;
  if (majorMargin === undefined) {
    if (sinceMajor >= MAJOR_EVERY) majorCollection(gc);
    return;
  }
  const external = getHeapStatistics().external_memory;
  // The floor follows the memory down (buffers given up), so garbage is measured from the lowest point.
  if (externalFloor === undefined || external < externalFloor) externalFloor = external;
  else if (external > externalFloor + majorMargin && sinceMajor >= MAJOR_EVERY) {
    majorCollection(gc);
    externalFloor = getHeapStatistics().external_memory;
  }
}

function majorCollection(collect: Collector): void {
  collect();
  sinceMajor = 0;
}

/**
 * From now on, a forced major collection runs only once the external memory (buffers' backing stores)
 * left after a minor one is `marginBytes` above the lowest it was since the last major one, and still
 * no sooner than every 4th tick: for a process whose peak has room for that much dead memory and whose
 * CPU counts more. `walvault backup` sets 8 MiB (Node 22, 1.5 GiB cluster, local repository, medians
 * of 6 side by side: user CPU 0.52x uncompressed, 0.71x with zstd; peak RSS +4-5 MiB; 4 major ones instead
 * of 95). The archive and restore paths keep every 4th: their pusher measured +3-5 MiB paced (Node 26
 * with zstd and age at 100 MiB), and a 4 MiB margin kept the old rule's CPU (a backup's live buffers
 * swing by about that much).
 */
export function paceMajorCollections(marginBytes: number): void {
  majorMargin = marginBytes;
}

type Collector = (options?: { type: 'minor' }) => void;
let gc: Collector | null | undefined;

/**
 * V8's gc(), made on first need: starting node with --expose-gc costs every call ~2 ms of start-up
 * (measured: `node --expose-gc -e 0` against `node -e 0`), and a short call never collects. With the
 * flag set now, a new context gets gc() (~1 ms, once per process). null when V8 refuses.
 */
function exposeGc(): Collector | null {
  const given = (globalThis as { gc?: Collector }).gc;
  if (typeof given === 'function') return given;
  try {
    setFlagsFromString('--expose-gc');
    const made: unknown = runInNewContext('typeof gc === "function" ? gc : null');
    return typeof made === 'function' ? (made as Collector) : null;
  } catch {
    return null;
  }
}

/** Called by a stream as its byte count goes from `before` to `after`: collects once every GC_INTERVAL_BYTES. */
export function collectGarbageAfter(before: number, after: number): void {
  if (Math.floor(after / GC_INTERVAL_BYTES) !== Math.floor(before / GC_INTERVAL_BYTES)) collectGarbage();
}

/**
 * A pass-through stream that hashes and counts the bytes flowing through it, and can remember the
 * first bytes (the WAL long page header and more) for header checks (verify).
 */
export interface HashingStream extends Transform {
  /** Bytes that went through so far. */
  readonly bytes: number;
  /** The first bytes, up to the `headLimit` it was created with. */
  readonly head: Buffer;
  /** The hash of everything that went through; valid once the stream has ended. */
  digest(): string;
}

/**
 * The class is made on first use, not when this module loads: declaring it needs node:stream
 * (~1.5 ms to load), which a call that moves no bytes (a bad name, "not found") never needs.
 */
let HashingStreamClass: (new (hasher: Hasher64, headLimit: number) => HashingStream) | undefined;

function hashingStreamClass(): new (hasher: Hasher64, headLimit: number) => HashingStream {
  HashingStreamClass ??= class extends Transform implements HashingStream {
    bytes = 0;
    head: Buffer = Buffer.alloc(0);

    constructor(private readonly hasher: Hasher64, private readonly headLimit: number) {
      super();
    }

    override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
      this.hasher.update(chunk);
      if (this.head.length < this.headLimit) {
        this.head = Buffer.concat([this.head, chunk.subarray(0, this.headLimit - this.head.length)]);
      }
      const before = this.bytes;
      this.bytes += chunk.length;
      collectGarbageAfter(before, this.bytes);
      callback(null, chunk);
    }

    digest(): string {
      return formatHash(this.hasher.digest());
    }
  };
  return HashingStreamClass;
}

export const HashingStream = {
  /** Creates a hashing stream; `headLimit` bytes at the start (none by default) are kept in `head`. */
  async create(options: { headLimit?: number } = {}): Promise<HashingStream> {
    const { create64 } = await loadXxhash();
    return new (hashingStreamClass())(create64(), options.headLimit ?? 0);
  },
};

/** Hashes a buffer in one go (tests, small documents). */
export async function hashBuffer(data: Uint8Array): Promise<string> {
  const { create64 } = await loadXxhash();
  return formatHash(create64().update(data).digest());
}

/**
 * Chunk size of walvault's streams. Several streams sit between source and storage; with 256 KiB
 * chunks a 1 GiB segment flows through in well under 100 MiB of process memory.
 */
export const STREAM_CHUNK = 256 * 1024;
