// The option table: every option is a flag, a WALVAULT_* environment variable and a config-file key (flags > env > file).
// Parsed by src/cli/parse.ts for archive and restore (start-up matters there) and by yargs (yargs-options.ts) for `walvault` and --help.
import { SUPPORTED_CODECS } from '../codec/catalog.js';
import { WalvaultError } from '../core/errors.js';
import type { Verbosity } from '../core/log.js';

/** Which executable an option belongs to. */
export type Program = 'archive' | 'restore' | 'walvault';

/** One documented option. */
export interface OptionSpec {
  name: string;
  type: 'string' | 'number' | 'boolean' | 'array';
  description: string;
  default?: unknown;
  choices?: readonly string[];
  /** May be given several times on the command line (the values form a list). */
  repeatable?: boolean;
  /** The executables that take it; every option is accepted from env/config by all (and ignored where unused). */
  programs: readonly Program[];
}

const ALL: readonly Program[] = ['archive', 'restore', 'walvault'];

/** Every option walvault knows. Features add their rows here. */
export const OPTION_TABLE: OptionSpec[] = [
  { name: 'repo', type: 'string', programs: ALL, description: 'repository: /abs/dir, file:///abs/dir, nfs:///abs/dir or s3://bucket/prefix' },
  { name: 'config', type: 'string', programs: ALL, description: 'JSON file with option values (keys as the long option names)' },
  { name: 'timeout', type: 'number', default: 60, programs: ALL, description: 'seconds the whole command may take; storage that hangs longer is an error (exit 6)' },
  { name: 'quiet', type: 'boolean', default: false, programs: ALL, description: 'log only warnings and errors' },
  { name: 'verbose', type: 'boolean', default: false, programs: ALL, description: 'log debug details' },
  { name: 'file-mode', type: 'string', default: '0600', programs: ALL, description: 'mode of archived files (POSIX backends), octal' },
  { name: 'dir-mode', type: 'string', default: '0700', programs: ALL, description: 'mode of directories walvault creates (POSIX backends), octal' },
  { name: 'nfs-fstypes', type: 'string', default: 'nfs,nfs4', programs: ALL, description: 'nfs:// only: comma-separated filesystem types (as in /proc/self/mountinfo) the directory must be on' },
  { name: 'force-new-cluster', type: 'boolean', default: false, programs: ['archive'], description: 'archive: accept WAL from a different database system or server version than the repository records, and record the new one (deliberate re-initialisation only)' },
  { name: 's3-endpoint', type: 'string', programs: ALL, description: 's3:// only: endpoint URL of an S3-compatible store (MinIO, Ceph RGW, R2...); default AWS, or AWS_ENDPOINT_URL_S3' },
  { name: 's3-region', type: 'string', programs: ALL, description: 's3:// only: region of the bucket; default AWS_REGION or the AWS profile\'s region' },
  { name: 's3-force-path-style', type: 'boolean', programs: ALL, description: 's3:// only: path-style URLs (endpoint/bucket/key), needed by most self-hosted stores' },
  { name: 's3-storage-class', type: 'string', programs: ALL, description: 's3:// only: storage class of archived objects (STANDARD, STANDARD_IA, INTELLIGENT_TIERING...)' },
  { name: 's3-sse', type: 'string', choices: ['AES256', 'aws:kms'], programs: ALL, description: 's3:// only: server-side encryption of archived objects' },
  { name: 's3-sse-kms-key-id', type: 'string', programs: ALL, description: 's3:// only: KMS key id or ARN for --s3-sse=aws:kms' },
  { name: 's3-conditional-writes', type: 'string', default: 'auto', choices: ['auto', 'on', 'off'], programs: ALL, description: 's3:// only: on = trust If-None-Match, off = look up then write (racy), auto = probe the store once and remember' },
  { name: 's3-request-timeout', type: 'number', default: 30000, programs: ALL, description: 's3:// only: ms without progress before one HTTP request is abandoned and retried' },
  { name: 's3-max-attempts', type: 'number', default: 3, programs: ALL, description: 's3:// only: attempts per HTTP request for transient failures (5xx, throttling, resets, timeouts)' },
  { name: 'compress', type: 'string', default: 'none', choices: SUPPORTED_CODECS, programs: ['archive'], description: 'compression of newly archived files: none, gzip (levels 1-9, default 6), lz4 (one level) or zstd (levels 1-19, default 3); restore reads every codec' },
  { name: 'compress-level', type: 'number', programs: ['archive'], description: 'compression level within the codec\'s range (see --compress); default: the codec\'s own default' },
  { name: 'encrypt-recipient', type: 'string', repeatable: true, programs: ['archive'], description: 'encrypt archived files (age format) to this public key (age1...); repeatable; env/config may list several separated by commas or spaces' },
  { name: 'encrypt-recipients-file', type: 'string', programs: ['archive'], description: 'file of age public keys (age1..., one per line, # comments), added to --encrypt-recipient' },
  { name: 'decrypt-identity-file', type: 'string', programs: ALL, description: 'age identity file (AGE-SECRET-KEY-1..., from age-keygen) to read encrypted archived files; keep it only where restores run' },
  { name: 'on-error', type: 'string', default: 'auto', choices: ['auto', 'missing', 'abort'], programs: ['restore'], description: 'restore failures other than "not found": missing = exit 1, abort = exit 128 (recovery stops), auto = abort in archive recovery, missing in standby mode' },
  { name: 'spool', type: 'string', programs: ['archive', 'restore'], description: 'folder for push-ahead markers and prefetched files; default: a "walvault" folder in pg_wal (on its filesystem, skipped by base backups)' },
  { name: 'push-ahead', type: 'number', default: 16, programs: ['archive'], description: 'archive: how many following .ready segments a background worker may store ahead of PostgreSQL\'s requests (0: one file per call, synchronous)' },
  { name: 'parallel', type: 'number', programs: ['archive', 'restore'], description: 'how many files the background worker pushes (default 5, S3: 2) or prefetches (default 4) at once' },
  { name: 'prefetch', type: 'number', default: 8, programs: ['restore'], description: 'restore: how many segments after the requested one a background worker fetches ahead (0: off)' },
  { name: 'prefetch-max-bytes', type: 'number', default: 268435456, programs: ['restore'], description: 'restore: upper bound of the prefetch spool in bytes, downloads in flight included' },
  // failure notifications and the standalone-backup switch (src/cli/outcome.ts)
  { name: 'on-failure', type: 'string', programs: ['archive', 'restore'], description: 'shell command run after a failed archive or restore (at most once per --on-failure-interval per kind of failure) and once when it works again; the event is in WALVAULT_EVENT_* variables; runs detached, never changes the exit code' },
  { name: 'on-failure-interval', type: 'number', default: 600, programs: ['archive', 'restore'], description: 'seconds before the same kind of failure is told again to --on-failure' },
  { name: 'on-failure-timeout', type: 'number', default: 30, programs: ['archive', 'restore'], description: 'seconds the --on-failure command may run before it is killed' },
  { name: 'only-if-exists', type: 'string', programs: ['archive'], description: 'archive: while this file does not exist, store nothing and exit 0 (PostgreSQL recycles the WAL): the switch of a standalone hot backup' },
];

/** Options every command receives, parsed and checked. */
export interface CommonOptions {
  repo: string;
  timeoutMs: number;
  verbosity: Verbosity;
  fileMode: number;
  dirMode: number;
  nfsFsTypes: string[];
  /** Raw parsed values, for options a feature reads itself. */
  raw: Record<string, unknown>;
}

/** Parses an octal mode such as "0600". */
function parseMode(value: unknown, option: string): number {
  const text = String(value);
  if (!/^0?[0-7]{3}$/.test(text)) throw new WalvaultError('usage', `invalid --${option} "${text}": expected an octal mode such as 0600`, { hint: `fix --${option}` });
  return Number.parseInt(text, 8);
}

/** Checks and converts the options every command shares. */
export function commonOptions(raw: Record<string, unknown>, program: string): CommonOptions {
  const repo = raw.repo;
  if (typeof repo !== 'string' || repo === '') {
    throw new WalvaultError('usage', `${program}: no repository given`, { hint: 'pass --repo=URL, set WALVAULT_REPO, or put "repo" in the --config file' });
  }
  const timeout = Number(raw.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0) throw new WalvaultError('usage', `invalid --timeout "${String(raw.timeout)}": expected seconds > 0`, { hint: 'e.g. --timeout=60' });
  return {
    repo,
    timeoutMs: Math.round(timeout * 1000),
    verbosity: raw.quiet === true ? 'quiet' : raw.verbose === true ? 'verbose' : 'normal',
    fileMode: parseMode(raw['file-mode'], 'file-mode'),
    dirMode: parseMode(raw['dir-mode'], 'dir-mode'),
    nfsFsTypes: String(raw['nfs-fstypes']).split(',').map((type) => type.trim()).filter((type) => type !== ''),
    raw,
  };
}

/** Parses a number option that may come as a string from env or config. */
export function numberOption(raw: Record<string, unknown>, name: string): number | undefined {
  const value = raw[name];
  if (value === undefined || value === null || value === '') return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) throw new WalvaultError('usage', `invalid --${name} "${String(value)}": expected a number`, { hint: `fix --${name}` });
  return parsed;
}

/** A string option's value, or undefined when it is unset or empty (an empty WALVAULT_* variable means "not set"). */
export function stringOption(raw: Record<string, unknown>, name: string): string | undefined {
  const value = raw[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}
