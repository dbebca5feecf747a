// walvault backup / restore-backup against an S3 repository: s3rver behind the proxy that enforces
// If-None-Match (see ./backup.ts for the scenario).
import { afterAll } from 'vitest';
import { startS3Server, type S3TestServer } from '../support/s3server.js';
import { runBackupScenario } from './backup.js';

let started: S3TestServer | undefined;
afterAll(async () => {
  await started?.close();
});

runBackupScenario({
  name: 'an S3 repository (s3rver)',
  makeRepo: async () => {
    const server = await startS3Server();
    started = server;
    return { url: `s3://${server.bucket}/backup/main`, env: server.env, extraArgs: [`--s3-endpoint=${server.endpoint}`, '--s3-force-path-style'] };
  },
});
