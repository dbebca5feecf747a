// What the kernel says of a process named in a pid file or a claim: the state in /proc/PID/stat.
import * as nodeFs from 'node:fs/promises';

/**
 * The state letter of a process from /proc/PID/stat (R running, S sleeping, D waiting on I/O, T stopped,
 * Z zombie, X dead...), or null when /proc has no such entry: no such process, or no /proc to tell.
 */
export async function processState(pid: number): Promise<string | null> {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const stat = await nodeFs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  // "PID (COMM) STATE ...": COMM may hold spaces and parentheses; the state follows the last ')'.
  const end = stat.lastIndexOf(')');
  const state = stat.slice(end + 2, end + 3);
  return end < 0 || state === '' ? null : state;
}

/** True when a process with that pid exists (signal 0 probes without sending anything; EPERM: another user's). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether a process with this pid runs on this host: it exists and is neither a zombie, killed but not
 * yet reaped, nor dead. Where /proc cannot tell, existing is enough.
 */
export async function processLives(pid: number): Promise<boolean> {
  if (!processAlive(pid)) return false;
  const state = await processState(pid);
  return state !== 'Z' && state !== 'X';
}
