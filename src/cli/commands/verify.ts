// `walvault verify`: parse flags, run the verify policy, print the report (text or --json), exit 12 when something is wrong.
import type { Argv } from 'yargs';
import { openBackend } from '../../backend/registry.js';
import { Deadline } from '../../core/deadline.js';
import { WalvaultError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { verifyArchive } from '../../policy/verify.js';
import { formatBytes, formatVerifyReport } from '../../policy/verify-text.js';
import { commonOptions, numberOption } from '../options.js';
import { backendSettings, decodeOptions } from '../settings.js';
import type { WalvaultCommand } from './index.js';

/** Draws a one-line progress counter on a terminal's stderr; silent when stderr is not a TTY. */
export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): { update(done: number, total: number, bytes: number): void; clear(): void } {
  if (!stream.isTTY) return { update() {}, clear() {} };
  let last = 0;
  return {
    update(done, total, bytes) {
      const now = Date.now();
      if (now - last < 200 && done !== total) return;
      last = now;
      stream.write(`\rverifying: ${done}/${total} objects, ${formatBytes(bytes)} `);
    },
    clear() {
      stream.write('\r\x1b[K');
    },
  };
}

/** The verify subcommand. */
export const verifyCommand: WalvaultCommand = {
  command: 'verify',
  describe: 'check every archived file against its recorded hash, WAL headers, timelines and backups; exit 12 when something is wrong',
  flags: ['quick', 'backup', 'from', 'to', 'json', 'parallel'],
  builder: (parser: Argv) =>
    parser
      .option('quick', { type: 'boolean', default: false, describe: 'check names, sizes and recorded hashes only; read no segment content' })
      .option('backup', { type: 'string', describe: 'verify what one backup needs: its LABEL or backup history FILE name' })
      .option('from', { type: 'string', describe: 'first SEGMENT to check (by segment number, all timelines)' })
      .option('to', { type: 'string', describe: 'last SEGMENT to check' })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON (stdout) for machines' })
      .option('parallel', { type: 'number', default: 6, describe: 'objects read at the same time' }),
  async run(raw, context) {
    const options = commonOptions(raw, 'walvault verify');
    context.log = createLogger('walvault', options.verbosity);
    const setup = new Deadline(options.timeoutMs, 'opening the repository');
    const backend = await setup.race(openBackend(options.repo, backendSettings(options)));
    setup.dispose();
    const parallel = numberOption(raw, 'parallel') ?? 6;
    if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) {
      throw new WalvaultError('usage', `invalid --parallel "${String(raw.parallel)}": expected 1 to 64`, { hint: 'e.g. --parallel=8' });
    }
    const progress = raw.json === true || options.verbosity === 'quiet' ? progressPrinter({ isTTY: false } as NodeJS.WriteStream) : progressPrinter();
    const report = await verifyArchive(backend, {
      quick: raw.quick === true,
      backup: typeof raw.backup === 'string' ? raw.backup : undefined,
      from: typeof raw.from === 'string' ? raw.from : undefined,
      to: typeof raw.to === 'string' ? raw.to : undefined,
      concurrency: parallel,
      timeoutMs: options.timeoutMs,
      decode: await decodeOptions(options),
      onProgress: ({ done, total, bytes }) => progress.update(done, total, bytes),
    });
    progress.clear();
    process.stdout.write(raw.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatVerifyReport(report));
    if (!report.ok) {
      throw new WalvaultError('verify-failed', `verify found ${report.errors} problem${report.errors === 1 ? '' : 's'} in repository "${report.repository}"`, {
        hint: 'see the report on stdout: each problem has its own HINT',
      });
    }
    return 0;
  },
};
