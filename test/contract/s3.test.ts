// The backend contract run against a real S3-speaking server (s3rver): through the proxy that enforces
// If-None-Match (as AWS S3 does), and bare, where auto mode must detect that the header is ignored.
import { afterAll, beforeAll } from 'vitest';
import { createS3Backend } from '../../src/backend/s3.js';
import { startS3Server, type S3TestServer } from '../support/s3server.js';
import { runBackendContract } from './contract.js';

let server: S3TestServer | undefined;
let starting: Promise<S3TestServer> | undefined;
/** One s3rver for the file; each suite gets its own prefix. */
const shared = (): Promise<S3TestServer> => {
  starting ??= startS3Server().then((started) => {
    server = started;
    Object.assign(process.env, started.env);
    return started;
  });
  return starting;
};
beforeAll(async () => {
  await shared();
});
afterAll(async () => {
  await server?.close();
});

runBackendContract('s3 (s3rver behind a proxy enforcing If-None-Match, conditional writes on)', async () => {
  const s3 = await shared();
  return {
    backend: createS3Backend({ bucket: s3.bucket, prefix: 'contract-enforced', endpoint: s3.endpoint, forcePathStyle: true, conditionalWrites: 'on' }),
    cleanup: async () => undefined,
  };
});

runBackendContract('s3 (s3rver behind the proxy, conditional writes auto)', async () => {
  const s3 = await shared();
  return {
    backend: createS3Backend({ bucket: s3.bucket, prefix: 'contract-auto-enforced', endpoint: s3.endpoint, forcePathStyle: true, conditionalWrites: 'auto' }),
    cleanup: async () => undefined,
  };
});

// Bare s3rver overwrites despite If-None-Match: auto falls back to look-up-then-write, which is not
// atomic against concurrent writers (documented), so the racing test does not apply.
runBackendContract(
  's3 (bare s3rver ignoring If-None-Match, conditional writes auto → fallback)',
  async () => {
    const s3 = await shared();
    return {
      backend: createS3Backend({ bucket: s3.bucket, prefix: 'contract-auto-bare', endpoint: s3.bareEndpoint, forcePathStyle: true, conditionalWrites: 'auto' }),
      cleanup: async () => undefined,
    };
  },
  { atomicCreate: false },
);
