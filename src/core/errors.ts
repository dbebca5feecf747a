// The one catalogue of failure kinds and their exit codes; every exit walvault makes comes from here.

/** Why a command failed; each kind has one stable, documented exit code. */
export type ErrorKind =
  | 'not-found'
  | 'usage'
  | 'source'
  | 'mismatch'
  | 'backend'
  | 'timeout'
  | 'corrupt'
  | 'mount'
  | 'no-space'
  | 'cluster-mismatch'
  | 'key'
  | 'verify-failed'
  | 'check-failed'
  | 'status-alert'
  | 'node-missing'
  | 'internal'
  | 'abort-recovery';

/**
 * Exit codes, all 1..125 except `abort-recovery`, which is deliberately above 125: PostgreSQL treats
 * a restore_command exit status above 125 as fatal and stops recovery instead of ending it early.
 */
export const EXIT_CODES: Readonly<Record<ErrorKind, number>> = {
  'not-found': 1,
  usage: 2,
  source: 3,
  mismatch: 4,
  backend: 5,
  timeout: 6,
  corrupt: 7,
  mount: 8,
  'no-space': 9,
  'cluster-mismatch': 10,
  key: 11,
  'verify-failed': 12,
  'check-failed': 13,
  'status-alert': 14,
  'node-missing': 15,
  internal: 70,
  'abort-recovery': 128,
};

/** One line per code, for `--help` and the README table. */
export const EXIT_CODE_MEANINGS: Readonly<Record<ErrorKind, string>> = {
  'not-found': 'restore: the file is not in the archive (normal at the end of recovery)',
  usage: 'bad command line, option, configuration file or file name',
  source: 'archive: the file to archive is missing or unreadable',
  mismatch: 'archive: a different file with that name is already archived; nothing was changed',
  backend: 'the repository failed (I/O error, permission denied, unreachable, bad credentials)',
  timeout: 'a storage operation did not finish within --timeout',
  corrupt: 'a stored object does not match the hash recorded when it was archived',
  mount: 'nfs: the repository directory is not on the expected filesystem (mount missing?)',
  'no-space': 'the repository filesystem is full',
  'cluster-mismatch': 'archive: the WAL comes from another cluster or server version than the repository records',
  key: 'encryption key missing, unreadable or wrong',
  'verify-failed': 'verify: the archive has problems (see the report)',
  'check-failed': 'check: a step of the live setup check failed',
  'status-alert': 'status: a part could not be read, or a threshold given to it (--max-lag...) is crossed',
  'node-missing': 'the launcher found no Node.js to run (not in PATH, or WALVAULT_NODE names no executable); restore keeps the shell\'s 127, which stops recovery',
  internal: 'unexpected internal error (a bug: please report it with the log line)',
  'abort-recovery': 'restore: a failure other than "not found" with --on-error=abort; PostgreSQL stops recovery',
};

/** An expected failure: carries its kind, a lower-case message and the operator's next step. */
export class WalvaultError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  readonly transient: boolean;
  /** An expected, routine outcome (restore's "not found"): logged at info level, not as an error. */
  readonly routine: boolean;

  constructor(kind: ErrorKind, message: string, options: { hint?: string; cause?: unknown; transient?: boolean; routine?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WalvaultError';
    this.kind = kind;
    this.hint = options.hint;
    this.transient = options.transient ?? false;
    this.routine = options.routine ?? false;
  }

  /** The whole message on one line, `HINT:` included, as it goes to stderr. */
  oneLine(): string {
    return this.hint === undefined ? this.message : `${this.message}; HINT: ${this.hint}`;
  }
}

/** Exit code for any thrown value; never above 125 unless the error asks to abort recovery. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof WalvaultError) return EXIT_CODES[error.kind];
  return EXIT_CODES.internal;
}

/** Error codes of Node's fs layer that mean "try again, it may work in a moment". */
const TRANSIENT_ERRNO = new Set(['EIO', 'ESTALE', 'ETIMEDOUT', 'EAGAIN', 'EBUSY', 'EINTR', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH']);

/** The `what` of fromSystemError for operations that only read: refused, the fix is the reader's user, not a writable repository. */
const READ_OPERATIONS = new Set(['access repository directory', 'look up', 'read', 'list']);

/** Turns a system error from a filesystem call into a WalvaultError naming the path and the fix. */
export function fromSystemError(error: unknown, what: string, path: string): WalvaultError {
  if (error instanceof WalvaultError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? 'UNKNOWN';
  const detail = (error as Error | undefined)?.message ?? String(error);
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new WalvaultError('no-space', `could not ${what} "${path}": no space left on device`, {
        hint: 'free space in the repository or grow its filesystem; PostgreSQL keeps the WAL and retries',
        cause: error,
      });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new WalvaultError('backend', `could not ${what} "${path}": permission denied (${code})`, {
        hint: READ_OPERATIONS.has(what) && code !== 'EROFS'
          ? "run the command as the OS user that owns the repository (usually postgres: sudo -u postgres ...), or give this user read access"
          : 'make the repository writable for the OS user running PostgreSQL (usually postgres)',
        cause: error,
      });
    default:
      return new WalvaultError('backend', `could not ${what} "${path}": ${detail}`, {
        hint: 'check the repository storage and the server log; PostgreSQL retries',
        cause: error,
        transient: TRANSIENT_ERRNO.has(code),
      });
  }
}
