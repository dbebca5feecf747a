// The %p/%f arguments of walvault-archive and walvault-restore, checked before anything else so a
// wrong order in archive_command or restore_command is named as such, with the setting to copy.
import { WalvaultError } from '../core/errors.js';
import { classify, validateFileName } from '../wal/names.js';

/** The postgresql.conf line each program belongs in, with its arguments in the right order. */
export const SETTING_LINE = {
  archive: "archive_command = 'walvault-archive --repo=URL %p %f'",
  restore: "restore_command = 'walvault-restore --repo=URL %f %p'",
} as const;

/** Whether PostgreSQL could pass `name` as %f. */
function isFileName(name: string): boolean {
  try {
    validateFileName(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * Refuses a <name> that is no WAL file name (usage error): when the path argument is one (a bare
 * segment, .partial, .history or .backup name) instead, the two were swapped, and the message says so.
 */
export function checkFileArguments(program: 'archive' | 'restore', args: { name: string; path: string }): void {
  if (isFileName(args.name)) return;
  const order = program === 'archive' ? 'the path (%p), then the file name (%f)' : 'the file name (%f), then the path (%p)';
  // PostgreSQL's %p always has a folder (pg_wal/...): a bare WAL file name in its place is %f, swapped.
  if (isFileName(args.path) && classify(args.path) !== 'other') {
    throw new WalvaultError('usage', `arguments in the wrong order: "${args.name}" is not a WAL file name, "${args.path}" is; walvault-${program} takes ${order}`, { hint: `set ${SETTING_LINE[program]}` });
  }
  throw new WalvaultError('usage', `invalid WAL file name "${args.name}": expected 1 to 64 ASCII letters, digits and dots, no path separators`, {
    hint: `walvault-${program} takes ${order}: ${SETTING_LINE[program]}`,
  });
}
