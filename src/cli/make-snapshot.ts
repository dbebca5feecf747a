// Builds the start-up snapshot (dist/cli/walvault.blob) from the bundled archive/restore code with
// the Node that runs this script: at `npm run build` and at install (package.json postinstall).
// A blob only works with the Node binary that built it and the same V8 flags, so a stamp file
// records that binary's identity; the launcher uses the blob only when the stamp matches (see
// src/cli/launcher.sh) and falls back to the normal start otherwise. Never fails an install.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The files of the snapshot, all in dist/cli next to the launchers. */
export const SNAPSHOT_FILES = { script: 'walvault-snapshot.cjs', blob: 'walvault.blob', stamp: 'walvault.blob.stamp' } as const;

/** V8 flags the blob is built with; the launcher must start node with exactly these (src/cli/launcher.sh). */
export const SNAPSHOT_NODE_FLAGS = ['--expose-gc'] as const;

/** Identity of a Node binary as the launcher computes it with `stat -Lc '%d:%i:%s:%Y'`: device, inode, size, mtime. */
export function nodeIdentity(binary: string): string {
  const info = statSync(realpathSync(binary));
  return `${info.dev}:${info.ino}:${info.size}:${Math.floor(info.mtimeMs / 1000)}`;
}

/** Builds the blob and its stamp in `directory`; returns why not when it cannot (the launchers then start normally). */
export function makeSnapshot(directory: string): { ok: true } | { ok: false; why: string } {
  const script = path.join(directory, SNAPSHOT_FILES.script);
  const blob = path.join(directory, SNAPSHOT_FILES.blob);
  const stamp = path.join(directory, SNAPSHOT_FILES.stamp);
  // The stamp goes first: a launcher must never pair a new stamp with an old blob, or the reverse.
  rmSync(stamp, { force: true });
  if (!existsSync(script)) return { ok: false, why: `"${script}" is missing` };
  const temporary = `${blob}.${process.pid}.tmp`;
  const built = spawnSync(process.execPath, [...SNAPSHOT_NODE_FLAGS, '--snapshot-blob', temporary, '--build-snapshot', script], { encoding: 'utf8', timeout: 120_000 });
  if (built.status !== 0 || !existsSync(temporary)) {
    rmSync(temporary, { force: true });
    return { ok: false, why: `node --build-snapshot exited with ${built.status ?? built.signal}: ${built.stderr.trim().split('\n').slice(0, 3).join(' | ')}` };
  }
  // The launcher uses the blob only when it is newer than the compiled code ([ blob -nt main.js ]);
  // some shells compare whole seconds, so make it at least a second newer.
  const codeSeconds = Math.floor(statSync(path.join(directory, 'main.js')).mtimeMs / 1000);
  const blobSeconds = Math.max(Math.floor(Date.now() / 1000), codeSeconds + 1);
  utimesSync(temporary, blobSeconds, blobSeconds);
  renameSync(temporary, blob);
  writeFileSync(`${stamp}.tmp`, `${nodeIdentity(process.execPath)}\n`);
  renameSync(`${stamp}.tmp`, stamp);
  return { ok: true };
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = makeSnapshot(path.dirname(fileURLToPath(import.meta.url)));
  if (!result.ok) process.stderr.write(`walvault: start-up snapshot not built (${result.why}); the commands start without it\n`);
}
