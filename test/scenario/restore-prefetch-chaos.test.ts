// A randomized, time-bounded run of the restore fast path under a real standby (issue 17): a PostgreSQL 15
// primary keeps archiving into two repositories whose copies of most segments differ (B's carries a mark
// in the tail after the segment's switch record, which replay never reads), a standby replays from the
// one its config file names through the installed walvault-restore with prefetch, and the test kill -9s
// the prefetcher, deletes pg_wal/walvault, points the config file at A or B (temp file and rename, as an
// editor saves) and restarts the standby. Then the invariant: every file walvault-restore delivered at %p
// (exit 0) is byte-identical to the file in the repository the config file named while PostgreSQL asked.
// The standby lags a few seconds behind (recovery_min_apply_delay), so the prefetcher always holds a
// window of segments fetched under the old options when the config file changes: serving one of them
// after a change is caught whenever A's and B's copies differ, as they do for most segments.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { installedWalvault } from '../support/install.js';
import { chownToPostgres, shQuote, usePg } from '../support/pg.js';

const pg = usePg({ prefix: 'walvault-restore-chaos' });
/** How long the chaos lasts (the check comes after). */
const CHAOS_MS = 35_000;

/** A small deterministic generator (mulberry32), so a failure can be replayed from its seed (WALVAULT_CHAOS_SEED). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

/** Where a POSIX repository keeps a WAL file (src/wal/names.ts objectKey). */
function storedPath(repo: string, name: string): string {
  return /^[0-9A-F]{24}$/.test(name) ? path.join(repo, 'wal', name.slice(0, 16), name) : path.join(repo, 'wal', name);
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('restore fast path under chaos', () => {
  it('never delivers a file that is not, byte for byte, the one in the repository the effective options named', { timeout: 240_000 }, async () => {
    const seed = Number(process.env.WALVAULT_CHAOS_SEED ?? Date.now() % 1_000_000);
    const next = random(seed);
    const walvault = await installedWalvault();
    const root = await pg.root();
    const repos = { A: await pg.makeDir('A', 0o700), B: await pg.makeDir('B', 0o700) };
    const scratch = await pg.makeDir('scratch', 0o700);
    const copies = await pg.makeDir('copies', 0o700);
    const config = path.join(root, 'walvault.json');
    const log = path.join(copies, 'delivered.log');
    // Every version of the config file, numbered: `edits` holds the number of the latest, written before
    // the config file is renamed into place, so a call that reads K there before it starts and L after
    // it ended may have used versions K-1..L, and no other (an edit and its undo can fall within a call).
    const edits = path.join(root, 'edits');
    const versions: Array<'A' | 'B'> = [];
    const writeConfig = async (repo: 'A' | 'B'): Promise<void> => {
      versions.push(repo);
      await fs.writeFile(`${edits}.new`, `${versions.length - 1}\n`, { mode: 0o644 });
      await fs.rename(`${edits}.new`, edits);
      await fs.writeFile(`${config}.new`, `${JSON.stringify({ repo: repos[repo] })}\n`, { mode: 0o644 });
      await fs.rename(`${config}.new`, config);
    };
    await writeConfig('A');

    // The primary archives every file into A as it is and into B with its last byte set to 'B' when the
    // segment's last 4 KiB are zeros (after a switch record: never read by replay), else as it is.
    const archiver = path.join(root, 'archive-both.sh');
    await fs.writeFile(
      archiver,
      [
        '#!/bin/sh',
        `${shQuote(walvault.archive)} --repo=${shQuote(repos.A)} --push-ahead=0 --quiet "$1" "$2" || exit $?`,
        `copy=${shQuote(scratch)}/"$2"`,
        'cp "$1" "$copy" || exit 3',
        'case $2 in',
        '  ????????????????????????)',
        '    size=$(stat -c %s "$copy")',
        `    if [ "$(tail -c 4096 "$copy" | tr -d '\\000' | wc -c)" -eq 0 ]; then printf B | dd of="$copy" bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null || exit 3; fi`,
        '    ;;',
        'esac',
        `${shQuote(walvault.archive)} --repo=${shQuote(repos.B)} --push-ahead=0 --quiet "$copy" "$2"`,
        'rc=$?',
        'rm -f "$copy"',
        'exit $rc',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    // The witness around the installed walvault-restore: the bytes it delivered at %p, and the config
    // file's version before and after the call (see `edits`).
    const witness = path.join(root, 'witness.sh');
    await fs.writeFile(
      witness,
      [
        '#!/bin/sh',
        `before=$(cat ${shQuote(edits)})`,
        `${shQuote(walvault.restore)} --config=${shQuote(config)} --quiet "$1" "$2"`,
        'rc=$?',
        `after=$(cat ${shQuote(edits)})`,
        `if [ "$rc" -eq 0 ]; then cp "$2" ${shQuote(copies)}/"$1.$$" && printf '%s\\t%s\\t%s\\t%s\\n' "$1" "$$" "$before" "$after" >> ${shQuote(log)}; fi`,
        'exit $rc',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    await chownToPostgres(archiver);
    await chownToPostgres(witness);
    await chownToPostgres(scratch);
    await chownToPostgres(copies);

    // wal_recycle off: new segments are zero-filled, so a segment ended by a switch has a zero tail.
    const primary = await pg.initCluster({ name: 'primary', walSegSizeMb: 1, settings: { archive_mode: true, archive_command: `${shQuote(archiver)} %p %f`, archive_timeout: 0, wal_recycle: false } });
    await primary.start();
    await primary.sql('create table t(i int, pad text)');
    const backup = await primary.baseBackup({ label: 'chaos', targetDir: path.join(root, 'backup') });
    const standby = await pg.restoreCluster(backup, {
      name: 'standby',
      signal: 'standby',
      settings: {
        restore_command: `${shQuote(witness)} %f %p`,
        hot_standby: false,
        wal_retrieve_retry_interval: '200ms',
        // A few seconds behind the archive: the prefetcher's window is full when the options change.
        recovery_min_apply_delay: '3s',
      },
    });
    await standby.start();
    const spool = path.join(standby.dataDir, 'pg_wal', 'walvault');

    let stop = false;
    const load = (async () => {
      while (!stop) {
        await primary.sql("insert into t select g, repeat('x', 200) from generate_series(1, 800) g; select pg_switch_wal()").catch(() => sleep(200));
        await sleep(100);
      }
    })();
    const actions: string[] = [];
    const started = Date.now();
    try {
      // Each kind once, in a random order, then random draws.
      const first = [0.1, 0.4, 0.5, 0.7, 0.9].map((roll) => ({ roll, key: next() })).sort((a, b) => a.key - b.key).map((entry) => entry.roll);
      const targets = next() < 0.5 ? ['A', 'B'] : ['B', 'A'];
      while (Date.now() - started < CHAOS_MS) {
        await sleep(400 + Math.floor(next() * 800));
        const roll = first.shift() ?? next();
        if (roll < 0.3) {
          const pid = Number.parseInt(await fs.readFile(path.join(spool, 'restore.pid'), 'utf8').catch(() => ''), 10);
          if (Number.isInteger(pid)) {
            try {
              process.kill(pid, 'SIGKILL');
              actions.push(`kill -9 prefetcher ${pid}`);
            } catch {
              // gone already
            }
          }
        } else if (roll < 0.45) {
          // The prefetcher may be creating files in it meanwhile: a few tries.
          await fs.rm(spool, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 }).catch(() => undefined);
          actions.push('rm -rf pg_wal/walvault');
        } else if (roll < 0.85) {
          const target = roll === 0.5 || roll === 0.7 ? (targets.shift() as 'A' | 'B') : next() < 0.5 ? 'A' : 'B';
          await writeConfig(target);
          actions.push(`config -> ${target}`);
        } else {
          await standby.stop({ mode: next() < 0.5 ? 'fast' : 'immediate' });
          await standby.start();
          actions.push('restart standby');
        }
      }
    } finally {
      stop = true;
      await load;
    }
    await standby.stop({ mode: 'immediate' });
    await primary.stop();

    const lines = (await fs.readFile(log, 'utf8').catch(() => '')).split('\n').filter((line) => line !== '');
    const problems: string[] = [];
    let telling = 0;
    for (const line of lines) {
      const [name, pid, before, after] = line.split('\t');
      const named = new Set(versions.slice(Math.max(0, Number(before) - 1), Number(after) + 1).map((repo) => repos[repo]));
      const delivered = sha(await fs.readFile(path.join(copies, `${name}.${pid}`)));
      const stored = new Map<string, string | null>();
      for (const repo of Object.values(repos)) {
        const data = await fs.readFile(storedPath(repo, name!)).catch(() => null);
        stored.set(repo, data === null ? null : sha(data));
      }
      if (stored.get(repos.A) !== stored.get(repos.B)) telling += 1;
      if (![...named].some((repo) => stored.get(repo) === delivered)) {
        const from = Object.entries(repos).find(([, repo]) => stored.get(repo) === delivered)?.[0] ?? 'neither repository';
        problems.push(`"${name}" delivered (pid ${pid}) is the copy of ${from}, while the config file named ${[...named].join(' or ')}`);
      }
    }
    expect(problems, `seed ${seed}; actions: ${actions.join(', ')}`).toEqual([]);
    // The run proved something: many deliveries, of which some differ between A and B, under chaos of every kind drawn.
    expect(lines.length, `seed ${seed}: few files were delivered`).toBeGreaterThan(10);
    expect(telling, `seed ${seed}: no delivered file differs between A and B`).toBeGreaterThan(0);
    expect(actions.length).toBeGreaterThan(10);
    for (const kind of ['kill -9', 'rm -rf', 'config -> A', 'config -> B', 'restart']) expect(actions.some((action) => action.startsWith(kind)), `seed ${seed}: no "${kind}" drawn`).toBe(true);
  });
});
