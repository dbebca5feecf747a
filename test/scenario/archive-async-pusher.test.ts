// The pusher in-process: it never pushes with settings older than the config file.
import { readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import { Deadline } from '../../src/core/deadline.js';
import { createLogger } from '../../src/core/log.js';
import { runPusher, type PusherOptions } from '../../src/policy/archive-async.js';
import { makeScenarioDirs, type ScenarioDirs } from '../support/tmp.js';
import { makeReady } from '../support/spool.js';
import { pseudoRandomBytes } from '../support/walfile.js';

const names = [1, 2, 3, 4, 5].map((n) => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`);
let temp: ScenarioDirs;
let dataDir: string;
let repo: string;

beforeEach(async () => {
  temp = await makeScenarioDirs();
  ({ dataDir, repo } = temp);
  for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(256 * 1024, name));
});
afterEach(async () => {
  await temp.remove();
});

/** Pusher options for this data directory; `lines` collects its log. */
function pusherOptions(lines: string[], extra: Partial<PusherOptions> = {}): PusherOptions {
  const walDir = path.join(dataDir, 'pg_wal');
  const backend = createLocalBackend({ root: repo });
  const log = createLogger('walvault-archive', 'normal', (line) => lines.push(line));
  return {
    spoolDir: path.join(walDir, 'walvault'),
    pushAhead: 16,
    parallel: 2,
    identity: 'v1|test',
    backend,
    walDir,
    after: names[0]!,
    request: (fileName: string, deadline: Deadline) => ({ backend, sourcePath: path.join(walDir, fileName), fileName, encode: { compress: 'none' }, deadline, log }),
    timeoutMs: 10_000,
    idleMs: 0,
    log,
    ...extra,
  };
}

const storedNames = async (): Promise<string[]> => (await readdir(path.join(repo, 'wal', '0000000100000000')).catch(() => [] as string[])).filter((name) => !name.includes('~')).sort();

describe('background pusher', () => {
  it('pushes everything after the file that started it when the config file is older than the process', async () => {
    const config = path.join(temp.dir, 'walvault.json');
    await writeFile(config, '{}');
    const past = new Date(performance.timeOrigin - 60_000);
    await utimes(config, past, past);
    const summary = await runPusher(pusherOptions([], { configFile: config }));
    expect(summary.pushed.sort()).toEqual(names.slice(1));
    expect(await storedNames()).toEqual(names.slice(1));
  });

  it('pushes nothing with settings older than the config file (it changed after this process read it)', async () => {
    const config = path.join(temp.dir, 'walvault.json');
    await writeFile(config, '{"compress": "gzip"}');
    const lines: string[] = [];
    const summary = await runPusher(pusherOptions(lines, { configFile: config }));
    expect(summary.pushed).toEqual([]);
    expect(await storedNames()).toEqual([]);
    expect(lines.join('')).toContain(`config file "${config}" changed; pushing stops`);
  });
});
