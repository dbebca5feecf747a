// The CPU work of the codecs cut into independent jobs (one zstd frame, one lz4 block, a run of age chunks),
// so that the same function runs a job on the stream's own thread or in a worker thread of the pool (pool.ts).
import { WalvaultError } from '../core/errors.js';

/** One unit of codec work: its input bytes and what to do with them. Every job is independent of the others. */
export type CodecJob =
  /** Compress `input` (at most 1 MiB when walvault writes it) into one zstd frame with a content checksum; `native`: with node:zlib's zstd. */
  | { op: 'zstd-compress'; level: number; input: Uint8Array; native: boolean }
  /** Decompress one whole zstd frame; `capacity` bounds its decoded size, `contentSize` (when its header declares one) is it; `native`: with node:zlib's zstd. */
  | { op: 'zstd-decompress'; input: Uint8Array; capacity: number; contentSize: number | null; native: boolean }
  /** Compress one independent lz4 block; the output is the block as the frame stores it (size word first). */
  | { op: 'lz4-compress'; input: Uint8Array }
  /** Decode one independent raw lz4 block of at most `maxOutput` decoded bytes. */
  | { op: 'lz4-decompress'; input: Uint8Array; maxOutput: number }
  /** Seal `input` as consecutive age STREAM chunks numbered from `counter`; `last`: the final one is in it. */
  | { op: 'age-seal'; key: Uint8Array; counter: number; last: boolean; input: Uint8Array }
  /** Open consecutive sealed age STREAM chunks numbered from `counter`; `last`: the final one is in it. */
  | { op: 'age-open'; key: Uint8Array; counter: number; last: boolean; input: Uint8Array };

/** How a job's error crosses a thread boundary (a WalvaultError keeps its kind and hint). */
export interface SerializedError {
  message: string;
  kind?: string;
  hint?: string;
}

/** Runs one job on the calling thread. Synchronous work except Node's own zstd, which runs in libuv's thread pool. */
export async function runJob(job: CodecJob): Promise<Uint8Array> {
  switch (job.op) {
    case 'zstd-compress':
      return (await import('./zstd.js')).compressFrame(job.level, job.input, job.native);
    case 'zstd-decompress':
      return (await import('./zstd.js')).decompressFrame(job.input, job.capacity, job.native, job.contentSize);
    case 'lz4-compress':
      return (await import('./lz4.js')).compressBlock(job.input);
    case 'lz4-decompress':
      return (await import('./lz4.js')).decompressBlock(job.input, job.maxOutput);
    case 'age-seal':
      return (await import('./age.js')).sealChunks(job);
    case 'age-open':
      return (await import('./age.js')).openChunks(job);
  }
}

/** True when Node's own zstd (node:zlib, Node 22.15 and later) runs the job: it needs no worker thread. */
export function runsNatively(job: CodecJob): boolean {
  return (job.op === 'zstd-compress' || job.op === 'zstd-decompress') && job.native;
}

/** An error as it is posted between threads. */
export function serializeError(error: unknown): SerializedError {
  if (error instanceof WalvaultError) return { message: error.message, kind: error.kind, ...(error.hint === undefined ? {} : { hint: error.hint }) };
  return { message: (error as Error | undefined)?.message ?? String(error) };
}

/** The error a job raised in another thread, rebuilt: a WalvaultError stays one. */
export function deserializeError(error: SerializedError): Error {
  if (error.kind === undefined) return new Error(error.message);
  return new WalvaultError(error.kind as ConstructorParameters<typeof WalvaultError>[0], error.message, error.hint === undefined ? {} : { hint: error.hint });
}
