// walvault status and --on-failure against a live PostgreSQL 15 archiving through the installed
// walvault-archive: a repository made unavailable shows up (lag growing, the last failure with its
// message, pg_stat_archiver, threshold exit 14), the command is told once per interval and
// "resolved" once after the repair; a pusher stopped, then killed, shows as running, then not.
import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { processState } from '../../src/core/process.js';
import type { StatusReport } from '../../src/policy/status.js';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';
import { run, shQuote, usePg, type PgCluster } from '../support/pg.js';
import { waitForWorkerStart, workerPid } from '../support/spool.js';

describe('walvault status and --on-failure on a live server', () => {
  const pg = usePg({ prefix: 'walvault-status' });
  let walvault: InstalledWalvault;
  let server: PgCluster;
  let repo: string;
  let events: string;
  let db: string;

  beforeAll(async () => {
    walvault = await installedWalvault();
    repo = await pg.makeDir('repo', 0o700);
    events = path.join(await pg.makeDir('events', 0o777), 'events.log');
    const hook = `echo "$WALVAULT_EVENT $WALVAULT_EVENT_PROGRAM $WALVAULT_EVENT_KIND $WALVAULT_EVENT_FILE $WALVAULT_EVENT_EXIT_CODE" >> ${events}`;
    server = await pg.initCluster({
      name: 'server',
      walSegSizeMb: 1,
      settings: {
        archive_mode: true,
        archive_command: `${shQuote(walvault.archive)} --repo=${shQuote(repo)} --on-failure=${shQuote(hook)} --on-failure-interval=3600 %p %f`,
      },
    });
    await server.start();
    db = `host=${server.socketDir} port=${server.port} user=postgres dbname=postgres`;
    await server.sql('create table t(i int)');
  });

  const status = async (args: string[] = []): Promise<{ code: number | null; report: StatusReport; stdout: string; stderr: string }> => {
    const result = await run(walvault.walvault, ['status', `--pgdata=${server.dataDir}`, `--repo=${repo}`, '--db', db, '--json', ...args], { allowFailure: true });
    return { code: result.code, report: JSON.parse(result.stdout) as StatusReport, stdout: result.stdout, stderr: result.stderr };
  };
  const eventLines = async (): Promise<string[]> => (await readFile(events, 'utf8').catch(() => '')).split('\n').filter((line) => line !== '');
  const waitForEvents = async (count: number): Promise<string[]> => {
    const until = Date.now() + 60_000;
    while ((await eventLines()).length < count && Date.now() < until) await sleep(50);
    return eventLines();
  };
  const newSegment = async (): Promise<string> => {
    await server.sql('insert into t select generate_series(1, 100)');
    return server.scalar('select pg_walfile_name(pg_switch_wal())');
  };

  it('shows an unavailable repository (lag growing, last failure, pg_stat_archiver, exit 14), tells it once and "resolved" once after the repair', async () => {
    const first = await server.switchWalAndWaitArchived();
    let { report, code } = await status(['--max-lag=3600', '--max-failure-age=3600']);
    expect(code).toBe(0);
    expect(report.archive!.archive.lastSuccess!.file).toBe(first);
    expect(report.archive!.archive.lastFailure).toBeNull();
    expect(report.server!.archivedCount).toBeGreaterThanOrEqual(1);
    expect(report.server!.inRecovery).toBe(false);
    expect(report.repository!.timelines[0]).toMatchObject({ timeline: 1, newestFile: first });

    await rename(repo, `${repo}.away`);
    const stuck = await newSegment();
    const until = Date.now() + 60_000;
    while ((await server.archiverStats()).failedCount < 3 && Date.now() < until) await sleep(100);
    expect((await server.archiverStats()).failedCount).toBeGreaterThanOrEqual(3);
    ({ report, code } = await status());
    expect(code).toBe(14); // the repository side cannot be read
    expect(report.archive!.archive.lastFailure).toMatchObject({ file: stuck, exitCode: 2, kind: 'usage' });
    expect(report.archive!.archive.lastFailure!.message).toContain(`repository directory "${repo}" does not exist`);
    expect(report.archive!.archive.counters.failures).toBeGreaterThanOrEqual(3);
    expect(report.archive!.ready).toMatchObject({ files: 1, bytes: 1 << 20, oldestFile: stuck });
    expect(report.server).toMatchObject({ lastFailedWal: stuck });
    expect(report.server!.failedCount).toBeGreaterThanOrEqual(3);
    // The lag grows while nothing is archived.
    const lag = report.archive!.ready.lagSeconds;
    let later = lag;
    const lagUntil = Date.now() + 30_000;
    while (later <= lag && Date.now() < lagUntil) {
      await sleep(200);
      later = (await status()).report.archive!.ready.lagSeconds;
    }
    expect(later).toBeGreaterThan(lag);
    const text = await run(walvault.walvault, ['status', `--pgdata=${server.dataDir}`, '--max-lag=0', '--max-failure-age=600'], { allowFailure: true });
    expect(text.code).toBe(14);
    expect(text.stdout).toMatch(new RegExp(`^ALERT  max-lag: "${stuck}" has waited [0-9.]+ s to be archived \\(limit 0 s\\)$`, 'm'));
    expect(text.stdout).toMatch(new RegExp(`^ALERT  max-failure-age: "${stuck}" failed [0-9.]+ s ago \\(less than 600 s\\): repository directory ".*" does not exist`, 'm'));
    expect(text.stderr).toBe('walvault: error: status: thresholds crossed: max-lag, max-failure-age; HINT: see the ALERT lines (text) or "alerts" (JSON); walvault status --help lists the thresholds\n');
    expect(await waitForEvents(1)).toEqual([`failure walvault-archive usage ${stuck} 2`]);

    await rename(`${repo}.away`, repo);
    const next = await newSegment();
    await server.waitForArchived(next);
    const told = await waitForEvents(2);
    expect(told[1]).toMatch(new RegExp(`^resolved walvault-archive  (${stuck}|${next}) 0$`));
    await server.switchWalAndWaitArchived();
    await newSegment();
    await server.switchWalAndWaitArchived();
    await sleep(500); // a wrongly repeated notification is spawned before the archive call returns
    expect(await eventLines()).toEqual(told);
    expect(told).toHaveLength(2);
    ({ report, code } = await status(['--max-ready-files=100']));
    expect(code).toBe(0);
    expect(report.archive!.archive.lastSuccess!.time > report.archive!.archive.lastFailure!.time).toBe(true);
    expect(report.ok).toBe(true);
  });

  it('a background pusher stopped shows as running with its pid; killed with SIGKILL, as not running, and archiving goes on', async () => {
    const spool = path.join(server.dataDir, 'pg_wal', 'walvault');
    await rename(repo, `${repo}.away`);
    const stuck = await newSegment();
    let last = stuck;
    for (let index = 0; index < 40; index += 1) last = await newSegment();
    await rename(`${repo}.away`, repo);
    // The archiver retries the first one within a minute (at once on a new segment): its request
    // finds more waiting and starts the pusher.
    last = await newSegment();
    // A pusher found at the very end of its idle time may exit before the SIGSTOP lands (seen once
    // under the full suite's load: status rightly called the zombie not running). Only a pusher the
    // kernel shows stopped ('T' in /proc/PID/stat) counts; else the next one.
    let pid: number | null = null;
    for (let attempt = 0; attempt < 5 && pid === null; attempt += 1) {
      // The next one starts with the next archive request: a new segment.
      if (attempt > 0) last = await newSegment();
      const found = await waitForWorkerStart(spool, 'archive', 90_000);
      expect(found).not.toBeNull();
      try {
        process.kill(found!, 'SIGSTOP');
      } catch {
        continue; // gone meanwhile
      }
      for (let poll = 0; poll < 50 && pid === null; poll += 1) {
        const state = await processState(found!);
        if (state === 'T') pid = found;
        else if (state === null || state === 'Z' || state === 'X') {
          await sleep(200); // reaped by then: its pid no longer names a live worker
          break;
        }
        else await sleep(20);
      }
    }
    expect(pid).not.toBeNull();
    const stopped = await status();
    expect(stopped.report.archive!.pusher).toMatchObject({ running: true, pid });
    process.kill(pid!, 'SIGKILL');
    const until = Date.now() + 30_000;
    while ((await workerPid(spool, 'archive')) === pid && Date.now() < until) await sleep(20);
    const killed = await status();
    // A request may have started a new pusher already: the killed one is not reported running.
    expect(killed.report.archive!.pusher.pid).not.toBe(pid);
    expect(killed.report.archive!.pusher.running).toBe(killed.report.archive!.pusher.pid !== null);
    await server.waitForArchived(last, { timeoutMs: 120_000 });
    const lines = await waitForEvents(4);
    expect(lines.slice(2)).toEqual([`failure walvault-archive usage ${stuck} 2`, expect.stringMatching(/^resolved walvault-archive {2}[0-9A-F]{24} 0$/)]);
  });
});
