// Glue between the entry points and the fast paths: push-ahead for archive, prefetch for restore, their
// background workers, and the records the sh launchers answer from (src/policy/SPOOL.md).
// The push-ahead machinery loads only for archive and the prefetch machinery only for restore (start-up cost, src/cli/README.md).
import { createLogger, type Logger } from '../core/log.js';
import { archiveFile, type ArchiveRequest } from '../policy/archive.js';
import { restoreFile, type RestoreRequest } from '../policy/restore.js';
import { countOption, stringOption, type CommonOptions } from './options.js';

/** The hidden flag that turns a walvault-archive / walvault-restore process into a background worker. */
export const WORKER_FLAG = 'internal-worker';

/**
 * Every environment variable this process looks up, set or not (the option parser, the backends, the
 * AWS SDK): a launcher record lists them with their values, so the launcher answers only while each
 * is as it was (SPOOL.md, "Records"). Installed when this module loads, before the options are parsed.
 */
const environment = process.env;
/**
 * The environment as this process was started with it, before any module set a variable of its own
 * (the S3 backend sets AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED for the SDK): what the launcher
 * and a started worker see, so what records and fingerprints are made of. Recording a value this
 * process set itself made every S3 record a mismatch, and every S3 request a Node start.
 */
const startEnvironment: NodeJS.ProcessEnv = { ...environment };
const variablesRead = new Set<string>();
process.env = new Proxy(environment, {
  get(target, name, receiver) {
    if (typeof name === 'string') variablesRead.add(name);
    return Reflect.get(target, name, receiver) as unknown;
  },
  has(target, name) {
    if (typeof name === 'string') variablesRead.add(name);
    return Reflect.has(target, name);
  },
});

/**
 * The variables looked up so far, plus the WALVAULT_* variable of every option the parser resolved
 * (flags > WALVAULT_* > config file): recorded even if the parser read the environment some other way.
 */
function consulted(raw: Record<string, unknown>): Set<string> {
  const names = new Set(variablesRead);
  for (const key of Object.keys(raw)) if (/^[a-z0-9-]+$/.test(key)) names.add(`WALVAULT_${key.toUpperCase().replace(/-/g, '_')}`);
  return names;
}

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

/** The arguments before %p %f (or %f %p), as the launcher compares them. */
const optionArgs = (args: readonly string[]): string[] => args.slice(0, Math.max(0, args.length - 2));

/** What a launcher record of one call holds besides what every record has (SPOOL.md, "Records"). */
interface CallRecord {
  file: string;
  side: 'archive' | 'restore';
  id: string;
  /** The side's paths the launcher reads (markers, pid file...), as Node built them. */
  paths: Array<[string, string]>;
  spoolDir: string;
  options: CommonOptions;
  args: readonly string[];
}

/**
 * Writes the record the launcher answers the next calls with exactly these options from. Best effort:
 * without it the launcher starts Node, which decides; a failed write changes no outcome.
 */
async function writeRecord(spool: typeof import('../policy/spool.js'), call: CallRecord): Promise<void> {
  const configFile = stringOption(call.options.raw, 'config');
  await spool
    .writeLaunchRecord(
      call.file,
      {
        side: call.side,
        id: call.id,
        values: [
          ...call.paths,
          ['spool', call.spoolDir],
          ['quiet', call.options.verbosity === 'quiet' ? '1' : '0'],
        ],
        args: optionArgs(call.args),
        ...(configFile === undefined ? {} : { configFile }),
      },
      consulted(call.options.raw),
      startEnvironment,
    )
    .catch(() => undefined);
}

/** archive_command: push-ahead unless --push-ahead=0; or, with the worker flag, the background pusher. */
export async function archiveCommand(args: readonly string[], options: CommonOptions, request: ArchiveRequest): Promise<void> {
  const raw = options.raw;
  const pushAhead = count(raw, 'push-ahead');
  const parallel = count(raw, 'parallel', 1);
  const worker = raw[WORKER_FLAG];
  if (pushAhead === 0) {
    // A worker the launcher started for options that turn push-ahead off has nothing to do (it never
    // does: the launcher starts one only from a record, and Node writes none with push-ahead off).
    if (worker === undefined) await archiveFile(request);
    else request.deadline.dispose();
    return;
  }
  const [pushModule, spool] = await Promise.all([import('../policy/archive-async.js'), import('../policy/spool.js')]);
  const spoolDir = stringOption(raw, 'spool') ?? spool.defaultSpoolDir(request.sourcePath);
  const walDir = pathDir(request.sourcePath);
  await spool.checkSpoolFilesystem(spoolDir, walDir);
  const id = spool.fingerprint('archive', raw, startEnvironment);
  const configFile = stringOption(raw, 'config');
  // 'push-own': started by the sh launcher in place of the request for %f (src/cli/fast-path-archive.sh),
  // which waits for %f's marker: %f is pushed first.
  if (worker === 'push' || worker === 'push-own') {
    request.deadline.dispose();
    const log = workerLogger('walvault-archive', options);
    await pushModule.runPusher({
      spoolDir,
      pushAhead,
      parallel,
      id,
      configFile,
      backend: request.backend,
      walDir,
      after: request.fileName,
      pushAfterToo: worker === 'push-own',
      // Each push has its own deadline, and so has everything it does (the cluster guard included: see ArchiveRequest.inspect).
      request: (fileName, deadline) => ({ ...request, sourcePath: `${walDir}/${fileName}`, fileName, deadline, log }),
      timeoutMs: options.timeoutMs,
      log,
    });
    return;
  }
  const paths = spool.spoolPaths(spoolDir, 'archive', id);
  let started = false;
  await pushModule.archiveWithPushAhead(request, { spoolDir, pushAhead, parallel, id, configFile }, () => {
    started = true;
    return spool.launcherStartedWorker() ?? spool.startWorker('push', args, { env: startEnvironment });
  });
  // Archiving one file at a time leaves no trace in pg_wal: a record only once a pusher serves these options.
  if (!started && !(await spool.workerAlive(paths))) return;
  // This request succeeded: the next ones with exactly these options may be answered by the launcher.
  await writeRecord(spool, {
    file: spool.recordFile(request.sourcePath, 'archive'),
    side: 'archive',
    id,
    paths: [
      ['markers', paths.entries],
      ['pidfile', paths.pidFile],
      ['work', paths.work],
      ['waiter', paths.waiter],
    ],
    spoolDir,
    options,
    args,
  });
}

/** restore_command: prefetch unless --prefetch=0; or, with the worker flag, the background prefetcher. */
export async function restoreCommand(args: readonly string[], options: CommonOptions, request: RestoreRequest): Promise<void> {
  const raw = options.raw;
  const prefetch = count(raw, 'prefetch');
  const parallel = count(raw, 'parallel', 1);
  const maxBytes = count(raw, 'prefetch-max-bytes');
  const worker = raw[WORKER_FLAG];
  if (prefetch === 0) {
    if (worker === undefined) await restoreFile(request);
    else request.deadline.dispose();
    return;
  }
  const [prefetchModule, spool] = await Promise.all([import('../policy/restore-prefetch.js'), import('../policy/spool.js')]);
  const spoolDir = stringOption(raw, 'spool') ?? spool.defaultSpoolDir(request.targetPath);
  await spool.checkSpoolFilesystem(spoolDir, pathDir(request.targetPath));
  const id = spool.fingerprint('restore', raw, startEnvironment);
  if (worker === 'prefetch') {
    request.deadline.dispose();
    const log = workerLogger('walvault-restore', options);
    await prefetchModule.runPrefetcher({
      spoolDir,
      prefetch,
      parallel,
      maxBytes,
      id,
      backend: request.backend,
      decode: request.decode,
      timeoutMs: options.timeoutMs,
      log,
      // S3 answers every GET afresh; a POSIX backend checked its root once, when this worker started.
      freshLookup: request.backend.kind === 's3' ? 'stateless' : async () => (await import('../backend/registry.js')).openBackend(options.repo, (await import('./settings.js')).backendSettings(options, log)),
    });
    return;
  }
  const paths = spool.spoolPaths(spoolDir, 'restore', id);
  let prefetching = false;
  try {
    const result = await prefetchModule.restoreWithPrefetch(request, { spoolDir, prefetch, parallel, maxBytes, id }, () => {
      spool.startWorker('prefetch', args, { paths, env: startEnvironment });
      prefetching = true;
    });
    prefetching ||= result.prefetching;
  } finally {
    // A prefetcher serves these options (even when this request failed: a history file not found is
    // routine): the next requests with exactly them may be answered by the launcher.
    if (prefetching) {
      await writeRecord(spool, {
        file: spool.recordFile(request.targetPath, 'restore'),
        side: 'restore',
        id,
        paths: [
          ['entries', paths.entries],
          ['pidfile', paths.pidFile],
          ['asks', prefetchModule.askDirectory(paths)],
        ],
        spoolDir,
        options,
        args,
      });
    }
  }
}

/** Directory part of a path as PostgreSQL passes it (pg_wal/NAME → pg_wal; NAME → .). */
function pathDir(filePath: string): string {
  const slash = filePath.lastIndexOf('/');
  return slash < 0 ? '.' : slash === 0 ? '/' : filePath.slice(0, slash);
}
