// The hooks walvault-archive and walvault-restore call for `walvault status` and --on-failure: record
// each outcome in the spool's status folder, tell the operator's command, honour --only-if-exists.
// Loaded by every call PostgreSQL makes: node:fs and small modules only, nothing asynchronous.
import { existsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WalvaultError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { notifyFailure, notifyResolved, type NotifySettings } from '../policy/notify.js';
import { ensureStatusDir, recordOutcome, statusDir, type OutcomeEvent, type RecordSide } from '../policy/status-record.js';
import type { CommandContext } from './main.js';
import { numberOption, stringOption } from './options.js';

/** What the archive policy reports through ArchiveRequest.onArchived. */
export interface ArchivedNote {
  fileName: string;
  outcome: 'archived' | 'already-archived';
  bytes: number;
}

/** The hooks of one walvault-archive / walvault-restore process. */
export interface OutcomeHooks {
  /** The spool whose status folder records this process's outcomes. */
  spoolDir: string;
  /** A background worker (pusher, prefetcher): its exit answers no request. */
  worker: boolean;
  /** Archive: a file is durable in the repository (this request's, or one pushed ahead by a pusher). */
  onArchived(note: ArchivedNote): void;
}

/**
 * The spool of a call: --spool, else the `walvault` folder beside %p (the rule of
 * src/policy/spool.ts defaultSpoolDir, which is not loaded here: it brings the worker machinery).
 */
function spoolOf(raw: Record<string, unknown>): string {
  const walPath = String(raw.path ?? '');
  return stringOption(raw, 'spool') ?? path.join(path.dirname(walPath), 'walvault');
}

/** Notification settings from the options; undefined without --on-failure. */
function notifySettings(raw: Record<string, unknown>, spoolDir: string): NotifySettings | undefined {
  const command = stringOption(raw, 'on-failure');
  if (command === undefined) return undefined;
  const interval = numberOption(raw, 'on-failure-interval') ?? 600;
  const timeout = numberOption(raw, 'on-failure-timeout') ?? 30;
  if (interval < 0) throw new WalvaultError('usage', `invalid --on-failure-interval "${String(raw['on-failure-interval'])}": expected seconds >= 0`, { hint: 'e.g. --on-failure-interval=600' });
  if (timeout <= 0) throw new WalvaultError('usage', `invalid --on-failure-timeout "${String(raw['on-failure-timeout'])}": expected seconds > 0`, { hint: 'e.g. --on-failure-timeout=30' });
  return { command, intervalMs: interval * 1000, timeoutMs: timeout * 1000, repo: String(raw.repo ?? ''), spoolDir };
}

/** The kind of the failure underneath (restore wraps the storage failure into its --on-error answer). */
function rootKind(error: unknown): string {
  let current: unknown = error;
  let kind = 'internal';
  while (current instanceof WalvaultError) {
    kind = current.kind;
    current = current.cause;
  }
  return kind;
}

/** The one line walvault logged for an error. */
function oneLine(error: unknown): string {
  if (error instanceof WalvaultError) return error.oneLine();
  return `internal error: ${error instanceof Error ? error.message : String(error)}`;
}

/**
 * Installs the hooks for a parsed archive or restore command line: the exit hook records failures
 * (and restore's successes and "not found"s) and runs --on-failure; onArchived records archive
 * successes where they happen (in the request, or in the pusher whose marker the launcher answers
 * from without Node). A background worker records its stores only: its exit is no one's answer.
 */
export function installOutcomeHooks(side: RecordSide, raw: Record<string, unknown>, context: CommandContext): OutcomeHooks {
  const spoolDir = spoolOf(raw);
  const notify = notifySettings(raw, spoolDir);
  const fileName = String(raw.name ?? '');
  const worker = raw['internal-worker'] !== undefined;
  const place = { createSpool: side === 'archive' || notify !== undefined };
  const event = (exitCode: number, message: string, kind?: string, file = fileName): OutcomeEvent => ({
    file,
    time: new Date().toISOString(),
    exitCode,
    message,
    ...(kind === undefined ? {} : { kind }),
  });
  const succeeded = (success: OutcomeEvent): void => {
    recordOutcome(spoolDir, side, 'success', success, place);
    if (notify !== undefined) notifyResolved(notify, side, success);
  };
  if (!worker) {
    context.onExit = (code, error) => {
      if (code === 0) {
        if (side === 'restore') succeeded(event(0, `restored "${fileName}"`));
        return;
      }
      if (side === 'restore' && error instanceof WalvaultError && error.routine) {
        recordOutcome(spoolDir, side, 'missing', event(code, error.oneLine(), 'not-found'), place);
        return;
      }
      const failure = event(code, oneLine(error), rootKind(error));
      recordOutcome(spoolDir, side, 'failure', failure, place);
      if (notify !== undefined) notifyFailure(notify, side, failure);
    };
  }
  return {
    spoolDir,
    worker,
    onArchived: (note) => succeeded(event(0, `${note.outcome === 'archived' ? 'archived' : 'already archived, identical'} (${note.bytes} bytes)`, undefined, note.fileName)),
  };
}

/** --only-if-exists: whether archiving is switched on, checked before each file is stored. */
export interface ArchiveSwitch {
  /** True when the switch file is missing: a request then exits 0 storing nothing (recorded as skipped), a pusher stops. */
  skipRequest(): boolean;
  /**
   * Before each store: throws while the switch file is missing, for a file pushed ahead (by the pusher,
   * or by the request helping while it starts): the push stops, PostgreSQL's requests decide. The
   * request's own file was decided by skipRequest at its start.
   */
  beforeStore(fileName: string): void;
}

/** Whether the switch file exists; a path that cannot be checked (permissions) is an error, not "off". */
function switchOn(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new WalvaultError('usage', `cannot check --only-if-exists "${file}": ${(error as Error).message}`, {
      hint: 'make the switch file\'s folder readable for the OS user running PostgreSQL; nothing was archived and PostgreSQL retries',
    });
  }
}

/**
 * Logs a change of the switch once (not once per file): the state last seen is the presence of
 * `status/switch-off`. Two calls racing at a change may both log it; nothing worse.
 */
function noteSwitch(spoolDir: string, file: string, on: boolean, log: Logger): void {
  const marker = path.join(statusDir(spoolDir), 'switch-off');
  const wasOff = existsSync(marker);
  if (on && wasOff) {
    try {
      unlinkSync(marker);
    } catch {
      // another call noted the change first
    }
    log.info(`switch file "${file}" exists again: archiving resumes`);
  } else if (!on && !wasOff) {
    try {
      ensureStatusDir(spoolDir);
      writeFileSync(marker, `${new Date().toISOString()}\n`, { mode: 0o600 });
    } catch {
      // without a record of the state the line is logged again next time: better than not at all
    }
    log.info(`switch file "${file}" does not exist: WAL files are not archived (exit 0, PostgreSQL recycles them) until it exists again`);
  }
}

/** The switch of --only-if-exists, or undefined without it. */
export function archiveSwitch(raw: Record<string, unknown>, hooks: OutcomeHooks, log: Logger): ArchiveSwitch | undefined {
  const file = stringOption(raw, 'only-if-exists');
  if (file === undefined) return undefined;
  const fileName = String(raw.name ?? '');
  return {
    skipRequest() {
      const on = switchOn(file);
      noteSwitch(hooks.spoolDir, file, on, log);
      if (on) return false;
      if (!hooks.worker) recordOutcome(hooks.spoolDir, 'archive', 'skipped', { file: fileName, time: new Date().toISOString(), exitCode: 0, message: `switch file "${file}" does not exist` });
      return true;
    },
    beforeStore(storing) {
      if (!hooks.worker && storing === fileName) return;
      if (!switchOn(file)) {
        throw new WalvaultError('source', `switch file "${file}" does not exist: not pushing ahead`, { hint: 'PostgreSQL\'s own requests skip the files while the switch is off' });
      }
    },
  };
}
