// Scenarios for push-ahead: the background pusher, the spool markers and the launcher's fast path must never claim a file that is not durably archived.
import { chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes } from '../support/walfile.js';
import { entriesDir, entryNames, exists, killWorker, makeReady, markDone, runNoWait, waitForWorkerExit, waitForWorkerStart } from '../support/spool.js';
import { segmentFileName } from '../../src/wal/names.js';

const MiB = 1 << 20;
/** Name of segment `n` of a timeline (16 MiB segments). */
const seg = (timeline: number, n: number): string => segmentFileName(timeline, BigInt(n), 16 * MiB);

let temp: { dir: string; remove(): Promise<void> };
let dataDir: string;
let repo: string;
let spool: string;

beforeEach(async () => {
  temp = await makeTempDir();
  dataDir = path.join(temp.dir, 'data');
  repo = path.join(temp.dir, 'repo');
  spool = path.join(dataDir, 'pg_wal', 'walvault');
  await mkdir(dataDir);
  await mkdir(repo);
  await prime();
});
afterEach(async () => {
  await killWorker(spool, 'archive');
  await temp.remove();
});

/**
 * Has Node serve one call with these options and start a pusher (two segments of timeline 9, after every
 * test's own files, so no later pusher takes them for its backlog), so that it writes the launcher's record
 * (src/policy/SPOOL.md, "Records"): the launcher answers, and starts the pusher, only for calls like one
 * Node has served with a pusher.
 */
async function prime(extra: string[] = []): Promise<void> {
  const names = [seg(9, 1), seg(9, 2)];
  for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(64 * 1024, name));
  const result = await runNoWait('walvault-archive', [`--repo=${repo}`, ...extra, `pg_wal/${names[0]}`, names[0]!], { cwd: dataDir });
  expect(result.code, result.stderr).toBe(0);
  await waitForWorkerExit(spool, 'archive');
  for (const name of names) await markDone(dataDir, name);
}

const archive = (name: string, extra: string[] = [], repoDir = repo) => runNoWait('walvault-archive', [`--repo=${repoDir}`, ...extra, `pg_wal/${name}`, name], { cwd: dataDir });
const stored = (name: string, repoDir = repo): string => path.join(repoDir, 'wal', name.length > 16 && !name.endsWith('.history') ? `${name.slice(0, 16)}/${name}` : name);
/** Markers of the test's own files (prime's timeline 9 aside). */
const markers = async (): Promise<string[]> => (await entryNames(spool, 'archive')).filter((name) => !name.startsWith('00000009'));
/** The marker folder as the launcher names it (relative to the data directory). */
const markerDir = async (spoolDir = spool): Promise<string> => path.relative(dataDir, (await entriesDir(spoolDir, 'archive')) ?? path.join(spoolDir, 'archive.none'));

/** Every marker must stand for a complete, identical copy in the repository. */
async function expectMarkersTruthful(repoDir = repo): Promise<void> {
  for (const name of await markers()) {
    const original = await readFile(path.join(dataDir, 'pg_wal', name));
    expect((await readFile(stored(name, repoDir))).equals(original), `marker "${name}" without an identical archived copy`).toBe(true);
  }
}

/** Plays PostgreSQL's archiver: asks for each name in turn, marking it .done on exit 0. */
async function archiveAll(names: string[], extra: string[] = []): Promise<Array<{ name: string; code: number | null; stderr: string }>> {
  const results = [];
  for (const name of names) {
    const result = await archive(name, extra);
    results.push({ name, code: result.code, stderr: result.stderr });
    if (result.code === 0) await markDone(dataDir, name);
  }
  return results;
}

describe('walvault-archive push-ahead', () => {
  it('pushes the following .ready segments in the background and answers them from the spool without starting Node', async () => {
    const names = [1, 2, 3, 4, 5, 6].map((n) => seg(1, n));
    const contents = new Map(names.map((name) => [name, pseudoRandomBytes(MiB, name)]));
    for (const name of names) await makeReady(dataDir, name, contents.get(name)!);

    const first = await archive(names[0]!);
    expect(first.code).toBe(0);
    // The launcher started the pusher with this file first and answered from its marker.
    expect(first.stderr).toContain(`walvault-archive: info: "${names[0]}" was pushed ahead and is durable in the repository`);
    await waitForWorkerExit(spool, 'archive');
    await markDone(dataDir, names[0]!);
    for (const name of names) expect((await readFile(stored(name))).equals(contents.get(name)!)).toBe(true);
    expect(await markers()).toEqual(names);
    await expectMarkersTruthful();

    const second = await archive(names[1]!);
    expect(second.code).toBe(0);
    // This line comes from the sh fast path: Node was not started.
    expect(second.stderr).toBe(`walvault-archive: info: "${names[1]}" was pushed ahead and is durable in the repository (answered from "${await markerDir()}")\n`);
  });

  it('answers from the spool when the repository comes from WALVAULT_REPO and the spool from --spool (launcher and Node agree on the owner line)', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const custom = path.join(dataDir, 'pg_wal', 'custom-spool');
    const run = (name: string) => runNoWait('walvault-archive', [`--spool=${custom}`, `pg_wal/${name}`, name], { cwd: dataDir, env: { WALVAULT_REPO: repo } });
    expect((await run(names[0]!)).code).toBe(0);
    await waitForWorkerExit(custom, 'archive');
    await markDone(dataDir, names[0]!);
    const second = await run(names[1]!);
    expect(second.code).toBe(0);
    expect(second.stderr).toBe(`walvault-archive: info: "${names[1]}" was pushed ahead and is durable in the repository (answered from "${(await entriesDir(custom, 'archive'))!}")\n`);
    // The same options with another repository in the environment: not answered from this spool.
    const repo2 = path.join(temp.dir, 'repo2');
    await mkdir(repo2);
    const other = await runNoWait('walvault-archive', [`--spool=${custom}`, `pg_wal/${names[2]}`, names[2]!], { cwd: dataDir, env: { WALVAULT_REPO: repo2 } });
    expect(other.code).toBe(0);
    expect(other.stderr).toContain(`info: archived "${names[2]}" to "${stored(names[2]!, repo2)}"`);
  });

  it('keeps at most --push-ahead files ahead of the acknowledged ones', async () => {
    const names = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => seg(1, n));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(64 * 1024, name));
    expect((await archive(names[0]!, ['--push-ahead=3'])).code).toBe(0);
    await waitForWorkerExit(spool, 'archive');
    // No record for --push-ahead=3 yet: Node archives the requested file itself and starts the pusher, which keeps 3 ahead.
    expect(await markers()).toEqual(names.slice(1, 4));
    expect(exists(stored(names[4]!))).toBe(false);
  });

  it('survives kill -9 of the pusher mid-push: no marker without a durable copy, and every file still gets archived', async () => {
    const names = Array.from({ length: 10 }, (_, i) => seg(1, i + 1));
    const contents = new Map(names.map((name) => [name, pseudoRandomBytes(4 * MiB, name)]));
    for (const name of names) await makeReady(dataDir, name, contents.get(name)!);
    const first = archive(names[0]!, ['--parallel=2']);
    const pid = await waitForWorkerStart(spool, 'archive');
    expect(pid).not.toBeNull();
    // Let it get going, then kill it in the middle of its pushes.
    const pushing = Date.now() + 60_000;
    while ((await readdir(path.join(spool, 'archive.work')).catch(() => [] as string[])).filter((n) => n !== names[0]).length === 0) {
      if (Date.now() > pushing) throw new Error('the pusher started no push after %f within 60 s');
      await sleep(2);
    }
    // Fails (ESRCH) only if the pusher already finished all nine 4 MiB pushes: then nothing was killed mid-push.
    expect(() => process.kill(pid!, 'SIGKILL')).not.toThrow();
    expect((await first).code).toBe(0);
    await markDone(dataDir, names[0]!);
    await expectMarkersTruthful();

    const results = await archiveAll(names.slice(1), ['--parallel=2']);
    expect(results.map((r) => [r.name, r.code])).toEqual(names.slice(1).map((name) => [name, 0]));
    await waitForWorkerExit(spool, 'archive');
    for (const name of names) expect((await readFile(stored(name))).equals(contents.get(name)!)).toBe(true);
    const leftovers = (await readdir(path.join(repo, 'wal', names[0]!.slice(0, 16)))).filter((n) => n.includes('~tmp~'));
    expect(leftovers.length).toBeLessThanOrEqual(2); // at most the killed pushes' temps; never under a final name
  });

  it('answers correctly after the spool is lost, archiving through Node and finding the identical copy', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    expect((await archive(names[0]!)).code).toBe(0);
    await waitForWorkerExit(spool, 'archive');
    await markDone(dataDir, names[0]!);
    await rm(spool, { recursive: true, force: true });
    const second = await archive(names[1]!);
    expect(second.code).toBe(0);
    expect(second.stderr).toContain(`warning: "${names[1]}" was already archived at "${stored(names[1]!)}" with identical content; made sure it is durable, reporting success`);
  });

  it('marks nothing while the repository is unreachable, then catches up when it is back', async () => {
    const names = [1, 2, 3, 4].map((n) => seg(1, n));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const away = `${repo}.away`;
    await rename(repo, away);
    const failing = await archive(names[0]!);
    expect(failing.code).toBe(2);
    expect(failing.stderr).toContain('repository directory');
    // A pusher that finds no repository exits at once: it may be gone before it can be seen.
    await waitForWorkerExit(spool, 'archive', { expectWorker: false });
    expect(await markers()).toEqual([]);
    // Still gone: PostgreSQL retries; still nothing claimed.
    expect((await archive(names[0]!)).code).not.toBe(0);
    await waitForWorkerExit(spool, 'archive', { expectWorker: false });
    expect(await markers()).toEqual([]);

    await rename(away, repo);
    const results = await archiveAll(names);
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    for (const name of names) expect(exists(stored(name))).toBe(true);
  });

  it('pushes a .backup file (a base backup label) ahead with the segments around it and answers it from the spool', async () => {
    const backup = `${seg(1, 2)}.00000028.backup`;
    const names = [seg(1, 1), seg(1, 2), backup, seg(1, 3)];
    const label = Buffer.from(`START WAL LOCATION: 0/2000028 (file ${seg(1, 2)})\nSTOP WAL LOCATION: 0/2000100 (file ${seg(1, 2)})\n`);
    for (const name of names) await makeReady(dataDir, name, name === backup ? label : pseudoRandomBytes(MiB, name));

    expect((await archive(names[0]!)).code).toBe(0);
    await waitForWorkerExit(spool, 'archive');
    await markDone(dataDir, names[0]!);
    expect(await markers()).toEqual([...names].sort());
    await expectMarkersTruthful();
    const rest = await archiveAll(names.slice(1));
    expect(rest.map((r) => r.code)).toEqual([0, 0, 0]);
    expect(rest.find((r) => r.name === backup)?.stderr).toBe(`walvault-archive: info: "${backup}" was pushed ahead and is durable in the repository (answered from "${await markerDir()}")\n`);
  });

  it('handles two timelines: nothing is pushed while a .history file waits, .partial and .history are archived on request only', async () => {
    const tl1 = [seg(1, 5), `${seg(1, 6)}.partial`];
    const history = '00000002.history';
    const tl2 = [seg(2, 6), seg(2, 7), seg(2, 8)];
    await makeReady(dataDir, tl1[0]!, pseudoRandomBytes(MiB, 'tl1-5'));
    await makeReady(dataDir, tl1[1]!, pseudoRandomBytes(MiB, 'tl1-6-partial'));
    await makeReady(dataDir, history, Buffer.from('1\t0/6000000\tno recovery target specified\n'));
    for (const name of tl2) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));

    // PostgreSQL archives the history file first; before that, the pusher must not run ahead.
    expect((await archive(tl1[0]!)).code).toBe(0);
    await waitForWorkerExit(spool, 'archive');
    expect(await markers()).toEqual([]);
    await markDone(dataDir, tl1[0]!);

    const results = await archiveAll([history, tl1[1]!, tl2[0]!]);
    expect(results.map((r) => r.code)).toEqual([0, 0, 0]);
    await waitForWorkerExit(spool, 'archive');
    expect(await markers()).toEqual([tl2[1], tl2[2]]);
    await expectMarkersTruthful();
    expect(exists(stored(history))).toBe(true);
    expect(exists(stored(tl1[1]!))).toBe(true);
    const rest = await archiveAll(tl2.slice(1));
    expect(rest.map((r) => r.stderr.includes('answered from'))).toEqual([true, true]);
  });
});

describe("the launcher's fast path", () => {
  const names = [1, 2, 3].map((n) => seg(1, n));
  const pushAhead = async (): Promise<void> => {
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    expect((await archive(names[0]!)).code).toBe(0);
    await waitForWorkerExit(spool, 'archive');
    await markDone(dataDir, names[0]!);
    // names[0]'s marker stays until a pusher sees its .done (it sweeps acknowledged markers).
    expect(await markers()).toEqual(names);
  };

  it('does not answer for a file whose content changed under the same name (another inode): exit 4, mismatch', async () => {
    await pushAhead();
    const walPath = path.join(dataDir, 'pg_wal', names[1]!);
    const other = pseudoRandomBytes(MiB, 'split brain');
    await writeFile(`${walPath}.new`, other);
    await rename(`${walPath}.new`, walPath);
    const result = await archive(names[1]!);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(`error: refusing to overwrite "${names[1]}"`);
  });

  it('does not answer for another repository or other options: the file is archived there', async () => {
    await pushAhead();
    const repo2 = path.join(temp.dir, 'repo2');
    await mkdir(repo2);
    const result = await archive(names[1]!, [], repo2);
    expect(result.code).toBe(0);
    // Archived there (by a pusher started for repo2, which answers from its own marker); the markers
    // for the first repository are gone.
    expect(result.stderr).toContain(`info: archived "${names[1]}" to "${stored(names[1]!, repo2)}"`);
    await waitForWorkerExit(spool, 'archive');
    expect(await markers()).not.toContain(names[0]);
    await expectMarkersTruthful(repo2);
  });

  it('does not accept a marker that is a copy rather than a link to the WAL file', async () => {
    await pushAhead();
    const marker = path.join((await entriesDir(spool, 'archive'))!, names[1]!);
    await rm(marker);
    await writeFile(marker, await readFile(path.join(dataDir, 'pg_wal', names[1]!)));
    await rm(stored(names[1]!));
    await rm(`${stored(names[1]!)}~meta`, { force: true });
    const result = await archive(names[1]!);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(`info: archived "${names[1]}"`);
    expect((await stat(stored(names[1]!))).size).toBe(MiB);
  });

  it('does not answer when --push-ahead=0 asks for synchronous archiving', async () => {
    await pushAhead();
    const result = await archive(names[1]!, ['--push-ahead=0']);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('was already archived');
  });
});

// The launcher starts the pusher itself when segments wait after %f and none runs: one Node start for
// a backlog instead of one for the request plus one for the pusher it would start once loaded.
// WALVAULT_NODE points at a wrapper that logs every Node start (and its arguments) before running node.
describe('the pusher started by the launcher', () => {
  let nodeLog: string;
  let env: Record<string, string>;
  beforeEach(async () => {
    nodeLog = path.join(temp.dir, 'node-starts');
    const wrapper = path.join(temp.dir, 'node-wrapper');
    await writeFile(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${nodeLog}'\nprintf '%s\\n' "\${MALLOC_ARENA_MAX-unset}" >> '${nodeLog}.arenas'\nexec node "$@"\n`);
    await chmod(wrapper, 0o755);
    env = { WALVAULT_NODE: wrapper };
  });
  const starts = async (): Promise<string[]> => (await readFile(nodeLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const archiveVia = (name: string, extra: string[] = []) => runNoWait('walvault-archive', [`--repo=${repo}`, ...extra, `pg_wal/${name}`, name], { cwd: dataDir, env });

  it('stores %f first and answers the request from its marker: one Node start for the whole backlog', async () => {
    const names = [1, 2, 3, 4, 5].map((n) => seg(1, n));
    const contents = new Map(names.map((name) => [name, pseudoRandomBytes(MiB, name)]));
    for (const name of names) await makeReady(dataDir, name, contents.get(name)!);
    const first = await archiveVia(names[0]!);
    expect(first.code).toBe(0);
    // The request's line comes from the launcher; the pusher's own lines go to the same stderr.
    expect(first.stderr).toContain(`walvault-archive: info: "${names[0]}" was pushed ahead and is durable in the repository (answered from "${await markerDir()}")\n`);
    expect(first.stderr).not.toMatch(/^walvault-archive: info: archived/m);
    const launched = await starts();
    expect(launched).toHaveLength(1);
    expect(launched[0]).toContain(`--internal-worker=push-own --repo=${repo} pg_wal/${names[0]} ${names[0]}`);
    await markDone(dataDir, names[0]!);
    const rest = await archiveAll(names.slice(1));
    expect(rest.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    await waitForWorkerExit(spool, 'archive');
    for (const name of names) expect((await readFile(stored(name))).equals(contents.get(name)!)).toBe(true);
    expect(await starts()).toHaveLength(1);
  });

  it.each([
    [undefined, '2'],
    ['4', '4'],
  ])('starts the pusher with MALLOC_ARENA_MAX=2 (two malloc arenas) unless the environment sets it (set: %s)', async (given, expected) => {
    if (given !== undefined) env = { ...env, MALLOC_ARENA_MAX: given };
    const names = [1, 2, 3].map((n) => seg(1, n));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    expect((await archiveVia(names[0]!)).code).toBe(0);
    await waitForWorkerExit(spool, 'archive');
    expect(await starts()).toHaveLength(1);
    expect((await readFile(`${nodeLog}.arenas`, 'utf8')).split('\n').filter(Boolean)).toEqual([expected]);
  });

  it('runs a request Node serves itself with MALLOC_ARENA_MAX=2 too, unless the environment sets it', async () => {
    const name = seg(1, 1);
    await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    expect((await archiveVia(name, ['--push-ahead=0'])).code).toBe(0);
    expect(await starts()).toHaveLength(1);
    env = { ...env, MALLOC_ARENA_MAX: '8' };
    expect((await archiveVia(name, ['--push-ahead=0'])).code).toBe(0);
    expect((await readFile(`${nodeLog}.arenas`, 'utf8')).split('\n').filter(Boolean)).toEqual(['2', '8']);
  });

  /** The signals PostgreSQL 15's archiver leaves ignored for archive_command (read from /proc/PID/status of one). */
  const PG_ARCHIVER_IGNORES = ['INT', 'PIPE', 'ALRM', 'TTIN', 'TTOU', 'URG', 'XFSZ'];

  /** Writes a `sleep` for PATH that records its argument, then sleeps `seconds` (exec'd, so the launcher's kill reaches it). */
  const recordingSleep = async (seconds: string): Promise<{ bin: string; sleeps: string }> => {
    const bin = path.join(temp.dir, 'bin');
    await mkdir(bin, { recursive: true });
    const sleeps = path.join(temp.dir, 'sleeps');
    await writeFile(path.join(bin, 'sleep'), `#!/bin/sh\necho "$*" >> '${sleeps}'\nexec /bin/sleep ${seconds}\n`);
    await chmod(path.join(bin, 'sleep'), 0o755);
    return { bin, sleeps };
  };

  /** A node for WALVAULT_NODE that starts 0.3 s late, so the first request surely waits for the pusher. */
  const slowNode = async (): Promise<string> => {
    const file = path.join(temp.dir, 'slow-node');
    await writeFile(file, `#!/bin/sh\n/bin/sleep 0.3\nexec node "$@"\n`);
    await chmod(file, 0o755);
    return file;
  };

  /**
   * Makes three segments .ready and archives the first through the launcher the way PostgreSQL 15
   * starts archive_command (its ignored signals, plus `ignoreToo`), with the pusher starting 0.3 s late
   * and a recording `sleep` that sleeps `sleepFor`: the request surely waits. Checks it was answered
   * from the marker.
   */
  const archiveFirstWhileWaiting = async (sleepFor: string, ignoreToo: string[] = []) => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const { bin, sleeps } = await recordingSleep(sleepFor);
    const started = Date.now();
    const first = await runNoWait('walvault-archive', [`--repo=${repo}`, `pg_wal/${names[0]}`, names[0]!], {
      cwd: dataDir,
      env: { WALVAULT_NODE: await slowNode(), PATH: `${bin}:${process.env.PATH}` },
      ignoreSignals: [...PG_ARCHIVER_IGNORES, ...ignoreToo],
    });
    expect(first.code).toBe(0);
    expect(first.stderr).toContain(`"${names[0]}" was pushed ahead and is durable in the repository`);
    return { names, naps: (await readFile(sleeps, 'utf8')).trim().split('\n'), waitedMs: Date.now() - started };
  };

  /** PostgreSQL acknowledges the first file and asks for the rest; every marker tells the truth. */
  const finishBacklog = async (names: string[]): Promise<void> => {
    await markDone(dataDir, names[0]!);
    expect((await archiveAll(names.slice(1))).map((r) => r.code)).toEqual([0, 0]);
    await waitForWorkerExit(spool, 'archive');
    await expectMarkersTruthful();
  };

  it('wakes the request waiting for %f as soon as its marker is placed (SIGWINCH to the pid in archive.waiter), not at its next poll, also with the signals PostgreSQL leaves ignored', async () => {
    // A `sleep` that would wait 30 s per poll: only the signal can end the wait in time (SIGURG is
    // ignored here, as PostgreSQL leaves it: a launcher waiting for SIGURG never woke).
    const { names, naps, waitedMs } = await archiveFirstWhileWaiting('30');
    expect(waitedMs).toBeLessThan(20_000);
    expect(naps[0]).toBe('0.05');
    expect((await readFile(path.join(spool, 'archive.waiter'), 'utf8')).trim()).toMatch(new RegExp(`^[0-9]+ ${names[0]}$`));
    await finishBacklog(names);
  });

  it('polls every 10 ms instead when SIGWINCH was ignored at its start too (a signal it could not trap), and still answers from the marker', async () => {
    const { names, naps } = await archiveFirstWhileWaiting('"$1"', ['WINCH']);
    expect(new Set(naps)).toEqual(new Set(['0.01']));
    // The pusher took at least 0.3 s to start: that is a few dozen 10 ms polls, not a handful of 50 ms ones.
    expect(naps.length).toBeGreaterThan(10);
    await finishBacklog(names);
  });

  it('leaves %f to Node when the pusher cannot store it: the request reports the mismatch (exit 4)', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    // Another server's file under the same name is in the repository already.
    const theirs = path.join(temp.dir, 'theirs');
    await mkdir(theirs);
    await writeFile(path.join(theirs, names[0]!), pseudoRandomBytes(MiB, 'another server'));
    expect((await runNoWait('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', names[0]!, names[0]!], { cwd: theirs })).code).toBe(0);
    const result = await archiveVia(names[0]!);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(`error: refusing to overwrite "${names[0]}"`);
    // The pusher for %f, then the request (which may start a pusher of its own for the files after it).
    const launched = await starts();
    expect(launched[0]).toContain('--internal-worker=push-own');
    expect(launched.filter((line) => !line.includes('--internal-worker'))).toHaveLength(1);
    // The pusher for %f has failed and exited; the request's own pusher may or may not have started.
    await waitForWorkerExit(spool, 'archive', { expectWorker: false });
    expect(await markers()).not.toContain(names[0]);
    await expectMarkersTruthful();
  });

  it('starts no pusher from the launcher while a timeline history file waits, for one segment alone, or with --push-ahead=0', async () => {
    await makeReady(dataDir, seg(1, 5), pseudoRandomBytes(MiB, 'tl1-5'));
    await makeReady(dataDir, '00000002.history', Buffer.from('1\t0/6000000\tno recovery target specified\n'));
    await makeReady(dataDir, seg(2, 6), pseudoRandomBytes(MiB, 'tl2-6'));
    expect((await archiveVia(seg(1, 5))).code).toBe(0);
    await waitForWorkerExit(spool, 'archive');
    expect((await starts()).some((line) => line.includes('push-own'))).toBe(false);
    await rm(path.join(dataDir, 'pg_wal'), { recursive: true });

    await makeReady(dataDir, seg(1, 7), pseudoRandomBytes(MiB, 'alone'));
    expect((await archiveVia(seg(1, 7))).stderr).toContain(`info: archived "${seg(1, 7)}"`);
    await makeReady(dataDir, seg(1, 8), pseudoRandomBytes(MiB, 'eight'));
    await makeReady(dataDir, seg(1, 9), pseudoRandomBytes(MiB, 'nine'));
    expect((await archiveVia(seg(1, 8), ['--push-ahead=0'])).stderr).toContain(`info: archived "${seg(1, 8)}"`);
    expect((await starts()).some((line) => line.includes('push-own'))).toBe(false);
    expect(await markers()).toEqual([]);
  });

  it('starts no pusher for options whose config file turns push-ahead off: Node archives %f itself and writes no record', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    for (const name of names) await makeReady(dataDir, name, pseudoRandomBytes(MiB, name));
    const config = path.join(temp.dir, 'walvault.json');
    await writeFile(config, JSON.stringify({ repo, 'push-ahead': 0 }));
    const result = await runNoWait('walvault-archive', [`--config=${config}`, `pg_wal/${names[0]}`, names[0]!], { cwd: dataDir, env });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(`info: archived "${names[0]}"`);
    const launched = await starts();
    expect(launched.map((line) => line.includes('--internal-worker'))).toEqual([false]);
    expect(await markers()).toEqual([]);
    const again = await runNoWait('walvault-archive', [`--config=${config}`, `pg_wal/${names[1]}`, names[1]!], { cwd: dataDir, env });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain(`info: archived "${names[1]}"`);
    expect(exists(stored(names[2]!))).toBe(false);
  });
});
