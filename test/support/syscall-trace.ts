// Runs the built executables under strace and checks, from the system calls they made, the order that
// makes a stored file survive a power loss (src/backend/posix/README.md): data fsynced, then linked or
// renamed into place, then its directory fsynced, and every directory on its path that was created
// made durable in its parent, all before the process that reported the file durable exited.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { bin } from './cli.js';

/** The system calls the check needs (both spellings: libc picks the *at ones on some systems). */
const TRACED = 'fsync,fdatasync,link,linkat,rename,renameat,renameat2,mkdir,mkdirat';
/** Traced too, only so that the log's first line names the first process (its execve): threads may log before it. */
const FIRST = 'execve';

/** One finished system call of a traced process, with the times strace took at its entry and its exit (seconds). */
export interface TracedCall {
  pid: number;
  name: string;
  /** Absolute paths the call names: the fd's path for fsync (strace -y), [path] for mkdir, [from, to] for link and rename. */
  paths: string[];
  ok: boolean;
  /** strace's time at the call's entry and at its return (-ttt, plus -T's time spent in the call), in seconds. */
  start: number;
  end: number;
  /** Which traced run made it (its log file). */
  run: string;
}

/** A traced run: its exit code, and when its first process (the one PostgreSQL waits for) exited. */
export interface TracedRun {
  code: number | null;
  stderr: string;
  /** strace's time of the first process's exit (seconds), or null. */
  exitedAt: number | null;
  calls: TracedCall[];
}

/**
 * Runs a walvault executable under `strace -f` (its background workers included: strace exits once
 * they have) with `cwd`; `delayMkdirUs` delays the return of every mkdir of this run by that many
 * microseconds (strace's fault injection), which holds its creator between a mkdir and the fsync of the
 * parent, so that another process can find the directory meanwhile.
 */
export async function runTraced(
  name: 'walvault-archive',
  args: string[],
  options: { cwd: string; log: string; env?: Record<string, string>; delayMkdirUs?: number },
): Promise<TracedRun> {
  const strace = ['-f', '--seccomp-bpf', '-ttt', '-T', '-y', '-s', '4096', '-q', '-o', options.log, '-e', `trace=${TRACED},${FIRST}`, '-e', 'signal=none'];
  if (options.delayMkdirUs !== undefined) strace.push('-e', `inject=mkdir,mkdirat:delay_exit=${options.delayMkdirUs}`);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALVAULT_') && value !== undefined) env[key] = value;
  const child = spawn('strace', [...strace, '--', bin(name), ...args], { cwd: options.cwd, env: { ...env, ...options.env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (exitCode) => resolve(exitCode));
  });
  const { calls, firstExit } = parseTrace(await readFile(options.log, 'utf8'), options.cwd, options.log);
  return { code, stderr, exitedAt: firstExit, calls };
}

/** The quoted strings of an argument list (strace prints paths as "..."). */
function quoted(args: string): string[] {
  return [...args.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((match) => match[1]!.replace(/\\(.)/g, '$1'));
}

/** The paths a call names, made absolute against `cwd` (every traced process runs there). */
function callPaths(name: string, args: string, cwd: string): string[] {
  if (name === 'fsync' || name === 'fdatasync') {
    const fdPath = /^\d+<(.*)>$/.exec(args.trim());
    return fdPath === null ? [] : [fdPath[1]!];
  }
  return quoted(args).map((text) => path.resolve(cwd, text));
}

/** Parses `strace -f -ttt -y` output into finished calls, joining "<unfinished ...>" with "<... resumed>". */
export function parseTrace(text: string, cwd: string, run: string): { calls: TracedCall[]; firstExit: number | null } {
  const calls: TracedCall[] = [];
  const pending = new Map<number, { name: string; args: string; start: number }>();
  let firstPid: number | null = null;
  let firstExit: number | null = null;
  for (const line of text.split('\n')) {
    const head = /^(\d+) +(\d+\.\d+) (.*)$/.exec(line);
    if (head === null) continue;
    const pid = Number(head[1]);
    const time = Number(head[2]);
    const rest = head[3]!;
    firstPid ??= pid;
    if (rest.startsWith('+++ exited with ') || rest.startsWith('+++ killed by ')) {
      if (pid === firstPid) firstExit = time;
      continue;
    }
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished !== null) {
      pending.set(pid, { name: unfinished[1]!, args: unfinished[2]!, start: time });
      continue;
    }
    // -T: the time spent in the call ends the line, "<0.000123>".
    const spent = Number(/<(\d+\.\d+)>$/.exec(rest)?.[1] ?? Number.NaN);
    const resumed = /^<\.\.\. (\w+) resumed>(.*)\) += (-?\d+)/.exec(rest);
    if (resumed !== null) {
      const open = pending.get(pid);
      pending.delete(pid);
      if (open === undefined || open.name !== resumed[1]) continue;
      const args = open.args + resumed[2]!;
      calls.push({ pid, name: open.name, paths: callPaths(open.name, args, cwd), ok: resumed[3] === '0', start: open.start, end: Math.max(time, open.start + (spent || 0)), run });
      continue;
    }
    const whole = /^(\w+)\((.*)\) += (-?\d+)/.exec(rest);
    if (whole !== null) calls.push({ pid, name: whole[1]!, paths: callPaths(whole[1]!, whole[2]!, cwd), ok: whole[3] === '0', start: time, end: time + (spent || 0), run });
  }
  return { calls, firstExit };
}

/** A file some process said was durable, and when (strace's time of its exit, or of the marker it placed). */
export interface DurableReport {
  file: string;
  at: number;
  by: string;
}

/**
 * Every way `report` could be lost in a power loss, given every traced call of every process (the
 * calls of all runs, merged): empty when the file's data was fsynced before it was linked or renamed
 * into place, its directory fsynced after that, and each directory between `root` and the file that
 * some process created fsynced in its parent after the mkdir, all finished by `report.at`. Times of
 * different strace processes are comparable: each takes its time before it lets the traced call go
 * on, so a call that another one depended on always has the earlier time.
 */
export function durabilityGaps(calls: readonly TracedCall[], report: DurableReport, root: string): string[] {
  const gaps: string[] = [];
  const { file, at } = report;
  const fsyncOf = (target: string, after: number): TracedCall | undefined =>
    calls.find((call) => (call.name === 'fsync' || call.name === 'fdatasync') && call.ok && call.paths[0] === target && call.start >= after && call.end <= at);
  const placed = calls
    .filter((call) => ['link', 'linkat', 'rename', 'renameat', 'renameat2'].includes(call.name) && call.ok && call.paths[1] === file)
    .sort((a, b) => a.end - b.end)[0];
  if (placed === undefined || placed.end > at) {
    gaps.push(`${report.by}: "${file}" was never linked or renamed into place before it was reported durable`);
    return gaps;
  }
  const source = placed.paths[0]!;
  const dataSync = calls.find((call) => (call.name === 'fsync' || call.name === 'fdatasync') && call.ok && call.paths[0] === source && call.end <= placed.start);
  if (dataSync === undefined) gaps.push(`${report.by}: "${source}" was linked or renamed to "${file}" without an fsync of its data before`);
  if (fsyncOf(path.dirname(file), placed.end) === undefined) gaps.push(`${report.by}: no fsync of "${path.dirname(file)}" after "${file}" got its name and before it was reported durable`);
  for (let directory = path.dirname(file); directory.startsWith(root + path.sep); directory = path.dirname(directory)) {
    const made = calls.find((call) => (call.name === 'mkdir' || call.name === 'mkdirat') && call.ok && call.paths[0] === directory);
    if (made === undefined) continue;
    if (fsyncOf(path.dirname(directory), made.end) === undefined) gaps.push(`${report.by}: "${directory}" was created (pid ${made.pid}) but "${path.dirname(directory)}" was not fsynced after that before "${file}" was reported durable`);
  }
  return gaps;
}
