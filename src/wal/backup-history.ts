// Backup history files (`*.backup`): where a base backup starts and stops in the WAL, so verify and cleanup know what it needs.
import { WalvaultError } from '../core/errors.js';
import { classify, parseLsn } from './names.js';

/** A parsed backup history file, as pg_backup_stop / pg_basebackup write it. */
export interface BackupHistory {
  /** File name, e.g. `000000010000000000000002.00000028.backup`. */
  fileName: string;
  /** LABEL; the empty string when absent. */
  label: string;
  startLsn: bigint;
  /** Segment file named on the START WAL LOCATION line. */
  startSegment: string;
  stopLsn: bigint;
  /** Segment file named on the STOP WAL LOCATION line. */
  stopSegment: string;
  checkpointLsn: bigint | null;
  startTimeline: number;
  /** STOP TIMELINE (absent before 9.x-era servers); the start timeline when missing. */
  stopTimeline: number;
  /** START TIME / STOP TIME exactly as the server wrote them (its log_timezone). */
  startTime: string | null;
  stopTime: string | null;
  /** BACKUP METHOD (e.g. streamed) and BACKUP FROM (primary/standby), when present. */
  method: string | null;
  from: string | null;
}

/**
 * Parses a backup history file. Lines are `KEY: value`; START/STOP WAL LOCATION carry `X/Y (file NAME)`.
 * Throws a 'corrupt' error when the start or stop location is missing or malformed.
 */
export function parseBackupHistory(fileName: string, text: string): BackupHistory {
  const fields = new Map<string, string>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/\r$/, '');
    const colon = line.indexOf(': ');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim();
    if (!fields.has(key)) fields.set(key, line.slice(colon + 2));
  }
  const location = (key: string): { lsn: bigint; segment: string } => {
    const value = fields.get(key);
    const match = value === undefined ? null : /^([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}) \(file ([0-9A-F]{24})\)\s*$/.exec(value);
    if (!match) {
      throw new WalvaultError('corrupt', `backup history file "${fileName}" has no valid ${key} line`, {
        hint: 'the file is damaged or was not written by PostgreSQL; compare it with the backup\'s backup_label',
      });
    }
    return { lsn: parseLsn(match[1]!), segment: match[2]! };
  };
  const start = location('START WAL LOCATION');
  const stop = location('STOP WAL LOCATION');
  const checkpoint = fields.get('CHECKPOINT LOCATION');
  const timeline = (key: string): number | null => {
    const value = fields.get(key);
    if (value === undefined || !/^\d+\s*$/.test(value)) return null;
    return Number.parseInt(value, 10);
  };
  const startTimeline = timeline('START TIMELINE') ?? Number.parseInt(start.segment.slice(0, 8), 16);
  return {
    fileName,
    label: fields.get('LABEL') ?? '',
    startLsn: start.lsn,
    startSegment: start.segment,
    stopLsn: stop.lsn,
    stopSegment: stop.segment,
    checkpointLsn: checkpoint !== undefined && /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}\s*$/.test(checkpoint) ? parseLsn(checkpoint) : null,
    startTimeline,
    stopTimeline: timeline('STOP TIMELINE') ?? Number.parseInt(stop.segment.slice(0, 8), 16),
    startTime: fields.get('START TIME') ?? null,
    stopTime: fields.get('STOP TIME') ?? null,
    method: fields.get('BACKUP METHOD') ?? null,
    from: fields.get('BACKUP FROM') ?? null,
  };
}

/** The start segment a backup history file's own name points at (its first 24 characters). */
export function startSegmentOfBackupName(name: string): string | null {
  return classify(name) === 'backup' ? name.slice(0, 24) : null;
}

/**
 * Converts a server timestamp such as `2026-11-21 19:40:00 UTC` to a Date; null when the zone is not
 * UTC/GMT or a numeric offset (other zone abbreviations are ambiguous).
 */
export function parseServerTime(text: string | null): Date | null {
  if (text === null) return null;
  const match = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.\d+)? ?(UTC|GMT|[+-]\d{2}(?::?\d{2})?)$/.exec(text.trim());
  if (!match) return null;
  let zone = match[3]!;
  if (zone === 'UTC' || zone === 'GMT') zone = 'Z';
  else if (/^[+-]\d{2}$/.test(zone)) zone = `${zone}:00`;
  else if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const date = new Date(`${match[1]}T${match[2]}${zone}`);
  return Number.isNaN(date.getTime()) ? null : date;
}
