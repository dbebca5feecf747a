// Timeline history files: which timelines a timeline descends from and where each one switched.
import { WalvaultError } from '../core/errors.js';
import { parseLsn, formatLsn } from './names.js';

/** One line of a history file: `parent` ended (and its child began) at `switchPoint`. */
export interface HistoryEntry {
  parent: number;
  switchPoint: bigint;
  reason: string;
}

/** A parsed `<TLI>.history` file: the ancestors of `timeline`, oldest first. */
export interface TimelineHistory {
  timeline: number;
  entries: HistoryEntry[];
}

/** One timeline on a path of descent, with the LSN range it covers on that path. */
export interface PathStep {
  timeline: number;
  /** First LSN read from this timeline on the path (0 for the root). */
  begin: bigint;
  /** LSN where the path leaves this timeline; null for the last timeline (open-ended). */
  end: bigint | null;
}

/** The timeline number in a history file name such as `00000003.history`; null for other names. */
export function timelineOfHistoryName(name: string): number | null {
  const match = /^([0-9A-F]{8})\.history$/.exec(name);
  return match ? Number.parseInt(match[1]!, 16) : null;
}

/** The history file name of a timeline, e.g. 3 → `00000003.history`. */
export function historyFileName(timeline: number): string {
  return `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

/**
 * Parses a history file the way the server does (timeline.c): blank and `#` lines skipped, each other
 * line `parentTLI <tab> X/Y <tab> reason`. Parents must increase and stay below the file's timeline.
 */
export function parseHistory(text: string, timeline: number): TimelineHistory {
  const entries: HistoryEntry[] = [];
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index]!.replace(/\r$/, '');
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const match = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})(?:\s+(.*))?$/.exec(trimmed);
    if (!match) {
      throw new WalvaultError('corrupt', `timeline history for timeline ${timeline} has a malformed line ${index + 1}: "${trimmed}"`, {
        hint: 'compare the file with the server\'s pg_wal copy; a history file must list "parentTLI<TAB>LSN<TAB>reason" lines',
      });
    }
    const parent = Number.parseInt(match[1]!, 10);
    const previous = entries[entries.length - 1];
    if (previous !== undefined && parent <= previous.parent) {
      throw new WalvaultError('corrupt', `timeline history for timeline ${timeline} lists timeline ${parent} after ${previous.parent} (line ${index + 1}): parents must increase`);
    }
    if (parent >= timeline) {
      throw new WalvaultError('corrupt', `timeline history for timeline ${timeline} names timeline ${parent} as a parent (line ${index + 1}): parents must be older`);
    }
    const switchPoint = parseLsn(match[2]!);
    if (previous !== undefined && switchPoint < previous.switchPoint) {
      throw new WalvaultError('corrupt', `timeline history for timeline ${timeline} has switch point ${formatLsn(switchPoint)} before ${formatLsn(previous.switchPoint)} (line ${index + 1})`);
    }
    entries.push({ parent, switchPoint, reason: match[3]?.trim() ?? '' });
  }
  return { timeline, entries };
}

/** Timelines this one descends from, oldest first (not including itself). */
export function ancestorsOf(history: TimelineHistory): number[] {
  return history.entries.map((entry) => entry.parent);
}

/** The parent of a timeline and the LSN where the timeline began; null for a root timeline. */
export function branchOf(history: TimelineHistory): { parent: number; switchPoint: bigint } | null {
  const last = history.entries[history.entries.length - 1];
  return last === undefined ? null : { parent: last.parent, switchPoint: last.switchPoint };
}

/**
 * The path of descent ending at `history.timeline`, oldest first, with the LSN range each timeline
 * covers on it: recovery to that timeline reads WAL below `end` from each step's timeline.
 */
export function pathOf(history: TimelineHistory): PathStep[] {
  const steps: PathStep[] = [];
  let begin = 0n;
  for (const entry of history.entries) {
    steps.push({ timeline: entry.parent, begin, end: entry.switchPoint });
    begin = entry.switchPoint;
  }
  steps.push({ timeline: history.timeline, begin, end: null });
  return steps;
}

/** The path of a timeline that has no history file (timeline 1, or a history that is missing). */
export function rootPath(timeline: number): PathStep[] {
  return [{ timeline, begin: 0n, end: null }];
}

/** Which timeline of a path holds `lsn`: the one whose range covers it (the last step for anything after). */
export function timelineAt(path: readonly PathStep[], lsn: bigint): number {
  for (const step of path) {
    if (step.end === null || lsn < step.end) return step.timeline;
  }
  return path[path.length - 1]!.timeline;
}

/**
 * Which timeline's copy of segment `segno` recovery along `path` reads: the newest timeline that had
 * begun by that segment (the server's XLogFileReadAnyTLI). The segment holding a switch point is read
 * from the child, whose copy carries the parent's WAL up to the switch.
 */
export function timelineForSegment(path: readonly PathStep[], segno: bigint, segmentSize: number): number {
  for (let index = path.length - 1; index >= 0; index -= 1) {
    const step = path[index]!;
    if (step.begin / BigInt(segmentSize) <= segno) return step.timeline;
  }
  return path[0]!.timeline;
}

/** Formats a history back into the server's file format (tests build fixtures with it). */
export function formatHistory(history: TimelineHistory): string {
  return history.entries.map((entry) => `${entry.parent}\t${formatLsn(entry.switchPoint)}\t${entry.reason}\n`).join('');
}
