// The restore policy: the complete, verified file at %p, "not found" only when it truly is, and a deliberate choice on every other failure.
import { existsSync } from 'node:fs';
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Backend } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { monotonicMs } from '../core/clock.js';
import { withRetries, type Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { HashingStream } from '../core/hash.js';
import { formatDuration, type Logger } from '../core/log.js';
import { objectKey, validateFileName } from '../wal/names.js';
import { decodeStored } from './stored.js';

/** What to do when a restore fails for a reason other than "not in the archive". */
export type OnErrorMode = 'missing' | 'abort' | 'auto';

/** Everything the restore policy needs. */
export interface RestoreRequest {
  backend: Backend;
  /** Name of the wanted file (%f). */
  fileName: string;
  /** Where to put it (%p, relative to the working directory = the data directory). */
  targetPath: string;
  /** Keys for encrypted objects. */
  decode: DecodeOptions;
  /** Resolved policy for failures: 'missing' reports "not available" (exit 1), 'abort' stops recovery. */
  onError: 'missing' | 'abort';
  deadline: Deadline;
  log: Logger;
}

/** What was restored. */
export interface RestoreResult {
  bytes: number;
  location: string;
  durationMs: number;
  verified: boolean;
}

/**
 * Resolves --on-error=auto from the signal files in the data directory: in standby mode the server
 * retries (and can stream), so "not available" is safe; in archive recovery it would END recovery early
 * and promote at the wrong point, so we abort. Without either file (a manual run), abort too.
 */
export function resolveOnError(mode: OnErrorMode, dataDirectory: string): 'missing' | 'abort' {
  if (mode !== 'auto') return mode;
  return existsSync(path.join(dataDirectory, 'standby.signal')) ? 'missing' : 'abort';
}

/** Fetches, decodes and verifies into a temp file beside the target, then renames it into place. */
async function fetchInto(request: RestoreRequest, key: string): Promise<RestoreResult | null> {
  const started = monotonicMs();
  const ctx = { signal: request.deadline.signal };
  const object = await request.backend.read(key, ctx);
  if (object === null) return null;
  const location = request.backend.describe(key);
  const decoded = await decodeStored(object, request.decode);
  const hasher = await HashingStream.create();
  // PostgreSQL runs restore_command serially per data directory, so one fixed temp name suffices, and
  // a copy killed midway is simply overwritten by the next attempt instead of piling up in pg_wal.
  const temp = path.join(path.dirname(request.targetPath), `.${path.basename(request.targetPath)}~walvault`);
  try {
    await request.deadline.race(pipeline(decoded.content, hasher, createWriteStream(temp, { mode: 0o600 })));
    await request.deadline.race(decoded.finished);
    const meta = decoded.meta;
    if (meta !== null && (meta.contentHash !== hasher.digest() || meta.contentSize !== hasher.bytes)) {
      throw new WalvaultError('corrupt', `archived "${request.fileName}" at "${location}" is corrupt: content hash ${hasher.digest()} (${hasher.bytes} bytes) does not match the recorded ${meta.contentHash} (${meta.contentSize} bytes)`, {
        hint: 'run walvault verify; restore this file from another copy of the archive; nothing was written to the target',
      });
    }
    await nodeFs.rename(temp, request.targetPath);
    return { bytes: hasher.bytes, location, durationMs: monotonicMs() - started, verified: meta !== null };
  } catch (error) {
    await nodeFs.unlink(temp).catch(() => undefined);
    if (error instanceof WalvaultError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES' || code === 'ENOSPC') {
      throw new WalvaultError('backend', `cannot write restored "${request.fileName}" to "${request.targetPath}": ${(error as Error).message}`, {
        hint: 'check the target directory (pg_wal) exists, is writable and has space',
      });
    }
    throw new WalvaultError('backend', `reading archived "${request.fileName}" from "${location}" failed: ${(error as Error).message}`, {
      hint: 'check the repository storage; PostgreSQL will ask again',
      transient: true,
      cause: error,
    });
  }
}

/**
 * Applies the --on-error policy to any failure of a restore: "not found" and already-decided failures
 * pass through; everything else becomes exit 1 (missing) or exit 128 (abort), logged loudly either way.
 */
export function asRestoreFailure(error: unknown, onError: 'missing' | 'abort'): WalvaultError {
  if (error instanceof WalvaultError && (error.kind === 'not-found' || error.kind === 'abort-recovery')) return error;
  const failure = error instanceof WalvaultError ? error : new WalvaultError('internal', `restore failed: ${String((error as Error)?.stack ?? error).split('\n').slice(0, 3).join(' | ')}`);
  if (onError === 'abort') {
    return new WalvaultError('abort-recovery', `${failure.message}; stopping recovery (--on-error=abort) so it cannot end early at the wrong point`, {
      hint: `${failure.hint ?? 'fix the cause'}; then start the server again to resume recovery`,
      cause: failure,
    });
  }
  return new WalvaultError('not-found', `${failure.message}; reporting "not available" to PostgreSQL (--on-error=missing)`, {
    hint: `${failure.hint ?? 'fix the cause'}; in standby mode the server retries`,
    cause: failure,
  });
}

/**
 * Restores one file. Throws WalvaultError('not-found') (exit 1) when it is not archived; any other
 * failure, after retrying transient ones within the deadline, is reported according to onError.
 */
export async function restoreFile(request: RestoreRequest): Promise<RestoreResult> {
  const { log, deadline } = request;
  let key: string;
  let result: RestoreResult | null;
  try {
    key = objectKey(validateFileName(request.fileName));
    result = await withRetries(() => fetchInto(request, key), {
      deadline,
      onRetry: (error, attempt, delay) => log.warn(`${error.oneLine()} (attempt ${attempt}, retrying in ${delay} ms)`),
    });
  } catch (error) {
    throw asRestoreFailure(error, request.onError);
  }
  if (result === null) {
    throw new WalvaultError('not-found', `"${request.fileName}" not found in "${request.backend.describe(key)}"`, { routine: true });
  }
  log.info(`restored "${request.fileName}" from "${result.location}" to "${request.targetPath}" (${result.bytes} bytes, ${formatDuration(result.durationMs)}${result.verified ? '' : ', no recorded hash to verify'})`);
  return result;
}
