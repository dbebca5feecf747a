// The end-to-end proof against a local directory repository: real PostgreSQL, the packed and
// installed executables, a low-level base backup, recovery to a restore point and to the end, and
// recoveries that must stop (not promote) when the archive turns corrupt or unreachable partway.

import * as fs from 'node:fs/promises';
import { corruptStoredFile, type LocalRepo } from './local-repo.js';
import { runPitrScenario } from './pitr.js';

runPitrScenario<LocalRepo>({
  name: 'a local directory repository',
  makeRepo: async ({ pg }) => {
    const dir = await pg.makeDir('repo', 0o700);
    return { url: dir, dir };
  },
  corrupt: corruptStoredFile,
  outages: {
    'repository directory moved away (a dropped mount)': {
      begin: (repo) => fs.rename(repo.dir, `${repo.dir}.away`),
      end: (repo) => fs.rename(`${repo.dir}.away`, repo.dir),
      message: /^walvault-restore: error: repository directory ".*" does not exist/m,
    },
    'repository directory unreadable (permission denied)': {
      begin: (repo) => fs.chmod(repo.dir, 0o000),
      end: (repo) => fs.chmod(repo.dir, 0o700),
      message: /^walvault-restore: error: .*permission denied \(EACCES\)/m,
    },
  },
});
