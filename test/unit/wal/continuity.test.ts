import { describe, expect, it } from 'vitest';
import { groupMissing, SegmentIndex, toRanges } from '../../../src/wal/continuity.js';
import { parseHistory } from '../../../src/wal/history.js';

const MiB = 1048576;

/** Timeline 1 with segments 1..10, timeline 2 forked at 0/6000A0 (segment 6) with segments 6..12. */
function forked(): SegmentIndex {
  const index = new SegmentIndex(MiB);
  for (let segno = 1n; segno <= 10n; segno += 1n) index.add(1, segno);
  for (let segno = 6n; segno <= 12n; segno += 1n) index.add(2, segno);
  index.histories.set(2, parseHistory('1\t0/6000A0\tno recovery target specified\n', 2));
  return index;
}

describe('segment continuity', () => {
  it('groups segment numbers into ranges and missing ones per timeline', () => {
    expect(toRanges(1, [1n, 2n, 3n, 5n, 7n, 8n])).toEqual([
      { timeline: 1, first: 1n, last: 3n },
      { timeline: 1, first: 5n, last: 5n },
      { timeline: 1, first: 7n, last: 8n },
    ]);
    expect(groupMissing([{ timeline: 2, segno: 4n }, { timeline: 1, segno: 9n }, { timeline: 2, segno: 3n }, { timeline: 1, segno: 9n }])).toEqual([
      { timeline: 1, first: 9n, last: 9n },
      { timeline: 2, first: 3n, last: 4n },
    ]);
  });

  it('follows a timeline switch: the segment holding the switch point comes from the child', () => {
    const index = forked();
    expect(index.missingOnPath(2, 1n, 12n)).toEqual([]);
    expect(index.runEnd(2, 1n)).toEqual({ timeline: 2, segno: 12n });
    expect(index.runEnd(1, 3n)).toEqual({ timeline: 1, segno: 10n });
    expect(index.name(2, 12n)).toBe('00000002000000000000000C');
  });

  it('a hole on the parent before the switch breaks the child path too; one after it does not', () => {
    const index = new SegmentIndex(MiB);
    for (const segno of [1n, 2n, 4n, 5n, 6n, 8n]) index.add(1, segno);
    for (let segno = 6n; segno <= 9n; segno += 1n) index.add(2, segno);
    index.histories.set(2, parseHistory('1\t0/6000A0\tx\n', 2));
    expect(index.missingOnPath(2, 1n, 9n)).toEqual([{ timeline: 1, segno: 3n }]);
    expect(index.missingOnPath(1, 1n, 8n)).toEqual([{ timeline: 1, segno: 3n }, { timeline: 1, segno: 7n }]);
    expect(index.runEnd(2, 4n)).toEqual({ timeline: 2, segno: 9n });
    expect(index.runEnd(2, 3n)).toBeNull();
  });

  it('a missing first segment of the child is needed, the parent copy of it is not', () => {
    const index = forked();
    const withoutChildStart = new SegmentIndex(MiB);
    for (let segno = 1n; segno <= 10n; segno += 1n) withoutChildStart.add(1, segno);
    for (let segno = 7n; segno <= 12n; segno += 1n) withoutChildStart.add(2, segno);
    withoutChildStart.histories.set(2, index.histories.get(2)!);
    expect(withoutChildStart.missingOnPath(2, 1n, 12n)).toEqual([{ timeline: 2, segno: 6n }]);
    expect(withoutChildStart.runEnd(2, 1n)).toEqual({ timeline: 1, segno: 5n });
  });
});
