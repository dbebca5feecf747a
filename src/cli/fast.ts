// Glue between the entry points and the fast paths: push-ahead for archive, prefetch for restore, and their background workers.
// The push-ahead machinery loads only for archive and the prefetch machinery only for restore (start-up cost, see README).
import { createLogger, type Logger } from '../core/log.js';
import { archiveFile, type ArchiveRequest } from '../policy/archive.js';
import { restoreFile, type RestoreRequest } from '../policy/restore.js';
import { countOption, stringOption, type CommonOptions } from './options.js';

/** The hidden flag that turns a walvault-archive / walvault-restore process into a background worker. */
export const WORKER_FLAG = 'internal-worker';

/** A non-negative integer option; its default (per command and backend) comes from OPTION_TABLE through the parser. */
function count(raw: Record<string, unknown>, name: string, minimum = 0): number {
  return countOption(raw, name, { minimum });
}

/** Worker log lines say they come from the background, so the server log tells them apart. */
function workerLogger(program: string, options: CommonOptions): Logger {
  // Whoever started us may have closed our stderr: losing a log line must not stop a worker.
  process.stderr.on('error', () => undefined);
  return createLogger(program, options.verbosity, undefined, `${program === 'walvault-archive' ? 'pusher' : 'prefetcher'} ${process.pid}`);
}

/** archive_command: push-ahead unless --push-ahead=0; or, with the worker flag, the background pusher. */
export async function archiveCommand(args: readonly string[], options: CommonOptions, request: ArchiveRequest): Promise<void> {
  const raw = options.raw;
  const pushAhead = count(raw, 'push-ahead');
  const parallel = count(raw, 'parallel', 1);
  if (pushAhead === 0 && raw[WORKER_FLAG] === undefined) {
    await archiveFile(request);
    return;
  }
  const [{ archiveWithPushAhead, runPusher }, { defaultSpoolDir, launcherStartedWorker, spoolIdentity, startWorker }] = await Promise.all([import('../policy/archive-async.js'), import('../policy/spool.js')]);
  const spoolDir = stringOption(raw, 'spool') ?? defaultSpoolDir(request.sourcePath);
  const identity = spoolIdentity('archive', args);
  const configFile = stringOption(raw, 'config');
  // 'push-own': started by the sh launcher in place of the request for %f (src/cli/fast-path-archive.sh),
  // which waits for %f's marker: %f is pushed first.
  const worker = raw[WORKER_FLAG];
  if (worker === 'push' || worker === 'push-own') {
    request.deadline.dispose();
    // The sh launcher starts a pusher before any option is parsed: one that --config (or the
    // environment) turned off has nothing to do.
    if (pushAhead === 0) return;
    const log = workerLogger('walvault-archive', options);
    await runPusher({
      spoolDir,
      pushAhead,
      parallel,
      identity,
      configFile,
      backend: request.backend,
      walDir: pathDir(request.sourcePath),
      after: request.fileName,
      pushAfterToo: worker === 'push-own',
      request: (fileName, deadline) => ({ ...request, sourcePath: `${pathDir(request.sourcePath)}/${fileName}`, fileName, deadline, log }),
      timeoutMs: options.timeoutMs,
      log,
    });
    return;
  }
  if (pushAhead === 0) {
    await archiveFile(request);
    return;
  }
  await archiveWithPushAhead(request, { spoolDir, pushAhead, parallel, identity, configFile }, () => launcherStartedWorker() ?? startWorker('push', args));
}

/** restore_command: prefetch unless --prefetch=0; or, with the worker flag, the background prefetcher. */
export async function restoreCommand(args: readonly string[], options: CommonOptions, request: RestoreRequest): Promise<void> {
  const raw = options.raw;
  const prefetch = count(raw, 'prefetch');
  const parallel = count(raw, 'parallel', 1);
  const maxBytes = count(raw, 'prefetch-max-bytes');
  if (prefetch === 0 && raw[WORKER_FLAG] === undefined) {
    await restoreFile(request);
    return;
  }
  const [{ restoreWithPrefetch, runPrefetcher }, { defaultSpoolDir, spoolIdentity, spoolPaths, startWorker }] = await Promise.all([import('../policy/restore-prefetch.js'), import('../policy/spool.js')]);
  const spoolDir = stringOption(raw, 'spool') ?? defaultSpoolDir(request.targetPath);
  const identity = spoolIdentity('restore', args);
  if (raw[WORKER_FLAG] === 'prefetch') {
    request.deadline.dispose();
    const log = workerLogger('walvault-restore', options);
    await runPrefetcher({
      spoolDir,
      prefetch,
      parallel,
      maxBytes,
      identity,
      backend: request.backend,
      decode: request.decode,
      timeoutMs: options.timeoutMs,
      log,
      // S3 answers every GET afresh; a POSIX backend checked its root once, when this worker started.
      freshLookup: request.backend.kind === 's3' ? 'stateless' : async () => (await import('../backend/registry.js')).openBackend(options.repo, (await import('./settings.js')).backendSettings(options, log)),
    });
    return;
  }
  if (prefetch === 0) {
    await restoreFile(request);
    return;
  }
  await restoreWithPrefetch(request, { spoolDir, prefetch, parallel, maxBytes, identity }, () => startWorker('prefetch', args, { pidFile: spoolPaths(spoolDir, 'restore').pidFile }));
}

/** Directory part of a path as PostgreSQL passes it (pg_wal/NAME → pg_wal; NAME → .). */
function pathDir(filePath: string): string {
  const slash = filePath.lastIndexOf('/');
  return slash < 0 ? '.' : slash === 0 ? '/' : filePath.slice(0, slash);
}
