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

/** Growth of external memory (buffers' backing stores) since the last major collection that makes the next one major; see collectGarbage. */
const MAJOR_AFTER_BYTES = 8 * 1024 * 1024;
/** The lowest external memory seen after a collection since the last major one. */
let externalFloor: number | undefined;
/** Minor collections since the last major one: at least MAJOR_SPACING in between, the old fixed rule's pace at most. */
let sinceMajor = 0;
const MAJOR_SPACING = 4;

/**
 * Every chunk a stream reads is a fresh buffer, freed only when V8 collects it; left alone it lets
 * ~35 MiB of dead chunks stay resident, on top of Node's own ~60 MiB, breaking the 100 MiB bound.
 * So transfers run a minor collection (which frees young buffers) every 4 MiB. Measured on a 1 GiB
 * restore: peak RSS 97 MiB without, 71 MiB with, no measurable time cost (a scavenge of a few-MiB heap
 * takes well under a millisecond).
 * A chunk still in the pipeline at two minor collections is promoted, and dead promoted chunks wait
 * for a major collection, which V8 runs on its own only after tens of MiB. So a major one follows once
 * the external memory left after a minor one is 8 MiB above the lowest it was since the last major
 * one, and never sooner than the 4th tick after it (a stream whose live buffers swing by more than
 * that pays no more than the old rule). The old rule, a major one every 4th tick, cost 2-5 ms a time
 * on Node 22 and later: a 1.5 GiB backup spent 0.7 s of its 2.8 s on 95 of them. With this rule
 * (Node 22, local repository, three runs each): user CPU 2.1-2.6 -> 1.2-1.5 s uncompressed and
 * 5.0-5.6 -> 3.5-3.7 s with zstd, peak RSS 70-71 -> 72-77 and 78-80 -> 81 MiB; to S3 with zstd 100-102
 * -> 104-107 MiB. A 4 MiB margin kept the memory and the CPU of the old rule (the live buffers of a
 * backup swing by about that much). On Node 20 the old rule's gc({ type: 'major' }) ran a scavenge
 * (its V8 knows only 'minor'); gc() is a major collection on every version.
 */
function collectGarbage(): void {
  gc ??= exposeGc();
  if (gc === null) return;
  gc({ type: 'minor' });
  sinceMajor += 1;
  const external = getHeapStatistics().external_memory;
  // The floor follows the memory down (buffers given up), so garbage is measured from the lowest point.
  if (externalFloor === undefined || external < externalFloor) externalFloor = external;
  else if (external > externalFloor + MAJOR_AFTER_BYTES && sinceMajor >= MAJOR_SPACING) {
    // gc() without options: Node 20's V8 runs a scavenge for gc({ type: 'major' }) (--trace-gc shows it).
    gc();
    sinceMajor = 0;
    externalFloor = getHeapStatistics().external_memory;
  }
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
