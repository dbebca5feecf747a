// The last check of walvault backup (awaitBackupWal) against a REAL archive: a WAL file that shows up
// late, one that reads as truncated for a moment (a store that shows an object while it is written,
// as s3rver does), one that stays truncated, one of another cluster, one that never comes.
import * as fs from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import type { OpContext } from '../../src/backend/types.js';
import { createLocalBackend } from '../../src/backend/local.js';
import { underDeadline } from '../../src/core/deadline.js';
import { WalvaultError } from '../../src/core/errors.js';
import { awaitBackupWal, type BackupWalCheck } from '../../src/policy/backup-wal.js';
import { makeScratchDir } from '../support/pg.js';
import { copyArchive, layoutOf, objectPath, realArchive, type RealArchive } from '../support/real-archive.js';

let archive: RealArchive;
let scratch: string;
let segments: string[];
let copies = 0;

beforeAll(async () => {
  archive = await realArchive();
  segments = (await layoutOf(archive.template)).segments[1]!;
  scratch = await makeScratchDir('walvault-backup-wal');
  return async () => {
    await fs.rm(scratch, { recursive: true, force: true });
  };
}, 600_000);

const freshCopy = (): Promise<string> => copyArchive(archive, scratch, `repo-${++copies}`);

/** The check walvault backup runs for `names`, with a short --wal-timeout and re-read window. */
function check(names: string[], overrides: Partial<BackupWalCheck> = {}): BackupWalCheck {
  return {
    id: 'test-backup',
    names,
    systemIdentifier: archive.systemIdentifier,
    decode: {},
    timeoutMs: 3_000,
    damagedRereadMs: 2_000,
    withDeadline: <T>(what: string, work: (ctx: OpContext) => Promise<T>): Promise<T> => underDeadline(10_000, what, work),
    ...overrides,
  };
}

/** The error awaitBackupWal throws (fails the test if it resolves). */
async function failure(promise: Promise<void>): Promise<WalvaultError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(WalvaultError);
  return error as WalvaultError;
}

describe('the WAL a backup needs, checked before it is marked complete', () => {
  it('accepts the history file and intact segments of this cluster', async () => {
    const repo = await freshCopy();
    const history = archive.backups['base-a'];
    const names = [history, ...segments.filter((name) => name >= history.slice(0, 24)).slice(0, 3)];
    await expect(awaitBackupWal(createLocalBackend({ root: repo }), check(names))).resolves.toBeUndefined();
  });

  it('waits for a segment that arrives later', async () => {
    const repo = await freshCopy();
    const victim = segments[2]!;
    const stored = await fs.readFile(objectPath(repo, victim));
    await fs.rename(objectPath(repo, victim), `${scratch}/held-${copies}`);
    const started = Date.now();
    const arrives = new Promise<void>((resolve, reject) => setTimeout(() => fs.rename(`${scratch}/held-${copies}`, objectPath(repo, victim)).then(resolve, reject), 600));
    await awaitBackupWal(createLocalBackend({ root: repo }), check([victim]));
    await arrives;
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    expect(await fs.readFile(objectPath(repo, victim))).toEqual(stored);
  });

  it('reads a segment that is truncated at first (still being written) again, and accepts it once whole', async () => {
    const repo = await freshCopy();
    const victim = segments[2]!;
    const whole = await fs.readFile(objectPath(repo, victim));
    await fs.truncate(objectPath(repo, victim), 8192);
    const started = Date.now();
    const written = new Promise<void>((resolve, reject) => setTimeout(() => fs.writeFile(objectPath(repo, victim), whole).then(resolve, reject), 500));
    await awaitBackupWal(createLocalBackend({ root: repo }), check([victim]));
    await written;
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
  });

  it('fails a segment that stays truncated, after the re-read window and not before', async () => {
    const repo = await freshCopy();
    const victim = segments[2]!;
    await fs.truncate(objectPath(repo, victim), 8192);
    const started = Date.now();
    const error = await failure(awaitBackupWal(createLocalBackend({ root: repo }), check([victim], { damagedRereadMs: 1_500 })));
    const took = Date.now() - started;
    expect(error.kind).toBe('corrupt');
    expect(error.message).toBe(
      `WAL file "${victim}" that backup "test-backup" needs is not usable: "${objectPath(repo, victim)}" holds 8192 bytes, but 1048576 were archived; the backup is not marked complete`,
    );
    expect(took).toBeGreaterThanOrEqual(700);
    expect(took).toBeLessThan(1_500 + 1_000);
  });

  it('fails a segment of another database system', async () => {
    const repo = await freshCopy();
    const victim = segments[2]!;
    const error = await failure(awaitBackupWal(createLocalBackend({ root: repo }), check([victim], { systemIdentifier: '1234567890123456789', damagedRereadMs: 200 })));
    expect(error.kind).toBe('corrupt');
    expect(error.message).toContain(`"${victim}" belongs to database system ${archive.systemIdentifier}, this server is 1234567890123456789`);
  });

  it('fails with a timeout when a file never reaches the repository', async () => {
    const repo = await freshCopy();
    const absent = '0000000100000000000000FE';
    const error = await failure(awaitBackupWal(createLocalBackend({ root: repo }), check([absent], { timeoutMs: 500 })));
    expect(error.kind).toBe('timeout');
    expect(error.message).toBe(`WAL file "${absent}" that backup "test-backup" needs did not reach repository "${repo}" within 1 s; the backup is not marked complete`);
  });
});
