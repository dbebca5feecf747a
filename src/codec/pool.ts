// Where codec jobs run: on the stream's own thread while a process encodes or decodes one object at a
// time (a worker start, ~30-300 ms, would cost more than it saves on one segment), in a shared pool of
// worker threads sized to the cores once two or more streams are busy at once (the pusher, the prefetcher),
// and in libuv's thread pool for Node's own zstd. A global limit on jobs in flight bounds memory.
//
// Protocol between the pool and a worker (src/codec/worker.ts):
// | message           | from   | when                              | transfer                     |
// |-------------------|--------|-----------------------------------|------------------------------|
// | { ready: true }   | worker | once its modules are loaded       | -                            |
// | { id, job }       | pool   | one at a time per worker          | job.input's buffer if owned  |
// | { id, output }    | worker | the job succeeded                 | output's buffer              |
// | { id, error }     | worker | the job failed (error serialized) | -                            |
// A worker that exits or errors fails the job it holds (the stream errors: nothing short is stored)
// and is replaced on the next job; one that never gets ready makes the pool 'unavailable' and every
// job runs on the calling thread from then on.
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { WalvaultError } from '../core/errors.js';
import { deserializeError, runJob, runsNatively, type CodecJob, type SerializedError } from './jobs.js';

/** Settings of the pool; see configureCodecPool. */
interface PoolSettings {
  /** Worker threads; 0 runs every job on the calling thread. */
  threads: number;
  /** Streams that must be busy at once before the pool starts (once started, it stays in use). */
  minStreams: number;
}

/** Most worker threads: each holds a WASM heap of ~10-20 MiB, counted in the process's RSS. */
const MAX_THREADS = 4;

let settings: PoolSettings | undefined;

function currentSettings(): PoolSettings {
  if (settings === undefined) {
    settings = { threads: Math.min(Math.max(1, os.availableParallelism()), MAX_THREADS), minStreams: 2 };
  }
  return settings;
}

/**
 * Overrides how many threads the pool uses and how many busy streams start it (tests, and
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
}

/** A job waiting for a free worker. */
interface QueuedJob {
  job: CodecJob;
  resolve: (output: Uint8Array) => void;
  reject: (error: Error) => void;
}

type PoolState = 'unused' | 'running' | 'unavailable';

let poolState: PoolState = 'unused';
const workers: PoolWorker[] = [];
const queue: QueuedJob[] = [];
let nextJobId = 1;
let busyStreams = 0;
/** Set once any worker got ready: from then on a lost worker is replaced, not a reason to give the pool up. */
let workerEverReady = false;

/** Jobs started and not yet finished (any thread); see acquireSlot. */
let jobsInFlight = 0;
const slotWaiters: Array<() => void> = [];

/** Jobs in flight in the whole process: two per thread keep every worker fed, and bound the bytes held (<= 8 MiB per job). */
function slotLimit(): number {
  return Math.max(2, 2 * currentSettings().threads);
}

/** Counters for tests and the codec benchmark. */
const counters = { jobsInWorkers: 0, peakJobsInFlight: 0 };

async function acquireSlot(): Promise<void> {
  while (jobsInFlight >= slotLimit()) await new Promise<void>((resolve) => slotWaiters.push(resolve));
  jobsInFlight += 1;
  counters.peakJobsInFlight = Math.max(counters.peakJobsInFlight, jobsInFlight);
}

function releaseSlot(): void {
  jobsInFlight -= 1;
  slotWaiters.shift()?.();
}

/** Counts a stream as busy from its first input to its end; the pool starts once several are. Returns the release. */
export function streamBusy(): () => void {
  busyStreams += 1;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    busyStreams -= 1;
  };
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
    if (!(await runsNatively(job)) && usePool()) {
      const output = await inPool(job, options.owned);
      if (output !== undefined) return output;
    }
    return await runJob(job);
  } finally {
    releaseSlot();
  }
}

/** Runs a job in a worker; undefined when the pool turned out unavailable (then the caller runs it). */
function inPool(job: CodecJob, owned: boolean): Promise<Uint8Array | undefined> {
  // A view of a buffer we do not own is copied into one we do, so only its bytes cross (and are moved).
  // (new Uint8Array(view) copies; Buffer's slice() would not.)
  const input = owned && job.input.buffer instanceof ArrayBuffer ? job.input : new Uint8Array(job.input);
  const sent = { ...job, input } as CodecJob;
  return new Promise<Uint8Array | undefined>((resolve, reject) => {
    queue.push({ job: sent, resolve, reject });
    dispatch();
  }).catch((error: unknown) => {
    if (error === POOL_UNAVAILABLE) return undefined;
    throw error;
  });
}

const POOL_UNAVAILABLE = new Error('codec pool unavailable');

/** Hands queued jobs to idle workers, starting workers up to the thread count. */
function dispatch(): void {
  if (poolState === 'unavailable') {
    for (const waiting of queue.splice(0)) waiting.reject(POOL_UNAVAILABLE);
    return;
  }
  while (queue.length > 0) {
    const idle = workers.find((worker) => worker.state === 'idle');
    if (idle === undefined) {
      if (workers.length < currentSettings().threads) startWorker();
      return;
    }
    const next = queue.shift() as QueuedJob;
    assign(idle, next);
  }
}

function assign(worker: PoolWorker, queued: QueuedJob): void {
  const id = nextJobId++;
  worker.state = 'busy';
  worker.job = { id, resolve: queued.resolve, reject: queued.reject };
  // Held (ref) while it works: the process must not end with a job unanswered.
  worker.thread.ref();
  worker.thread.postMessage({ id, job: queued.job }, [queued.job.input.buffer as ArrayBuffer]);
}

function startWorker(): void {
  const script = workerScript();
  if (script === undefined) {
    poolState = 'unavailable';
    dispatch();
    return;
  }
  const thread = new Worker(script);
  const worker: PoolWorker = { thread, state: 'starting' };
  workers.push(worker);
  // Held while it starts (jobs may be waiting for it) and while it works; an idle worker never keeps the process alive.
  thread.on('message', (message: { ready?: true; id?: number; output?: Uint8Array; error?: SerializedError }) => {
    if (message.ready === true) {
      worker.state = 'idle';
      workerEverReady = true;
      thread.unref();
      dispatch();
      return;
    }
    const job = worker.job;
    if (job === undefined || job.id !== message.id) return;
    worker.job = undefined;
    worker.state = 'idle';
    thread.unref();
    counters.jobsInWorkers += 1;
    if (message.error !== undefined) job.reject(deserializeError(message.error));
    else job.resolve(message.output as Uint8Array);
    dispatch();
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
    // A worker that never got ready will not do better next time: run everything on the calling thread.
    if (wasStarting && !workerEverReady) poolState = 'unavailable';
    dispatch();
  };
  thread.on('error', (error: Error) => lost(error.message));
  thread.on('exit', (code: number) => lost(`exit code ${code}`));
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
export function codecPoolState(): { state: PoolState; threads: number; workers: number; busyWorkers: number; jobsInFlight: number; jobLimit: number; busyStreams: number; jobsInWorkers: number; peakJobsInFlight: number } {
  return {
    state: poolState,
    threads: currentSettings().threads,
    workers: workers.length,
    busyWorkers: workers.filter((worker) => worker.state === 'busy').length,
    jobsInFlight,
    jobLimit: slotLimit(),
    busyStreams,
    ...counters,
  };
}
