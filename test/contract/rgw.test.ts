// The backend contract against a real S3 implementation: Ceph's RADOS Gateway (Debian's 16.2 packages),
// started once per run by test/support/ceph.ts. RGW honours If-None-Match: * on PutObject, which is
// the only way walvault creates objects, so auto mode must find "enforced" and creates must be atomic.
import { createS3Backend } from '../../src/backend/s3.js';
import { rgwStore } from '../support/ceph.js';
import { runBackendContract } from './contract.js';

runBackendContract('s3 (Ceph RGW, conditional writes auto)', async () => {
  const rgw = await rgwStore();
  const bucket = await rgw.bucket('walvault-contract');
  Object.assign(process.env, rgw.env);
  return {
    backend: createS3Backend({ bucket, prefix: 'auto', endpoint: rgw.endpoint, forcePathStyle: true, conditionalWrites: 'auto' }),
    cleanup: async () => undefined,
  };
});

runBackendContract('s3 (Ceph RGW, conditional writes on, bodies above 16 MiB spooled)', async () => {
  const rgw = await rgwStore();
  const bucket = await rgw.bucket('walvault-contract');
  Object.assign(process.env, rgw.env);
  return {
    backend: createS3Backend({ bucket, prefix: 'on-spooled', endpoint: rgw.endpoint, forcePathStyle: true, conditionalWrites: 'on', memoryBodyBytes: 64 * 1024 }),
    cleanup: async () => undefined,
  };
});
