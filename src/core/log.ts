// One-line log events on stderr, where PostgreSQL's logging collector picks them up.

/** How chatty a command is: quiet prints only warnings and errors, verbose adds debug lines. */
export type Verbosity = 'quiet' | 'normal' | 'verbose';

/** A logger that writes one line per event, prefixed with the program name and level. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Builds a logger writing to `write` (stderr by default). */
export function createLogger(program: string, verbosity: Verbosity, write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const emit = (level: string, message: string): void => {
    write(`${program}: ${level}: ${message.replace(/[\r\n]+/g, ' ')}\n`);
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
