// The one place walvault exits: runs a command, logs its failure on one line, maps it to the documented exit code.
import { writeSync } from 'node:fs';
import { Deadline } from '../core/deadline.js';
import { EXIT_CODES, exitCodeOf, WalvaultError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';

/** Mutable state a command shares with the runner: its logger, and the exit code for crashes. */
export interface CommandContext {
  /** Replace once options (verbosity) are known. */
  log: Logger;
  /**
   * Exit code for an unexpected crash. Restore sets it from --on-error: a crash must not look like
   * "not found" during archive recovery. Never above 125 otherwise.
   */
  crashExitCode: number;
  /** Called once with the exit code (and the error, if any) just before the process exits; must not throw or wait (src/cli/outcome.ts). */
  onExit?: (code: number, error: unknown) => void;
}

/** Logs an error the way operators read it: one line, HINT included; routine outcomes at info level. */
function report(log: Logger, error: unknown): void {
  if (error instanceof WalvaultError) {
    if (error.routine) log.info(error.oneLine());
    else log.error(error.oneLine());
    return;
  }
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  log.error(`internal error: ${text.split('\n').slice(0, 3).join(' | ')}; HINT: this is a bug, please report it with this line`);
}

/**
 * Exits with `code`. After a deadline has passed, a filesystem call may still hang in libuv's thread
 * pool and process.exit would wait for it forever; then the code goes to the launcher (fd named by
 * WALVAULT_LAUNCHER_STATUS_FD) and the process kills itself, which always works.
 */
function exitWith(code: number): never {
  if (Deadline.anyExpired) {
    const fd = Number(process.env.WALVAULT_LAUNCHER_STATUS_FD);
    if (Number.isInteger(fd) && fd > 2) {
      try {
        writeSync(fd, `${code}\n`);
      } catch {
        // no launcher listening: the kill below still ends the process
      }
    }
    process.kill(process.pid, 'SIGKILL');
  }
  process.exit(code);
}

/** Runs a command body and exits the process with its code (0 on success). */
export function runCommand(program: string, body: (context: CommandContext) => Promise<number | void>): void {
  const context: CommandContext = { log: createLogger(program, 'normal'), crashExitCode: EXIT_CODES.internal };
  const crash = (error: unknown): void => {
    report(context.log, error);
    context.onExit?.(context.crashExitCode, error);
    exitWith(context.crashExitCode);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  body(context).then(
    (code) => (context.onExit?.(code ?? 0, undefined), exitWith(code ?? 0)),
    (error: unknown) => {
      report(context.log, error);
      context.onExit?.(error instanceof WalvaultError ? exitCodeOf(error) : context.crashExitCode, error);
      exitWith(error instanceof WalvaultError ? exitCodeOf(error) : context.crashExitCode);
    },
  );
}
