import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../../src/backend/local.js';
import type { Backend } from '../../../src/backend/types.js';
import { WalvaultError } from '../../../src/core/errors.js';
import { guardCluster, readRepoDocument } from '../../../src/policy/cluster-guard.js';
import { makeTempDir } from '../../support/tmp.js';

/** A long page header of a segment of cluster `sysid` written by the server with page magic `magic`. */
function head(sysid: bigint, magic = 0xd110, segno = 6n): Buffer {
  const buffer = Buffer.alloc(40);
  buffer.writeUInt16LE(magic, 0);
  buffer.writeUInt16LE(0x2, 2);
  buffer.writeUInt32LE(1, 4);
  buffer.writeBigUInt64LE(segno * 1048576n, 8);
  buffer.writeBigUInt64LE(sysid, 24);
  buffer.writeUInt32LE(1048576, 32);
  buffer.writeUInt32LE(8192, 36);
  return buffer;
}

const ctx = { signal: new AbortController().signal };
let repo: { dir: string; remove(): Promise<void> };
let backend: Backend;

beforeEach(async () => {
  repo = await makeTempDir('walvault-guard-');
  backend = createLocalBackend({ root: repo.dir });
});
afterEach(async () => {
  await repo.remove();
});

describe('cluster guard (archive-time protection)', () => {
  it('records the cluster of the first segment, then accepts the same cluster', async () => {
    expect(await guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: head(7001n), ctx })).toBe('recorded');
    expect(await guardCluster(backend, { fileName: '000000010000000000000007', firstBytes: head(7001n, 0xd110, 7n), ctx })).toBe('match');
    expect((await readRepoDocument(backend, ctx))?.cluster).toMatchObject({
      systemIdentifier: '7001',
      serverVersion: '15',
      pageMagic: 0xd110,
      segmentSize: 1048576,
      recordedFrom: '000000010000000000000006',
    });
  });

  it('refuses a segment of another database system with a cluster-mismatch error naming both', async () => {
    await guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: head(7001n), ctx });
    const refusal = await guardCluster(backend, { fileName: '000000010000000000000009', firstBytes: head(9009n, 0xd110, 9n), ctx }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(WalvaultError);
    expect(refusal).toMatchObject({ kind: 'cluster-mismatch' });
    expect((refusal as WalvaultError).message).toMatch(
      /^refusing to archive "000000010000000000000009": it comes from database system 9009 \(PostgreSQL 15\), but repository ".*" holds WAL of database system 7001 \(PostgreSQL 15\) \(recorded .* from "000000010000000000000006"\): different database system$/,
    );
    expect((refusal as WalvaultError).hint).toContain('--force-new-cluster');
  });

  it('refuses the same system identifier from another server version', async () => {
    await guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: head(7001n), ctx });
    await expect(guardCluster(backend, { fileName: '000000010000000000000007', firstBytes: head(7001n, 0xd113, 7n), ctx })).rejects.toMatchObject({
      kind: 'cluster-mismatch',
      message: expect.stringContaining('it comes from database system 7001 (PostgreSQL 16)'),
    });
  });

  it('--force-new-cluster re-records the repository and keeps the old record', async () => {
    await guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: head(7001n), ctx });
    expect(await guardCluster(backend, { fileName: '000000010000000000000001', firstBytes: head(9009n, 0xd110, 1n), forceNewCluster: true, ctx })).toBe('reinitialised');
    const document = await readRepoDocument(backend, ctx);
    expect(document?.cluster.systemIdentifier).toBe('9009');
    expect(document?.previousClusters?.map((record) => record.systemIdentifier)).toEqual(['7001']);
    expect(await guardCluster(backend, { fileName: '000000010000000000000002', firstBytes: head(9009n, 0xd110, 2n), ctx })).toBe('match');
  });

  it('lets history and backup history files through, and skips a segment without a readable header', async () => {
    expect(await guardCluster(backend, { fileName: '00000002.history', firstBytes: Buffer.from('1\t0/3000000\tno recovery target specified\n'), ctx })).toBe('skipped');
    expect(await guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: Buffer.alloc(40), ctx })).toBe('skipped');
    expect(await guardCluster(backend, { fileName: '000000010000000000000007', firstBytes: head(7001n), ctx })).toBe('skipped'); // header of segment 6 under 7's name
    expect(await guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: Buffer.from('x'.repeat(40)), ctx })).toBe('skipped');
    expect(await readRepoDocument(backend, ctx)).toBeNull();
  });

  it('two archivers recording at once agree on one record; the loser is refused if it is another cluster', async () => {
    const outcomes = await Promise.allSettled([
      guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: head(7001n), ctx }),
      guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: head(9009n), ctx }),
    ]);
    const recorded = (await readRepoDocument(backend, ctx))!.cluster.systemIdentifier;
    const winner = recorded === '7001' ? 0 : 1;
    expect(outcomes[winner]).toMatchObject({ status: 'fulfilled', value: 'recorded' });
    expect(outcomes[1 - winner]).toMatchObject({ status: 'rejected', reason: { kind: 'cluster-mismatch' } });
  });

  it('reports a damaged walvault.json as corrupt instead of guessing', async () => {
    await backend.writeText('walvault.json', '{not json', ctx);
    await expect(guardCluster(backend, { fileName: '000000010000000000000006', firstBytes: head(7001n), ctx })).rejects.toMatchObject({ kind: 'corrupt' });
  });
});
