// One-line log events on stderr, where PostgreSQL's logging collector picks them up. One format for
// every program and process: `PROGRAM: LEVEL: MESSAGE`, LEVEL one of debug, info, warning, error; a
// line from a background worker (the push-ahead pusher, the restore prefetcher) names the worker and
// its pid in brackets after PROGRAM: `walvault-archive [pusher 6518]: info: pushed ...`.
import { writeSync } from 'node:fs';

/** How chatty a command is: quiet prints only warnings and errors, verbose adds debug lines. */
export type Verbosity = 'quiet' | 'normal' | 'verbose';

/** A logger that writes one line per event, prefixed with the program name and level. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

let stderrStream = false;

/**
 * Writes to stderr (fd 2) directly: the first use of process.stderr loads node:stream (~1.5 ms),
 * paid by every call PostgreSQL makes. Where fd 2 is non-blocking and full (EAGAIN), this and every
 * later line go through process.stderr, which queues them in order. A stderr that is gone (closed,
 * EPIPE) loses the line: a log line is not worth failing a call for.
 */
export function writeStderr(text: string): void {
  if (stderrStream) {
    process.stderr.write(text);
    return;
  }
  let rest = Buffer.from(text);
  try {
    while (rest.length > 0) rest = rest.subarray(writeSync(2, rest));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EAGAIN') {
      stderrStream = true;
      process.stderr.write(rest);
    }
  }
}

/** Builds a logger writing to `write` (stderr by default); `worker` names a background worker ("pusher 6518"). */
export function createLogger(program: string, verbosity: Verbosity, write: (line: string) => void = writeStderr, worker?: string): Logger {
  const prefix = worker === undefined ? program : `${program} [${worker}]`;
  const emit = (level: string, message: string): void => {
    write(`${prefix}: ${level}: ${message.replace(/[\r\n]+/g, ' ')}\n`);
  };
  return {
    debug: (message) => verbosity === 'verbose' && emit('debug', message),
    info: (message) => verbosity !== 'quiet' && emit('info', message),
    warn: (message) => emit('warning', message),
    error: (message) => emit('error', message),
  };
}

/** A logger that drops everything, for library callers and tests that don't care. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Formats a byte count for log lines: exact bytes, as operators compare them with ls -l. */
export function formatDuration(milliseconds: number): string {
  return milliseconds < 1000 ? `${Math.round(milliseconds)} ms` : `${(milliseconds / 1000).toFixed(2)} s`;
}
