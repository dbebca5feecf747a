// The backend contract run against a real S3-speaking server (s3rver): through the proxy that enforces
// If-None-Match (as AWS S3 does), and bare, where auto mode must detect that the header is ignored.
import { afterAll, beforeAll } from 'vitest';
import { createS3Backend, type S3Backend } from '../../src/backend/s3.js';
import { leaveUnfinishedUpload, SMALL_MULTIPART } from '../support/s3scenario.js';
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
/** The backends of the suites, for their hooks. */
const fixtures: { enforced?: S3Backend; auto?: S3Backend } = {};

runBackendContract('s3 (s3rver behind a proxy enforcing If-None-Match, conditional writes on)', async () => {
  const s3 = await shared();
  const backend = createS3Backend({ bucket: s3.bucket, prefix: 'contract-enforced', endpoint: s3.endpoint, forcePathStyle: true, conditionalWrites: 'on', multipart: SMALL_MULTIPART });
  fixtures.enforced = backend;
  return { backend, cleanup: async () => undefined };
}, { largePartBytes: SMALL_MULTIPART.partBytes, leaveUnfinishedUpload: (key) => leaveUnfinishedUpload(fixtures.enforced!, key).then(() => undefined) });

runBackendContract('s3 (s3rver behind the proxy, conditional writes auto)', async () => {
  const s3 = await shared();
  const backend = createS3Backend({ bucket: s3.bucket, prefix: 'contract-auto-enforced', endpoint: s3.endpoint, forcePathStyle: true, conditionalWrites: 'auto' });
  fixtures.auto = backend;
  return { backend, cleanup: async () => undefined };
}, { leaveUnfinishedUpload: (key) => leaveUnfinishedUpload(fixtures.auto!, key).then(() => undefined) });

// s3rver behind the proxy with enforcement off ignores If-None-Match as bare s3rver does (auto must
// detect it and fall back to look-up-then-write) but replaces objects whole, as S3 does (bare s3rver
// writes an object's file in place, so racing PUTs tear it there: a flaw of s3rver, not of the store
// the fallback is meant for). Look-up-then-write is not atomic (documented): racing writers may
// all win, and the contract checks the weaker promise, no torn object and metadata matching the body.
runBackendContract(
  's3 (s3rver ignoring If-None-Match behind the proxy, conditional writes auto → fallback)',
  async () => {
    const s3 = await shared();
    s3.enforceConditionalWrites = false;
    return {
      backend: createS3Backend({ bucket: s3.bucket, prefix: 'contract-auto-ignored', endpoint: s3.endpoint, forcePathStyle: true, conditionalWrites: 'auto' }),
      cleanup: async () => {
        s3.enforceConditionalWrites = true;
      },
    };
  },
  { atomicCreate: false },
);
