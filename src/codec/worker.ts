// Entry of a codec worker thread (started by pool.ts): runs the jobs it is sent, one at a time, reading
// the input from its input slot and leaving the output in its output slot (shared memory; larger ones
// move their buffers). Protocol: see the table in pool.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { collectGarbageAfter } from '../core/hash.js';
import { runJob, serializeError, type CodecJob } from './jobs.js';
import { SLOT_BYTES, type WorkerSlots } from './pool.js';

/** A job as the pool posts it: its input in the input slot (`inputBytes`), or moved in `job.input`. */
interface JobMessage {
  id: number;
  job: CodecJob;
  inputBytes?: number;
}

const port = parentPort;
if (port === null) throw new Error('src/codec/worker.ts runs only as a worker thread');
const slots = workerData as WorkerSlots;

/** Bytes this thread has taken in and given out: every job leaves its input (moved here) and its own buffers as garbage. */
let bytesHandled = 0;

port.on('message', (message: JobMessage) => {
  const job: CodecJob = message.inputBytes === undefined ? message.job : { ...message.job, input: Buffer.from(slots.input, 0, message.inputBytes) };
  runJob(job).then(
    (output) => {
      // A worker's heap is small, so V8 would leave megabytes of dead buffers for long; see collectGarbageAfter.
      const before = bytesHandled;
      bytesHandled += job.input.byteLength + output.byteLength;
      collectGarbageAfter(before, bytesHandled);
      if (output.byteLength <= SLOT_BYTES) {
        new Uint8Array(slots.output).set(output);
        port.postMessage({ id: message.id, outputBytes: output.byteLength });
        return;
      }
      // Only a buffer the output fills alone is moved; a view (of a larger buffer, or of Buffer's shared
      // pool) is copied first (new Uint8Array(view) copies; Buffer's slice() would not).
      const owned = output.byteOffset === 0 && output.byteLength === output.buffer.byteLength && output.buffer instanceof ArrayBuffer;
      const sent = owned ? output : new Uint8Array(output);
      port.postMessage({ id: message.id, output: sent }, [sent.buffer as ArrayBuffer]);
    },
    (error: unknown) => port.postMessage({ id: message.id, error: serializeError(error) }),
  );
});
port.postMessage({ ready: true });
