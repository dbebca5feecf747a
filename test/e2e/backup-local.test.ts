// walvault backup / restore-backup against a local directory repository (see ./backup.ts for the scenario).
import { runBackupScenario } from './backup.js';

runBackupScenario({
  name: 'a local directory repository',
  makeRepo: async ({ pg }) => {
    const dir = await pg.makeDir('repo', 0o700);
    return { url: dir, dir };
  },
});
