// `walvault restore-backup`: parse flags, lay a complete backup out as a data directory set up for
// recovery through walvault-restore (src/policy/backup-restore.ts), print what to do next.
import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { openBackend } from '../../backend/registry.js';
import { underDeadline } from '../../core/deadline.js';
import { WalvaultError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { restoreBackup } from '../../policy/backup-restore.js';
import { formatBytes } from '../../policy/verify-text.js';
import { commonOptions, OPTION_TABLE, stringOption, type CommonOptions } from '../options.js';
import { backendSettings, decodeOptions } from '../settings.js';
import type { WalvaultCommand } from './index.js';

/** Quotes one word for the shell that runs restore_command. */
const shellWord = (word: string): string => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

/** Options that say where and how to reach the repository, passed on to walvault-restore when given. */
const REPOSITORY_OPTIONS = ['config', 'nfs-fstypes', 's3-endpoint', 's3-region', 's3-force-path-style', 's3-request-timeout', 's3-max-attempts', 'decrypt-identity-file'];

/** The restore_command for the restored server: the walvault-restore beside this walvault, with the same repository options. */
export function defaultRestoreCommand(options: CommonOptions): string {
  const script = process.argv[1] === undefined ? '' : realpathSync(process.argv[1]);
  const beside = path.join(path.dirname(script), 'walvault-restore');
  const words = [existsSync(beside) ? beside : 'walvault-restore', `--repo=${options.repo}`];
  for (const name of REPOSITORY_OPTIONS) {
    const value = options.raw[name];
    const spec = OPTION_TABLE.find((row) => row.name === name);
    if (value === undefined || value === null || value === '' || value === false || value === spec?.default) continue;
    words.push(value === true ? `--${name}` : `--${name}=${String(value)}`);
  }
  return `${words.map(shellWord).join(' ')} %f %p`;
}

/** --tablespace-map OID=DIR values as a map. */
function tablespaceMap(value: unknown): Record<string, string> {
  const map: Record<string, string> = {};
  for (const entry of value === undefined ? [] : Array.isArray(value) ? value : [value]) {
    const match = /^(\d+)=(.+)$/.exec(String(entry));
    if (match === null) throw new WalvaultError('usage', `invalid --tablespace-map "${String(entry)}": expected OID=DIR`, { hint: 'e.g. --tablespace-map 16385=/srv/pg/ts1 (the OIDs are in the backup\'s tablespace_map)' });
    if (!path.isAbsolute(match[2]!)) throw new WalvaultError('usage', `invalid --tablespace-map "${String(entry)}": the directory must be an absolute path`, { hint: 'give DIR as an absolute path' });
    map[match[1]!] = match[2]!;
  }
  return map;
}

/** The restore-backup subcommand. */
export const restoreBackupCommand: WalvaultCommand = {
  command: 'restore-backup',
  describe: 'restore a base backup from --repo into an empty --pgdata (every file checked against the manifest), with restore_command, recovery.signal (or --standby) and any --target-* written; then start the server',
  async run(raw, context) {
    const options = commonOptions(raw);
    context.log = createLogger('walvault', options.verbosity);
    const pgdata = stringOption(raw, 'pgdata');
    if (pgdata === undefined) throw new WalvaultError('usage', 'restore-backup needs --pgdata DIR', { hint: 'give the data directory to create (absent or empty)' });
    const targets = ['target-time', 'target-lsn', 'target-name', 'target-xid'].filter((name) => stringOption(raw, name) !== undefined);
    if (targets.length > 1) throw new WalvaultError('usage', `choose one recovery target, not ${targets.map((name) => `--${name}`).join(' and ')}`, { hint: 'PostgreSQL takes one recovery_target_* setting' });
    const backend = await underDeadline(options.timeoutMs, 'opening the repository', () => openBackend(options.repo, backendSettings(options, context.log)));
    const result = await restoreBackup(backend, {
      backup: stringOption(raw, 'backup') ?? 'latest',
      pgdata,
      tablespaceMap: tablespaceMap(raw['tablespace-map']),
      decode: await decodeOptions(options),
      restoreCommand: stringOption(raw, 'restore-command') ?? defaultRestoreCommand(options),
      targets: {
        time: stringOption(raw, 'target-time'),
        lsn: stringOption(raw, 'target-lsn'),
        name: stringOption(raw, 'target-name'),
        xid: stringOption(raw, 'target-xid'),
        action: stringOption(raw, 'target-action'),
        inclusive: raw['target-exclusive'] === true ? false : undefined,
        timeline: stringOption(raw, 'target-timeline'),
      },
      standby: raw.standby === true,
      timeoutMs: options.timeoutMs,
      log: context.log,
    });
    if (raw.json === true) {
      process.stdout.write(`${JSON.stringify({ id: result.id, pgdata: path.resolve(pgdata), files: result.files, bytes: result.bytes, tablespaces: result.tablespaces, start: result.manifest.start, stop: result.manifest.stop }, null, 2)}\n`);
    } else {
      process.stdout.write(
        `restored backup ${result.id} into "${path.resolve(pgdata)}": ${result.files} files, ${formatBytes(result.bytes)}${result.tablespaces.length > 0 ? `, ${result.tablespaces.length} tablespace(s)` : ''}; consistent once WAL up to ${result.manifest.stop.lsn} is replayed; start the server (pg_ctl -D ${path.resolve(pgdata)} start) to recover\n`,
      );
    }
    return 0;
  },
};
