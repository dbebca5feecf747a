// WAL file names: validation before anything touches storage, classification, and where each kind lives in a repo.
import { WalvaultError } from '../core/errors.js';

/** The kinds of file PostgreSQL archives and asks back. */
export type WalFileKind = 'segment' | 'partial' | 'history' | 'backup' | 'other';

const SEGMENT = /^[0-9A-F]{24}$/;
const PARTIAL = /^[0-9A-F]{24}\.partial$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;
const BACKUP = /^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$/;
const ALLOWED = /^[A-Za-z0-9.]{1,64}$/;

/** Top-level folder of a repository that holds archived files. */
export const WAL_PREFIX = 'wal/';

/**
 * Refuses a name PostgreSQL would never pass as %f: it must be 1..64 ASCII letters, digits and dots,
 * and not `.` or `..`. This runs before any storage access, so `../../etc/passwd` never becomes a path.
 */
export function validateFileName(name: string): string {
  if (!ALLOWED.test(name) || name === '.' || name === '..') {
    throw new WalvaultError('usage', `invalid WAL file name "${name}": expected 1 to 64 ASCII letters, digits and dots, no path separators`, {
      hint: 'pass %f (the file name only) as the name argument, e.g. archive_command = \'walvault-archive --repo=URL %p %f\'',
    });
  }
  return name;
}

/** Tells which kind of WAL file a (valid) name is. */
export function classify(name: string): WalFileKind {
  if (SEGMENT.test(name)) return 'segment';
  if (PARTIAL.test(name)) return 'partial';
  if (HISTORY.test(name)) return 'history';
  if (BACKUP.test(name)) return 'backup';
  return 'other';
}

/**
 * Repository key of a file name. Files named after a segment go into a folder per timeline and log
 * (`wal/TTTTTTTTLLLLLLLL/`) so no folder grows past a few thousand entries; everything else
 * (timeline history files, other names) sits in `wal/` itself.
 */
export function objectKey(name: string): string {
  const kind = classify(name);
  if (kind === 'segment' || kind === 'partial' || kind === 'backup') return `${WAL_PREFIX}${name.slice(0, 16)}/${name}`;
  return `${WAL_PREFIX}${name}`;
}

/** The file name back from a key produced by objectKey. */
export function nameOfKey(key: string): string {
  const slash = key.lastIndexOf('/');
  return slash < 0 ? key : key.slice(slash + 1);
}

/** Timeline, log and seg fields of a segment-like name (segment, partial or backup). */
export interface SegmentId {
  timeline: number;
  log: number;
  seg: number;
}

/** Parses the 24 hex digits at the start of a segment, .partial or .backup name; null for other kinds. */
export function parseSegmentName(name: string): SegmentId | null {
  const kind = classify(name);
  if (kind !== 'segment' && kind !== 'partial' && kind !== 'backup') return null;
  return {
    timeline: Number.parseInt(name.slice(0, 8), 16),
    log: Number.parseInt(name.slice(8, 16), 16),
    seg: Number.parseInt(name.slice(16, 24), 16),
  };
}

/** Segments per "log" (the middle 8 hex digits) for a segment size. */
export function segmentsPerLog(segmentSize: number): number {
  return 0x1_0000_0000 / segmentSize;
}

/** Absolute segment number of a segment id: log × (2^32 / segment size) + seg. */
export function segmentNumber(id: SegmentId, segmentSize: number): bigint {
  return BigInt(id.log) * BigInt(segmentsPerLog(segmentSize)) + BigInt(id.seg);
}

/** File name of a segment number on a timeline. */
export function segmentFileName(timeline: number, segno: bigint, segmentSize: number): string {
  const perLog = BigInt(segmentsPerLog(segmentSize));
  const hex8 = (value: bigint | number): string => value.toString(16).toUpperCase().padStart(8, '0');
  return `${hex8(timeline)}${hex8(segno / perLog)}${hex8(segno % perLog)}`;
}

/** Formats an LSN the way PostgreSQL prints it, e.g. `0/3000148`. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** Parses `X/Y` into an LSN. */
export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!match) throw new WalvaultError('usage', `invalid LSN "${text}"`, { hint: 'write an LSN as PostgreSQL prints it, e.g. 0/3000148' });
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/**
 * The LSN a byte offset of a segment file corresponds to, when the segment size is known
 * (it is the file's own size for a complete segment). Null for files that are not segments.
 */
export function lsnAtOffset(name: string, offset: number, segmentSize: number): bigint | null {
  const id = parseSegmentName(name);
  if (id === null || classify(name) === 'backup') return null;
  if (!isValidSegmentSize(segmentSize)) return null;
  return segmentNumber(id, segmentSize) * BigInt(segmentSize) + BigInt(offset);
}

/** wal_segment_size must be a power of two from 1 MiB to 1 GiB. */
export function isValidSegmentSize(size: number): boolean {
  return size >= 1 << 20 && size <= 1 << 30 && (size & (size - 1)) === 0;
}
