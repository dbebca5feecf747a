// Scenarios for restore prefetch: verified files handed over by rename, timeline changes, corruption, the byte bound, kill -9.
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run } from '../support/cli.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';
import { entriesDir, entryNames, exists, killWorker, runNoWait, waitForWorkerStart, workerPid } from '../support/spool.js';
import { segmentFileName } from '../../src/wal/names.js';

const MiB = 1 << 20;
/** Name of segment `n` of a timeline (16 MiB segments). */
const seg = (timeline: number, n: number): string => segmentFileName(timeline, BigInt(n), 16 * MiB);

let temp: { dir: string; remove(): Promise<void> };
let dataDir: string;
let repo: string;
let spool: string;
const contents = new Map<string, Buffer>();

/** Fills the repository through walvault-archive (synchronously), as a primary would have. */
async function archiveIntoRepo(names: string[], size = MiB): Promise<void> {
  const source = path.join(temp.dir, 'primary');
  await mkdir(source, { recursive: true });
  for (const name of names) {
    const content = pseudoRandomBytes(size, name);
    contents.set(name, content);
    const walPath = await writeWalFile(source, name, content);
    const result = await run('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', walPath, name], { cwd: source });
    expect(result.code).toBe(0);
  }
}

beforeEach(async () => {
  temp = await makeTempDir();
  dataDir = path.join(temp.dir, 'data');
  repo = path.join(temp.dir, 'repo');
  spool = path.join(dataDir, 'pg_wal', 'walvault');
  await mkdir(path.join(dataDir, 'pg_wal'), { recursive: true });
  await mkdir(repo);
  await writeFile(path.join(dataDir, 'recovery.signal'), '');
});
afterEach(async () => {
  await killWorker(spool, 'restore');
  await temp.remove();
});

const restore = (name: string, extra: string[] = []) => runNoWait('walvault-restore', [`--repo=${repo}`, ...extra, name, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
const spooled = (): Promise<string[]> => entryNames(spool, 'restore');
/** The prefetch folder as the launcher names it (relative to the data directory). */
const spoolFolder = async (): Promise<string> => path.relative(dataDir, (await entriesDir(spool, 'restore')) ?? path.join(spool, 'restore.none'));
const recovered = (): Promise<Buffer> => readFile(path.join(dataDir, 'pg_wal', 'RECOVERYXLOG'));

/** Waits until the spool holds exactly `names` (or fails after a while). */
async function waitForSpool(names: string[], timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (JSON.stringify(await spooled()) === JSON.stringify(names)) return;
    await sleep(10);
  }
  expect(await spooled()).toEqual(names);
}

describe('walvault-restore prefetch', () => {
  it('fetches the next segments in the background and hands them over with a rename, without starting Node', async () => {
    const names = [1, 2, 3, 4, 5, 6].map((n) => seg(1, n));
    await archiveIntoRepo(names);
    const first = await restore(names[0]!, ['--prefetch=3']);
    expect(first.code).toBe(0);
    expect((await recovered()).equals(contents.get(names[0]!)!)).toBe(true);
    await waitForSpool(names.slice(1, 4));

    const second = await restore(names[1]!, ['--prefetch=3']);
    expect(second.code).toBe(0);
    expect(second.stderr).toBe(`walvault-restore: info: restored "${names[1]}" to "pg_wal/RECOVERYXLOG" (prefetched and verified in "${await spoolFolder()}")\n`);
    expect((await recovered()).equals(contents.get(names[1]!)!)).toBe(true);
    // The worker follows: the window moves on to the next segment.
    await waitForSpool(names.slice(2, 5));
    // The end of the archive: nothing past the last archived segment, and no error.
    for (const name of names.slice(2)) {
      const result = await restore(name, ['--prefetch=3']);
      expect(result.code).toBe(0);
      expect((await recovered()).equals(contents.get(name)!)).toBe(true);
    }
    const end = await restore(seg(1, 7), ['--prefetch=3']);
    expect(end.code).toBe(1);
    expect(end.stderr).toContain(`info: "${seg(1, 7)}" not found`);
  });

  it('discards what was prefetched for the old timeline when recovery moves to a new one', async () => {
    const tl1 = [1, 2, 3, 4].map((n) => seg(1, n));
    const tl2 = [3, 4].map((n) => seg(2, n));
    await archiveIntoRepo([...tl1, ...tl2]);
    expect((await restore(tl1[0]!, ['--prefetch=3'])).code).toBe(0);
    await waitForSpool(tl1.slice(1));
    const switched = await restore(tl2[0]!, ['--prefetch=3']);
    expect(switched.code).toBe(0);
    expect((await recovered()).equals(contents.get(tl2[0]!)!)).toBe(true);
    await waitForSpool([tl2[1]!]);
  });

  it('never hands over a corrupt object: the prefetcher skips it and the request reports it (exit 128 in archive recovery)', async () => {
    const names = [1, 2, 3, 4].map((n) => seg(1, n));
    await archiveIntoRepo(names);
    const storedPath = path.join(repo, 'wal', names[2]!.slice(0, 16), names[2]!);
    const tampered = Buffer.from(await readFile(storedPath));
    tampered[1000] = (tampered[1000] ?? 0) ^ 0xff;
    await writeFile(storedPath, tampered);

    expect((await restore(names[0]!, ['--prefetch=3'])).code).toBe(0);
    await waitForSpool([names[1]!, names[3]!]);
    expect((await restore(names[1]!, ['--prefetch=3'])).code).toBe(0);
    const bad = await restore(names[2]!, ['--prefetch=3']);
    expect(bad.code).toBe(128);
    expect(bad.stderr).toContain(`archived "${names[2]}" at "${storedPath}" is corrupt`);
    // RECOVERYXLOG still holds the previous, good segment.
    expect((await recovered()).equals(contents.get(names[1]!)!)).toBe(true);
  });

  it('keeps the spool within --prefetch-max-bytes', async () => {
    const names = Array.from({ length: 10 }, (_, i) => seg(1, i + 1));
    await archiveIntoRepo(names);
    expect((await restore(names[0]!, ['--prefetch=8', `--prefetch-max-bytes=${2 * MiB}`])).code).toBe(0);
    await waitForWorkerStart(spool, 'restore');
    let most = 0;
    for (let i = 0; i < 100; i += 1) {
      const inSpool = (await spooled()).length + (await readdir(path.join(spool, 'restore.work')).catch(() => [] as string[])).length;
      most = Math.max(most, inSpool);
      await sleep(10);
    }
    expect(most).toBeLessThanOrEqual(2);
    await waitForSpool(names.slice(1, 3));
  });

  it('survives kill -9 of the prefetcher: no partial file under a final name, the next request still gets the right bytes', async () => {
    const names = Array.from({ length: 6 }, (_, i) => seg(1, i + 1));
    await archiveIntoRepo(names, 4 * MiB);
    expect((await restore(names[0]!, ['--prefetch=4'])).code).toBe(0);
    const pid = await waitForWorkerStart(spool, 'restore');
    expect(pid).not.toBeNull();
    while ((await readdir(path.join(spool, 'restore.work')).catch(() => [] as string[])).length === 0 && (await spooled()).length < 4) await sleep(1);
    process.kill(pid!, 'SIGKILL');
    await sleep(50);
    for (const name of await spooled()) expect((await readFile(path.join((await entriesDir(spool, 'restore'))!, name))).equals(contents.get(name)!)).toBe(true);
    for (const name of names.slice(1)) {
      const result = await restore(name, ['--prefetch=4']);
      expect(result.code).toBe(0);
      expect((await recovered()).equals(contents.get(name)!)).toBe(true);
    }
  });
});

// While the prefetcher runs, the launcher asks it for files that are not in the spool instead of starting
// Node. WALVAULT_NODE pointing at a script that exits 99 proves which path answered: Node would exit 99.
describe('walvault-restore requests to the running prefetcher', () => {
  let noNode: Record<string, string>;
  beforeEach(async () => {
    const script = path.join(temp.dir, 'no-node');
    await writeFile(script, '#!/bin/sh\nexit 99\n');
    await chmod(script, 0o755);
    noNode = { WALVAULT_NODE: script };
  });
  const ask = (name: string, target = 'pg_wal/RECOVERYXLOG') => runNoWait('walvault-restore', [`--repo=${repo}`, '--prefetch=3', name, target], { cwd: dataDir, env: noNode });

  it('answers "not found" at the end of the archive from a lookup made after the request, never from an earlier one', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    await archiveIntoRepo(names);
    expect((await restore(names[0]!, ['--prefetch=3'])).code).toBe(0);
    await waitForSpool(names.slice(1));
    const end = await ask(seg(1, 4));
    expect(end.code).toBe(1);
    expect(end.stderr).toBe(`walvault-restore: info: "${seg(1, 4)}" not found in "${path.join(repo, 'wal', seg(1, 4).slice(0, 16), seg(1, 4))}"\n`);
    // The prefetcher has seen it missing; once archived, the next request gets it all the same.
    await archiveIntoRepo([seg(1, 4)]);
    const later = await ask(seg(1, 4));
    expect(later.code).toBe(0);
    expect((await recovered()).equals(contents.get(seg(1, 4))!)).toBe(true);
    expect(await workerPid(spool, 'restore')).not.toBeNull();
  });

  it('serves timeline history files and a segment handed over before (the re-read at the end of recovery), verified', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    await archiveIntoRepo(names);
    const history = Buffer.from('1\t0/3000000\tno recovery target specified\n');
    await writeFile(path.join(temp.dir, 'primary', '00000002.history'), history);
    expect((await run('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', '00000002.history', '00000002.history'], { cwd: path.join(temp.dir, 'primary') })).code).toBe(0);
    expect((await restore(names[0]!, ['--prefetch=3'])).code).toBe(0);
    // The next timeline's history file is fetched ahead too (PostgreSQL probes it with recovery_target_timeline = 'latest').
    await waitForSpool([...names.slice(1), '00000002.history']);
    expect((await ask(names[1]!)).code).toBe(0);
    const again = await ask(names[1]!);
    expect(again.code).toBe(0);
    expect((await recovered()).equals(contents.get(names[1]!)!)).toBe(true);
    const found = await ask('00000002.history', 'pg_wal/RECOVERYHISTORY');
    expect(found.code).toBe(0);
    expect(found.stderr).toBe(`walvault-restore: info: restored "00000002.history" to "pg_wal/RECOVERYHISTORY" (prefetched and verified in "${await spoolFolder()}")\n`);
    expect((await readFile(path.join(dataDir, 'pg_wal', 'RECOVERYHISTORY'))).equals(history)).toBe(true);
    const missing = await ask('00000003.history', 'pg_wal/RECOVERYHISTORY');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`walvault-restore: info: "00000003.history" not found in "${path.join(repo, 'wal', '00000003.history')}"\n`);
  });

  it('leaves a failure to walvault-restore: a moved repository is never answered "not found" (exit 128 in archive recovery)', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    await archiveIntoRepo(names);
    expect((await restore(names[0]!, ['--prefetch=3'])).code).toBe(0);
    await waitForSpool(names.slice(1));
    await rename(repo, `${repo}-away`);
    try {
      // With Node unavailable, the launcher's fallback shows: the worker, still running, did not answer it.
      const running = await workerPid(spool, 'restore');
      expect(running).not.toBeNull();
      expect((await ask(seg(1, 4))).code).toBe(99);
      expect(await workerPid(spool, 'restore')).toBe(running);
      const real = await restore(seg(1, 4), ['--prefetch=3']);
      expect(real.code).toBe(128);
      expect(real.stderr).toContain(`repository directory "${repo}" does not exist; stopping recovery`);
    } finally {
      await rename(`${repo}-away`, repo);
    }
  });

  it('is started by the launcher at the first history-file request of a recovery, and serves the first segment', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    await archiveIntoRepo(names);
    const probe = await runNoWait('walvault-restore', [`--repo=${repo}`, '--prefetch=3', '00000002.history', 'pg_wal/RECOVERYHISTORY'], { cwd: dataDir });
    expect(probe.code).toBe(1);
    expect(probe.stderr).toBe(`walvault-restore: info: "00000002.history" not found in "${path.join(repo, 'wal', '00000002.history')}"\n`);
    const worker = await waitForWorkerStart(spool, 'restore');
    expect(worker).not.toBeNull();
    // Started from the start-up bundle (its loader), like the launcher's own calls.
    expect((await readFile(`/proc/${worker}/cmdline`, 'utf8')).split('\0').some((arg) => arg.endsWith('/walvault-restore.cjs'))).toBe(true);
    const first = await ask(names[0]!);
    expect(first.code).toBe(0);
    expect((await recovered()).equals(contents.get(names[0]!)!)).toBe(true);
    await waitForSpool(names.slice(1));
  });

  it('starts at the segment backup_label names, before PostgreSQL asked for any segment (the first request is a history probe)', async () => {
    const names = [2, 3, 4, 5].map((n) => seg(1, n));
    await archiveIntoRepo(names);
    await writeFile(path.join(dataDir, 'backup_label'), `START WAL LOCATION: 0/2000028 (file ${names[0]})\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 1\n`);
    const probe = await runNoWait('walvault-restore', [`--repo=${repo}`, '--prefetch=3', '00000002.history', 'pg_wal/RECOVERYHISTORY'], { cwd: dataDir });
    expect(probe.code).toBe(1);
    // The request fetched the first segment while the worker loaded; the worker fetched the window without any segment request.
    await waitForSpool(names.slice(0, 3));
    for (const name of names.slice(0, 3)) {
      const result = await ask(name);
      expect(result.code).toBe(0);
      expect((await recovered()).equals(contents.get(name)!)).toBe(true);
    }
  });

  it('serves the second request for the last segment (after "redo done") from a copy it kept, without the repository', async () => {
    const names = [1, 2, 3].map((n) => seg(1, n));
    await archiveIntoRepo(names);
    expect((await restore(names[0]!, ['--prefetch=3'])).code).toBe(0);
    await waitForSpool(names.slice(1));
    // The window found the end of the archive (segment 4) while segment 3 was in the spool: its copy is kept.
    const work = path.join(spool, 'restore.work');
    const until = Date.now() + 20_000;
    while (Date.now() < until && !(await readdir(work).catch(() => [] as string[])).some((file) => file.startsWith(`${names[2]}.again.`))) await sleep(10);
    expect((await readdir(work)).some((file) => file.startsWith(`${names[2]}.again.`))).toBe(true);
    expect((await ask(names[1]!)).code).toBe(0);
    expect((await ask(names[2]!)).code).toBe(0);
    expect((await ask(seg(1, 4))).code).toBe(1);
    await waitForSpool([names[2]!]);
    await rename(repo, `${repo}-away`);
    try {
      const again = await ask(names[2]!);
      expect(again.code).toBe(0);
      expect((await recovered()).equals(contents.get(names[2]!)!)).toBe(true);
    } finally {
      await rename(`${repo}-away`, repo);
    }
  });

  it('does not start a worker for a history file restored outside a recovery (no recovery.signal or standby.signal)', async () => {
    await rm(path.join(dataDir, 'recovery.signal'));
    // Waits for stderr to close: a worker started by the launcher or by Node inherits it, so this returns only after such a worker ended.
    const probe = await run('walvault-restore', [`--repo=${repo}`, '00000002.history', 'pg_wal/RECOVERYHISTORY'], { cwd: dataDir });
    expect(probe.code).toBe(1);
    expect(exists(spool)).toBe(false);
  });
});
