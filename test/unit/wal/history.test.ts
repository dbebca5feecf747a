import { describe, expect, it } from 'vitest';
import { WalvaultError } from '../../../src/core/errors.js';
import {
  ancestorsOf,
  branchOf,
  formatHistory,
  historyFileName,
  parseHistory,
  pathOf,
  rootPath,
  timelineAt,
  timelineForSegment,
  timelineOfHistoryName,
} from '../../../src/wal/history.js';

// As written by a PostgreSQL 15 server promoted twice (PITR to a named restore point, then a promotion).
const threeTimelines = '1\t0/5000E28\tat restore point "before_bug"\n\n2\t0/9000000\tno recovery target specified\n';
const MiB16 = 16 * 1024 * 1024;

describe('timeline history files', () => {
  it('parses the server format, skipping blank and comment lines', () => {
    const history = parseHistory(`# comment\n${threeTimelines}`, 3);
    expect(history.entries).toEqual([
      { parent: 1, switchPoint: 0x5000e28n, reason: 'at restore point "before_bug"' },
      { parent: 2, switchPoint: 0x9000000n, reason: 'no recovery target specified' },
    ]);
    expect(ancestorsOf(history)).toEqual([1, 2]);
    expect(branchOf(history)).toEqual({ parent: 2, switchPoint: 0x9000000n });
    expect(formatHistory(history)).toBe(threeTimelines.replace('\n\n', '\n'));
  });

  it('refuses malformed lines, non-increasing parents and parents not older than the timeline', () => {
    expect(() => parseHistory('1\tgarbage\n', 2)).toThrow('timeline history for timeline 2 has a malformed line 1: "1\tgarbage"');
    expect(() => parseHistory('2\t0/1\tx\n1\t0/2\ty\n', 3)).toThrow('lists timeline 1 after 2');
    expect(() => parseHistory('3\t0/1\tx\n', 3)).toThrow('names timeline 3 as a parent');
    expect(() => parseHistory('1\t0/5\tx\n2\t0/1\ty\n', 3)).toThrow('has switch point 0/1 before 0/5');
    let thrown: unknown;
    try {
      parseHistory('x', 2);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(WalvaultError);
    expect((thrown as WalvaultError).kind).toBe('corrupt');
  });

  it('names history files and reads their timeline back', () => {
    expect(historyFileName(10)).toBe('0000000A.history');
    expect(timelineOfHistoryName('0000000A.history')).toBe(10);
    expect(timelineOfHistoryName('000000010000000000000001')).toBeNull();
  });

  it('gives the path of descent with the LSN range of each step', () => {
    const path = pathOf(parseHistory(threeTimelines, 3));
    expect(path).toEqual([
      { timeline: 1, begin: 0n, end: 0x5000e28n },
      { timeline: 2, begin: 0x5000e28n, end: 0x9000000n },
      { timeline: 3, begin: 0x9000000n, end: null },
    ]);
    expect(timelineAt(path, 0x5000e27n)).toBe(1);
    expect(timelineAt(path, 0x5000e28n)).toBe(2);
    expect(timelineAt(path, 0x9000000n)).toBe(3);
    expect(rootPath(1)).toEqual([{ timeline: 1, begin: 0n, end: null }]);
  });

  it('reads the segment holding a switch point from the child timeline, like the server', () => {
    const path = pathOf(parseHistory(threeTimelines, 3));
    expect(timelineForSegment(path, 4n, MiB16)).toBe(1);
    expect(timelineForSegment(path, 5n, MiB16)).toBe(2); // 0/5000E28 lies in segment 5
    expect(timelineForSegment(path, 8n, MiB16)).toBe(2);
    expect(timelineForSegment(path, 9n, MiB16)).toBe(3); // switch exactly at a segment boundary
  });
});
