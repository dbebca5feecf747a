// Which segments an archive holds per timeline, where the holes are, and how far WAL replay can get from a point.
import { pathOf, rootPath, timelineForSegment, type PathStep, type TimelineHistory } from './history.js';
import { segmentFileName } from './names.js';

/** A run of consecutive segment numbers on one timeline, both ends included. */
export interface SegmentRange {
  timeline: number;
  first: bigint;
  last: bigint;
}

/** The set of segments present in an archive, with the timeline histories that connect them. */
export class SegmentIndex {
  private readonly present = new Map<number, Set<bigint>>();
  readonly histories = new Map<number, TimelineHistory>();

  constructor(readonly segmentSize: number) {}

  /** Records a segment as present. */
  add(timeline: number, segno: bigint): void {
    let set = this.present.get(timeline);
    if (set === undefined) {
      set = new Set();
      this.present.set(timeline, set);
    }
    set.add(segno);
  }

  /** Whether a segment is present. */
  has(timeline: number, segno: bigint): boolean {
    return this.present.get(timeline)?.has(segno) ?? false;
  }

  /** Timelines that have segments or a history file, ascending. */
  timelines(): number[] {
    return [...new Set([...this.present.keys(), ...this.histories.keys()])].sort((a, b) => a - b);
  }

  /** Segment numbers present on a timeline, ascending. */
  segmentsOf(timeline: number): bigint[] {
    return [...(this.present.get(timeline) ?? [])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Lowest segment number on any timeline; null for an empty archive. */
  lowestSegment(): bigint | null {
    let lowest: bigint | null = null;
    for (const set of this.present.values()) for (const segno of set) if (lowest === null || segno < lowest) lowest = segno;
    return lowest;
  }

  /** The path of descent recovery to `timeline` follows (the timeline alone when it has no history). */
  pathTo(timeline: number): PathStep[] {
    const history = this.histories.get(timeline);
    return history === undefined ? rootPath(timeline) : pathOf(history);
  }

  /** File name of a segment number on a timeline. */
  name(timeline: number, segno: bigint): string {
    return segmentFileName(timeline, segno, this.segmentSize);
  }

  /** Segment number holding an LSN. */
  segnoOf(lsn: bigint): bigint {
    return lsn / BigInt(this.segmentSize);
  }

  /**
   * Segments recovery to `timeline` reads for segment numbers `from`..`to` that are missing,
   * each on the timeline recovery would read it from.
   */
  missingOnPath(timeline: number, from: bigint, to: bigint): Array<{ timeline: number; segno: bigint }> {
    const path = this.pathTo(timeline);
    const missing: Array<{ timeline: number; segno: bigint }> = [];
    for (let segno = from; segno <= to; segno += 1n) {
      const source = timelineForSegment(path, segno, this.segmentSize);
      if (!this.has(source, segno)) missing.push({ timeline: source, segno });
    }
    return missing;
  }

  /**
   * The last segment of the unbroken run of WAL that recovery to `timeline` can replay starting at
   * segment `from`; null when `from` itself is missing.
   */
  runEnd(timeline: number, from: bigint): { timeline: number; segno: bigint } | null {
    const path = this.pathTo(timeline);
    let last: { timeline: number; segno: bigint } | null = null;
    for (let segno = from; ; segno += 1n) {
      const source = timelineForSegment(path, segno, this.segmentSize);
      if (!this.has(source, segno)) return last;
      last = { timeline: source, segno };
    }
  }
}

/** Groups sorted segment numbers into runs of consecutive numbers. */
export function toRanges(timeline: number, sorted: readonly bigint[]): SegmentRange[] {
  const ranges: SegmentRange[] = [];
  for (const segno of sorted) {
    const current = ranges[ranges.length - 1];
    if (current !== undefined && segno === current.last + 1n) current.last = segno;
    else ranges.push({ timeline, first: segno, last: segno });
  }
  return ranges;
}

/** Groups missing segments (any order) into ranges per timeline, sorted by timeline then segment. */
export function groupMissing(missing: ReadonlyArray<{ timeline: number; segno: bigint }>): SegmentRange[] {
  const byTimeline = new Map<number, Set<bigint>>();
  for (const item of missing) {
    let set = byTimeline.get(item.timeline);
    if (set === undefined) byTimeline.set(item.timeline, (set = new Set()));
    set.add(item.segno);
  }
  return [...byTimeline.keys()]
    .sort((a, b) => a - b)
    .flatMap((timeline) => toRanges(timeline, [...byTimeline.get(timeline)!].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))));
}
