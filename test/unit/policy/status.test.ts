// The status policy's pieces on their own: thresholds, the Prometheus rendering (through a real
// Prometheus text parser), the pusher state read from a spool, the outcome record's files.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { crossedThresholds, readPusherState, type ArchiveSide, type StatusReport } from '../../../src/policy/status.js';
import { formatStatusPrometheus, formatStatusText } from '../../../src/policy/status-format.js';
import { readStatusRecord, recordOutcome } from '../../../src/policy/status-record.js';
import { makeTempDir } from '../../support/tmp.js';

const emptyRecord = { lastSuccess: null, lastFailure: null, counters: { successes: 0, failures: 0, skipped: 0, missing: 0 } };

function archiveSide(overrides: Partial<ArchiveSide> = {}): ArchiveSide {
  return {
    pgdata: '/data',
    spool: '/data/pg_wal/walvault',
    ready: { files: 3, bytes: 3 << 24, oldestFile: '000000010000000000000007', oldestSince: '2026-01-01T00:00:00.000Z', lagSeconds: 90 },
    lastDone: null,
    pusher: { running: false, pid: null, state: 'stopped', claims: [], markers: 0 },
    switchOffSince: null,
    recordSince: null,
    archive: emptyRecord,
    restore: emptyRecord,
    ...overrides,
  };
}

function report(overrides: Partial<StatusReport> = {}): StatusReport {
  return { version: 1, time: '2026-01-01T00:01:30.000Z', archive: archiveSide(), repository: null, server: null, errors: [], alerts: [], up: true, ok: true, ...overrides };
}

let temp: { dir: string; remove(): Promise<void> };
beforeEach(async () => {
  temp = await makeTempDir('walvault-status-unit-');
});
afterEach(async () => {
  await temp.remove();
});

describe('thresholds', () => {
  it('a value above its limit crosses it; at the limit, or without a limit, it does not', () => {
    const side = report();
    expect(crossedThresholds(side, {})).toEqual([]);
    expect(crossedThresholds(side, { maxReadyFiles: 3, maxReadyBytes: 3 << 24, maxLagSeconds: 90 })).toEqual([]);
    expect(crossedThresholds(side, { maxReadyFiles: 2, maxLagSeconds: 89.9 }).map((alert) => [alert.threshold, alert.value, alert.limit])).toEqual([
      ['max-ready-files', 3, 2],
      ['max-lag', 90, 89.9],
    ]);
  });

  it('max-failure-age: the youngest failure of archive or restore counts; an empty repository crosses max-repo-age', () => {
    const failure = { file: '000000010000000000000007', time: '', ageSeconds: 30, exitCode: 5, message: 'could not write', kind: 'backend' };
    const side = report({ archive: archiveSide({ restore: { ...emptyRecord, lastFailure: failure } }), repository: { repository: '/repo', timelines: [], backups: null } });
    const alerts = crossedThresholds(side, { maxFailureAgeSeconds: 60, maxRepoAgeSeconds: 600 });
    expect(alerts.map((alert) => alert.message)).toEqual([
      '"000000010000000000000007" failed 30 s ago (less than 60 s): could not write',
      'the repository holds no segment',
    ]);
    expect(crossedThresholds(side, { maxFailureAgeSeconds: 30 })).toEqual([]);
  });
});

describe('the Prometheus rendering', () => {
  it('escapes label values (a backup label with quotes, backslashes, a newline) so the parser reads them back', () => {
    const label = 'nightly "full"\\x\nend';
    const text = formatStatusPrometheus(
      report({
        repository: {
          repository: '/repo',
          timelines: [{ timeline: 2, newestFile: '000000020000000000000009', storedAt: '2026-01-01T00:00:00.000Z', ageSeconds: 90, segments: 4 }],
          backups: [{ file: '000000020000000000000008.00000028.backup', label, stopTime: null, restorable: true, windows: [] }],
        },
      }),
    );
    const families = new Map(parsePrometheusTextFormat(text).map((family) => [family.name, family]));
    expect(families.get('walvault_backup_restorable')!.metrics).toEqual([{ value: '1', labels: { label, file: '000000020000000000000008.00000028.backup' } }]);
    expect(families.get('walvault_repository_newest_segment_timestamp_seconds')!.metrics).toEqual([{ value: String(Date.parse('2026-01-01T00:00:00.000Z') / 1000), labels: { timeline: '2' } }]);
    expect(families.get('walvault_archive_lag_seconds')).toMatchObject({ type: 'GAUGE', metrics: [{ value: '90' }] });
    expect(families.get('walvault_up')).toMatchObject({ type: 'GAUGE', metrics: [{ value: '1' }] });
  });

  it('the text names the switch when it is off and says ERROR when a part could not be read', () => {
    const text = formatStatusText(report({ archive: archiveSide({ switchOffSince: '2026-01-01T00:00:00.000Z' }), errors: ['cannot read repository "/repo": gone'], up: false, ok: false }));
    expect(text).toContain('  switch:       off (switch file missing) since 2026-01-01T00:00:00.000Z: WAL is not being archived\n');
    expect(text).toContain('ERROR  cannot read repository "/repo": gone\n');
    expect(text.trimEnd().split('\n').at(-1)).toBe('result: ERROR, a part could not be read');
  });
});

describe('the spool as status reads it', () => {
  it('a pid file naming a dead process is a stopped pusher; claims count only when their process lives; markers are those of the lock holder\'s options', async () => {
    const spool = temp.dir;
    const id = '0123456789abcdef';
    await mkdir(path.join(spool, 'archive.work'));
    await mkdir(path.join(spool, `archive.${id}`));
    await mkdir(path.join(spool, 'archive.fedcba9876543210'));
    await writeFile(path.join(spool, 'archive.pid'), `999999999 pushing ${id}\n`);
    await writeFile(path.join(spool, 'archive.work', '000000010000000000000002'), `${process.pid} ${id}\n`);
    await writeFile(path.join(spool, 'archive.work', '000000010000000000000003'), `999999999 ${id}\n`);
    await writeFile(path.join(spool, 'archive.work', `000000010000000000000004.takeover.999999999`), `${process.pid}\n`);
    await writeFile(path.join(spool, `archive.${id}`, '000000010000000000000001'), '');
    await writeFile(path.join(spool, 'archive.fedcba9876543210', '000000010000000000000001'), '');
    await writeFile(path.join(spool, 'archive.fedcba9876543210', '000000010000000000000005'), '');
    expect(await readPusherState(spool)).toEqual({ running: false, pid: null, state: 'stopped', claims: ['000000010000000000000002'], markers: 1 });
    await writeFile(path.join(spool, 'archive.pid'), `${process.pid} starting ${id}\n`);
    expect(await readPusherState(spool)).toMatchObject({ running: true, pid: process.pid, state: 'starting', markers: 1 });
    await writeFile(path.join(spool, 'archive.pid'), `${process.pid} idle ${id}\n`);
    expect((await readPusherState(spool)).state).toBe('idle');
    await writeFile(path.join(spool, 'archive.pid'), `${process.pid} stopping fedcba9876543210\n`);
    expect(await readPusherState(spool)).toMatchObject({ state: 'stopping', markers: 2 });
  });

  it('the record: counters are the sizes of append-only files, the last event is replaced whole; a missing spool is created', () => {
    const spool = path.join(temp.dir, 'walvault');
    expect(readStatusRecord(spool)).toMatchObject({ since: null, archive: { lastSuccess: null, counters: { success: 0 } } });
    for (let index = 1; index <= 3; index += 1) {
      recordOutcome(spool, 'archive', 'success', { file: `00000001000000000000000${index}`, time: `2026-01-01T00:00:0${index}.000Z`, exitCode: 0, message: 'archived' });
    }
    recordOutcome(spool, 'restore', 'missing', { file: '00000002.history', time: '2026-01-01T00:00:04.000Z', exitCode: 1, message: 'not found', kind: 'not-found' });
    const record = readStatusRecord(spool);
    expect(record.since).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(record.archive.counters).toEqual({ success: 3, failure: 0, skipped: 0, missing: 0 });
    expect(record.archive.lastSuccess).toEqual({ file: '000000010000000000000003', time: '2026-01-01T00:00:03.000Z', exitCode: 0, message: 'archived' });
    expect(record.restore.counters.missing).toBe(1);
    expect(record.restore.lastFailure).toBeNull();
  });
});
