// A randomized, time-bounded run of the fast path under a real archiver (issue 17): PostgreSQL 15 keeps
// generating WAL while the test kill -9s the background pusher, deletes the spool, points the config
// file at repository A or B (as an editor saves: temp file and rename) and restarts the server. Then
// the invariant: every file PostgreSQL was told is archived (exit 0, what marks it .done) is in the
// repository that the config file named when PostgreSQL asked for it, byte-identical to what
// PostgreSQL handed over.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { installedWalvault } from '../support/install.js';
import { chownToPostgres, shQuote, usePg } from '../support/pg.js';

const pg = usePg({ prefix: 'walvault-chaos' });
/** How long the chaos lasts (the drain and the check come after). */
const CHAOS_MS = 35_000;

/** A small deterministic generator, so a failure can be replayed from its seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state ^ (state >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    state ^= state >>> 13;
    return state / 0x1_0000_0000;
  };
}

describe('fast path under chaos', () => {
  it('never reports a file archived that is not, byte for byte, in the repository the effective options named', { timeout: 180_000 }, async () => {
    const seed = Number(process.env.WALVAULT_CHAOS_SEED ?? Date.now() % 1_000_000);
    const next = random(seed);
    const walvault = await installedWalvault();
    const root = await pg.root();
    const repos = { A: await pg.makeDir('A', 0o700), B: await pg.makeDir('B', 0o700) };
    const copies = await pg.makeDir('copies', 0o700);
    const config = path.join(root, 'walvault.json');
    const log = path.join(copies, 'asked.log');
    const writeConfig = async (repo: 'A' | 'B'): Promise<void> => {
      await fs.writeFile(`${config}.new`, `${JSON.stringify({ repo: repos[repo] })}\n`, { mode: 0o644 });
      await fs.rename(`${config}.new`, config);
    };
    await writeConfig('A');
    // The witness around the real launcher: the bytes PostgreSQL handed over, and the config file's
    // content before and after the call (a call during an edit may use either; no other).
    const wrapper = path.join(root, 'witness.sh');
    await fs.writeFile(
      wrapper,
      [
        '#!/bin/sh',
        `cp "$1" ${shQuote(copies)}/"$2.$$" || exit 3`,
        `before=$(cat ${shQuote(config)})`,
        `${shQuote(walvault.archive)} --config=${shQuote(config)} --quiet "$1" "$2"`,
        'rc=$?',
        `after=$(cat ${shQuote(config)})`,
        `[ "$rc" -eq 0 ] && printf '%s\\t%s\\t%s\\t%s\\n' "$2" "$$" "$before" "$after" >> ${shQuote(log)}`,
        'exit $rc',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    await chownToPostgres(wrapper);
    const primary = await pg.initCluster({ name: 'primary', walSegSizeMb: 1, settings: { archive_mode: true, archive_command: `${shQuote(wrapper)} %p %f`, archive_timeout: 0 } });
    await primary.start();
    await primary.sql('create table t(i int, pad text)');
    const spool = path.join(primary.dataDir, 'pg_wal', 'walvault');

    let stop = false;
    const actions: string[] = [];
    const load = (async () => {
      while (!stop) {
        await primary.sql("insert into t select g, repeat('x', 200) from generate_series(1, 3000) g; select pg_switch_wal()").catch(() => sleep(200));
      }
    })();
    const started = Date.now();
    while (Date.now() - started < CHAOS_MS) {
      await sleep(300 + Math.floor(next() * 700));
      const roll = next();
      if (roll < 0.3) {
        const pid = Number.parseInt(await fs.readFile(path.join(spool, 'archive.pid'), 'utf8').catch(() => ''), 10);
        if (Number.isInteger(pid)) {
          try {
            process.kill(pid, 'SIGKILL');
            actions.push(`kill -9 pusher ${pid}`);
          } catch {
            // gone already
          }
        }
      } else if (roll < 0.5) {
        // Workers may be creating files in it meanwhile: a few tries.
        await fs.rm(spool, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 }).catch(() => undefined);
        actions.push('rm -rf spool');
      } else if (roll < 0.85) {
        const target = next() < 0.5 ? 'A' : 'B';
        await writeConfig(target);
        actions.push(`config -> ${target}`);
      } else {
        await primary.stop({ mode: next() < 0.5 ? 'fast' : 'immediate' });
        await primary.start();
        actions.push('restart');
      }
    }
    stop = true;
    await load;
    // Drain: everything written so far gets archived (with whatever the config says now).
    await primary.switchWalAndWaitArchived({ timeoutMs: 90_000 });
    await primary.stop();

    const lines = (await fs.readFile(log, 'utf8')).split('\n').filter((line) => line !== '');
    expect(lines.length, `seed ${seed}: nothing was archived`).toBeGreaterThan(10);
    const problems: string[] = [];
    for (const line of lines) {
      const [name, pid, before, after] = line.split('\t');
      const named = new Set([before, after].map((text) => (JSON.parse(text!) as { repo: string }).repo));
      const handed = await fs.readFile(path.join(copies, `${name}.${pid}`));
      const key = /^[0-9A-F]{24}/.test(name!) ? path.join('wal', name!.slice(0, 16), name!) : path.join('wal', name!);
      const found: string[] = [];
      for (const repo of named) {
        const stored = await fs.readFile(path.join(repo, key)).catch(() => null);
        if (stored !== null && createHash('sha256').update(stored).digest('hex') === createHash('sha256').update(handed).digest('hex')) found.push(repo);
      }
      if (found.length === 0) problems.push(`"${name}" reported archived (pid ${pid}) but not byte-identical in ${[...named].join(' or ')}`);
    }
    expect(problems, `seed ${seed}; actions: ${actions.join(', ')}`).toEqual([]);
    // The chaos did something of each kind it drew.
    expect(actions.length).toBeGreaterThan(10);
  });
});
