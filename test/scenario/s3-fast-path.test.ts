// The launcher answers S3 calls too: a prefetched segment and a segment pushed ahead are answered
// without starting Node. The record of an S3 call once listed a variable that walvault's S3 backend
// sets in its own process (AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED), which the launcher's
// environment never has, so every S3 request started Node. WALVAULT_NODE names no program here: a
// launcher that starts Node fails with 127 (restore) or 15 (archive) instead of exit 0.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { randomFile, runCli, s3Flags, useS3Scenario } from '../support/s3scenario.js';
import type { S3TestServer } from '../support/s3server.js';
import { killWorker, waitForWorkerExit } from '../support/spool.js';

let server: S3TestServer;
let work: { dir: string; remove(): Promise<void> };

useS3Scenario({ bind: (scenario) => ({ server, work } = scenario) });

const NO_NODE = { WALVAULT_NODE: '/nonexistent/node' };

/** runCli with the environment PostgreSQL gives: without the variable the S3 backend sets in its own process (this one too, if it made a backend). */
const cli: typeof runCli = (name, args, options) => {
  delete process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED;
  return runCli(name, args, options);
};
const segment = (n: number): string => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`;

/** Waits (bounded) until `found()` is true. */
async function until(found: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await found())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within 60 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the launcher in front of an S3 repository', () => {
  it('hands over a prefetched segment without starting Node', async () => {
    const prefix = 'fast-restore';
    const names = [1, 2, 3].map(segment);
    for (const name of names) {
      const file = await randomFile(work.dir, `restore-${name}`, 1 << 20);
      expect((await cli('walvault-archive', [...s3Flags(server, prefix), '--push-ahead=0', file.path, name])).code).toBe(0);
    }
    const dataDir = path.join(work.dir, 'data-restore');
    await fs.mkdir(path.join(dataDir, 'pg_wal'), { recursive: true });
    await fs.writeFile(path.join(dataDir, 'recovery.signal'), '');
    const spool = path.join(dataDir, 'pg_wal', 'walvault');
    try {
      const first = await cli('walvault-restore', [...s3Flags(server, prefix), names[0]!, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, waitFor: 'exit' });
      expect(first, first.stderr).toMatchObject({ code: 0 });
      const prefetched = async (): Promise<boolean> => {
        const folders = (await fs.readdir(spool).catch(() => [] as string[])).filter((name) => /^restore\.[0-9a-f]+$/.test(name));
        for (const folder of folders) if ((await fs.readdir(path.join(spool, folder))).includes(names[1]!)) return true;
        return false;
      };
      await until(prefetched, `the prefetch of "${names[1]}"`);
      const second = await cli('walvault-restore', [...s3Flags(server, prefix), names[1]!, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, env: NO_NODE, waitFor: 'exit' });
      expect(second, second.stderr).toMatchObject({ code: 0 });
      expect(second.stderr).toContain(`restored "${names[1]}" to "pg_wal/RECOVERYXLOG" (prefetched and verified in`);
      expect((await fs.stat(path.join(dataDir, 'pg_wal', 'RECOVERYXLOG'))).size).toBe(1 << 20);
    } finally {
      await killWorker(spool, 'restore').catch(() => undefined);
    }
  });

  it('answers a segment pushed ahead without starting Node', async () => {
    const prefix = 'fast-archive';
    const dataDir = path.join(work.dir, 'data-archive');
    const status = path.join(dataDir, 'pg_wal', 'archive_status');
    await fs.mkdir(status, { recursive: true });
    const names = [1, 2, 3].map(segment);
    for (const name of names) {
      const file = await randomFile(work.dir, `archive-${name}`, 1 << 20);
      await fs.copyFile(file.path, path.join(dataDir, 'pg_wal', name));
      await fs.writeFile(path.join(status, `${name}.ready`), '');
    }
    const first = await cli('walvault-archive', [...s3Flags(server, prefix), `pg_wal/${names[0]}`, names[0]!], { cwd: dataDir });
    expect(first, first.stderr).toMatchObject({ code: 0 });
    await fs.rename(path.join(status, `${names[0]}.ready`), path.join(status, `${names[0]}.done`));
    await waitForWorkerExit(path.join(dataDir, 'pg_wal', 'walvault'), 'archive', { expectWorker: false });
    const second = await cli('walvault-archive', [...s3Flags(server, prefix), `pg_wal/${names[1]}`, names[1]!], { cwd: dataDir, env: NO_NODE });
    expect(second, second.stderr).toMatchObject({ code: 0 });
    expect(second.stderr).toContain(`"${names[1]}" was pushed ahead and is durable in the repository`);
  });
});
