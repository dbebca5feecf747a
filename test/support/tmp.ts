// Temp directories for tests, removed afterwards; reachable by the postgres user when tests run as root.
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Creates a temp directory (mode 0755 so a server running as postgres can reach it) and returns it with a remover. */
export async function makeTempDir(prefix = 'walvault-test-'): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  await chmod(dir, 0o755);
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** What a scenario test works in: a temp directory with empty `data` (PostgreSQL's working directory) and `repo` folders. */
export interface ScenarioDirs {
  dir: string;
  dataDir: string;
  repo: string;
  remove(): Promise<void>;
}

/** Creates the temp directory of one scenario test with its `data` and `repo` folders (see ScenarioDirs). */
export async function makeScenarioDirs(): Promise<ScenarioDirs> {
  const temp = await makeTempDir();
  const dataDir = path.join(temp.dir, 'data');
  const repo = path.join(temp.dir, 'repo');
  await mkdir(dataDir);
  await mkdir(repo);
  return { ...temp, dataDir, repo };
}
