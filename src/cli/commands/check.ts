// `walvault check`: parse flags, run the live setup check (the pg client is loaded only here), print each step, exit 13 on failure.
import { openBackend } from '../../backend/registry.js';
import { underDeadline } from '../../core/deadline.js';
import { WalvaultError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { checkSetup, formatCheckReport } from '../../policy/check.js';
import { commonOptions, numberOption } from '../options.js';
import { backendSettings, decodeOptions } from '../settings.js';
import type { WalvaultCommand } from './index.js';

/** The check subcommand. */
export const checkCommand: WalvaultCommand = {
  command: 'check',
  describe: 'check a live server end to end: settings, a forced WAL switch archived into --repo, fetched back and compared; exit 13 on failure',
  async run(raw, context) {
    const options = commonOptions(raw);
    context.log = createLogger('walvault', options.verbosity);
    const backend = await underDeadline(options.timeoutMs, 'opening the repository', () => openBackend(options.repo, backendSettings(options)));
    const wait = numberOption(raw, 'wait') ?? 0;
    if (wait <= 0) throw new WalvaultError('usage', `invalid --wait "${String(raw.wait)}": expected seconds > 0`, { hint: 'e.g. --wait=60' });
    const report = await checkSetup({
      repo: options.repo,
      backend,
      connection: typeof raw.db === 'string' ? raw.db : undefined,
      waitMs: wait * 1000,
      timeoutMs: options.timeoutMs,
      decode: await decodeOptions(options),
      log: context.log,
    });
    process.stdout.write(raw.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatCheckReport(report));
    if (!report.ok) {
      const failed = report.steps.filter((step) => step.status === 'fail').map((step) => step.name);
      throw new WalvaultError('check-failed', `check failed at: ${failed.join(', ')}`, { hint: 'see the FAIL lines above and their HINTs' });
    }
    return 0;
  },
};
