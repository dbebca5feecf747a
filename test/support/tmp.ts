// Temp directories for tests, removed afterwards; reachable by the postgres user when tests run as root.
import { mkdtemp, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Creates a temp directory (mode 0755 so a server running as postgres can reach it) and returns it with a remover. */
export async function makeTempDir(prefix = 'walvault-test-'): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
