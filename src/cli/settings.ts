// Turns parsed options into what the backends and codecs take, so entry points stay a few lines long.
import { openBackend, type BackendSettings } from '../backend/registry.js';
import type { Backend } from '../backend/types.js';
import { readIdentityFile, readRecipientsFile, resolveLevel, type DecodeOptions, type EncodeOptions } from '../codec/index.js';
import { Deadline } from '../core/deadline.js';
import { createLogger, type Logger } from '../core/log.js';
import type { CommandContext } from './main.js';
import { commonOptions, numberOption, stringOption, type CommonOptions } from './options.js';

/** Backend settings from the common options; `log` receives backend warnings (e.g. S3 conditional-write fallback). */
export function backendSettings(options: CommonOptions, log?: Logger): BackendSettings {
  return { fileMode: options.fileMode, dirMode: options.dirMode, nfsFsTypes: options.nfsFsTypes, extra: options.raw, ...(log === undefined ? {} : { s3: { logger: log } }) };
}

/** Recipients given as flags (repeatable), or as one env/config value listing several (commas or spaces). */
function recipientList(value: unknown): string[] {
  if (value === undefined || value === null || value === '') return [];
  const values = Array.isArray(value) ? value : [value];
  return values.flatMap((entry) => String(entry).split(/[\s,]+/)).filter((entry) => entry !== '');
}

/** How archive encodes stored bytes: codec and level checked, recipients from flags and the recipients file. */
export async function encodeOptions(options: CommonOptions): Promise<EncodeOptions> {
  const compress = String(options.raw.compress ?? 'none');
  const level = resolveLevel(compress, numberOption(options.raw, 'compress-level'));
  const recipients = recipientList(options.raw['encrypt-recipient']);
  const recipientsFile = stringOption(options.raw, 'encrypt-recipients-file');
  if (recipientsFile !== undefined) recipients.push(...(await readRecipientsFile(recipientsFile)));
  return { compress, ...(level === undefined ? {} : { level }), recipients };
}

/** How restore and verify decode stored bytes: the identities of --decrypt-identity-file, if given. */
export async function decodeOptions(options: CommonOptions): Promise<DecodeOptions> {
  const identityFile = stringOption(options.raw, 'decrypt-identity-file');
  if (identityFile === undefined) return {};
  return { identities: await readIdentityFile(identityFile) };
}

/** What archive and restore start from: checked options, the deadline of the whole command, and the opened repository. */
export interface OpenedRepository {
  options: CommonOptions;
  deadline: Deadline;
  backend: Backend;
}

/**
 * The common start of the archive and restore commands: checks the options, switches the command's
 * logger to the asked verbosity, starts the deadline (`what` names the work in its message) and
 * opens the repository under it.
 */
export async function openRepository(context: CommandContext, raw: Record<string, unknown>, program: string, what: string): Promise<OpenedRepository> {
  const options = commonOptions(raw, program);
  context.log = createLogger(program, options.verbosity);
  const deadline = new Deadline(options.timeoutMs, what);
  const backend = await deadline.race(openBackend(options.repo, backendSettings(options, context.log)));
  return { options, deadline, backend };
}
