// walvault backup / restore-backup against a real S3 implementation, Ceph's RADOS Gateway
// (test/support/ceph.ts; see ./backup.ts for the scenario).
import { ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { rgwStore } from '../support/ceph.js';
import { runBackupScenario } from './backup.js';

runBackupScenario({
  name: 'an S3 repository on Ceph RGW',
  makeRepo: async () => {
    const rgw = await rgwStore();
    const bucket = await rgw.bucket('walvault-backup');
    const backups = 'backup/main/backups/';
    return {
      url: `s3://${bucket}/backup/main`,
      env: rgw.env,
      extraArgs: [`--s3-endpoint=${rgw.endpoint}`, '--s3-force-path-style'],
      storingBackup: async () => {
        const [objects, uploads] = await Promise.all([
          rgw.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: backups, MaxKeys: 1 })),
          rgw.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: backups, MaxUploads: 1 })),
        ]);
        return (objects.KeyCount ?? 0) > 0 || (uploads.Uploads ?? []).length > 0;
      },
    };
  },
});
