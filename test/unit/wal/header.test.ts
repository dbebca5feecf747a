import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkSegmentHeader, parseLongPageHeader, PAGE_MAGIC_VERSIONS } from '../../../src/wal/header.js';

// The first 40 bytes of a real segment archived by PostgreSQL 15 (initdb --wal-segsize=1).
const realHead = readFileSync(new URL('../../fixtures/pg15-1mib-000000010000000000000006.head', import.meta.url));

/** Builds a long header like the server's, for cases a real cluster cannot easily produce. */
function header(fields: { magic?: number; info?: number; tli?: number; pageaddr?: bigint; sysid?: bigint; segSize?: number; blckSz?: number }): Buffer {
  const buffer = Buffer.alloc(40);
  buffer.writeUInt16LE(fields.magic ?? 0xd110, 0);
  buffer.writeUInt16LE(fields.info ?? 0x2, 2);
  buffer.writeUInt32LE(fields.tli ?? 1, 4);
  buffer.writeBigUInt64LE(fields.pageaddr ?? 0n, 8);
  buffer.writeBigUInt64LE(fields.sysid ?? 7000000000000000001n, 24);
  buffer.writeUInt32LE(fields.segSize ?? 16 * 1024 * 1024, 32);
  buffer.writeUInt32LE(fields.blckSz ?? 8192, 36);
  return buffer;
}

describe('long page header', () => {
  it('decodes a real PostgreSQL 15 segment header', () => {
    const parsed = parseLongPageHeader(realHead);
    expect(parsed).toEqual({
      magic: 0xd110,
      serverVersion: '15',
      info: 0x7,
      timeline: 1,
      pageAddress: 0x600000n,
      remainingLength: 0xd9,
      systemIdentifier: '7710712004516076439',
      segmentSize: 1048576,
      blockSize: 8192,
    });
  });

  it('accepts the real header under its own name with the full file size', () => {
    expect(checkSegmentHeader('000000010000000000000006', realHead, { fileSize: 1048576 }).problems).toEqual([]);
  });

  it('reports a header that belongs to another segment (renamed or misplaced file)', () => {
    expect(checkSegmentHeader('000000010000000000000007', realHead).problems).toEqual([
      '"000000010000000000000007" header page address 0/600000 does not match its name (expected 0/700000 for 1048576-byte segments)',
    ]);
  });

  it('reports a truncated segment', () => {
    expect(checkSegmentHeader('000000010000000000000006', realHead, { fileSize: 4096 }).problems).toEqual([
      '"000000010000000000000006" is 4096 bytes but its header gives a segment size of 1048576 bytes (truncated?)',
    ]);
  });

  it('reports too few bytes for a header', () => {
    expect(checkSegmentHeader('000000010000000000000006', realHead.subarray(0, 10)).problems).toEqual([
      '"000000010000000000000006" is too short for a WAL page header (10 bytes, need 40)',
    ]);
  });

  it('reports a zero-filled first page', () => {
    expect(checkSegmentHeader('000000010000000000000006', Buffer.alloc(40)).problems).toEqual([
      '"000000010000000000000006" has no WAL page header (the first page is zero-filled)',
    ]);
  });

  it('names an unknown magic', () => {
    const problems = checkSegmentHeader('000000010000000000000001', header({ magic: 0x1234, pageaddr: 0x1000000n })).problems;
    expect(problems).toEqual(['"000000010000000000000001" has an unknown WAL page magic 0x1234 (not a PostgreSQL 9.6..18 segment, or damaged)']);
  });

  it('maps every documented magic to its major version', () => {
    expect([...PAGE_MAGIC_VERSIONS.values()]).toEqual(['9.6', '10', '11', '12', '13', '14', '15', '16', '17', '18']);
    expect(parseLongPageHeader(header({ magic: 0xd113 }))?.serverVersion).toBe('16');
    expect(parseLongPageHeader(header({ magic: 0xd118 }))?.serverVersion).toBe('18');
  });

  it('uses the segment size from the header for the log/seg arithmetic (16 MiB, 1 GiB)', () => {
    // 16 MiB: 256 segments per log; 00000001 00000002 00000003 = segment 2*256+3
    expect(checkSegmentHeader('000000010000000200000003', header({ pageaddr: (2n * 256n + 3n) * 16777216n })).problems).toEqual([]);
    expect(checkSegmentHeader('000000010000000200000003', header({ segSize: 1 << 30, pageaddr: (2n * 4n + 3n) << 30n })).problems).toEqual([]);
    expect(checkSegmentHeader('000000010000000200000004', header({ segSize: 1 << 30, pageaddr: (2n * 4n + 4n) << 30n })).problems).toEqual([
      '"000000010000000200000004" has a segment field 0x4 too large for 1073741824-byte segments',
    ]);
  });

  it('accepts an ancestor timeline on the first page of a new timeline, refuses others', () => {
    const copied = header({ tli: 1, pageaddr: 5n * 16777216n });
    expect(checkSegmentHeader('000000020000000000000005', copied, { ancestors: [1] }).problems).toEqual([]);
    expect(checkSegmentHeader('000000030000000000000005', copied, { ancestors: [2] }).problems).toEqual([
      '"000000030000000000000005" first page was written on timeline 1, which is not timeline 3 nor one of its ancestors',
    ]);
    expect(checkSegmentHeader('000000010000000000000005', header({ tli: 2, pageaddr: 5n * 16777216n })).problems).toHaveLength(1);
  });

  it('reports a missing long-header flag and a bad block size', () => {
    expect(checkSegmentHeader('000000010000000000000000', header({ info: 0x1, blckSz: 1000 })).problems).toEqual([
      '"000000010000000000000000" first page lacks the long-header flag (xlp_info 0x1)',
      '"000000010000000000000000" header gives an invalid WAL block size 1000',
    ]);
  });

  it('checks .partial files like segments and refuses other names', () => {
    expect(checkSegmentHeader('000000010000000000000006.partial', realHead).problems).toEqual([]);
    expect(checkSegmentHeader('00000002.history', realHead).problems).toEqual(['"00000002.history" is not a segment name']);
  });
});
