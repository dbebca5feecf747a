// `walvault verify`: re-reads an archive and answers "is every file intact, and which backups can be restored up to when?".
// verifyArchive runs the phases below in order; reading one object is src/policy/verify-read.ts.
import type { Backend, ListEntry, OpContext } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { Deadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { forEachLimited } from '../core/pool.js';
import { readRepoDocument, REPO_DOCUMENT, type RepoDocument } from './cluster-guard.js';
import { readAndCheck, statAndCheck, type Item } from './verify-read.js';
import { checkBaseBackups, type BaseBackupReport } from './verify-backups.js';
import { BACKUP_PREFIX } from './backup-repo.js';
import { parseBackupHistory, type BackupHistory } from '../wal/backup-history.js';
import { groupMissing, SegmentIndex, toRanges, type SegmentRange } from '../wal/continuity.js';
import { ancestorsOf, branchOf, historyFileName, parseHistory, timelineOfHistoryName } from '../wal/history.js';
import { classify, formatLsn, isValidSegmentSize, nameOfKey, objectKey, parseSegmentName, segmentNumber, WAL_PREFIX } from '../wal/names.js';

/** Options of verifyArchive; the CLI maps its flags onto these. */
export interface VerifyOptions {
  /** Check names, sizes and recorded hashes only; read no segment content (history and backup files are still read). */
  quick?: boolean;
  /** Verify what one backup needs: its LABEL or its backup history file name. */
  backup?: string;
  /** Restrict to segments from this one (by segment number, any timeline). */
  from?: string;
  /** Restrict to segments up to this one (inclusive). */
  to?: string;
  /** Objects read at the same time (default 6). */
  concurrency?: number;
  /** Deadline of each storage operation in milliseconds (default 120 s); the listing gets ten times as long. */
  timeoutMs?: number;
  /** Keys for encrypted objects. */
  decode?: DecodeOptions;
  /** Called after each object is checked, for a progress display. */
  onProgress?: (progress: { done: number; total: number; bytes: number }) => void;
}

/** How bad a finding is: errors make verify fail, warnings are worth knowing but leave the archive restorable. */
export type Severity = 'error' | 'warning';

/** One thing verify found wrong, with the file it is about and the operator's next step. */
export interface Finding {
  severity: Severity;
  /** Stable machine-readable code, e.g. 'hash-mismatch', 'missing-segments'. */
  code: string;
  /** The file (or first file) concerned, when there is one. */
  file?: string;
  message: string;
  hint?: string;
}

/** A run of segments, as file names. */
export interface RangeReport {
  first: string;
  last: string;
  count: number;
}

/** What the archive holds on one timeline. */
export interface TimelineReport {
  timeline: number;
  /** Parent timeline and switch point from the history file; null for a root timeline. */
  parent: number | null;
  switchPoint: string | null;
  historyFile: string | null;
  segments: number;
  ranges: RangeReport[];
  gaps: RangeReport[];
  /** Segments present but unusable (damaged, misnamed, foreign), each reported as a problem. */
  damaged: string[];
  partials: string[];
}

/** How far a backup can be recovered along one timeline. */
export interface RestoreWindow {
  /** recovery_target_timeline to use. */
  timeline: number;
  /** The end of the unbroken WAL after the backup: recovery can reach any point before this LSN. */
  untilLsn: string;
  /** The last segment of that unbroken run, and when it was archived (an upper bound for its last commit). */
  lastSegment: string;
  lastSegmentArchivedAt: string | null;
  /** This is the timeline recovery_target_timeline = 'latest' (the default) follows. */
  latest: boolean;
}

/** One base backup (from its backup history file) and whether it can be restored. */
export interface BackupReport {
  file: string;
  label: string;
  startLsn: string;
  startSegment: string;
  stopLsn: string;
  stopSegment: string;
  timeline: number;
  startTime: string | null;
  stopTime: string | null;
  /** Every segment from start to stop is present and intact. */
  restorable: boolean;
  /** Segments from start to stop that are missing or damaged. */
  missing: RangeReport[];
  damaged: string[];
  /** Recovery windows, one per timeline it can follow; empty when not restorable. */
  windows: RestoreWindow[];
}

/** A database system whose WAL is in the archive. */
export interface ClusterReport {
  systemIdentifier: string;
  serverVersions: string[];
  segmentSize: number;
  segments: number;
  /** The repository's walvault.json names this system. */
  recorded: boolean;
}

/** The whole result of a verify run; the text and --json outputs both render this. */
export interface VerifyReport {
  repository: string;
  mode: 'full' | 'quick';
  scope: { backup: string | null; from: string | null; to: string | null };
  segmentSize: number | null;
  objects: { total: number; segments: number; partials: number; histories: number; backups: number; other: number; temp: number; documents: number; checked: number; bytesRead: number };
  clusters: ClusterReport[];
  timelines: TimelineReport[];
  backups: BackupReport[];
  /** Base backups taken by walvault backup (backups/<id>/), newest first. */
  baseBackups: BaseBackupReport[];
  findings: Finding[];
  errors: number;
  warnings: number;
  /** Nothing is wrong (no errors); warnings allowed. */
  ok: boolean;
  durationMs: number;
}

const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;
const compareBig = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

/** The log+seg part of a segment-like name: ordering these strings orders segments by number on any segment size. */
const position = (name: string): string => name.slice(8, 24);

/** What the phases of one verify run share: the repository, the options, and the findings so far. */
interface VerifyRun {
  backend: Backend;
  options: VerifyOptions;
  timeoutMs: number;
  quick: boolean;
  concurrency: number;
  findings: Finding[];
  add(finding: Finding): void;
  /** `timeline:segno` of segments that are present but unusable (damaged, foreign): reported once, not again as gaps. */
  damaged: Set<string>;
  progress: { done: number; total: number; bytes: number };
  /** Runs one storage operation under its own deadline. */
  withDeadline<T>(what: string, work: (ctx: OpContext) => Promise<T>): Promise<T>;
}

/** Which objects and backups a run looks at: --backup, --from and --to applied. */
interface VerifyScope {
  walItems: Item[];
  backupItems: Item[];
  selectedBackups: Array<{ item: Item; history: BackupHistory }>;
  fromPos: string | null;
  toPos: string | null;
}

/** What the cluster phase decided: the archive's own database system and segment size. */
interface ClusterVerdict {
  recorded: RepoDocument['cluster'] | null;
  segmentSize: number;
  clusters: ClusterReport[];
}

/**
 * Verifies a repository: lists every object, re-reads each one against its recorded hash (or, with
 * quick, checks names, sizes and hashes recorded), checks segment headers, timelines and backups.
 * Never throws for problems in the archive (they are findings); throws only when the repository
 * cannot be listed or the options are wrong. The phases run in order, each adding findings.
 */
export async function verifyArchive(backend: Backend, options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  checkRangeOptions(options);
  const run = startRun(backend, options);
  const { items, document } = await takeInventory(run);
  const scope = await readBackupHistories(run, items);
  const segmentItems = await checkSegments(run, scope);
  const verdict = checkClusters(run, segmentItems, document);
  const { index, timelines } = checkTimelines(run, scope, segmentItems, verdict.segmentSize);
  const backups = checkBackups(run, scope, index, segmentItems, verdict.segmentSize);
  const baseBackups = options.from !== undefined || options.to !== undefined || options.backup !== undefined
    ? []
    : await checkBaseBackups(backend, items.map((item) => item.entry), { quick: run.quick, decode: options.decode ?? {}, historyReports: backups, add: run.add, withDeadline: run.withDeadline });
  // Summarized after the base backups: their findings count too.
  return { ...summarize(run, { items, segmentItems, verdict, timelines, backups, started }), baseBackups };
}

/** Refuses --from/--to values that are not segment names. */
function checkRangeOptions(options: VerifyOptions): void {
  for (const [flag, value] of [['--from', options.from], ['--to', options.to]] as const) {
    if (value !== undefined && classify(value) !== 'segment') {
      throw new WalvaultError('usage', `${flag} "${value}" is not a WAL segment name`, { hint: 'give a 24-hex-digit segment name such as 000000010000000000000010' });
    }
  }
}

/** The shared state of a run, before any phase. */
function startRun(backend: Backend, options: VerifyOptions): VerifyRun {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const findings: Finding[] = [];
  return {
    backend,
    options,
    timeoutMs,
    quick: options.quick === true,
    concurrency: Math.max(1, options.concurrency ?? 6),
    findings,
    add: (finding) => {
      findings.push(finding);
    },
    damaged: new Set<string>(),
    progress: { done: 0, total: 0, bytes: 0 },
    withDeadline: async (what, work) => {
      const deadline = new Deadline(timeoutMs, what);
      try {
        return await deadline.race(work({ signal: deadline.signal }));
      } finally {
        deadline.dispose();
      }
    },
  };
}

/** Phase 1, inventory: lists and classifies every object, reads walvault.json, flags what does not belong. */
async function takeInventory(run: VerifyRun): Promise<{ items: Item[]; document: RepoDocument | null }> {
  const { backend, add } = run;
  const items: Item[] = [];
  const listDeadline = new Deadline(run.timeoutMs * 10, `listing repository "${backend.describe('')}"`);
  try {
    for await (const entry of backend.list('', { signal: listDeadline.signal })) {
      items.push(classifyEntry(entry));
    }
  } finally {
    listDeadline.dispose();
  }
  items.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  let document: RepoDocument | null = null;
  try {
    document = await run.withDeadline(`reading "${REPO_DOCUMENT}"`, (ctx) => readRepoDocument(backend, ctx));
  } catch (error) {
    add({ severity: 'warning', code: 'repo-document', file: REPO_DOCUMENT, message: error instanceof WalvaultError ? error.message : String(error) });
  }

  for (const item of items) {
    if (item.kind === 'temp') {
      add({ severity: 'warning', code: 'temp-file', file: item.key, message: `leftover temporary file "${backend.describe(item.key)}" (an interrupted upload or write)`, hint: 'harmless; walvault cleanup removes it once it is 7 days old (an unfinished upload of a running backup is younger)' });
    } else if (item.kind === 'other') {
      add({ severity: 'warning', code: 'not-wal', file: item.key, message: `"${backend.describe(item.key)}" is not a WAL file walvault archives`, hint: 'move it out of the repository; walvault never reads it' });
    } else if (item.kind !== 'document' && item.kind !== 'base-backup' && objectKey(item.name) !== item.key) {
      add({ severity: 'error', code: 'misplaced', file: item.name, message: `"${backend.describe(item.key)}" is not where walvault stores "${item.name}" ("${objectKey(item.name)}"); restore will not find it`, hint: 'move it to its place, or re-archive it' });
      item.intact = false;
    }
  }
  return { items, document };
}

/** An object as listed, before anything is read. */
export function classifyEntry(entry: ListEntry): Item {
  const name = nameOfKey(entry.key);
  let kind: Item['kind'];
  if (entry.temp) kind = 'temp';
  else if (entry.key === REPO_DOCUMENT) kind = 'document';
  else if (entry.key.startsWith(BACKUP_PREFIX)) kind = 'base-backup';
  else if (!entry.key.startsWith(WAL_PREFIX)) kind = 'other';
  else kind = classify(name);
  const id = kind === 'segment' || kind === 'partial' ? parseSegmentName(name) : null;
  return { key: entry.key, name, kind, entry, meta: null, size: null, intact: true, header: null, text: null, segno: null, timeline: id?.timeline ?? null };
}

/** Reads (or, with quick, stats) one object under its deadline; a failure is an `unreadable` finding. */
async function checkOne(run: VerifyRun, item: Item, readContent: boolean): Promise<void> {
  const { backend, add } = run;
  try {
    await run.withDeadline(`verifying "${backend.describe(item.key)}"`, (ctx) => (readContent ? readAndCheck(backend, item, run.options.decode ?? {}, ctx, add) : statAndCheck(backend, item, ctx, add)));
  } catch (error) {
    item.intact = false;
    const message = error instanceof WalvaultError ? error.message : (error as Error).message;
    add({ severity: 'error', code: 'unreadable', file: item.name, message: `could not read "${backend.describe(item.key)}": ${message}`, hint: 'check the repository storage and permissions; if the object is damaged, see the recovery procedure' });
  }
  run.progress.done += 1;
  run.progress.bytes += item.entry.storedSize;
  run.options.onProgress?.({ ...run.progress });
}

/**
 * Phase 2, scope: reads the history and backup history files first (they are small) so that --backup
 * can narrow the range, then applies --backup, --from and --to.
 */
async function readBackupHistories(run: VerifyRun, items: Item[]): Promise<VerifyScope> {
  const { backend, add, options } = run;
  const walItems = items.filter((item) => item.kind === 'segment' || item.kind === 'partial' || item.kind === 'history' || item.kind === 'backup');
  let fromPos = options.from === undefined ? null : position(options.from);
  const toPos = options.to === undefined ? null : position(options.to);
  const backupItems = walItems.filter((item) => item.kind === 'backup' || item.kind === 'history');
  run.progress.total = backupItems.length;
  await forEachLimited(backupItems, run.concurrency, (item) => checkOne(run, item, true));

  const backups: Array<{ item: Item; history: BackupHistory }> = [];
  for (const item of backupItems.filter((candidate) => candidate.kind === 'backup' && candidate.text !== null)) {
    try {
      const history = parseBackupHistory(item.name, item.text!);
      if (history.startSegment !== item.name.slice(0, 24)) {
        add({ severity: 'error', code: 'bad-backup-history', file: item.name, message: `backup history file "${item.name}" says the backup starts in "${history.startSegment}", not in the segment its name gives` });
      }
      backups.push({ item, history });
    } catch (error) {
      item.intact = false;
      add({ severity: 'error', code: 'bad-backup-history', file: item.name, message: (error as Error).message, hint: (error as WalvaultError).hint });
    }
  }
  let selectedBackups = backups;
  if (options.from !== undefined || options.to !== undefined) {
    // A range check reports the backups that lie inside it; the others need WAL outside the range.
    selectedBackups = backups.filter(({ history }) => (fromPos === null || position(history.startSegment) >= fromPos) && (toPos === null || position(history.stopSegment) <= toPos));
  }
  if (options.backup !== undefined) {
    const wanted = options.backup;
    selectedBackups = backups.filter(({ item, history }) => history.label === wanted || item.name === wanted || item.name === `${wanted}.backup`);
    if (selectedBackups.length === 0) {
      const known = backups.map(({ item, history }) => `"${history.label}" (${item.name})`).join(', ');
      throw new WalvaultError('usage', `no backup with label or backup history file "${wanted}" in repository "${backend.describe('')}"`, {
        hint: known === '' ? 'the repository holds no backup history files (*.backup); take a base backup first' : `known backups: ${known}`,
      });
    }
    const earliest = selectedBackups.map(({ history }) => position(history.startSegment)).sort()[0]!;
    if (fromPos === null || earliest > fromPos) fromPos = earliest;
  }
  return { walItems, backupItems, selectedBackups, fromPos, toPos };
}

/** Phase 3, content: reads every segment in scope against its recorded hash and header (quick: metadata only). */
async function checkSegments(run: VerifyRun, scope: VerifyScope): Promise<Item[]> {
  const inRange = (item: Item): boolean => {
    if (item.kind === 'history') return true;
    const pos = position(item.name);
    return (scope.fromPos === null || pos >= scope.fromPos) && (scope.toPos === null || pos <= scope.toPos);
  };
  const segmentItems = scope.walItems.filter((item) => (item.kind === 'segment' || item.kind === 'partial') && inRange(item));
  run.progress.total += segmentItems.length;
  await forEachLimited(segmentItems, run.concurrency, (item) => checkOne(run, item, !run.quick));
  return segmentItems;
}

/** Phase 4, clusters: which database system and segment size the archive belongs to, and what does not fit. */
function checkClusters(run: VerifyRun, segmentItems: Item[], document: RepoDocument | null): ClusterVerdict {
  const { add } = run;
  const recorded = document?.cluster ?? null;
  const headered = segmentItems.filter((item) => item.header !== null && item.intact);
  const sysids = countBy(headered, (item) => item.header!.systemIdentifier);
  const ownSysid = recorded?.systemIdentifier ?? mostCommon(sysids);
  const sizeVotes = countBy(
    segmentItems.filter((item) => item.size !== null),
    (item) => String(item.header?.segmentSize ?? item.size),
  );
  let segmentSize = recorded?.segmentSize ?? Number(mostCommon(sizeVotes) ?? DEFAULT_SEGMENT_SIZE);
  if (!isValidSegmentSize(segmentSize)) segmentSize = DEFAULT_SEGMENT_SIZE;
  const clusters: ClusterReport[] = [...sysids.keys()].map((sysid) => {
    const own = headered.filter((item) => item.header!.systemIdentifier === sysid);
    return {
      systemIdentifier: sysid,
      serverVersions: [...new Set(own.map((item) => item.header!.serverVersion ?? 'unknown'))].sort(),
      segmentSize: Number(mostCommon(countBy(own, (item) => String(item.header!.segmentSize)))),
      segments: own.length,
      recorded: sysid === recorded?.systemIdentifier,
    };
  });
  if (ownSysid !== null && (sysids.size > 1 || (recorded !== null && !sysids.has(ownSysid) && sysids.size > 0))) {
    const foreign = headered.filter((item) => item.header!.systemIdentifier !== ownSysid);
    const others = [...new Set(foreign.map((item) => item.header!.systemIdentifier))];
    const names = foreign.slice(0, 5).map((item) => `"${item.name}"`).join(', ') + (foreign.length > 5 ? ` and ${foreign.length - 5} more` : '');
    add({
      severity: 'error',
      code: 'several-clusters',
      file: foreign[0]?.name,
      message: `the archive holds WAL of more than one database system: ${ownSysid}${recorded !== null ? ' (recorded in walvault.json)' : ''} and ${others.join(', ')} (${foreign.length} segment${foreign.length === 1 ? '' : 's'}: ${names})`,
      hint: 'two clusters were pointed at one repository; give each its own repository and move the foreign segments out (recovery would fail on them)',
    });
    for (const item of foreign) item.intact = false; // excluded from continuity: they are not this cluster's WAL
  }
  if (recorded !== null) {
    const otherVersion = headered.filter((item) => item.header!.systemIdentifier === ownSysid && item.header!.magic !== recorded.pageMagic);
    if (otherVersion.length > 0) {
      add({ severity: 'error', code: 'server-version', file: otherVersion[0]!.name, message: `${otherVersion.length} segment(s) of database system ${ownSysid} come from PostgreSQL ${otherVersion[0]!.header!.serverVersion ?? 'unknown'}, but the repository records PostgreSQL ${recorded.serverVersion ?? 'unknown'} (e.g. "${otherVersion[0]!.name}")` });
    }
  }
  for (const item of headered) {
    if (item.intact && item.header!.systemIdentifier === ownSysid && item.header!.segmentSize !== segmentSize) {
      add({ severity: 'error', code: 'segment-size', file: item.name, message: `"${item.name}" has ${item.header!.segmentSize}-byte segments, the archive ${segmentSize}-byte ones` });
      item.intact = false;
    }
  }
  return { recorded, segmentSize, clusters };
}

/** Phase 5, timelines: history files, the timeline each header names, and continuity (gaps) along every timeline. */
function checkTimelines(run: VerifyRun, scope: VerifyScope, segmentItems: Item[], segmentSize: number): { index: SegmentIndex; timelines: TimelineReport[] } {
  const { add, damaged } = run;
  const { walItems, fromPos, toPos } = scope;
  const index = new SegmentIndex(segmentSize);
  /** Timelines whose history file is there but damaged: reported once as bad-history, not again as missing. */
  const unparsedHistories = new Set<number>();
  for (const item of walItems.filter((candidate) => candidate.kind === 'history' && candidate.text !== null)) {
    const timeline = timelineOfHistoryName(item.name)!;
    try {
      index.histories.set(timeline, parseHistory(item.text!, timeline));
    } catch (error) {
      item.intact = false;
      unparsedHistories.add(timeline);
      add({ severity: 'error', code: 'bad-history', file: item.name, message: (error as Error).message, hint: (error as WalvaultError).hint });
    }
  }
  for (const [timeline, history] of index.histories) {
    const branch = branchOf(history);
    if (branch === null) continue;
    const parentHistory = index.histories.get(branch.parent);
    if (parentHistory !== undefined) {
      const expected = history.entries.slice(0, -1);
      const same = expected.length === parentHistory.entries.length && expected.every((entry, at) => entry.parent === parentHistory.entries[at]!.parent && entry.switchPoint === parentHistory.entries[at]!.switchPoint);
      if (!same) {
        add({ severity: 'error', code: 'history-conflict', file: historyFileName(timeline), message: `history of timeline ${timeline} does not agree with the history of its parent timeline ${branch.parent} ("${historyFileName(branch.parent)}")`, hint: 'one of the two history files comes from another cluster or was edited' });
      }
    } else if (branch.parent > 1 && !index.histories.has(branch.parent)) {
      add({ severity: 'warning', code: 'missing-history', file: historyFileName(branch.parent), message: `timeline ${timeline} descends from timeline ${branch.parent}, whose history file "${historyFileName(branch.parent)}" is not in the archive` });
    }
  }
  for (const item of segmentItems) {
    const id = parseSegmentName(item.name)!;
    item.timeline = id.timeline;
    item.segno = segmentNumber(id, segmentSize);
  }
  const liveSegments = segmentItems.filter((item) => item.kind === 'segment' && item.intact);
  for (const item of liveSegments) {
    const history = index.histories.get(item.timeline!);
    const begin = history === undefined ? null : branchOf(history);
    if (begin !== null && item.segno! < index.segnoOf(begin.switchPoint)) {
      add({ severity: 'error', code: 'before-branch', file: item.name, message: `"${item.name}" lies before the start of timeline ${item.timeline} at ${formatLsn(begin.switchPoint)} (its history file says so); it cannot belong to this cluster's timeline ${item.timeline}`, hint: 'it may come from another cluster with the same timeline number' });
      item.intact = false;
      continue;
    }
    // Without a usable history file the timeline's ancestors are unknown (that is reported on its own).
    if (item.header !== null && item.header.timeline !== item.timeline && history !== undefined) {
      const ancestors = history === undefined ? [] : ancestorsOf(history);
      if (!ancestors.includes(item.header.timeline) || item.segno! !== index.segnoOf(begin?.switchPoint ?? 0n)) {
        add({ severity: 'error', code: 'header', file: item.name, message: `"${item.name}" first page was written on timeline ${item.header.timeline}, which only the first segment of a timeline may carry (from its parent)` });
        item.intact = false;
        continue;
      }
    }
    index.add(item.timeline!, item.segno!);
  }
  for (const item of segmentItems.filter((candidate) => candidate.kind === 'segment' && !candidate.intact)) {
    // A damaged segment is as good as missing for recovery, but it is reported once (above), not again as a gap.
    if (item.segno !== null) damaged.add(`${item.timeline}:${item.segno}`);
  }
  const lowest = fromPos === null ? index.lowestSegment() : segnoOfPosition(fromPos, segmentSize);
  const highestAllowed = toPos === null ? null : segnoOfPosition(toPos, segmentSize);
  const missing: Array<{ timeline: number; segno: bigint }> = [];
  const timelines: TimelineReport[] = [];
  for (const timeline of index.timelines()) {
    const own = index.segmentsOf(timeline);
    const history = index.histories.get(timeline) ?? null;
    const branch = history === null ? null : branchOf(history);
    if (timeline > 1 && history === null && own.length > 0 && !unparsedHistories.has(timeline)) {
      add({ severity: 'error', code: 'missing-history', file: historyFileName(timeline), message: `timeline ${timeline} has segments but its history file "${historyFileName(timeline)}" is not in the archive; recovery cannot follow it`, hint: 'copy the file from the pg_wal directory of the server that created the timeline into the archive' });
    }
    const last = own[own.length - 1];
    // Without a history file, where a later timeline began is unknown: only holes inside its own range count.
    const walkFrom = timeline > 1 && history === null ? own[0] : lowest;
    if (last !== undefined && walkFrom !== undefined && walkFrom !== null && last >= walkFrom) {
      for (const gap of index.missingOnPath(timeline, walkFrom, last)) missing.push(gap);
    }
    const partials = segmentItems.filter((item) => item.kind === 'partial' && item.timeline === timeline).map((item) => item.name);
    timelines.push({
      timeline,
      parent: branch?.parent ?? null,
      switchPoint: branch === null ? null : formatLsn(branch.switchPoint),
      historyFile: history === null ? null : historyFileName(timeline),
      segments: own.length,
      ranges: toRanges(timeline, own).map((range) => rangeReport(index, range)),
      gaps: [],
      damaged: segmentItems.filter((item) => item.kind === 'segment' && item.timeline === timeline && damaged.has(`${item.timeline}:${item.segno}`)).map((item) => item.name),
      partials,
    });
  }
  const realMissing = missing.filter((gap) => !damaged.has(`${gap.timeline}:${gap.segno}`) && (highestAllowed === null || gap.segno <= highestAllowed));
  for (const range of groupMissing(realMissing)) {
    const report = rangeReport(index, range);
    timelines.find((entry) => entry.timeline === range.timeline)?.gaps.push(report);
    add({
      severity: 'error',
      code: 'missing-segments',
      file: report.first,
      message: `${report.count === 1 ? `segment "${report.first}" is` : `${report.count} segments "${report.first}" .. "${report.last}" are`} missing from timeline ${range.timeline}`,
      hint: 'recovery through this gap is impossible; take a new base backup after it (and find out why archiving skipped it)',
    });
  }

  return { index, timelines };
}

/** Phase 6, backups: whether each selected backup can be restored, and up to where on which timeline. */
function checkBackups(run: VerifyRun, scope: VerifyScope, index: SegmentIndex, segmentItems: Item[], segmentSize: number): BackupReport[] {
  const { add, damaged } = run;
  const newestTimeline = (start: number): number => {
    let newest = start;
    while (index.histories.has(newest + 1)) newest += 1;
    return newest;
  };
  const backupReports: BackupReport[] = [];
  for (const { item, history } of scope.selectedBackups.sort((a, b) => compareBig(a.history.startLsn, b.history.startLsn))) {
    const startSegno = index.segnoOf(history.startLsn);
    const stopSegno = index.segnoOf(history.stopLsn === 0n ? 0n : history.stopLsn - 1n);
    const needed: Array<{ timeline: number; segno: bigint }> = [];
    for (const gap of index.missingOnPath(history.stopTimeline, startSegno, stopSegno)) needed.push(gap);
    const damagedNeeded = needed.filter((gap) => damaged.has(`${gap.timeline}:${gap.segno}`)).map((gap) => index.name(gap.timeline, gap.segno));
    const missingNeeded = groupMissing(needed.filter((gap) => !damaged.has(`${gap.timeline}:${gap.segno}`))).map((range) => rangeReport(index, range));
    const restorable = needed.length === 0;
    const report: BackupReport = {
      file: item.name,
      label: history.label,
      startLsn: formatLsn(history.startLsn),
      startSegment: history.startSegment,
      stopLsn: formatLsn(history.stopLsn),
      stopSegment: history.stopSegment,
      timeline: history.startTimeline,
      startTime: history.startTime,
      stopTime: history.stopTime,
      restorable,
      missing: missingNeeded,
      damaged: damagedNeeded,
      windows: [],
    };
    if (!restorable) {
      const what = [...missingNeeded.map((range) => (range.count === 1 ? `"${range.first}" is missing` : `"${range.first}" .. "${range.last}" are missing`)), ...damagedNeeded.map((name) => `"${name}" is damaged`)].join(', ');
      add({ severity: 'error', code: 'backup-incomplete', file: item.name, message: `backup "${history.label}" ("${item.name}") cannot be restored: ${what} (needed from ${formatLsn(history.startLsn)} to ${formatLsn(history.stopLsn)})`, hint: 'take a new base backup; this one can never become consistent' });
    } else {
      const latest = newestTimeline(history.startTimeline);
      let latestDescends = false;
      for (const timeline of index.timelines()) {
        const path = index.pathTo(timeline);
        const step = path.find((candidate) => candidate.timeline === history.stopTimeline);
        // Recovery can follow a timeline only if it left the backup's timeline after the backup became consistent.
        if (step === undefined || (step.end !== null && step.end < history.stopLsn)) continue;
        if (timeline === latest) latestDescends = true;
        const end = index.runEnd(timeline, startSegno);
        if (end === null || end.segno < stopSegno) continue;
        // A timeline whose own WAL is never reached adds nothing over its parent's window.
        if (timeline !== history.stopTimeline && end.timeline !== timeline) continue;
        const lastName = index.name(end.timeline, end.segno);
        const lastItem = segmentItems.find((candidate) => candidate.name === lastName);
        report.windows.push({
          timeline,
          untilLsn: formatLsn((end.segno + 1n) * BigInt(segmentSize)),
          lastSegment: lastName,
          lastSegmentArchivedAt: lastItem?.entry.modified.toISOString() ?? null,
          latest: false,
        });
      }
      if (latestDescends) {
        const onPath = index.pathTo(latest).map((step) => step.timeline);
        const followed = [...report.windows].reverse().find((window) => onPath.includes(window.timeline));
        if (followed !== undefined) followed.latest = true;
      } else {
        add({
          severity: 'warning',
          code: 'latest-timeline',
          file: item.name,
          message: `backup "${history.label}" ("${item.name}"): recovery_target_timeline = 'latest' (the default) picks timeline ${latest}, which does not descend from this backup after its stop point; recovery with the default setting would fail`,
          hint: `set recovery_target_timeline to one of: ${report.windows.map((window) => window.timeline).join(', ')}`,
        });
      }
    }
    backupReports.push(report);
  }

  return backupReports;
}

/** The report: what was counted, found and decided. */
function summarize(
  run: VerifyRun,
  parts: { items: Item[]; segmentItems: Item[]; verdict: ClusterVerdict; timelines: TimelineReport[]; backups: BackupReport[]; started: number },
): Omit<VerifyReport, 'baseBackups'> {
  const { backend, options, quick, findings, progress } = run;
  const { items, segmentItems, timelines } = parts;
  const { recorded, segmentSize, clusters } = parts.verdict;
  const backupReports = parts.backups;
  const started = parts.started;
  const objects = {
    total: items.length,
    segments: items.filter((item) => item.kind === 'segment').length,
    partials: items.filter((item) => item.kind === 'partial').length,
    histories: items.filter((item) => item.kind === 'history').length,
    backups: items.filter((item) => item.kind === 'backup').length,
    other: items.filter((item) => item.kind === 'other').length,
    temp: items.filter((item) => item.kind === 'temp').length,
    documents: items.filter((item) => item.kind === 'document').length,
    checked: progress.done,
    bytesRead: quick ? 0 : progress.bytes,
  };
  const errors = findings.filter((finding) => finding.severity === 'error').length;
  return {
    repository: backend.describe(''),
    mode: quick ? 'quick' : 'full',
    scope: { backup: options.backup ?? null, from: options.from ?? null, to: options.to ?? null },
    segmentSize: segmentItems.length > 0 || recorded !== null ? segmentSize : null,
    objects,
    clusters,
    timelines,
    backups: backupReports,
    findings: findings.sort(compareFindings),
    errors,
    warnings: findings.length - errors,
    ok: errors === 0,
    durationMs: Date.now() - started,
  };
}

function countBy<T>(values: readonly T[], keyOf: (value: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(keyOf(value), (counts.get(keyOf(value)) ?? 0) + 1);
  return counts;
}

function mostCommon(counts: Map<string, number>): string | null {
  let best: string | null = null;
  let bestCount = 0;
  for (const [key, count] of counts) {
    if (count > bestCount) {
      best = key;
      bestCount = count;
    }
  }
  return best;
}

function segnoOfPosition(pos: string, segmentSize: number): bigint {
  return segmentNumber({ timeline: 0, log: Number.parseInt(pos.slice(0, 8), 16), seg: Number.parseInt(pos.slice(8, 16), 16) }, segmentSize);
}

function rangeReport(index: SegmentIndex, range: SegmentRange): RangeReport {
  return { first: index.name(range.timeline, range.first), last: index.name(range.timeline, range.last), count: Number(range.last - range.first + 1n) };
}

function compareFindings(a: Finding, b: Finding): number {
  if (a.severity !== b.severity) return a.severity === 'error' ? -1 : 1;
  const fileA = a.file ?? '';
  const fileB = b.file ?? '';
  return fileA < fileB ? -1 : fileA > fileB ? 1 : a.code < b.code ? -1 : a.code > b.code ? 1 : 0;
}
