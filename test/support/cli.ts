// Runs the built executables (dist/cli) the way PostgreSQL does: a child process with a working directory, exit code and stderr.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Absolute path of a built executable (the sh launcher PostgreSQL runs). */
export const bin = (name: 'walvault-archive' | 'walvault-restore' | 'walvault'): string => path.join(root, 'dist/cli', name);

/** What a finished command returned. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Runs a walvault executable and waits for it. Environment variables starting with WALVAULT_ are not inherited unless given. */
export function run(
  name: 'walvault-archive' | 'walvault-restore' | 'walvault',
  args: string[],
  options: {
    cwd?: string;
    env?: Record<string, string>;
    /** 'exit': resolve when the process exits, even if a background worker it started keeps stderr open (stderr then holds what was written up to the exit). */
    waitFor?: 'close' | 'exit';
    /** Signals ignored when the program starts (as PostgreSQL's archiver leaves SIGURG, SIGPIPE and others for archive_command), e.g. ['URG', 'PIPE']. */
    ignoreSignals?: string[];
    /** OS user to run as (through runuser; needs root), e.g. 'postgres' so that file permissions apply. */
    user?: string;
  } = {},
): Promise<RunResult> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALVAULT_') && value !== undefined) env[key] = value;
  const started = performance.now();
  // With waitFor 'exit', stderr goes to a file: a background worker inherits (and keeps) the pipe, so
  // the pipe never tells when the exited process's lines have all been read, but the file holds every
  // line that process wrote by the time it has exited (writes to a file are done when write() returns).
  const stderrFile = options.waitFor === 'exit' ? path.join(mkdtempSync(path.join(tmpdir(), 'walvault-stderr-')), 'stderr') : undefined;
  const stderrFd = stderrFile === undefined ? undefined : openSync(stderrFile, 'a+', 0o600);
  return new Promise((resolve, reject) => {
    const [program, programArgs] =
      options.ignoreSignals === undefined ? [bin(name), args] : ['/bin/sh', ['-c', `trap '' ${options.ignoreSignals.join(' ')}; exec "$0" "$@"`, bin(name), ...args]];
    const [file, argv] = options.user === undefined ? [program, programArgs] : ['runuser', ['-u', options.user, '--', program, ...programArgs]];
    const child = spawn(file, argv, { cwd: options.cwd, env: { ...env, ...options.env }, stdio: ['ignore', 'pipe', stderrFd ?? 'pipe'] });
    let stdout = '';
    let stderr = '';
    const stdoutClosed = new Promise<void>((done) => {
      child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stdout?.on('close', () => done());
    });
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => resolve({ code, signal, stdout, stderr, durationMs: performance.now() - started });
    if (stderrFile !== undefined && stderrFd !== undefined) {
      closeSync(stderrFd);
      child.on('error', (error) => {
        rmSync(path.dirname(stderrFile), { recursive: true, force: true });
        reject(error);
      });
      child.on('exit', (code, signal) => {
        stderr = readFileSync(stderrFile, 'utf8');
        rmSync(path.dirname(stderrFile), { recursive: true, force: true });
        // Workers get no stdout: it closes with the process, and then all of it has been read.
        void stdoutClosed.then(() => finish(code, signal));
      });
    } else {
      child.on('error', reject);
      child.on('close', finish);
    }
  });
}
