// `walvault status`: parse flags, gather the report (src/policy/status.ts), print it as text, JSON or
// Prometheus text; exit 14 when a part could not be read or a threshold is crossed.
import path from 'node:path';
import { openBackend } from '../../backend/registry.js';
import type { Backend } from '../../backend/types.js';
import { Deadline } from '../../core/deadline.js';
import { WalvaultError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { gatherStatus, type Thresholds } from '../../policy/status.js';
import { formatStatusPrometheus, formatStatusText } from '../../policy/status-format.js';
import { commonOptions, numberOption, stringOption } from '../options.js';
import { backendSettings } from '../settings.js';
import type { WalvaultCommand } from './index.js';

/** A threshold flag: a number >= 0, or undefined when not given. */
function limit(raw: Record<string, unknown>, name: string): number | undefined {
  const value = numberOption(raw, name);
  if (value !== undefined && value < 0) throw new WalvaultError('usage', `invalid --${name} "${String(raw[name])}": expected a number >= 0`, { hint: `fix --${name}` });
  return value;
}

/** The status subcommand. */
export const statusCommand: WalvaultCommand = {
  command: 'status',
  describe: 'show archiving on this host (pg_wal, the pusher, last success/failure), the repository and pg_stat_archiver; exit 14 when a part cannot be read or a --max-* threshold is crossed',
  async run(raw, context) {
    if (raw.json === true && raw.prometheus === true) throw new WalvaultError('usage', 'choose one of --json and --prometheus', { hint: 'drop one of them' });
    const repo = stringOption(raw, 'repo');
    const timeout = Number(raw.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0) throw new WalvaultError('usage', `invalid --timeout "${String(raw.timeout)}": expected seconds > 0`, { hint: 'e.g. --timeout=60' });
    context.log = createLogger('walvault', raw.quiet === true ? 'quiet' : raw.verbose === true ? 'verbose' : 'normal');
    // Checked now (a bad option is a usage error); opened inside the report (an unreachable repository is a finding).
    const options = repo === undefined ? undefined : commonOptions(raw);
    const open = async (): Promise<Backend> => {
      const setup = new Deadline(options!.timeoutMs, 'opening the repository');
      try {
        return await setup.race(openBackend(options!.repo, backendSettings(options!)));
      } finally {
        setup.dispose();
      }
    };
    const pgdata = stringOption(raw, 'pgdata') ?? (process.env.PGDATA === '' ? undefined : process.env.PGDATA);
    const spool = stringOption(raw, 'spool');
    if (pgdata === undefined && repo === undefined && raw.db === undefined) {
      throw new WalvaultError('usage', 'walvault status: nothing to look at', { hint: 'give --pgdata (or PGDATA), --repo and/or --db' });
    }
    const thresholds: Thresholds = {
      maxReadyFiles: limit(raw, 'max-ready-files'),
      maxReadyBytes: limit(raw, 'max-ready-bytes'),
      maxLagSeconds: limit(raw, 'max-lag'),
      maxFailureAgeSeconds: limit(raw, 'max-failure-age'),
      maxRepoAgeSeconds: limit(raw, 'max-repo-age'),
    };
    const report = await gatherStatus({
      ...(pgdata === undefined ? {} : { pgdata: path.resolve(pgdata) }),
      // A relative --spool (as archive_command sees it) is relative to the data directory.
      ...(spool === undefined ? {} : { spoolDir: path.resolve(pgdata ?? '.', spool) }),
      ...(options === undefined ? {} : { openBackend: open, repo }),
      ...(raw.db === undefined ? {} : { connection: String(raw.db) }),
      window: raw.window === true,
      timeoutMs: timeout * 1000,
      thresholds,
    });
    process.stdout.write(raw.json === true ? `${JSON.stringify(report, null, 2)}\n` : raw.prometheus === true ? formatStatusPrometheus(report) : formatStatusText(report));
    if (!report.up) {
      throw new WalvaultError('status-alert', `status could not read: ${report.errors.join('; ')}`, { hint: 'check the paths, the repository and the connection named above' });
    }
    if (report.alerts.length > 0) {
      throw new WalvaultError('status-alert', `status: threshold${report.alerts.length === 1 ? '' : 's'} crossed: ${report.alerts.map((alert) => alert.threshold).join(', ')}`, {
        hint: 'see the ALERT lines (text) or "alerts" (JSON); walvault status --help lists the thresholds',
      });
    }
    return 0;
  },
};
