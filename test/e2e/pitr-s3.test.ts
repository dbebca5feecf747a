// The end-to-end proof against an S3 repository: a real PostgreSQL archives through the installed
// walvault-archive into s3rver (behind the proxy that enforces If-None-Match, as AWS S3 does),
// recovers copies through walvault-restore, and stops recovery, instead of promoting early, when a
// stored object is corrupt or the store fails partway.
import * as fs from 'node:fs/promises';
import { afterAll } from 'vitest';
import { faults, startS3Server, type S3TestServer } from '../support/s3server.js';
import { runPitrScenario, type PitrRepo } from './pitr.js';

interface S3Repo extends PitrRepo {
  server: S3TestServer;
  prefix: string;
}

let started: S3TestServer | undefined;
afterAll(async () => {
  await started?.close();
});

/** Bucket key of a segment (wal/<timeline+log>/<name>) or a .history file (wal/<name>). */
function storedKey(repo: S3Repo, walFileName: string): string {
  return walFileName.endsWith('.history') ? `${repo.prefix}/wal/${walFileName}` : `${repo.prefix}/wal/${walFileName.slice(0, 16)}/${walFileName}`;
}

runPitrScenario<S3Repo>({
  name: 'an S3 repository (s3rver behind a proxy enforcing If-None-Match)',
  makeRepo: async () => {
    const server = await startS3Server();
    started = server;
    const prefix = 'pitr/main';
    return {
      url: `s3://${server.bucket}/${prefix}`,
      env: server.env,
      extraArgs: `--s3-endpoint=${server.endpoint} --s3-force-path-style`,
      server,
      prefix,
    };
  },
  corrupt: async (repo, walFileName) => {
    // Flip 16 bytes in the middle of the object inside s3rver's storage: same size, same metadata, other content.
    const file = repo.server.objectFile(storedKey(repo, walFileName));
    const original = await fs.readFile(file);
    const damaged = Buffer.from(original);
    const offset = Math.floor(damaged.length / 2);
    for (let index = offset; index < offset + 16; index += 1) damaged[index] = (damaged[index] ?? 0) ^ 0xff;
    await fs.writeFile(file, damaged);
    return () => fs.writeFile(file, original);
  },
  // Short per-command deadline: during an outage every restore_command call sits out its whole --timeout.
  commandTimeoutSec: 4,
  // One outage keeps this file near a minute and a half; SlowDown and other faults are covered by test/scenario/s3-restore.test.ts.
  outages: {
    'the store dropping every connection': {
      begin: async (repo) => repo.server.inject({ fault: faults.drop(), times: Number.MAX_SAFE_INTEGER }),
      end: async (repo) => repo.server.clearFaults(),
      message: /^walvault-restore: error: .*(ECONNRESET|socket hang up|did not finish within)/m,
    },
  },
});
