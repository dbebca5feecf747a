import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseBackupHistory, parseServerTime, startSegmentOfBackupName } from '../../../src/wal/backup-history.js';

const name = '000000010000000000000008.00000028.backup';
// Written by PostgreSQL 15 at the end of pg_basebackup -X none -l "my label".
const real = readFileSync(new URL(`../../fixtures/${name}`, import.meta.url), 'utf8');

describe('backup history files', () => {
  it('parses a real file written by PostgreSQL 15', () => {
    expect(parseBackupHistory(name, real)).toEqual({
      fileName: name,
      label: 'my label',
      startLsn: 0x800028n,
      startSegment: '000000010000000000000008',
      stopLsn: 0x800100n,
      stopSegment: '000000010000000000000008',
      checkpointLsn: 0x800060n,
      startTimeline: 1,
      stopTimeline: 1,
      startTime: '2026-11-21 19:40:42 UTC',
      stopTime: '2026-11-21 19:40:42 UTC',
      method: 'streamed',
      from: 'primary',
    });
  });

  it('keeps a label containing ": " and falls back to the segment names for missing timelines', () => {
    const text = 'START WAL LOCATION: 0/9000028 (file 000000020000000000000009)\nSTOP WAL LOCATION: 1/A000100 (file 00000002000000010000000A)\nLABEL: nightly: full\n';
    const parsed = parseBackupHistory('000000020000000000000009.00000028.backup', text);
    expect(parsed.label).toBe('nightly: full');
    expect(parsed.startTimeline).toBe(2);
    expect(parsed.stopTimeline).toBe(2);
    expect(parsed.stopLsn).toBe(0x1_0a00_0100n);
    expect(parsed.checkpointLsn).toBeNull();
  });

  it('refuses a file without a valid start or stop location', () => {
    expect(() => parseBackupHistory(name, 'LABEL: x\n')).toThrow(`backup history file "${name}" has no valid START WAL LOCATION line`);
    expect(() => parseBackupHistory(name, 'START WAL LOCATION: 0/800028 (file 000000010000000000000008)\nSTOP WAL LOCATION: garbage\n')).toThrow(
      'has no valid STOP WAL LOCATION line',
    );
  });

  it('reads the start segment from the file name', () => {
    expect(startSegmentOfBackupName(name)).toBe('000000010000000000000008');
    expect(startSegmentOfBackupName('00000001.history')).toBeNull();
  });

  it('converts server times in UTC or with a numeric offset, not ambiguous zone names', () => {
    expect(parseServerTime('2026-11-21 19:40:42 UTC')?.toISOString()).toBe('2026-11-21T19:40:42.000Z');
    expect(parseServerTime('2026-11-21 21:40:42 +02')?.toISOString()).toBe('2026-11-21T19:40:42.000Z');
    expect(parseServerTime('2026-11-21 19:40:42 CEST')).toBeNull();
    expect(parseServerTime(null)).toBeNull();
  });
});
