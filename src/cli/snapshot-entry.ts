// Entry of the start-up snapshot (scripts/build-snapshot.mjs bundles it into one script and runs
// `node --build-snapshot` on it): archive and restore code already compiled and initialised, so a
// call starts about as fast as `node -e 0`. The launcher falls back to the normal entry points when
// the snapshot cannot be used (see src/cli/launcher.sh).
import { writeSync } from 'node:fs';
import path from 'node:path';
import { startupSnapshot } from 'node:v8';
import { runCommand } from './main.js';
import { archiveMain } from './run-archive.js';
import { restoreMain } from './run-restore.js';

startupSnapshot.setDeserializeMainFunction(() => {
  // Tell the launcher JavaScript runs: a snapshot that fails to load never gets here, and only
  // then does the launcher start the normal entry point instead (nothing has been done yet).
  const fd = Number(process.env.WALVAULT_LAUNCHER_STATUS_FD);
  if (Number.isInteger(fd) && fd > 2) {
    try {
      writeSync(fd, 'started\n');
    } catch {
      // no launcher listening (a background worker): nothing to tell
    }
  }
  const program = path.basename(process.argv[1] ?? '', '.js');
  if (program === 'walvault-archive') runCommand(program, archiveMain);
  else if (program === 'walvault-restore') runCommand(program, restoreMain);
  else {
    process.stderr.write(`walvault: error: the start-up snapshot cannot run "${program}"\n`);
    process.exit(70);
  }
});
