// The option table: every option's flag, type, default (per command and per backend where they differ),
// help text, WALVAULT_* environment variable and config-file key, in one place. src/cli/parse.ts reads
// command lines (and `walvault check` the server's archive_command/restore_command) with it, and
// src/cli/help.ts prints --help from it. Precedence: flags > WALVAULT_* > config file > defaults.
import { SUPPORTED_CODECS } from '../codec/catalog.js';
import { WalvaultError } from '../core/errors.js';
import type { Verbosity } from '../core/log.js';

/** What runs a command line: walvault-archive, walvault-restore, or one `walvault` subcommand. */
export type Command = 'archive' | 'restore' | 'verify' | 'check' | 'cleanup' | 'status' | 'backup' | 'restore-backup';

/** Kept for callers that name the three executables; `walvault` is every subcommand. */
export type Program = 'archive' | 'restore' | 'walvault';

/** A value an option can hold once converted. */
export type OptionValue = string | number | boolean;

/** One documented option. */
export interface OptionSpec {
  name: string;
  type: 'string' | 'number' | 'boolean';
  /** Help text, the same for every command unless `describeFor` says otherwise. */
  description: string;
  /** Help text for a command where the option means something of its own (e.g. --parallel). */
  describeFor?: Partial<Record<Command, string>>;
  /** What the value looks like in help (--repo=URL). */
  placeholder?: string;
  default?: OptionValue;
  /** Default for a command where it differs from `default`. */
  defaultFor?: Partial<Record<Command, OptionValue>>;
  /** Default for a command on an s3:// repository, where it differs (S3 pushes hold a whole segment in memory). */
  s3DefaultFor?: Partial<Record<Command, OptionValue>>;
  choices?: readonly string[];
  /** May be given several times on the command line (the values form a list). */
  repeatable?: boolean;
  /** The commands that must have a value (from a flag, the environment or the config file). */
  requiredFor?: readonly Command[];
  /** Only a flag: this one run's choice (e.g. --dry-run), never read from WALVAULT_* or the config file. */
  flagOnly?: boolean;
  /** The commands whose command line takes it; env/config values reach every command (and are ignored where unused). */
  programs: readonly Command[];
}

/** Every command, in the order help lists them. */
export const ALL_COMMANDS: readonly Command[] = ['archive', 'restore', 'verify', 'check', 'cleanup', 'status', 'backup', 'restore-backup'];
const ALL = ALL_COMMANDS;
const READERS: readonly Command[] = ['restore', 'verify', 'check', 'cleanup'];

/** Every option walvault knows. Features add their rows here. */
export const OPTION_TABLE: OptionSpec[] = [
  { name: 'repo', type: 'string', requiredFor: ALL.filter((command) => command !== 'status'), placeholder: 'URL', programs: ALL, description: 'repository: /abs/dir, file:///abs/dir, nfs:///abs/dir or s3://bucket/prefix' },
  { name: 'config', type: 'string', placeholder: 'FILE', programs: ALL, description: 'JSON file of option values (keys: the long option names)' },
  {
    name: 'timeout',
    type: 'number',
    default: 60,
    placeholder: 'SECONDS',
    programs: ALL,
    description: 'seconds before storage that hangs is an error (exit 6): for walvault-archive and walvault-restore the whole call for one WAL file, retries included; for verify, check and cleanup each storage operation',
  },
  { name: 'quiet', type: 'boolean', default: false, programs: ALL, description: 'log only warnings and errors' },
  { name: 'verbose', type: 'boolean', default: false, programs: ALL, description: 'log debug details' },
  { name: 'file-mode', type: 'string', default: '0600', placeholder: 'MODE', programs: ['archive'], description: 'mode of archived files (POSIX backends), octal' },
  { name: 'dir-mode', type: 'string', default: '0700', placeholder: 'MODE', programs: ['archive'], description: 'mode of directories walvault creates in the repository (POSIX backends), octal' },
  { name: 'nfs-fstypes', type: 'string', default: 'nfs,nfs4', placeholder: 'TYPES', programs: ALL, description: 'nfs:// only: comma-separated filesystem types (as in /proc/self/mountinfo) the directory must be on' },
  { name: 'force-new-cluster', type: 'boolean', default: false, programs: ['archive'], description: 'accept WAL from a different database system or server version than the repository records, and record the new one (deliberate re-initialisation only)' },
  { name: 's3-endpoint', type: 'string', placeholder: 'URL', programs: ALL, description: 's3:// only: endpoint URL of an S3-compatible store (MinIO, Ceph RGW, R2...); default AWS, or AWS_ENDPOINT_URL_S3' },
  { name: 's3-region', type: 'string', placeholder: 'REGION', programs: ALL, description: "s3:// only: region of the bucket; default AWS_REGION or the AWS profile's region" },
  { name: 's3-force-path-style', type: 'boolean', programs: ALL, description: 's3:// only: path-style URLs (endpoint/bucket/key), needed by most self-hosted stores' },
  { name: 's3-storage-class', type: 'string', placeholder: 'CLASS', programs: ['archive'], description: 's3:// only: storage class of archived objects (STANDARD, STANDARD_IA, INTELLIGENT_TIERING...)' },
  { name: 's3-sse', type: 'string', choices: ['AES256', 'aws:kms'], programs: ['archive'], description: 's3:// only: server-side encryption of archived objects' },
  { name: 's3-sse-kms-key-id', type: 'string', placeholder: 'KEY', programs: ['archive'], description: 's3:// only: KMS key id or ARN for --s3-sse=aws:kms' },
  { name: 's3-conditional-writes', type: 'string', default: 'auto', choices: ['auto', 'on', 'off'], programs: ['archive'], description: 's3:// only: on = trust If-None-Match, off = look up then write (racy), auto = probe the store once and remember' },
  { name: 's3-request-timeout', type: 'number', default: 30000, placeholder: 'MS', programs: ALL, description: 's3:// only: ms without progress before one HTTP request is abandoned and retried' },
  { name: 's3-max-attempts', type: 'number', default: 3, placeholder: 'N', programs: ALL, description: 's3:// only: attempts per HTTP request for transient failures (5xx, throttling, resets, timeouts)' },
  { name: 'compress', type: 'string', default: 'none', choices: SUPPORTED_CODECS, programs: ['archive'], description: 'compression of newly archived files: none, gzip (levels 1-9, default 6), lz4 (one level) or zstd (levels 1-19, default 3); restore reads every codec' },
  { name: 'compress-level', type: 'number', placeholder: 'N', programs: ['archive'], description: "compression level within the codec's range (see --compress); default: the codec's own default" },
  { name: 'encrypt-recipient', type: 'string', repeatable: true, placeholder: 'AGE1...', programs: ['archive'], description: 'encrypt archived files (age format) to this public key; WALVAULT_*/config may list several separated by commas or spaces' },
  { name: 'encrypt-recipients-file', type: 'string', placeholder: 'FILE', programs: ['archive'], description: 'file of age public keys (age1..., one per line, # comments), added to --encrypt-recipient' },
  { name: 'decrypt-identity-file', type: 'string', placeholder: 'FILE', programs: READERS, description: 'age identity file (AGE-SECRET-KEY-1..., from age-keygen) to read encrypted archived files; keep it only where restores run' },
  { name: 'on-error', type: 'string', default: 'auto', choices: ['auto', 'missing', 'abort'], programs: ['restore'], description: 'failures other than "not found": missing = exit 1, abort = exit 128 (PostgreSQL stops recovery), auto = abort in archive recovery, missing in standby mode, the failure\'s own exit code when run by hand from a terminal' },
  { name: 'spool', type: 'string', placeholder: 'DIR', programs: ['archive', 'restore', 'status'], description: 'folder for push-ahead markers and prefetched files; default: a "walvault" folder in pg_wal (on its filesystem, skipped by base backups)', describeFor: { status: 'the spool archive_command uses when it is not the default <pgdata>/pg_wal/walvault (relative: to --pgdata)' } },
  { name: 'push-ahead', type: 'number', default: 16, placeholder: 'N', programs: ['archive'], description: "how many following .ready segments a background worker may store ahead of PostgreSQL's requests (0: one file per call, synchronous)" },
  {
    name: 'parallel',
    type: 'number',
    placeholder: 'N',
    defaultFor: { archive: 5, restore: 4, verify: 6, cleanup: 6 },
    // S3 pushes each hold a whole segment in memory (one PUT): 3 at a time peaked at 142 MiB, 2 at 92.
    // On a filesystem 5: with the early writeback (posix/writeback.ts) copies stopped waiting on each
    // other's flushes, and 5 pushed 6-11% more than 3 side by side.
    s3DefaultFor: { archive: 2 },
    programs: ['archive', 'restore', 'verify', 'cleanup'],
    description: 'how many storage operations run at once',
    describeFor: {
      archive: 'files the background pusher stores at once',
      restore: 'files the background prefetcher fetches at once',
      verify: 'archived objects read at once',
      cleanup: 'deletions at once',
    },
  },
  { name: 'prefetch', type: 'number', default: 8, placeholder: 'N', programs: ['restore'], description: 'how many segments after the requested one a background worker fetches ahead (0: off)' },
  { name: 'prefetch-max-bytes', type: 'number', default: 268435456, placeholder: 'BYTES', programs: ['restore'], description: 'upper bound of the prefetch spool in bytes, downloads in flight included' },
  { name: 'quick', type: 'boolean', default: false, flagOnly: true, programs: ['verify'], description: 'check names, sizes and recorded hashes only; read no segment content' },
  { name: 'backup', type: 'string', flagOnly: true, placeholder: 'LABEL|FILE', programs: ['verify'], description: 'verify what one backup needs: its label or backup history file name' },
  { name: 'from', type: 'string', flagOnly: true, placeholder: 'SEGMENT', programs: ['verify'], description: 'first segment to check (by segment number, all timelines)' },
  { name: 'to', type: 'string', flagOnly: true, placeholder: 'SEGMENT', programs: ['verify'], description: 'last segment to check' },
  { name: 'db', type: 'string', flagOnly: true, placeholder: 'CONNINFO', programs: ['check', 'status'], description: 'libpq connection string or postgresql:// URL (default: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD as for psql)' },
  { name: 'wait', type: 'number', default: 60, flagOnly: true, placeholder: 'SECONDS', programs: ['check'], description: 'how long to wait for the switched segment to reach the repository' },
  { name: 'before', type: 'string', flagOnly: true, placeholder: 'SEGMENT', programs: ['cleanup'], description: 'remove segments (all timelines) older than this one, like pg_archivecleanup (%r)' },
  { name: 'keep-backups', type: 'number', flagOnly: true, placeholder: 'N', programs: ['cleanup'], description: 'keep the WAL the newest N complete backups need (from the backup history files); remove older WAL' },
  { name: 'dry-run', type: 'boolean', default: false, flagOnly: true, programs: ['cleanup'], description: 'list what would be removed; remove nothing' },
  { name: 'json', type: 'boolean', default: false, flagOnly: true, programs: ['verify', 'check', 'cleanup', 'status'], description: 'print the result as JSON on stdout' },
  // failure notifications and the standalone-backup switch (src/cli/outcome.ts)
  { name: 'on-failure', type: 'string', placeholder: 'CMD', programs: ['archive', 'restore'], description: 'shell command run after a failed archive or restore (at most once per --on-failure-interval per kind of failure) and once when it works again; the event is in WALVAULT_EVENT_* variables; runs detached, never changes the exit code' },
  { name: 'on-failure-interval', type: 'number', default: 600, placeholder: 'SECONDS', programs: ['archive', 'restore'], description: 'seconds before the same kind of failure is told again to --on-failure' },
  { name: 'on-failure-timeout', type: 'number', default: 30, placeholder: 'SECONDS', programs: ['archive', 'restore'], description: 'seconds the --on-failure command may run before it is killed' },
  { name: 'only-if-exists', type: 'string', placeholder: 'PATH', programs: ['archive'], description: 'while this file does not exist, store nothing and exit 0 (PostgreSQL recycles the WAL): the switch of a standalone hot backup' },
  // walvault status (src/cli/commands/status.ts)
  { name: 'pgdata', type: 'string', flagOnly: true, placeholder: 'DIR', programs: ['status'], description: 'data directory whose pg_wal is archived (default: PGDATA); without it, no archive side' },
  { name: 'window', type: 'boolean', default: false, flagOnly: true, programs: ['status'], description: 'also show the restorable window of the newest backups (what verify --quick finds: reads the whole listing)' },
  { name: 'prometheus', type: 'boolean', default: false, flagOnly: true, programs: ['status'], description: "print the report in the Prometheus text format (for node_exporter's textfile collector)" },
  { name: 'max-ready-files', type: 'number', flagOnly: true, placeholder: 'N', programs: ['status'], description: 'threshold: files waiting to be archived' },
  { name: 'max-ready-bytes', type: 'number', flagOnly: true, placeholder: 'BYTES', programs: ['status'], description: 'threshold: bytes waiting to be archived' },
  { name: 'max-lag', type: 'number', flagOnly: true, placeholder: 'SECONDS', programs: ['status'], description: 'threshold: seconds the oldest file has waited to be archived' },
  { name: 'max-failure-age', type: 'number', flagOnly: true, placeholder: 'SECONDS', programs: ['status'], description: 'threshold: crossed while the last recorded archive or restore failure is younger than this many seconds' },
  { name: 'max-repo-age', type: 'number', flagOnly: true, placeholder: 'SECONDS', programs: ['status'], description: 'threshold: seconds since the newest segment was stored in the repository' },
  // walvault backup and restore-backup (src/cli/commands/backup.ts, restore-backup.ts); they also take rows above, see SHARED_WITH_BACKUP
  { name: 'fast-checkpoint', type: 'boolean', default: true, flagOnly: true, programs: ['backup'], description: "pg_backup_start's fast: an immediate checkpoint (--fast-checkpoint false: a spread one, gentler on a busy server, slower to start)" },
  { name: 'wal-timeout', type: 'number', default: 300, placeholder: 'SECONDS', programs: ['backup'], description: 'how long to wait for the WAL from the start to the stop of the backup to reach the repository before failing' },
  { name: 'tablespace-map', type: 'string', repeatable: true, flagOnly: true, placeholder: 'OID=DIR', programs: ['restore-backup'], description: 'restore the tablespace with this OID into DIR instead of where it was' },
  { name: 'target-time', type: 'string', flagOnly: true, placeholder: 'TIMESTAMP', programs: ['restore-backup'], description: "recovery_target_time (e.g. '2026-12-07 03:15:00+00')" },
  { name: 'target-lsn', type: 'string', flagOnly: true, placeholder: 'LSN', programs: ['restore-backup'], description: 'recovery_target_lsn' },
  { name: 'target-name', type: 'string', flagOnly: true, placeholder: 'NAME', programs: ['restore-backup'], description: 'recovery_target_name (a restore point from pg_create_restore_point)' },
  { name: 'target-xid', type: 'string', flagOnly: true, placeholder: 'XID', programs: ['restore-backup'], description: 'recovery_target_xid' },
  { name: 'target-action', type: 'string', flagOnly: true, choices: ['pause', 'promote', 'shutdown'], programs: ['restore-backup'], description: 'recovery_target_action: what the server does at the target (PostgreSQL default: pause)' },
  { name: 'target-exclusive', type: 'boolean', default: false, flagOnly: true, programs: ['restore-backup'], description: 'recovery_target_inclusive = off: stop just before the target instead of just after it' },
  { name: 'target-timeline', type: 'string', flagOnly: true, placeholder: 'TLI|latest|current', programs: ['restore-backup'], description: 'recovery_target_timeline (PostgreSQL default: latest)' },
  { name: 'standby', type: 'boolean', default: false, flagOnly: true, programs: ['restore-backup'], description: 'write standby.signal (a standby fed from the repository) instead of recovery.signal' },
  { name: 'restore-command', type: 'string', flagOnly: true, placeholder: 'COMMAND', programs: ['restore-backup'], description: 'the restore_command to write (default: the walvault-restore installed beside this walvault, with the same repository options)' },
  { name: 'incomplete-grace', type: 'number', default: 24, placeholder: 'HOURS', programs: ['cleanup'], description: 'with --keep-backups: incomplete backups (no completion marker: interrupted, or still running) older than this are removed' },
];

/** Rows above that backup and restore-backup take too, with their own help text or default where it differs. */
const SHARED_WITH_BACKUP: ReadonlyArray<{ name: string; commands: Command[]; describe?: Partial<Record<Command, string>>; defaults?: Partial<Record<Command, OptionValue>> }> = [
  { name: 'compress', commands: ['backup'], describe: { backup: 'compression of the backup (its tar archives and manifest): none, gzip, lz4 or zstd, as for archived WAL (restore-backup and `zstd -d`, `lz4 -d`, `gzip -d` read it)' } },
  { name: 'compress-level', commands: ['backup'] },
  { name: 'encrypt-recipient', commands: ['backup'], describe: { backup: 'encrypt the backup (age format) to this public key (`age -d` decrypts it by hand)' } },
  { name: 'encrypt-recipients-file', commands: ['backup'] },
  { name: 'decrypt-identity-file', commands: ['backup', 'restore-backup'], describe: { backup: 'age identity file to read encrypted WAL back when checking what the backup needs' } },
  { name: 's3-storage-class', commands: ['backup'] },
  { name: 's3-sse', commands: ['backup'] },
  { name: 's3-sse-kms-key-id', commands: ['backup'] },
  { name: 'db', commands: ['backup'] },
  { name: 'json', commands: ['backup', 'restore-backup'] },
  { name: 'pgdata', commands: ['restore-backup'], describe: { 'restore-backup': 'required: the data directory to create (absent or empty)' } },
  { name: 'backup', commands: ['restore-backup'], describe: { 'restore-backup': 'the backup to restore: its id (walvault verify lists them) or latest' }, defaults: { 'restore-backup': 'latest' } },
];
for (const shared of SHARED_WITH_BACKUP) {
  const row = OPTION_TABLE.find((spec) => spec.name === shared.name);
  if (row === undefined) throw new Error(`SHARED_WITH_BACKUP names no option "${shared.name}"`);
  row.programs = [...row.programs, ...shared.commands];
  if (shared.describe !== undefined) row.describeFor = { ...row.describeFor, ...shared.describe };
  if (shared.defaults !== undefined) row.defaultFor = { ...row.defaultFor, ...shared.defaults };
}

/** The option's default for a command; `repo` decides backend-dependent ones (an s3:// repository). */
export function defaultOf(spec: OptionSpec, command: Command, repo?: unknown): OptionValue | undefined {
  if (typeof repo === 'string' && repo.startsWith('s3://') && spec.s3DefaultFor?.[command] !== undefined) return spec.s3DefaultFor[command];
  return spec.defaultFor?.[command] ?? spec.default;
}

/** Options every command receives, parsed and checked. */
export interface CommonOptions {
  repo: string;
  timeoutMs: number;
  verbosity: Verbosity;
  fileMode: number;
  dirMode: number;
  nfsFsTypes: string[];
  /** Raw parsed values (defaults filled in), for options a feature reads itself. */
  raw: Record<string, unknown>;
}

/** Parses an octal mode such as "0600". */
function parseMode(value: unknown, option: string): number {
  const text = String(value);
  if (!/^0?[0-7]{3}$/.test(text)) throw new WalvaultError('usage', `invalid --${option} "${text}": expected an octal mode such as 0600`, { hint: `fix --${option}` });
  return Number.parseInt(text, 8);
}

/** Checks and converts the options every command shares (the second argument is no longer used: messages carry no program name, the log prefix does). */
export function commonOptions(raw: Record<string, unknown>, _program?: string): CommonOptions {
  const repo = raw.repo;
  if (typeof repo !== 'string' || repo === '') {
    throw new WalvaultError('usage', 'no repository given', { hint: 'pass --repo=URL, set WALVAULT_REPO, or put "repo" in the --config file' });
  }
  const timeout = Number(raw.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0) throw new WalvaultError('usage', `invalid --timeout "${String(raw.timeout)}": expected seconds > 0`, { hint: 'e.g. --timeout=60' });
  return {
    repo,
    timeoutMs: Math.round(timeout * 1000),
    verbosity: raw.quiet === true ? 'quiet' : raw.verbose === true ? 'verbose' : 'normal',
    fileMode: parseMode(raw['file-mode'] ?? '0600', 'file-mode'),
    dirMode: parseMode(raw['dir-mode'] ?? '0700', 'dir-mode'),
    nfsFsTypes: String(raw['nfs-fstypes'] ?? 'nfs,nfs4').split(',').map((type) => type.trim()).filter((type) => type !== ''),
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

/** A whole-number option (the parser filled in its default): refuses fractions and values below `minimum`. */
export function countOption(raw: Record<string, unknown>, name: string, options: { minimum: number; maximum?: number }): number {
  const value = numberOption(raw, name);
  const { minimum, maximum } = options;
  if (value === undefined || !Number.isInteger(value) || value < minimum || (maximum !== undefined && value > maximum)) {
    const range = maximum === undefined ? `a whole number >= ${minimum}` : `${minimum} to ${maximum}`;
    throw new WalvaultError('usage', `invalid --${name} "${String(raw[name])}": expected ${range}`, { hint: `fix --${name}` });
  }
  return value;
}

/** A string option's value, or undefined when it is unset or empty (an empty WALVAULT_* variable means "not set"). */
export function stringOption(raw: Record<string, unknown>, name: string): string | undefined {
  const value = raw[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}
