// The end-to-end proof against a real S3 implementation: a real PostgreSQL archives through the
// installed walvault-archive into Ceph's RADOS Gateway (test/support/ceph.ts), recovers copies through
// walvault-restore to a restore point and to the end, and stops recovery when a stored object is
// corrupt. Then walvault verify and cleanup run on the archive PostgreSQL made. Outages are covered
// against s3rver's fault proxy (pitr-s3.test.ts); this file proves the real store.
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { rgwStore, type RgwStore } from '../support/ceph.js';
import { run } from '../support/cli.js';
import { runPitrScenario, type PitrRepo } from './pitr.js';

interface RgwRepo extends PitrRepo {
  rgw: RgwStore;
  bucket: string;
  prefix: string;
}

let made: RgwRepo | undefined;

/** Bucket key of a segment (wal/<timeline+log>/<name>) or a .history file (wal/<name>). */
function storedKey(repo: RgwRepo, walFileName: string): string {
  return walFileName.endsWith('.history') ? `${repo.prefix}/wal/${walFileName}` : `${repo.prefix}/wal/${walFileName.slice(0, 16)}/${walFileName}`;
}

runPitrScenario<RgwRepo>({
  name: 'an S3 repository on Ceph RGW',
  makeRepo: async () => {
    const rgw = await rgwStore();
    const bucket = await rgw.bucket('walvault-pitr');
    const prefix = 'pitr/main';
    made = { url: `s3://${bucket}/${prefix}`, env: rgw.env, extraArgs: `--s3-endpoint=${rgw.endpoint} --s3-force-path-style`, rgw, bucket, prefix };
    return made;
  },
  corrupt: async (repo, walFileName) => {
    // Rewrite the object behind walvault's back: same size, same metadata, 16 bytes flipped in the middle.
    const key = storedKey(repo, walFileName);
    const object = await repo.rgw.client.send(new GetObjectCommand({ Bucket: repo.bucket, Key: key }));
    const original = Buffer.from(await object.Body!.transformToByteArray());
    const metadata = object.Metadata ?? {};
    const damaged = Buffer.from(original);
    const offset = Math.floor(damaged.length / 2);
    for (let index = offset; index < offset + 16; index += 1) damaged[index] = (damaged[index] ?? 0) ^ 0xff;
    await repo.rgw.client.send(new PutObjectCommand({ Bucket: repo.bucket, Key: key, Body: damaged, Metadata: metadata }));
    return async () => {
      await repo.rgw.client.send(new PutObjectCommand({ Bucket: repo.bucket, Key: key, Body: original, Metadata: metadata }));
    };
  },
  commandTimeoutSec: 10,
});

describe('walvault verify and cleanup on the archive PostgreSQL made in Ceph RGW', () => {
  const flags = (): string[] => [`--repo=${made!.url}`, `--s3-endpoint=${made!.rgw.endpoint}`, '--s3-force-path-style'];

  it('verify finds the archive whole and the base backup restorable (exit 0)', async () => {
    const verify = await run('walvault', ['verify', ...flags()], { env: made!.rgw.env });
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it('cleanup --keep-backups 1 removes the segments before the backup; verify still passes', async () => {
    const cleanup = await run('walvault', ['cleanup', ...flags(), '--keep-backups=1'], { env: made!.rgw.env });
    expect(cleanup.code, cleanup.stderr).toBe(0);
    expect(cleanup.stdout + cleanup.stderr).toMatch(/removed [1-9][0-9]* files? /);
    const verify = await run('walvault', ['verify', ...flags()], { env: made!.rgw.env });
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });
});
