// Early writeback of a file being stored, without waiting for it and without a device cache flush.
//
// PostgreSQL's own file copies (copy_file, used by basic_archive) call pg_flush_data every 1 MiB:
// sync_file_range(SYNC_FILE_RANGE_WRITE) on Linux, and posix_fadvise(POSIX_FADV_DONTNEED) where that
// is missing. Both start writing the dirty pages back now, so the final fsync finds little left to
// write. Node offers neither; an fdatasync does start the writeback but also waits for it, writes the
// inode (holding its lock, so the copy's next writes wait) and flushes the device's cache, every time.
//
// Node's WASI implementation (uvwasi) offers fd_advise, which is posix_fadvise on Linux. Linux's
// POSIX_FADV_DONTNEED starts writeback of the range's dirty pages (WB_SYNC_NONE: no waiting) and then
// drops the range's clean pages from the cache (pages still being written stay). So this module keeps
// one WASI instance per process, with "/" preopened, opens the file being written a second time
// through it (read-only, the right to advise only) and advises DONTNEED on each range written.
// Durability does not change: the final fsync before the file gets its name still covers everything.
// Measured (see README.md in this folder): the pusher's copy of a 16 MiB segment took 7.1 ms
// instead of 11.7 with the fdatasyncs. The NFS backend keeps the fdatasyncs (see nfs.ts): these calls
// run on the main thread.
import type { WASI as WasiClass } from 'node:wasi';

/** The WASI preview1 calls used here (uvwasi's, called directly: no WebAssembly code runs). */
interface WasiCalls {
  path_open(dirFd: number, dirFlags: number, pathPtr: number, pathLen: number, openFlags: number, rightsBase: bigint, rightsInheriting: bigint, fdFlags: number, fdPtr: number): number;
  fd_advise(fd: number, offset: bigint, length: bigint, advice: number): number;
  fd_close(fd: number): number;
}

/** The part of the WebAssembly global used here (TypeScript's lib for Node declares none). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}

interface Advisor {
  calls: WasiCalls;
  /** The instance's memory: path names go in, opened descriptors come out. */
  memory: { buffer: ArrayBuffer };
}

/**
 * The smallest module WASI accepts: `(module (memory (export "memory") 1))`. WASI's calls read and
 * write their pointer arguments in the memory of the instance they were initialised with.
 */
const MEMORY_MODULE = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x0a, 0x01, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00]);
/** WASI's first descriptor after stdio: the one preopen. */
const ROOT_FD = 3;
const LOOKUP_SYMLINK_FOLLOW = 1;
const RIGHT_FD_ADVISE = 0x80n;
const ADVICE_DONTNEED = 4;
/** Where the opened descriptor is written, and where the path starts. */
const FD_OFFSET = 0;
const PATH_OFFSET = 8;

/** undefined: not tried yet; null: not available here (an fdatasync does the early flushes instead). */
let advisor: Advisor | null | undefined;

function makeAdvisor(): Advisor | null {
  // node:wasi prints an ExperimentalWarning when it loads; in the server log that would read like a fault.
  const emitWarning = process.emitWarning;
  try {
    process.emitWarning = () => undefined;
    // getBuiltinModule (Node 20.16 and later): a static import would load node:wasi (and warn) in every process.
    const wasiModule = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule?.('node:wasi') as { WASI: typeof WasiClass } | undefined;
    const wasm = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly;
    if (wasiModule === undefined || wasm === undefined) return null;
    const wasi = new wasiModule.WASI({ version: 'preview1', preopens: { '/': '/' }, returnOnExit: true });
    const instance = new wasm.Instance(new wasm.Module(MEMORY_MODULE), {});
    wasi.initialize(instance as Parameters<WasiClass['initialize']>[0]);
    return { calls: wasi.wasiImport as unknown as WasiCalls, memory: instance.exports.memory as { buffer: ArrayBuffer } };
  } catch {
    return null;
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** Starts writeback of ranges of one file being written; close() when the file is complete. */
export interface Writeback {
  /** Starts writing `length` bytes at `offset` back to the disk and returns at once. */
  start(offset: number, length: number): void;
  /**
   * Drops the whole file's pages from the page cache: called once the file is durable (fsynced), when
   * they are all clean. See PosixBackend.dropFromCache for why.
   */
  drop(): void;
  close(): void;
}

/**
 * Opens `filePath` (absolute) for early writeback, or null where that is not possible (no WASI, a
 * file the process cannot read): the caller then flushes early with fdatasync.
 */
export function openWriteback(filePath: string): Writeback | null {
  advisor ??= makeAdvisor();
  if (advisor === null || !filePath.startsWith('/')) return null;
  const { calls, memory } = advisor;
  const name = Buffer.from(filePath.slice(1));
  if (PATH_OFFSET + name.length > memory.buffer.byteLength) return null;
  new Uint8Array(memory.buffer).set(name, PATH_OFFSET);
  if (calls.path_open(ROOT_FD, LOOKUP_SYMLINK_FOLLOW, PATH_OFFSET, name.length, 0, RIGHT_FD_ADVISE, 0n, 0, FD_OFFSET) !== 0) return null;
  const fd = new DataView(memory.buffer).getUint32(FD_OFFSET, true);
  let open = true;
  // Advice, not a write: a failure loses nothing (the final fsync reports write errors).
  const advise = (offset: number, length: number): void => {
    if (open) calls.fd_advise(fd, BigInt(offset), BigInt(length), ADVICE_DONTNEED);
  };
  return {
    start: advise,
    // Offset 0, length 0: to the end of the file.
    drop: () => advise(0, 0),
    close: () => {
      if (open) calls.fd_close(fd);
      open = false;
    },
  };
}
