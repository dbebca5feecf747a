// verify and cleanup work on every backend: the real archive copied into an S3-speaking server
// (s3rver behind the test proxy) gives the same report as on the local directory, finds a flipped byte,
// and cleanup removes the same files.
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import type { Backend } from '../../src/backend/types.js';
import { cleanupArchive } from '../../src/policy/cleanup.js';
import { verifyArchive, type VerifyReport } from '../../src/policy/verify.js';
import { realArchive, type RealArchive } from '../support/real-archive.js';
import { getRaw, putRaw, s3Backend, segmentKey, useS3Scenario } from '../support/s3scenario.js';
import type { S3TestServer } from '../support/s3server.js';

const ctx = { signal: new AbortController().signal };
let archive: RealArchive;
let server: S3TestServer;
let uploads = 0;

/** Copies the real archive (objects, their recorded metadata, walvault.json) into a new prefix of the bucket. */
async function uploadCopy(): Promise<{ prefix: string; backend: Backend }> {
  const prefix = `verify-${(uploads += 1)}`;
  const local = createLocalBackend({ root: archive.template });
  const backend = s3Backend(server, prefix);
  for await (const entry of local.list('', ctx)) {
    if (entry.key === 'walvault.json') {
      await backend.writeText(entry.key, (await local.readText(entry.key, ctx))!, ctx);
      continue;
    }
    const stat = await local.stat(entry.key, ctx);
    if (!stat.exists || stat.meta === null) throw new Error(`no metadata for ${entry.key}`);
    await backend.putIfAbsent(entry.key, createReadStream(local.describe(entry.key)), stat.meta, ctx);
  }
  return { prefix, backend };
}

const summary = (report: VerifyReport): unknown => ({
  findings: report.findings.map((finding) => `${finding.severity} ${finding.code} ${finding.file ?? ''}`),
  timelines: report.timelines.map((timeline) => [timeline.timeline, timeline.ranges, timeline.gaps]),
  backups: report.backups.map((backup) => [backup.label, backup.restorable, backup.windows.map((window) => [window.timeline, window.untilLsn, window.latest])]),
  clusters: report.clusters,
});

useS3Scenario({ scratch: false, bind: (scenario) => ({ server } = scenario) });
beforeAll(async () => {
  archive = await realArchive();
}, 600_000);

describe('walvault verify and cleanup on S3', () => {
  it('report the same as on the local directory, full and quick', async () => {
    const { backend } = await uploadCopy();
    const local = await verifyArchive(createLocalBackend({ root: archive.template }));
    const remote = await verifyArchive(backend);
    expect(summary(remote)).toEqual(summary(local));
    expect(remote.ok).toBe(true);
    expect(summary(await verifyArchive(backend, { quick: true }))).toEqual(summary(await verifyArchive(createLocalBackend({ root: archive.template }), { quick: true })));
  });

  it('finds a byte changed behind walvault\'s back in an S3 object', async () => {
    const { prefix, backend } = await uploadCopy();
    const victim = archive.backups['base-c'].slice(0, 24);
    const key = segmentKey(prefix, victim);
    const object = (await getRaw(server, key))!;
    object.body[4242] = (object.body[4242] ?? 0) ^ 0x10;
    await putRaw(server, key, object.body, object.metadata);
    const report = await verifyArchive(backend);
    expect(report.findings.filter((finding) => finding.severity === 'error').map((finding) => `${finding.code} ${finding.file}`)).toEqual([
      `hash-mismatch ${victim}`,
      `backup-incomplete ${archive.backups['base-c']}`,
    ]);
  });

  it('cleanup --keep-backups 1 removes the same files as on the local directory', async () => {
    const { backend } = await uploadCopy();
    const scratch = await fs.mkdtemp('/tmp/walvault-verify-s3-');
    try {
      await fs.cp(archive.template, `${scratch}/repo`, { recursive: true });
      const local = await cleanupArchive(createLocalBackend({ root: `${scratch}/repo` }), { keepBackups: 1 });
      const remote = await cleanupArchive(backend, { keepBackups: 1 });
      expect(remote.removed).toEqual(local.removed);
      expect(remote.removed.length).toBeGreaterThan(0);
      expect((await verifyArchive(backend)).ok).toBe(true);
    } finally {
      await fs.rm(scratch, { recursive: true, force: true });
    }
  });
});
