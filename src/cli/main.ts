// The one place walvault exits: runs a command, logs its failure on one line, maps it to the documented exit code.
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

/** Runs a command body and exits the process with its code (0 on success). */
export function runCommand(program: string, body: (context: CommandContext) => Promise<number | void>): void {
  const context: CommandContext = { log: createLogger(program, 'normal'), crashExitCode: EXIT_CODES.internal };
  const crash = (error: unknown): void => {
    report(context.log, error);
    process.exit(context.crashExitCode);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  body(context).then(
    (code) => process.exit(code ?? 0),
    (error: unknown) => {
      report(context.log, error);
      process.exit(error instanceof WalvaultError ? exitCodeOf(error) : context.crashExitCode);
    },
  );
}
