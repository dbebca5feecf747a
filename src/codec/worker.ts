// Entry of a codec worker thread (started by pool.ts): runs the jobs it is sent, one at a time, and posts
// each result back with its buffer transferred, not copied. Protocol: see the table in pool.ts.
import { parentPort } from 'node:worker_threads';
import { collectGarbageAfter } from '../core/hash.js';
import { runJob, serializeError, type CodecJob } from './jobs.js';

/** A job as the pool posts it. */
interface JobMessage {
  id: number;
  job: CodecJob;
}

const port = parentPort;
if (port === null) throw new Error('src/codec/worker.ts runs only as a worker thread');

/** Bytes this thread has taken in and given out: every job leaves its input (moved here) and its own buffers as garbage. */
let bytesHandled = 0;

port.on('message', (message: JobMessage) => {
  runJob(message.job).then(
    (output) => {
      // A worker's heap is small, so V8 would leave megabytes of dead input buffers for long; see collectGarbageAfter.
      const before = bytesHandled;
      bytesHandled += message.job.input.byteLength + output.byteLength;
      collectGarbageAfter(before, bytesHandled);
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
