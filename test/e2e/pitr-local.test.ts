// The end-to-end proof against a local directory repository: real PostgreSQL, the packed and
// installed executables, a low-level base backup, recovery to a restore point and to the end, and
// recoveries that must stop (not promote) when the archive turns corrupt or unreachable partway.

import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { runPitrScenario, type PitrRepo } from './pitr.js';

interface LocalRepo extends PitrRepo {
  dir: string;
}

/** Where the local backend keeps a segment (wal/<timeline+log>/<name>) or a .history file (wal/<name>). */
function storedPath(repo: LocalRepo, walFileName: string): string {
  return walFileName.endsWith('.history')
    ? path.join(repo.dir, 'wal', walFileName)
    : path.join(repo.dir, 'wal', walFileName.slice(0, 16), walFileName);
}

runPitrScenario<LocalRepo>({
  name: 'a local directory repository',
  makeRepo: async ({ pg }) => {
    const dir = await pg.makeDir('repo', 0o700);
    return { url: dir, dir };
  },
  corrupt: async (repo, walFileName) => {
    // Flip 16 bytes in the middle of the stored segment: same size, same owner, different content.
    const file = storedPath(repo, walFileName);
    const handle = await fs.open(file, 'r+');
    try {
      const { size } = await handle.stat();
      const original = Buffer.alloc(16);
      const offset = Math.floor(size / 2);
      await handle.read(original, 0, 16, offset);
      await handle.write(Buffer.from(original.map((byte) => byte ^ 0xff)), 0, 16, offset);
      return async () => {
        const again = await fs.open(file, 'r+');
        try {
          await again.write(original, 0, 16, offset);
        } finally {
          await again.close();
        }
      };
    } finally {
      await handle.close();
    }
  },
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
