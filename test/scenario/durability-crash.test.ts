// Does every file walvault-archive answered exit 0 for survive a power loss? Two proofs, both through
// the built executables, both able to fail when one fsync of the protocol is removed (see
// src/backend/posix/README.md and src/policy/SPOOL.md, "Directory durability is not tracked per process"):
//
// 1. A real power loss: the repository is an ext4 filesystem on a loop device, mounted with a 10-minute
//    journal commit interval; after the last exit 0 it is shut down without flushing its journal
//    (`xfs_io -x -c shutdown`, the EXT4_IOC_SHUTDOWN / NOLOGFLUSH ioctl xfstests use for crash tests:
//    everything not made durable by an fsync is lost), unmounted and mounted again (journal replay).
//    Every file answered must then be there, byte-identical. This kernel has no device-mapper
//    (/dev/mapper/control: no such device; no dm-flakey, no dm-log-writes), so the shutdown is the
//    power loss. A journal orders metadata: an fsync of a file commits every directory created before
//    it, so on ext4 the parent fsync of a directory another process created cannot be seen missing;
//    proof 2 covers that.
// 2. The order of the system calls (strace -f on the executables and the pusher they start): for each
//    file reported durable (a request's exit 0, or a marker the pusher placed), its data fsync before
//    its link or rename into place, an fsync of its directory after that, and for each directory on its
//    path that any process created, an fsync of the parent after the mkdir, all finished before the
//    report. Two processes race to create one new directory: the creator is held by strace between its
//    mkdir and its parent fsync while the other finds the directory and archives.
import { execFileSync } from 'node:child_process';
import { access, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { segmentFileName } from '../../src/wal/names.js';
import { killWorker, makeReady, markDone, runNoWait, waitForWorkerExit } from '../support/spool.js';
import { durabilityGaps, runTraced, type DurableReport, type TracedCall } from '../support/syscall-trace.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes } from '../support/walfile.js';

/** Segment `n` of timeline 1 (16 MiB segment names; the files are smaller, which walvault accepts). */
const seg = (n: number): string => segmentFileName(1, BigInt(n), 16 << 20);
/** Where the POSIX backend keeps a segment (uncompressed: the default). */
const stored = (repo: string, name: string): string => path.join(repo, 'wal', name.slice(0, 16), name);
/** Small files: below the early-writeback size, so nothing but an fsync writes their data. */
const content = (name: string): Buffer => pseudoRandomBytes(256 * 1024, name);

let temp: { dir: string; remove(): Promise<void> };
let dataDir: string;
let spool: string;
beforeEach(async () => {
  temp = await makeTempDir('walvault-crash-');
  dataDir = path.join(temp.dir, 'data');
  spool = path.join(dataDir, 'pg_wal', 'walvault');
  await mkdir(dataDir);
});
afterEach(async () => {
  await killWorker(spool, 'archive');
  await temp.remove();
});

/** Runs a command, failing the test with its output when it fails. */
const sh = (file: string, args: string[]): string => execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('a power loss right after walvault-archive answered (ext4 on a loop device, shut down without a journal flush)', () => {
  let image: string;
  let mountPoint: string;
  let mounted = false;
  beforeEach(async () => {
    image = path.join(temp.dir, 'disk.img');
    mountPoint = path.join(temp.dir, 'mnt');
    await mkdir(mountPoint);
    sh('truncate', ['-s', '64M', image]);
    sh('mkfs.ext4', ['-q', '-F', image]);
    // commit=600: the journal is committed only by an fsync (or after 10 minutes), never by the clock meanwhile.
    sh('mount', ['-o', 'loop,commit=600', image, mountPoint]);
    mounted = true;
    await mkdir(path.join(mountPoint, 'repo'));
    sh('sync', ['-f', mountPoint]);
  });
  afterEach(async () => {
    // A pusher left by a failed test may hold files of the mount open.
    await killWorker(spool, 'archive');
    if (!mounted) return;
    mounted = false;
    try {
      sh('umount', [mountPoint]);
    } catch {
      sh('umount', ['-l', mountPoint]);
    }
  });

  /** The power loss: what no fsync made durable is gone; then the filesystem is mounted again. */
  function powerLoss(): void {
    sh('xfs_io', ['-x', '-c', 'shutdown', mountPoint]);
    sh('umount', [mountPoint]);
    mounted = false;
    sh('mount', ['-o', 'loop', image, mountPoint]);
    mounted = true;
  }

  /** Every file in `answered` is in the repository, byte-identical. */
  async function expectSurvived(answered: string[]): Promise<void> {
    expect(answered.length).toBeGreaterThan(0);
    for (const name of answered) {
      const copy = await readFile(stored(path.join(mountPoint, 'repo'), name)).catch((error: Error) => error.message);
      expect(typeof copy === 'string' ? copy : copy.equals(content(name)) || `${copy.length} bytes, not the ${content(name).length} archived`, `"${name}" after the power loss`).toBe(true);
    }
  }

  it('keeps every file archived one at a time (--push-ahead=0): each one in a directory it created or found', async () => {
    const repo = path.join(mountPoint, 'repo');
    const answered: string[] = [];
    for (const n of [1, 2, 3]) {
      await makeReady(dataDir, seg(n), content(seg(n)));
      const result = await runNoWait('walvault-archive', [`--repo=${repo}`, '--push-ahead=0', `pg_wal/${seg(n)}`, seg(n)], { cwd: dataDir });
      expect(result.code, result.stderr).toBe(0);
      answered.push(seg(n));
    }
    powerLoss();
    await expectSurvived(answered);
  });

  it('keeps every file the pusher stored ahead and the launcher answered from its marker', async () => {
    const repo = path.join(mountPoint, 'repo');
    const names = [1, 2, 3, 4, 5, 6].map(seg);
    for (const name of names) await makeReady(dataDir, name, content(name));
    const answered: string[] = [];
    let fromMarkers = 0;
    for (const name of names) {
      const result = await runNoWait('walvault-archive', [`--repo=${repo}`, '--push-ahead=8', '--parallel=2', `pg_wal/${name}`, name], { cwd: dataDir });
      expect(result.code, result.stderr).toBe(0);
      answered.push(name);
      // The first request starts the pusher: the others are answered from its markers (or archived by Node).
      if (result.stderr.includes(`"${name}" was pushed ahead`)) fromMarkers += 1;
      await markDone(dataDir, name);
    }
    expect(fromMarkers).toBeGreaterThan(0);
    await waitForWorkerExit(spool, 'archive', { expectWorker: false });
    powerLoss();
    await expectSurvived(answered);
  });
});

describe('the system calls behind every exit 0 (strace)', () => {
  let repo: string;
  let logs = 0;
  const calls: TracedCall[] = [];
  const reports: DurableReport[] = [];
  /** The strace log of each file's request. */
  const runs = new Map<string, string>();
  beforeEach(async () => {
    repo = path.join(temp.dir, 'repo');
    await mkdir(repo);
    calls.length = 0;
    reports.length = 0;
  });

  /** Archives `name` under strace; records its calls and, on exit 0, its report. */
  async function traced(name: string, extra: string[], options: { delayMkdirUs?: number } = {}): Promise<number | null> {
    logs += 1;
    const log = path.join(temp.dir, `strace.${logs}`);
    runs.set(name, log);
    const result = await runTraced('walvault-archive', [`--repo=${repo}`, ...extra, `pg_wal/${name}`, name], { cwd: dataDir, log, ...options });
    calls.push(...result.calls);
    expect(result.exitedAt, result.stderr).not.toBeNull();
    if (result.code === 0) reports.push({ file: stored(repo, name), at: result.exitedAt!, by: `the request for "${name}" (exit 0)` });
    return result.code;
  }

  /** Markers the pusher placed (hard links into archive.ID/): each one says its file is durable. */
  function markerReports(): DurableReport[] {
    return calls
      .filter((call) => (call.name === 'link' || call.name === 'linkat') && call.ok && /\/walvault\/archive\.[0-9a-f]{16}\/[0-9A-F]{24}$/.test(call.paths[1] ?? ''))
      .map((call) => ({ file: stored(repo, path.basename(call.paths[1]!)), at: call.start, by: `the marker of "${path.basename(call.paths[1]!)}" (pid ${call.pid})` }));
  }

  function expectNoGaps(all: DurableReport[]): void {
    expect(all.length).toBeGreaterThan(0);
    expect(all.flatMap((report) => durabilityGaps(calls, report, repo))).toEqual([]);
  }

  it('requests one at a time, then the pusher and the requests answered from its markers', async () => {
    const names = [1, 2, 3, 4, 5, 6, 7].map(seg);
    for (const name of names) await makeReady(dataDir, name, content(name));
    // One at a time first: it creates wal/ and wal/0000000100000000.
    expect(await traced(names[0]!, ['--push-ahead=0'])).toBe(0);
    await markDone(dataDir, names[0]!);
    // Then push-ahead: the request for names[1] starts the pusher (traced with it: strace ends once the pusher has).
    for (const name of names.slice(1)) {
      expect(await traced(name, ['--push-ahead=8', '--parallel=2'])).toBe(0);
      await markDone(dataDir, name);
    }
    const markers = markerReports();
    expect(markers.length).toBeGreaterThan(0);
    expectNoGaps([...reports, ...markers]);
  });

  it('two processes create one new directory: the one that finds it made does not answer before its parent is fsynced', async () => {
    const [first, second] = [seg(0x21), seg(0x22)];
    await makeReady(dataDir, first, content(first));
    await makeReady(dataDir, second, content(second));
    // The creator is held 8 s after each mkdir returned, before it can fsync the parent.
    const creator = traced(first, ['--push-ahead=0'], { delayMkdirUs: 8_000_000 });
    const directory = path.dirname(stored(repo, first));
    for (let waited = 0; waited < 60_000 && !(await access(directory).then(() => true, () => false)); waited += 5) await sleep(5);
    // The other one finds wal/ and wal/0000000100000000 made, and archives into them meanwhile.
    expect(await traced(second, ['--push-ahead=0'])).toBe(0);
    expect(await creator).toBe(0);
    const made = calls.filter((call) => (call.name === 'mkdir' || call.name === 'mkdirat') && call.ok && call.paths[0] === directory);
    expect(made.map((call) => call.run)).toEqual([runs.get(first)]);
    // The finder answered before the creator synced the parent (else this run proves nothing about finding).
    const creatorSync = calls.find((call) => call.run === runs.get(first) && call.name === 'fsync' && call.paths[0] === path.dirname(directory) && call.start >= made[0]!.end);
    const finder = reports.find((report) => report.file === stored(repo, second));
    expect(creatorSync).toBeDefined();
    expect(finder!.at).toBeLessThan(creatorSync!.start);
    expectNoGaps(reports);
  });
});
