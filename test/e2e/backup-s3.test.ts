// walvault backup / restore-backup against an S3 repository: s3rver behind the proxy that enforces
// If-None-Match (see ./backup.ts for the scenario).
import { afterAll } from 'vitest';
import { faults, startS3Server, type S3TestServer } from '../support/s3server.js';
import { runBackupScenario } from './backup.js';

/** The key of a backup's base tar (whatever its codec suffix), as the proxy sees it. */
const BASE_TAR = /\/backups\/[^/]+\/base\.tar/;

let started: S3TestServer | undefined;
afterAll(async () => {
  await started?.close();
});

runBackupScenario({
  name: 'an S3 repository (s3rver)',
  makeRepo: async () => {
    const server = await startS3Server();
    started = server;
    return {
      url: `s3://${server.bucket}/backup/main`,
      env: server.env,
      extraArgs: [`--s3-endpoint=${server.endpoint}`, '--s3-force-path-style'],
      // The tablespace's tar is stored before the base tar: a held base tar write means both have begun.
      storingBackup: async () => server.requests.some((request) => request.outcome === 'stall' && BASE_TAR.test(request.key)),
      holdBaseTar: () => {
        server.inject({ fault: faults.stall(600_000), match: { method: 'PUT', key: BASE_TAR }, times: Number.MAX_SAFE_INTEGER });
        return () => server.clearFaults();
      },
    };
  },
});
