// walvault status, the outcome record, --on-failure and --only-if-exists, driven through the built
// executables on a fake pg_wal (archive_status .ready files, as the server leaves them).
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import parsePrometheusTextFormat, { type MetricFamily } from 'parse-prometheus-text-format';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { segmentFileName } from '../../src/wal/names.js';
import type { StatusReport } from '../../src/policy/status.js';
import { run } from '../support/cli.js';
import { killWorker, makeReady, markDone, runNoWait, waitForWorkerExit, waitForWorkerStart } from '../support/spool.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes } from '../support/walfile.js';

const MiB = 1 << 20;
const seg = (n: number): string => segmentFileName(1, BigInt(n), 16 * MiB);

let temp: { dir: string; remove(): Promise<void> };
let dataDir: string;
let repo: string;
let spool: string;
let events: string;

beforeEach(async () => {
  temp = await makeTempDir('walvault-status-');
  dataDir = path.join(temp.dir, 'data');
  repo = path.join(temp.dir, 'repo');
  spool = path.join(dataDir, 'pg_wal', 'walvault');
  events = path.join(temp.dir, 'events');
  await mkdir(dataDir);
  await mkdir(repo);
});
afterEach(async () => {
  await killWorker(spool, 'archive');
  await killWorker(spool, 'restore');
  await temp.remove();
});

/** An --on-failure command that appends one line per event: event, program, kind, file, exit code, not-told count, resolved kinds. */
const recorder = (): string =>
  `printf '%s|%s|%s|%s|%s|%s|%s|%s\\n' "$WALVAULT_EVENT" "$WALVAULT_EVENT_PROGRAM" "$WALVAULT_EVENT_KIND" "$WALVAULT_EVENT_FILE" "$WALVAULT_EVENT_EXIT_CODE" "$WALVAULT_EVENT_NOT_TOLD" "$WALVAULT_EVENT_RESOLVED_KINDS" "$WALVAULT_EVENT_REPO" >> ${events}`;

const archive = (name: string, extra: string[] = [], repoDir = repo) => runNoWait('walvault-archive', [`--repo=${repoDir}`, ...extra, `pg_wal/${name}`, name], { cwd: dataDir });

/** The lines the --on-failure command wrote, once there are `count` of them (the command runs detached). */
async function eventLines(count: number): Promise<string[]> {
  const until = Date.now() + 30_000;
  for (;;) {
    const lines = (await readFile(events, 'utf8').catch(() => '')).split('\n').filter((line) => line !== '');
    if (lines.length >= count || Date.now() > until) return lines;
    await sleep(20);
  }
}

async function status(args: string[] = []): Promise<{ code: number | null; report: StatusReport; stderr: string }> {
  const result = await run('walvault', ['status', `--pgdata=${dataDir}`, `--repo=${repo}`, '--json', ...args]);
  return { code: result.code, report: JSON.parse(result.stdout) as StatusReport, stderr: result.stderr };
}

/** Parses with the Prometheus text parser and checks what it lets through: one HELP and TYPE before each family's samples, numeric values. */
function parseExposition(text: string): Map<string, MetricFamily> {
  const families = parsePrometheusTextFormat(text);
  const declared = new Map<string, number>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (gauge|counter)$/.exec(line);
    if (type !== null) declared.set(type[1]!, (declared.get(type[1]!) ?? 0) + 1);
    else if (line !== '' && !line.startsWith('# HELP ')) expect(declared.get(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? ''), `sample before its TYPE: ${line}`).toBe(1);
  }
  const byName = new Map<string, MetricFamily>();
  for (const family of families) {
    expect(family.help, family.name).not.toBe('');
    expect(['GAUGE', 'COUNTER']).toContain(family.type);
    if (family.type === 'COUNTER') expect(family.name).toMatch(/_total$/);
    for (const sample of family.metrics) expect(Number.isNaN(Number(sample.value)), `${family.name} ${sample.value}`).toBe(false);
    byName.set(family.name, family);
  }
  expect([...declared.values()].every((times) => times === 1)).toBe(true);
  return byName;
}

const value = (families: Map<string, MetricFamily>, name: string, labels?: Record<string, string>): number | undefined => {
  const sample = families.get(name)?.metrics.find((metric) => labels === undefined || JSON.stringify(metric.labels) === JSON.stringify(labels));
  return sample === undefined ? undefined : Number(sample.value);
};

describe('the outcome record and walvault status', () => {
  it('records the last failure with its message and exit code, then the success; the counters count each call', async () => {
    const name = seg(1);
    await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const gone = path.join(temp.dir, 'gone');
    await rename(repo, gone);
    const failed = await archive(name, ['--push-ahead=0']);
    expect(failed.code).toBe(2);
    const line = failed.stderr.trim().replace(/^walvault-archive: error: /, '');
    let { report, code } = await status();
    expect(code).toBe(14); // the repository side cannot be read either
    expect(report.archive!.archive.lastFailure).toMatchObject({ file: name, exitCode: 2, message: line, kind: 'usage' });
    expect(report.archive!.archive.lastSuccess).toBeNull();
    expect(report.archive!.archive.counters).toEqual({ successes: 0, failures: 1, skipped: 0, missing: 0 });
    expect(report.archive!.ready).toMatchObject({ files: 1, bytes: MiB, oldestFile: name });
    expect(report.errors).toHaveLength(1);
    expect(report.errors[0]).toContain(`cannot read repository "${repo}"`);
    expect(report.up).toBe(false);

    await rename(gone, repo);
    expect((await archive(name, ['--push-ahead=0'])).code).toBe(0);
    await markDone(dataDir, name);
    ({ report, code } = await status());
    expect(code).toBe(0);
    expect(report.archive!.archive.lastSuccess).toMatchObject({ file: name, exitCode: 0, message: `archived (${MiB} bytes)`, kind: null });
    expect(report.archive!.archive.lastFailure!.file).toBe(name);
    expect(report.archive!.archive.counters).toEqual({ successes: 1, failures: 1, skipped: 0, missing: 0 });
    expect(report.archive!.ready).toMatchObject({ files: 0, bytes: 0, oldestFile: null, lagSeconds: 0 });
    expect(report.archive!.lastDone!.file).toBe(name);
    expect(report.repository!.timelines).toEqual([expect.objectContaining({ timeline: 1, newestFile: name, segments: 1 })]);
    expect(report.ok).toBe(true);
    expect(report.archive!.recordSince).not.toBeNull();
  });

  it('counts the files the background pusher stored (the launcher answers those from markers, without Node) exactly once each', async () => {
    const names = [1, 2, 3, 4, 5, 6].map(seg);
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    for (const name of names) {
      expect((await archive(name)).code).toBe(0);
      await markDone(dataDir, name);
    }
    await waitForWorkerExit(spool, 'archive');
    const { report } = await status();
    expect(report.archive!.archive.counters.successes).toBe(6);
    expect(names).toContain(report.archive!.archive.lastSuccess!.file);
    expect(report.archive!.pusher).toMatchObject({ running: false, state: 'stopped', claims: [] });
  });

  it('shows a running pusher, its claims and markers, and a pusher killed with SIGKILL as not running', async () => {
    const names = Array.from({ length: 24 }, (_, index) => seg(index + 1));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    expect((await archive(names[0]!)).code).toBe(0);
    const pid = await waitForWorkerStart(spool, 'archive');
    expect(pid).not.toBeNull();
    // Stopped (not killed) first, so that it cannot finish and exit before status looks.
    process.kill(pid!, 'SIGSTOP');
    const running = await status();
    expect(running.report.archive!.pusher).toMatchObject({ running: true, pid });
    expect(['starting', 'pushing', 'idle']).toContain(running.report.archive!.pusher.state);
    process.kill(pid!, 'SIGKILL');
    // Not running as soon as it is dead, even while it is a zombie nobody has reaped yet.
    let killed = await status();
    const until = Date.now() + 30_000;
    while (killed.report.archive!.pusher.running && Date.now() < until) killed = await status();
    expect(killed.report.archive!.pusher).toMatchObject({ running: false, pid: null, state: 'stopped', claims: [] });
    // The dead pusher's lock names its options' marker folder (src/policy/SPOOL.md): status counts that one.
    const [, , id] = (await readFile(path.join(spool, 'archive.pid'), 'utf8')).trim().split(' ');
    expect(killed.report.archive!.pusher.markers).toBe((await readdir(path.join(spool, `archive.${id!}`))).length);
    const text = await run('walvault', ['status', `--pgdata=${dataDir}`]);
    expect(text.stdout).toMatch(/^ {2}pusher: {7}not running; 0 claims, \d+ markers? waiting$/m);
  });

  it('records restore successes, "not found" and failures apart', async () => {
    const name = seg(1);
    await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    expect((await archive(name, ['--push-ahead=0'])).code).toBe(0);
    const restore = (file: string, repoDir = repo) =>
      runNoWait('walvault-restore', [`--repo=${repoDir}`, '--prefetch=0', '--on-error=missing', `--on-failure=${recorder()}`, file, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect((await restore(name)).code).toBe(0);
    expect((await restore(seg(2))).code).toBe(1);
    expect((await restore(name, path.join(temp.dir, 'nowhere'))).code).toBe(1);
    const { report } = await status();
    expect(report.archive!.restore.counters).toEqual({ successes: 1, failures: 1, skipped: 0, missing: 1 });
    expect(report.archive!.restore.lastSuccess).toMatchObject({ file: name, exitCode: 0 });
    expect(report.archive!.restore.lastFailure).toMatchObject({ file: name, exitCode: 1, kind: 'usage' });
    expect(report.archive!.restore.lastFailure!.message).toContain('nowhere');
    // "not found" is routine: only the real failure is told.
    expect((await restore(name)).code).toBe(0);
    expect(await eventLines(2)).toEqual([`failure|walvault-restore|usage|${name}|1|0||${path.join(temp.dir, 'nowhere')}`, `resolved|walvault-restore||${name}|0||usage|${repo}`]);
  });

  it('--prometheus output parses with the Prometheus text parser: walvault_up, units in the names, HELP and TYPE for each family', async () => {
    const names = [1, 2].map(seg);
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    expect((await archive(names[0]!, ['--push-ahead=0'])).code).toBe(0);
    const result = await run('walvault', ['status', `--pgdata=${dataDir}`, `--repo=${repo}`, '--prometheus']);
    expect(result.code).toBe(0);
    const families = parseExposition(result.stdout);
    expect(value(families, 'walvault_up')).toBe(1);
    expect(value(families, 'walvault_archive_ready_files')).toBe(2);
    expect(value(families, 'walvault_archive_ready_bytes')).toBe(2 * MiB);
    expect(value(families, 'walvault_archive_lag_seconds')).toBeGreaterThanOrEqual(0);
    expect(value(families, 'walvault_archive_successes_total')).toBe(1);
    expect(value(families, 'walvault_archive_failures_total')).toBe(0);
    expect(value(families, 'walvault_archive_pusher_running')).toBe(0);
    expect(value(families, 'walvault_repository_segments', { timeline: '1' })).toBe(1);
    expect(value(families, 'walvault_archive_last_success_timestamp_seconds')).toBeCloseTo(Date.now() / 1000, -3);
    expect(families.has('walvault_archive_last_failure_timestamp_seconds')).toBe(false);
    expect(families.has('walvault_threshold_crossed')).toBe(false);

    const crossed = await run('walvault', ['status', `--pgdata=${dataDir}`, '--prometheus', '--max-ready-files=1', '--max-ready-bytes=1000000000']);
    expect(crossed.code).toBe(14);
    const after = parseExposition(crossed.stdout);
    expect(value(after, 'walvault_threshold_crossed', { threshold: 'max-ready-files' })).toBe(1);
    expect(after.get('walvault_threshold_crossed')!.metrics).toHaveLength(1);
    expect(value(after, 'walvault_status_ok')).toBe(0);
    expect(crossed.stderr).toBe('walvault: error: status: threshold crossed: max-ready-files; HINT: see the ALERT lines (text) or "alerts" (JSON); walvault status --help lists the thresholds\n');
  });

  it('thresholds: each crossed one is an ALERT line and exit 14; none crossed is exit 0', async () => {
    const name = seg(1);
    await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const fine = await run('walvault', ['status', `--pgdata=${dataDir}`, `--repo=${repo}`, '--max-ready-files=5', '--max-lag=3600', '--max-failure-age=3600']);
    expect(fine.code).toBe(0);
    expect(fine.stdout.trimEnd().split('\n').at(-1)).toBe('result: OK');
    await rename(repo, `${repo}.away`);
    expect((await archive(name, ['--push-ahead=0'])).code).toBe(2);
    await rename(`${repo}.away`, repo);
    const crossed = await run('walvault', ['status', `--pgdata=${dataDir}`, `--repo=${repo}`, '--max-ready-files=0', '--max-failure-age=3600', '--max-repo-age=3600']);
    expect(crossed.code).toBe(14);
    expect(crossed.stdout).toContain(`ALERT  max-ready-files: 1 files wait to be archived (limit 0)`);
    expect(crossed.stdout).toMatch(new RegExp(`ALERT  max-failure-age: "${name}" failed [0-9.]+ s ago \\(less than 3600 s\\): repository directory ".*" does not exist`));
    expect(crossed.stdout).toContain('ALERT  max-repo-age: the repository holds no segment');
    expect(crossed.stdout.trimEnd().split('\n').at(-1)).toBe('result: ALERT, a threshold is crossed');
    expect(crossed.stderr).toBe('walvault: error: status: thresholds crossed: max-ready-files, max-failure-age, max-repo-age; HINT: see the ALERT lines (text) or "alerts" (JSON); walvault status --help lists the thresholds\n');
  });
});

describe('--on-failure', () => {
  it('tells a failure once per interval per kind, "resolved" once at the next success, and a new failure after that at once', async () => {
    const names = [1, 2, 3].map(seg);
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const hook = ['--push-ahead=0', `--on-failure=${recorder()}`, '--on-failure-interval=3600'];
    await rename(repo, `${repo}.away`);
    for (let attempt = 0; attempt < 3; attempt += 1) expect((await archive(names[0]!, hook)).code).toBe(2);
    await rename(`${repo}.away`, repo);
    expect((await archive(names[0]!, hook)).code).toBe(0);
    const lines = await eventLines(2);
    expect(lines).toEqual([`failure|walvault-archive|usage|${names[0]}|2|0||${repo}`, `resolved|walvault-archive||${names[0]}|0||usage|${repo}`]);
    expect((await archive(names[1]!, hook)).code).toBe(0);
    // A different kind of failure (another cluster's file under the same name) is told at once.
    await writeFile(path.join(dataDir, 'pg_wal', names[2]!), pseudoRandomBytes(MiB, 'other'));
    await mkdir(path.join(repo, 'wal', names[2]!.slice(0, 16)), { recursive: true });
    await writeFile(path.join(repo, 'wal', names[2]!.slice(0, 16), names[2]!), pseudoRandomBytes(MiB, 'stored'));
    expect((await archive(names[2]!, hook)).code).toBe(4);
    expect((await archive(names[2]!, hook)).code).toBe(4);
    const more = await eventLines(3);
    await sleep(300); // a wrongly told suppressed failure would have been spawned before the line above arrived
    expect(await eventLines(3)).toEqual([...lines, `failure|walvault-archive|mismatch|${names[2]}|4|0||${repo}`]);
    expect(more).toHaveLength(3);
    const { report } = await status();
    expect(report.archive!.archive.counters).toMatchObject({ successes: 2, failures: 5 });
  });

  it('a failing or hanging command changes no exit code and delays nothing; it is killed at --on-failure-timeout', async () => {
    const name = seg(1);
    await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const pidFile = path.join(temp.dir, 'hook.pid');
    await rename(repo, `${repo}.away`);
    const hung = await archive(name, ['--push-ahead=0', `--on-failure=echo $$ > ${pidFile}; exec sleep 600`, '--on-failure-timeout=2']);
    expect(hung.code).toBe(2);
    let until = Date.now() + 30_000;
    while ((await readFile(pidFile, 'utf8').catch(() => '')) === '' && Date.now() < until) await sleep(20);
    const hookPid = Number((await readFile(pidFile, 'utf8')).trim());
    expect(hookPid).toBeGreaterThan(0);
    // walvault-archive has exited (run() resolved) while the command still runs.
    expect(() => process.kill(hookPid, 0)).not.toThrow();
    until = Date.now() + 60_000;
    let alive = true;
    while (alive && Date.now() < until) {
      try {
        process.kill(hookPid, 0);
        await sleep(50);
      } catch {
        alive = false;
      }
    }
    expect(alive).toBe(false);
    await rename(`${repo}.away`, repo);
    // From the environment (WALVAULT_ON_FAILURE) as from the flag; the command fails: the exit codes stay.
    const env = { WALVAULT_ON_FAILURE: 'echo oops >&2; exit 99', WALVAULT_ON_FAILURE_INTERVAL: '0', WALVAULT_PUSH_AHEAD: '0' };
    const viaEnv = (repoDir: string) => runNoWait('walvault-archive', [`--repo=${repoDir}`, `pg_wal/${name}`, name], { cwd: dataDir, env });
    expect((await viaEnv(path.join(temp.dir, 'nowhere'))).code).toBe(2);
    expect((await viaEnv(repo)).code).toBe(0);
  });
});

describe('--only-if-exists', () => {
  it('while the switch file is missing: exit 0, nothing stored (no pusher stores either), logged once per change; with the switch, failures show', async () => {
    const names = Array.from({ length: 8 }, (_, index) => seg(index + 1));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const switchFile = path.join(temp.dir, 'archive-on');
    const flags = [`--only-if-exists=${switchFile}`];
    const logs: string[] = [];
    for (const name of names.slice(0, 4)) {
      const result = await archive(name, flags);
      expect(result.code).toBe(0);
      logs.push(result.stderr);
      await markDone(dataDir, name);
    }
    // A pusher started while the switch is off exits at once (it may be gone before it is seen).
    await waitForWorkerExit(spool, 'archive', { expectWorker: false });
    expect(await readdir(repo)).toEqual([]);
    const off = logs.join('').split('\n').filter((line) => line.includes('switch file'));
    expect(off).toEqual([`walvault-archive: info: switch file "${switchFile}" does not exist: WAL files are not archived (exit 0, PostgreSQL recycles them) until it exists again`]);
    let { report } = await status();
    expect(report.archive!.archive.counters).toEqual({ successes: 0, failures: 0, skipped: 4, missing: 0 });
    expect(report.archive!.switchOffSince).not.toBeNull();

    await writeFile(switchFile, '');
    await rename(repo, `${repo}.away`);
    const failed = await archive(names[4]!, [...flags, '--push-ahead=0']);
    expect(failed.code).toBe(2);
    expect(failed.stderr).toContain(`walvault-archive: info: switch file "${switchFile}" exists again: archiving resumes`);
    await rename(`${repo}.away`, repo);
    for (const name of names.slice(4)) {
      const result = await archive(name, flags);
      expect(result.code).toBe(0);
      expect(result.stderr).not.toContain('switch file');
      await markDone(dataDir, name);
    }
    await waitForWorkerExit(spool, 'archive');
    const stored = (await readdir(path.join(repo, 'wal', names[0]!.slice(0, 16)))).filter((file) => !file.includes('~')).sort();
    expect(stored).toEqual(names.slice(4));
    ({ report } = await status());
    expect(report.archive!.switchOffSince).toBeNull();
    expect(report.archive!.archive.counters).toEqual({ successes: 4, failures: 1, skipped: 4, missing: 0 });
  });

  it('a pusher running when the switch file goes away stores nothing it had not begun', async () => {
    const names = Array.from({ length: 24 }, (_, index) => seg(index + 1));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const switchFile = path.join(temp.dir, 'archive-on');
    await writeFile(switchFile, '');
    const first = await archive(names[0]!, [`--only-if-exists=${switchFile}`]);
    expect(first.code).toBe(0);
    const pid = await waitForWorkerStart(spool, 'archive');
    expect(pid).not.toBeNull();
    process.kill(pid!, 'SIGSTOP');
    const storedNow = async (): Promise<string[]> => (await readdir(path.join(repo, 'wal', names[0]!.slice(0, 16)))).filter((file) => /^[0-9A-F]{24}$/.test(file)).sort();
    const before = await storedNow();
    // Claimed files may be past the switch check already: they may still be stored, nothing else.
    const claimed = (await readdir(path.join(spool, 'archive.work'))).filter((file) => /^[0-9A-F]{24}$/.test(file));
    await rm(switchFile);
    process.kill(pid!, 'SIGCONT');
    await waitForWorkerExit(spool, 'archive');
    const after = await storedNow();
    expect(after.filter((name) => !before.includes(name) && !claimed.includes(name))).toEqual([]);
    expect(after.length).toBeLessThan(names.length);
  });
});
