// --on-failure: tells an operator's command about a failed archive or restore (at most once per
// interval per kind of failure) and once more when that program works again ("resolved").
// The command runs detached under a deadline: its failure or hang never reaches walvault's exit code
// or PostgreSQL. State: <spool>/status/alert.<side> (see status.md).
import { existsSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { statusDir, type OutcomeEvent, type RecordSide } from './status-record.js';

/** What a notification needs besides the event. */
export interface NotifySettings {
  /** The operator's shell command (run with /bin/sh -c). */
  command: string;
  /** The same kind of failure is told again only after this long. */
  intervalMs: number;
  /** The command is killed (its whole process group) after this long. */
  timeoutMs: number;
  /** The repository, as given (told to the command). */
  repo: string;
  spoolDir: string;
}

/** What is outstanding for one side: per kind of failure, when it was last told and how many were not told since. */
interface AlertState {
  kinds: Record<string, { toldAt: number; notTold: number; file: string; message: string; exitCode: number }>;
}

const alertFile = (settings: NotifySettings, side: RecordSide): string => path.join(statusDir(settings.spoolDir), `alert.${side}`);

const programOf = (side: RecordSide): string => `walvault-${side}`;

/** Reads the alert state; empty when there is none. */
function readAlert(file: string): AlertState {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as AlertState;
    return parsed !== null && typeof parsed.kinds === 'object' ? parsed : { kinds: {} };
  } catch {
    return { kinds: {} };
  }
}

/** Replaces the alert state by rename (the status folder exists: the failure was recorded just before). */
function writeAlert(file: string, state: AlertState): void {
  const temp = `${file}.${process.pid}`;
  writeFileSync(temp, `${JSON.stringify(state)}\n`, { mode: 0o600 });
  renameSync(temp, file);
}

/**
 * After a failure (already recorded): runs the command unless this kind of failure of this program
 * was told less than an interval ago. Best effort, never throws.
 */
export function notifyFailure(settings: NotifySettings, side: RecordSide, event: OutcomeEvent): void {
  try {
    const file = alertFile(settings, side);
    const state = readAlert(file);
    const kind = event.kind ?? 'internal';
    const now = Date.now();
    const known = state.kinds[kind];
    if (known !== undefined && now - known.toldAt < settings.intervalMs) {
      known.notTold += 1;
      writeAlert(file, state);
      return;
    }
    state.kinds[kind] = { toldAt: now, notTold: 0, file: event.file, message: event.message, exitCode: event.exitCode };
    writeAlert(file, state);
    runNotification(settings, { WALVAULT_EVENT: 'failure', ...eventEnv(settings, side, event), WALVAULT_EVENT_NOT_TOLD: String(known?.notTold ?? 0) });
  } catch {
    // a notification is never worth failing a call for
  }
}

/**
 * After a success: when failures of this program were told and not yet resolved, tells "resolved"
 * once (the rename claims the alert: of two processes succeeding at once, one tells it). Costs one
 * stat when nothing is outstanding. Best effort, never throws.
 */
export function notifyResolved(settings: NotifySettings, side: RecordSide, event: OutcomeEvent): void {
  try {
    const file = alertFile(settings, side);
    if (!existsSync(file)) return;
    const claimed = `${file}.resolving.${process.pid}`;
    renameSync(file, claimed);
    const state = readAlert(claimed);
    unlinkSync(claimed);
    const kinds = Object.keys(state.kinds).sort();
    if (kinds.length === 0) return;
    runNotification(settings, { WALVAULT_EVENT: 'resolved', ...eventEnv(settings, side, event), WALVAULT_EVENT_RESOLVED_KINDS: kinds.join(',') });
  } catch {
    // another process resolved it first, or the spool is gone: nothing to tell
  }
}

/** The event's environment variables (documented in the README's "Failure notifications"). */
function eventEnv(settings: NotifySettings, side: RecordSide, event: OutcomeEvent): Record<string, string> {
  return {
    WALVAULT_EVENT_PROGRAM: programOf(side),
    WALVAULT_EVENT_FILE: event.file,
    WALVAULT_EVENT_EXIT_CODE: String(event.exitCode),
    WALVAULT_EVENT_KIND: event.kind ?? '',
    WALVAULT_EVENT_MESSAGE: event.message,
    WALVAULT_EVENT_TIME: event.time,
    WALVAULT_EVENT_REPO: settings.repo,
    WALVAULT_EVENT_PID: String(process.pid),
  };
}

/**
 * The command in its own process group under a deadline (coreutils or busybox `timeout`, which kills
 * the group; without it, no deadline), detached: this process does not wait for it. Its stdout is
 * dropped and its stderr goes where walvault's goes (PostgreSQL's log). No descriptor beyond 2 is
 * passed on (fd 3 may be the launcher's status pipe, read to its end).
 */
function runNotification(settings: NotifySettings, env: Record<string, string>): void {
  const childProcess = process.getBuiltinModule('node:child_process');
  const base = { ...process.env };
  delete base.WALVAULT_LAUNCHER_STATUS_FD;
  delete base.WALVAULT_STARTED_PUSHER;
  // The launcher moved NODE_EXTRA_CA_CERTS aside for Node's start (src/cli/launcher-ca.sh): the operator's command gets it back.
  if (base.WALVAULT_NODE_EXTRA_CA_CERTS !== undefined) base.NODE_EXTRA_CA_CERTS = base.WALVAULT_NODE_EXTRA_CA_CERTS;
  delete base.WALVAULT_NODE_EXTRA_CA_CERTS;
  const seconds = Math.max(1, Math.ceil(settings.timeoutMs / 1000));
  const script = `if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 ${seconds} /bin/sh -c "$WALVAULT_EVENT_COMMAND"; else exec /bin/sh -c "$WALVAULT_EVENT_COMMAND"; fi`;
  const child = childProcess.spawn('/bin/sh', ['-c', script], {
    detached: true,
    stdio: ['ignore', 'ignore', 'inherit', 'ignore'],
    env: { ...base, ...env, WALVAULT_EVENT_COMMAND: settings.command },
  });
  child.on('error', () => undefined);
  child.unref();
}
