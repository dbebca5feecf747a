// The long page header at the start of every WAL segment: which cluster, which server version, which segment.
import { classify, isValidSegmentSize, parseSegmentName, segmentNumber, formatLsn } from './names.js';

/** Bytes of the long page header; reading this many bytes of a segment is enough for every check here. */
export const LONG_HEADER_SIZE = 40;

/** xlp_info flag: the page starts with the long header (always set on a segment's first page). */
export const XLP_LONG_HEADER = 0x0002;

/** XLOG_PAGE_MAGIC of each PostgreSQL major version: the magic says which server wrote the WAL. */
export const PAGE_MAGIC_VERSIONS: ReadonlyMap<number, string> = new Map([
  [0xd093, '9.6'],
  [0xd097, '10'],
  [0xd098, '11'],
  [0xd101, '12'],
  [0xd106, '13'],
  [0xd10d, '14'],
  [0xd110, '15'],
  [0xd113, '16'],
  [0xd116, '17'],
  [0xd118, '18'],
]);

/** The fields of a segment's long page header (little-endian, as written by every common platform). */
export interface LongPageHeader {
  /** xlp_magic; tells the server major version. */
  magic: number;
  /** Server major version for the magic, or null when the magic is unknown. */
  serverVersion: string | null;
  /** xlp_info flags. */
  info: number;
  /** xlp_tli: the timeline the page was written on. */
  timeline: number;
  /** xlp_pageaddr: the LSN of the page's first byte. */
  pageAddress: bigint;
  /** xlp_rem_len: bytes of a record continued from the previous segment. */
  remainingLength: number;
  /** xlp_sysid: the database system identifier, as pg_controldata prints it (decimal). */
  systemIdentifier: string;
  /** xlp_seg_size: wal_segment_size of the cluster. */
  segmentSize: number;
  /** xlp_xlog_blcksz: WAL block size (8192 by default). */
  blockSize: number;
}

/** Decodes the first 40 bytes of a segment; null when fewer than 40 bytes are given. */
export function parseLongPageHeader(bytes: Uint8Array): LongPageHeader | null {
  if (bytes.length < LONG_HEADER_SIZE) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, LONG_HEADER_SIZE);
  const magic = view.getUint16(0, true);
  return {
    magic,
    serverVersion: PAGE_MAGIC_VERSIONS.get(magic) ?? null,
    info: view.getUint16(2, true),
    timeline: view.getUint32(4, true),
    pageAddress: view.getBigUint64(8, true),
    remainingLength: view.getUint32(16, true),
    systemIdentifier: view.getBigUint64(24, true).toString(10),
    segmentSize: view.getUint32(32, true),
    blockSize: view.getUint32(36, true),
  };
}

/** What checkSegmentHeader concluded about one segment (or .partial) file. */
export interface SegmentHeaderCheck {
  /** The header, when 40 bytes were there to decode. */
  header: LongPageHeader | null;
  /** Problems found, each a complete lower-case sentence naming the file; empty when the header is sound. */
  problems: string[];
}

/** Options for checkSegmentHeader. */
export interface SegmentHeaderCheckOptions {
  /** Size of the original file in bytes, when known: a complete segment is exactly xlp_seg_size long. */
  fileSize?: number;
  /**
   * Timelines the first page may legitimately carry besides the file's own: the first segment of a
   * new timeline is a copy of the parent's segment up to the switch point, so its header can name an
   * ancestor. Undefined accepts any lower timeline.
   */
  ancestors?: readonly number[];
}

/**
 * Checks the long header of a segment or .partial file against its name: known magic, long-header flag,
 * a valid segment and block size, the page address equal to the segment number × segment size, and a
 * timeline that is the file's own or an ancestor's.
 */
export function checkSegmentHeader(name: string, firstBytes: Uint8Array, options: SegmentHeaderCheckOptions = {}): SegmentHeaderCheck {
  const problems: string[] = [];
  const id = parseSegmentName(name);
  const kind = classify(name);
  if (id === null || (kind !== 'segment' && kind !== 'partial')) {
    return { header: null, problems: [`"${name}" is not a segment name`] };
  }
  const header = parseLongPageHeader(firstBytes);
  if (header === null) {
    return { header: null, problems: [`"${name}" is too short for a WAL page header (${firstBytes.length} bytes, need ${LONG_HEADER_SIZE})`] };
  }
  if (header.magic === 0 && header.pageAddress === 0n && header.systemIdentifier === '0') {
    return { header, problems: [`"${name}" has no WAL page header (the first page is zero-filled)`] };
  }
  if (header.serverVersion === null) {
    problems.push(`"${name}" has an unknown WAL page magic 0x${header.magic.toString(16).padStart(4, '0')} (not a PostgreSQL 9.6..18 segment, or damaged)`);
  }
  if ((header.info & XLP_LONG_HEADER) === 0) {
    problems.push(`"${name}" first page lacks the long-header flag (xlp_info 0x${header.info.toString(16)})`);
  }
  if (!isValidSegmentSize(header.segmentSize)) {
    problems.push(`"${name}" header gives an invalid segment size ${header.segmentSize}`);
  } else {
    const expected = segmentNumber(id, header.segmentSize) * BigInt(header.segmentSize);
    if (header.pageAddress !== expected) {
      problems.push(
        `"${name}" header page address ${formatLsn(header.pageAddress)} does not match its name (expected ${formatLsn(expected)} for ${header.segmentSize}-byte segments)`,
      );
    }
    if (options.fileSize !== undefined && options.fileSize !== header.segmentSize) {
      problems.push(`"${name}" is ${options.fileSize} bytes but its header gives a segment size of ${header.segmentSize} bytes (truncated?)`);
    }
    if (id.seg >= 0x1_0000_0000 / header.segmentSize) {
      problems.push(`"${name}" has a segment field 0x${id.seg.toString(16).toUpperCase()} too large for ${header.segmentSize}-byte segments`);
    }
  }
  if (header.blockSize < 1024 || header.blockSize > 65536 || (header.blockSize & (header.blockSize - 1)) !== 0) {
    problems.push(`"${name}" header gives an invalid WAL block size ${header.blockSize}`);
  }
  if (header.timeline !== id.timeline) {
    const ancestorOk = header.timeline < id.timeline && (options.ancestors === undefined || options.ancestors.includes(header.timeline));
    if (!ancestorOk) {
      problems.push(`"${name}" first page was written on timeline ${header.timeline}, which is not timeline ${id.timeline} nor one of its ancestors`);
    }
  }
  return { header, problems };
}

/**
 * Whether bytes look like a real segment's long page header for `name`: a PostgreSQL page magic
 * (0xD0xx/0xD1xx, so versions newer than this table still count), the long-header flag, a valid segment
 * size and the page address the name implies. Guards use it to leave files that are not WAL alone.
 */
export function isPlausibleLongHeader(name: string, header: LongPageHeader | null): boolean {
  if (header === null) return false;
  const id = parseSegmentName(name);
  if (id === null || header.magic < 0xd000 || header.magic > 0xd1ff || (header.info & XLP_LONG_HEADER) === 0) return false;
  if (!isValidSegmentSize(header.segmentSize)) return false;
  return header.pageAddress === segmentNumber(id, header.segmentSize) * BigInt(header.segmentSize);
}
