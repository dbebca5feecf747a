// walvault backup / restore-backup against a real S3 implementation, Ceph's RADOS Gateway
// (test/support/ceph.ts; see ./backup.ts for the scenario).
import { rgwStore } from '../support/ceph.js';
import { runBackupScenario } from './backup.js';

runBackupScenario({
  name: 'an S3 repository on Ceph RGW',
  makeRepo: async () => {
    const rgw = await rgwStore();
    const bucket = await rgw.bucket('walvault-backup');
    return { url: `s3://${bucket}/backup/main`, env: rgw.env, extraArgs: [`--s3-endpoint=${rgw.endpoint}`, '--s3-force-path-style'] };
  },
});
