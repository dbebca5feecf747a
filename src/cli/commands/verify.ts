// `walvault verify`: parse flags, run the verify policy, print the report (text or --json), exit 12 when something is wrong.
import { openBackend } from '../../backend/registry.js';
import { underDeadline } from '../../core/deadline.js';
import { WalvaultError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { verifyArchive } from '../../policy/verify.js';
import { formatBytes, formatVerifyReport } from '../../policy/verify-text.js';
import { commonOptions, countOption } from '../options.js';
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
  async run(raw, context) {
    const options = commonOptions(raw);
    context.log = createLogger('walvault', options.verbosity);
    const backend = await underDeadline(options.timeoutMs, 'opening the repository', () => openBackend(options.repo, backendSettings(options)));
    const parallel = countOption(raw, 'parallel', { minimum: 1, maximum: 64 });
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
