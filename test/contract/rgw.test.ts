// The backend contract against a real S3 implementation: Ceph's RADOS Gateway (Debian's 16.2 packages),
// started once per run by test/support/ceph.ts. RGW honours If-None-Match: * on PutObject, which is
// the only way walvault creates objects, so auto mode must find "enforced" and creates must be atomic.
import { createS3Backend, type S3Backend } from '../../src/backend/s3.js';
import { rgwStore } from '../support/ceph.js';
import { leaveUnfinishedUpload, SMALL_MULTIPART } from '../support/s3scenario.js';
import { runBackendContract } from './contract.js';

/** The backends of the suites, for their hooks. */
const fixtures: { auto?: S3Backend; spooled?: S3Backend } = {};

runBackendContract('s3 (Ceph RGW, conditional writes auto)', async () => {
  const rgw = await rgwStore();
  const bucket = await rgw.bucket('walvault-contract');
  Object.assign(process.env, rgw.env);
  fixtures.auto = createS3Backend({ bucket, prefix: 'auto', endpoint: rgw.endpoint, forcePathStyle: true, conditionalWrites: 'auto' });
  return { backend: fixtures.auto, cleanup: async () => undefined };
}, { leaveUnfinishedUpload: (key) => leaveUnfinishedUpload(fixtures.auto!, key).then(() => undefined) });

runBackendContract('s3 (Ceph RGW, conditional writes on, bodies above 64 KiB spooled, small multipart parts)', async () => {
  const rgw = await rgwStore();
  const bucket = await rgw.bucket('walvault-contract');
  Object.assign(process.env, rgw.env);
  fixtures.spooled = createS3Backend({ bucket, prefix: 'on-spooled', endpoint: rgw.endpoint, forcePathStyle: true, conditionalWrites: 'on', memoryBodyBytes: 64 * 1024, multipart: SMALL_MULTIPART });
  return { backend: fixtures.spooled, cleanup: async () => undefined };
}, { largePartBytes: SMALL_MULTIPART.partBytes, leaveUnfinishedUpload: (key) => leaveUnfinishedUpload(fixtures.spooled!, key).then(() => undefined) });
