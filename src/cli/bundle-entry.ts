// Entry of the start-up bundle (scripts/build-bundle.mjs bundles it and everything it imports into one
// CommonJS script, dist/cli/walvault-bundle.cjs). The loaders dist/cli/walvault-archive.cjs and
// walvault-restore.cjs compile it with its V8 code cache and call start() with their program name;
// the launchers fall back to the ESM entry points when the bundle is missing or WALVAULT_NO_BUNDLE is
// set (wv_entry in src/cli/launcher-worker.sh).
import { writeStderr } from '../core/log.js';
import { runCommand } from './main.js';
import { archiveMain } from './run-archive.js';
import { restoreMain } from './run-restore.js';

/** Runs walvault-archive or walvault-restore; the loader passes which. */
export function start(program: string): void {
  if (program === 'walvault-archive') runCommand(program, archiveMain);
  else if (program === 'walvault-restore') runCommand(program, restoreMain);
  else {
    writeStderr(`walvault: error: the start-up bundle cannot run "${program}"; HINT: reinstall walvault (npm ci runs its build)\n`);
    process.exit(70);
  }
}
