// The pusher in-process: it never pushes with settings older than the config file.
import { spawn } from 'node:child_process';
import { access, readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import type { Backend } from '../../src/backend/types.js';
import { Deadline } from '../../src/core/deadline.js';
import { createLogger } from '../../src/core/log.js';
import { archiveWithPushAhead, runPusher, type PusherOptions } from '../../src/policy/archive-async.js';
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
    id: '0123456789abcdef',
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

/**
 * The first request of a backlog (push-ahead 16, --parallel=2) while the background pusher is still
 * loading: a live stand-in process that never takes the lock.
 */
async function firstRequest(backend: Backend) {
  const walDir = path.join(dataDir, 'pg_wal');
  const loading = spawn('sleep', ['30'], { stdio: 'ignore' });
  const deadline = new Deadline(20_000, 'test');
  try {
    return await archiveWithPushAhead(
      { backend, sourcePath: path.join(walDir, names[0]!), fileName: names[0]!, encode: { compress: 'none' }, deadline, log: createLogger('walvault-archive', 'normal', () => undefined) },
      { spoolDir: path.join(walDir, 'walvault'), pushAhead: 16, parallel: 2, id: '0123456789abcdef' },
      () => loading.pid,
    );
  } finally {
    deadline.dispose();
    loading.kill('SIGKILL');
  }
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

  it('stops once the config file it read its settings from changes (its markers would vouch for old settings)', async () => {
    const config = path.join(temp.dir, 'walvault.json');
    await writeFile(config, '{}');
    const lines: string[] = [];
    // Idle for up to 60 s: only the change ends it.
    const running = runPusher(pusherOptions(lines, { configFile: config, idleMs: 60_000 }));
    while (!lines.join('').includes('archived') && (await storedNames()).length < names.length - 1) await new Promise((resolve) => setTimeout(resolve, 20));
    await writeFile(config, '{"compress": "gzip"}');
    await running;
    expect(lines.join('')).toContain(`background pusher stops: config file "${config}" changed`);
  });

  it('has the request that starts the pusher push the following files while its own is still being stored, together at most --parallel', async () => {
    const walDir = path.join(dataDir, 'pg_wal');
    const local = createLocalBackend({ root: repo });
    const stored = (name: string): Promise<boolean> => access(path.join(repo, 'wal', '0000000100000000', name)).then(() => true, () => false);
    // The request's own file is stored only once the next one is: that happens only if pushing ahead
    // runs alongside it (waiting for it would time out here).
    let inFlight = 0;
    let mostInFlight = 0;
    const backend: Backend = Object.assign(Object.create(local) as Backend, {
      putIfAbsent: async (...args: Parameters<Backend['putIfAbsent']>) => {
        inFlight += 1;
        mostInFlight = Math.max(mostInFlight, inFlight);
        try {
          if (args[0].endsWith(names[0]!)) {
            const until = performance.now() + 5_000;
            while (!(await stored(names[1]!))) {
              if (performance.now() > until) throw new Error(`"${names[1]}" was not pushed while "${names[0]}" was being stored`);
              await new Promise((resolve) => setTimeout(resolve, 10));
            }
          }
          return await local.putIfAbsent(...args);
        } finally {
          inFlight -= 1;
        }
      },
    });
    expect((await firstRequest(backend)).outcome).toBe('archived');
    // Its own file counts against --parallel (2 here): S3 pushes each hold a segment in memory.
    expect(mostInFlight).toBe(2);
    expect(await storedNames()).toEqual(names);
    expect((await readdir(path.join(walDir, 'walvault', 'archive.0123456789abcdef'))).sort()).toEqual(names.slice(1));
  });

  it('starts helping only after its own file when the backend holds each segment in memory for one request (S3)', async () => {
    const local = createLocalBackend({ root: repo });
    const events: string[] = [];
    // POSIX storage that asks for the metadata before the body, as S3 does: archiveFile then reads
    // each file whole into memory first.
    const backend: Backend = Object.assign(Object.create(local) as Backend, {
      metaTiming: { when: 'before-body', singleRequestBytes: 16 << 20 },
      putIfAbsent: async (...args: Parameters<Backend['putIfAbsent']>) => {
        const name = path.basename(args[0]);
        events.push(`start ${name}`);
        try {
          return await local.putIfAbsent(...args);
        } finally {
          events.push(`end ${name}`);
        }
      },
    });
    expect((await firstRequest(backend)).outcome).toBe('archived');
    expect(events.slice(0, 2)).toEqual([`start ${names[0]}`, `end ${names[0]}`]);
    expect(await storedNames()).toEqual(names);
  });
});
