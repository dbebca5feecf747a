// Where codec jobs run: on the stream's own thread while a process encodes or decodes one object at a
// time (a worker start, ~30-300 ms, would cost more than it saves on one segment); once two or more
// objects are encoded or decoded at once (the pusher, the prefetcher), also in a shared pool of worker
// threads (off by default for now, see defaultThreads), one fewer than the cores: a job goes to an idle
// worker, else the calling thread runs it itself, so every core works and no job waits in a queue.
// Node's own zstd runs in libuv's thread pool instead, pool or not.
// A global limit on jobs in flight bounds memory (each holds at most 4 MiB in and out), and a limit on
// pipelines encoding or decoding at once (admissionLimit): the others wait for their turn, a push of the
// archive policy before it opens its file or takes a buffer (Encoder.admit in index.ts), so the
// pusher's --parallel pushes with a codec hold the memory of admissionLimit() pipelines only.
//
// Each worker has two slots of shared memory (SLOT_BYTES each, given as workerData when it starts): a job's
// input is copied into the input slot and its output comes back in the output slot, so no buffer is
// allocated per job in one thread and freed in the other (see SLOT_BYTES). Only a job larger than a
// slot (frames of another writer, when decoding) moves its buffers instead.
// Protocol between the pool and a worker (src/codec/worker.ts):
// | message                        | from   | when                                     | transfer           |
// |--------------------------------|--------|------------------------------------------|--------------------|
// | { ready: true }                | worker | once its modules are loaded              | -                  |
// | { id, job, inputBytes }        | pool   | one at a time per worker; input in slot  | -                  |
// | { id, job }                    | pool   | the same, input larger than a slot       | job.input's buffer |
// | { id, outputBytes }            | worker | the job succeeded; output in its slot    | -                  |
// | { id, output }                 | worker | the same, output larger than a slot      | output's buffer    |
// | { id, error }                  | worker | the job failed (error serialized)        | -                  |
// The pool reads the output slot only between a job's answer and the next job it sends that worker.
// A worker that exits or errors fails the job it holds (the stream errors: nothing short is stored)
// and is replaced on a later job; one that never gets ready makes the pool 'unavailable': every job
// runs on the calling thread from then on.
// Worker states: starting -> idle <-> busy; any -> gone. Pool states: unused -> running | unavailable.

import { noteAdmissionWait } from './admission.js';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { WalvaultError } from '../core/errors.js';
import { collectGarbageAfter } from '../core/hash.js';
import { deserializeError, runJob, runsNatively, type CodecJob, type SerializedError } from './jobs.js';

/** Settings of the pool; see configureCodecPool. */
interface PoolSettings {
  /** Worker threads besides the calling thread; 0 runs every job on the calling thread. */
  threads: number;
  /** Objects that must be encoded or decoded at once before the pool starts (once started, it stays in use). */
  minStreams: number;
}

/** Most worker threads: each holds its own WASM heap (~10-15 MiB), counted in the process's RSS. */
const MAX_THREADS = 3;

let settings: PoolSettings | undefined;

function currentSettings(): PoolSettings {
  settings ??= { threads: defaultThreads(), minStreams: 2 };
  return settings;
}

/** Whether the pool is used by default: see defaultThreads. */
const POOL_BY_DEFAULT = false;

/**
 * Worker threads: none by default for now (POOL_BY_DEFAULT: on a loaded 2-core machine the pool was
 * slower, and each worker adds 20-45 MiB to the pusher; measured again with the shared-memory slots,
 * archiveFile of 32 segments of 16 MiB 5 at a time in one process, 2 cores, Node 20, under the exclusive
 * lock, two runs each: lz4 24.7/24.2 seg/s without a worker, 20.6/17.6 with one; wasm zstd 12.9/9.1
 * against 8.4/8.6: on two cores the worker competes with the pusher's own thread, PostgreSQL and the
 * kernel's I/O instead of adding a core), else one fewer than the cores (the calling
 * thread is the last one), at most MAX_THREADS. The environment variable WALVAULT_CODEC_THREADS sets
 * it (0: every job on the calling thread; "auto": cores - 1), for benchmarks comparing the pool with
 * the calling thread alone, e.g. `WALVAULT_CODEC_THREADS=auto scripts/bench --only codecs`.
 */
function defaultThreads(): number {
  const override = process.env.WALVAULT_CODEC_THREADS;
  const perCores = Math.min(Math.max(0, os.availableParallelism() - 1), MAX_THREADS);
  if (override === 'auto') return perCores;
  if (override !== undefined && /^[0-9]+$/.test(override)) return Math.min(Number(override), MAX_THREADS);
  return POOL_BY_DEFAULT ? perCores : 0;
}

/**
 * Overrides how many worker threads the pool uses and how many busy objects start it (tests, and
 * scripts/bench-codec.mjs comparing the pool with the calling thread). Applies to jobs started later.
 */
export function configureCodecPool(options: Partial<PoolSettings>): void {
  settings = { ...currentSettings(), ...options };
}

/** One worker thread of the pool. */
interface PoolWorker {
  thread: Worker;
  state: 'starting' | 'idle' | 'busy' | 'gone';
  job?: { id: number; resolve: (output: Uint8Array) => void; reject: (error: Error) => void };
  /** Its two slots of shared memory: a job's input is copied into `input`, its output comes back in `output`. */
  slots: WorkerSlots;
}

/** The shared memory a worker's jobs pass through (see SLOT_BYTES). */
export interface WorkerSlots {
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
}

/**
 * Bytes of each slot: a job walvault makes (1 MiB of input, and its output: a compressed block or frame
 * no larger than its input plus a few bytes, sealed age chunks 16 bytes per 64 KiB more) fits. Jobs
 * move through these fixed buffers instead of buffers moved between threads: a buffer allocated by one
 * thread and freed by another leaves the allocator's per-thread arenas growing with the data (measured:
 * lz4 through a worker, RSS 131 MiB at 256 MiB, 164 at 1 GiB), and every job allocated two. A larger
 * job (a frame of another writer) still moves its buffers.
 */
export const SLOT_BYTES = (1 << 20) + (64 << 10);

type PoolState = 'unused' | 'running' | 'unavailable';

let poolState: PoolState = 'unused';
const workers: PoolWorker[] = [];
let nextJobId = 1;
let busyStreams = 0;
/** Set once any worker got ready: from then on a lost worker is replaced, not a reason to give the pool up. */
let workerEverReady = false;

/** Jobs started and not yet finished (any thread); see acquireSlot. */
let jobsInFlight = 0;
const slotWaiters: Array<() => void> = [];
/** Bytes received from workers, for collectGarbageAfter. */
let bytesFromWorkers = 0;

/** Counters for tests and the codec benchmark. */
const counters = { jobsInWorkers: 0, jobsOnCaller: 0, peakJobsInFlight: 0 };

/** Jobs in flight in the whole process: one per thread (workers and the calling thread) and one more being handed over. */
function slotLimit(): number {
  return currentSettings().threads + 2;
}

async function acquireSlot(): Promise<void> {
  while (jobsInFlight >= slotLimit()) await new Promise<void>((resolve) => slotWaiters.push(resolve));
  jobsInFlight += 1;
  counters.peakJobsInFlight = Math.max(counters.peakJobsInFlight, jobsInFlight);
}

function releaseSlot(): void {
  jobsInFlight -= 1;
  slotWaiters.shift()?.();
}

/** Pipelines admitted to encode or decode at once; see StreamGroup.admitted. */
let admittedGroups = 0;
const admissionWaiters: Array<() => void> = [];

/**
 * Pipelines that may encode or decode at once: each holds up to 4 MiB of input it gathers plus its
 * jobs, so more than the threads can keep busy (the pusher runs 5 archives at once) would only hold
 * memory. The others wait before their first byte (backpressure on their readers), or before they
 * open anything when their caller waits for Encoder.admit (archive.ts, POSIX: measured in-process,
 * 32 segments of 16 MiB 5 at a time, peak RSS lz4 92-109 -> 87-95 MiB, zstd 97 -> 82-85 MiB).
 */
function admissionLimit(): number {
  return currentSettings().threads + 2;
}

/**
 * The codec streams of one encode or decode pipeline (compression and encryption), counted as one busy
 * object from the first input any of them sees until all that started have ended or failed.
 */
export class StreamGroup {
  private members = 0;
  private admission: Promise<void> | undefined;
  private admittedNow = false;

  /** Marks one member as started; returns its release (safe to call twice). */
  enter(): () => void {
    if (this.members === 0) busyStreams += 1;
    this.members += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.members -= 1;
      if (this.members > 0) return;
      busyStreams -= 1;
      if (this.admittedNow) {
        this.admittedNow = false;
        this.admission = undefined;
        admittedGroups -= 1;
        admissionWaiters.shift()?.();
      }
    };
  }

  /**
   * Resolves once this pipeline may encode or decode (see admissionLimit); held until all its members
   * have ended. Waiting holds nothing, so no pipeline waits on another that waits.
   */
  admitted(): Promise<void> {
    this.admission ??= (async () => {
      if (admittedGroups >= admissionLimit()) {
        noteAdmissionWait(1);
        try {
          while (admittedGroups >= admissionLimit()) await new Promise<void>((resolve) => admissionWaiters.push(resolve));
        } finally {
          noteAdmissionWait(-1);
        }
      }
      admittedGroups += 1;
      this.admittedNow = true;
    })();
    return this.admission;
  }
}

/** The worker script next to this module (also from the start-up bundle in dist/cli); absent when run from src/. */
function workerScript(): string | undefined {
  try {
    const file = fileURLToPath(new URL('../codec/worker.js', import.meta.url));
    return existsSync(file) ? file : undefined;
  } catch {
    return undefined;
  }
}

function usePool(): boolean {
  const { threads, minStreams } = currentSettings();
  if (threads <= 0 || poolState === 'unavailable') return false;
  if (poolState === 'running') return true;
  if (busyStreams < minStreams) return false;
  if (workerScript() === undefined) {
    poolState = 'unavailable';
    return false;
  }
  poolState = 'running';
  return true;
}

/** Runs one codec job where it is cheapest (see the top of this file); resolves with its output. */
export async function runCodecJob(job: CodecJob, options: { owned: boolean }): Promise<Uint8Array> {
  await acquireSlot();
  try {
    if (!runsNatively(job) && usePool()) {
      const worker = idleWorker();
      if (worker !== undefined) return await inWorker(worker, job, options.owned);
      counters.jobsOnCaller += 1;
    }
    return await runJob(job);
  } finally {
    releaseSlot();
  }
}

/** An idle worker, if any; starts one (ready for later jobs) while fewer than the thread count exist. */
function idleWorker(): PoolWorker | undefined {
  const idle = workers.find((worker) => worker.state === 'idle');
  if (idle === undefined && workers.length < currentSettings().threads) startWorker();
  return idle;
}

/** Runs a job in `worker`: its input copied into the worker's input slot, or (larger than a slot) moved. */
function inWorker(worker: PoolWorker, job: CodecJob, owned: boolean): Promise<Uint8Array> {
  const id = nextJobId++;
  return new Promise<Uint8Array>((resolve, reject) => {
    worker.state = 'busy';
    worker.job = { id, resolve, reject };
    // Held (ref) while it works: the process must not end with a job unanswered.
    worker.thread.ref();
    if (job.input.byteLength <= SLOT_BYTES) {
      new Uint8Array(worker.slots.input).set(job.input);
      worker.thread.postMessage({ id, job: { ...job, input: undefined }, inputBytes: job.input.byteLength });
      return;
    }
    // A view of a buffer we do not own is copied into one we do, so only its bytes cross, moved.
    // (new Uint8Array(view) copies; Buffer's slice() would not.)
    const input = owned && job.input.buffer instanceof ArrayBuffer ? job.input : new Uint8Array(job.input);
    worker.thread.postMessage({ id, job: { ...job, input } }, [input.buffer as ArrayBuffer]);
  });
}

/** Resource limits of a worker thread: its heap holds a job's small objects only (the bytes are in the slots and its WASM memory). */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 48 };

function startWorker(): void {
  const script = workerScript();
  if (script === undefined) {
    poolState = 'unavailable';
    return;
  }
  const slots: WorkerSlots = { input: new SharedArrayBuffer(SLOT_BYTES), output: new SharedArrayBuffer(SLOT_BYTES) };
  const thread = new Worker(script, { workerData: slots, resourceLimits: WORKER_LIMITS });
  const worker: PoolWorker = { thread, state: 'starting', slots };
  workers.push(worker);
  thread.on('message', (message: { ready?: true; id?: number; output?: Uint8Array; outputBytes?: number; error?: SerializedError }) => {
    if (message.ready === true) {
      if (worker.state === 'starting') worker.state = 'idle';
      workerEverReady = true;
      if (worker.state === 'idle') thread.unref();
      for (const waiter of readyWaiters.splice(0)) waiter();
      return;
    }
    const job = worker.job;
    if (job === undefined || job.id !== message.id) return;
    worker.job = undefined;
    worker.state = 'idle';
    thread.unref();
    counters.jobsInWorkers += 1;
    if (message.error !== undefined) {
      job.reject(deserializeError(message.error));
      return;
    }
    // An output in the slot is copied out before the worker's next job overwrites it.
    const output = message.outputBytes === undefined ? (message.output as Uint8Array) : Buffer.from(new Uint8Array(slots.output, 0, message.outputBytes));
    // Each job leaves its output as garbage once pushed on; see collectGarbageAfter.
    const before = bytesFromWorkers;
    bytesFromWorkers += output.byteLength;
    collectGarbageAfter(before, bytesFromWorkers);
    job.resolve(output);
  });
  const lost = (why: string): void => {
    if (worker.state === 'gone') return;
    const wasStarting = worker.state === 'starting';
    worker.state = 'gone';
    workers.splice(workers.indexOf(worker), 1);
    const job = worker.job;
    worker.job = undefined;
    job?.reject(
      new WalvaultError('internal', `a codec worker thread stopped in the middle of a job (${why})`, {
        hint: 'nothing was stored for this file; PostgreSQL retries it. If it repeats, report it with this line',
      }),
    );
    // A worker that never got ready will not do better next time: every job runs on the calling thread.
    if (wasStarting && !workerEverReady) poolState = 'unavailable';
    for (const waiter of readyWaiters.splice(0)) waiter();
  };
  thread.on('error', (error: Error) => lost(error.message));
  thread.on('exit', (code: number) => lost(`exit code ${code}`));
  // After the listeners (a 'message' listener refs the thread again): no job waits for a starting worker
  // (the calling thread runs them meanwhile), so it must not keep the process alive.
  thread.unref();
}

const readyWaiters: Array<() => void> = [];

/**
 * Starts the pool's workers now and resolves with how many are ready (0 when the pool is unavailable),
 * so that a benchmark or test measures or exercises the running pool, not its start.
 */
export async function startCodecPool(): Promise<number> {
  const { threads } = currentSettings();
  if (threads <= 0 || workerScript() === undefined) return 0;
  if (poolState === 'unused') poolState = 'running';
  while (poolState === 'running' && workers.length < threads) startWorker();
  // Held while this waits for them (else the process could end here with nothing else to do).
  for (const worker of workers) if (worker.state === 'starting') worker.thread.ref();
  while (poolState === 'running' && workers.some((worker) => worker.state === 'starting')) await new Promise<void>((resolve) => readyWaiters.push(resolve));
  return workers.filter((worker) => worker.state === 'idle' || worker.state === 'busy').length;
}

/**
 * Stops every worker thread now; jobs they hold fail (their streams error), later jobs start new
 * workers. For tests that check a worker lost mid-stream surfaces as an error.
 */
export async function terminateCodecWorkers(): Promise<number> {
  const running = workers.filter((worker) => worker.state !== 'gone');
  await Promise.all(running.map((worker) => worker.thread.terminate()));
  return running.length;
}

/** What the pool is doing and has done, for tests and the codec benchmark. */
export function codecPoolState(): {
  state: PoolState;
  threads: number;
  workers: number;
  busyWorkers: number;
  jobsInFlight: number;
  jobLimit: number;
  busyStreams: number;
  admittedGroups: number;
  admissionLimit: number;
  jobsInWorkers: number;
  jobsOnCaller: number;
  peakJobsInFlight: number;
} {
  return {
    state: poolState,
    threads: currentSettings().threads,
    workers: workers.length,
    busyWorkers: workers.filter((worker) => worker.state === 'busy').length,
    jobsInFlight,
    jobLimit: slotLimit(),
    busyStreams,
    admittedGroups,
    admissionLimit: admissionLimit(),
    ...counters,
  };
}
