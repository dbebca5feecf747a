// Records the V8 code cache of the start-up bundle (dist/cli/walvault-bundle.cjs.cache) with the Node
// that runs this script: at `npm run build` and at install (package.json postinstall). V8 compiles a
// function only when it first runs, and a code cache holds the functions compiled so far; so the
// cache is recorded by real calls in a scratch directory, each starting from the cache the previous
// one left, covering what PostgreSQL's calls run: archive a segment and a history file (again: the
// "already archived" answer), restore both, "not found", a bad file name. The first call starts from
// the cache there is: one of this build that V8 accepts is extended, one it rejects (recorded by
// another Node, or these V8 flags) is replaced, and one of another build is not even offered (the
// loader checks the build id). The package ships the cache `npm pack` recorded; the postinstall
// records it again for the installing Node. Never fails an install.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The files of the start-up bundle, all in dist/cli next to the launchers. */
const BUNDLE_FILES = { bundle: 'walvault-bundle.cjs', cache: 'walvault-bundle.cjs.cache' } as const;

/** Records the code cache in `directory`; returns why not when it cannot (the calls then compile the bundle). */
export function makeCodeCache(folder: string): { ok: true } | { ok: false; why: string } {
  // Absolute: the calls below run in a scratch directory (postinstall passes "dist/cli").
  const directory = path.resolve(folder);
  const bundle = path.join(directory, BUNDLE_FILES.bundle);
  const cache = path.join(directory, BUNDLE_FILES.cache);
  if (!existsSync(bundle)) return { ok: false, why: `"${bundle}" is missing` };
  const work = mkdtempSync(path.join(tmpdir(), 'walvault-code-cache-'));
  try {
    const repo = path.join(work, 'repo');
    mkdirSync(repo);
    mkdirSync(path.join(work, 'pg_wal'));
    const segment = '000000010000000000000001';
    writeFileSync(path.join(work, 'pg_wal', segment), Buffer.alloc(1 << 20, 7));
    writeFileSync(path.join(work, 'pg_wal', '00000002.history'), '1\t0/3000000\tno recovery target specified\n');
    const calls: Array<[entry: string, args: string[], exitCode: number]> = [
      ['walvault-archive', ['--repo=/nonexistent', '--push-ahead=0', 'pg_wal/x', '../bad'], 2],
      ['walvault-archive', [`--repo=${repo}`, '--push-ahead=0', `pg_wal/${segment}`, segment], 0],
      ['walvault-archive', [`--repo=${repo}`, '--push-ahead=0', 'pg_wal/00000002.history', '00000002.history'], 0],
      ['walvault-archive', [`--repo=${repo}`, '--push-ahead=0', `pg_wal/${segment}`, segment], 0],
      ['walvault-restore', [`--repo=${repo}`, '--prefetch=0', segment, 'pg_wal/RECOVERYXLOG'], 0],
      ['walvault-restore', [`--repo=${repo}`, '--prefetch=0', '00000002.history', 'pg_wal/RECOVERYHISTORY'], 0],
      ['walvault-restore', [`--repo=${repo}`, '--prefetch=0', '00000003.history', 'pg_wal/RECOVERYHISTORY'], 1],
    ];
    // Neither walvault settings nor NODE_OPTIONS (V8 flags there would make a cache the calls reject).
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('WALVAULT_') && name !== 'NODE_OPTIONS') env[name] = value;
    const next = `${cache}.${process.pid}.tmp`;
    for (const [entry, args, exitCode] of calls) {
      const ran = spawnSync(process.execPath, [path.join(directory, `${entry}.cjs`), ...args], { cwd: work, env: { ...env, WALVAULT_CODE_CACHE_OUT: next }, encoding: 'utf8', timeout: 60_000 });
      if (ran.status !== exitCode || !existsSync(next)) {
        // What is there stays: the package's own cache, or what the calls before this one recorded.
        rmSync(next, { force: true });
        return { ok: false, why: `${entry} ${args.join(' ')} exited with ${ran.status ?? ran.signal}, not ${exitCode}: ${ran.stderr.trim().split('\n').slice(0, 3).join(' | ')}` };
      }
      // Readable by whoever may read the bundle: the install may run as root (umask 077 included),
      // the commands as the postgres user; an unreadable cache would only cost the compilation.
      chmodSync(next, statSync(bundle).mode & 0o666);
      renameSync(next, cache);
    }
    return { ok: true };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = makeCodeCache(path.dirname(fileURLToPath(import.meta.url)));
  if (!result.ok) process.stderr.write(`walvault: start-up code cache not recorded (${result.why}); the commands compile their code at each start\n`);
}
