import { describe, expect, it } from 'vitest';
import { classify, formatLsn, lsnAtOffset, objectKey, parseLsn, segmentFileName, segmentNumber, parseSegmentName, validateFileName } from '../../src/wal/names.js';

describe('WAL file names', () => {
  it('classifies every kind PostgreSQL archives', () => {
    expect(classify('000000010000000000000001')).toBe('segment');
    expect(classify('000000010000000000000001.partial')).toBe('partial');
    expect(classify('00000002.history')).toBe('history');
    expect(classify('000000010000000000000002.00000028.backup')).toBe('backup');
    expect(classify('00000001000000000000000g')).toBe('other');
  });

  it.each(['../x', 'a/b', '', '.', '..', 'x'.repeat(65), 'a b', 'a~b', 'ä'])('refuses %j', (name) => {
    expect(() => validateFileName(name)).toThrow(/invalid WAL file name/);
  });

  it('accepts 64 characters of letters, digits and dots', () => {
    expect(validateFileName('A.'.repeat(32))).toBe('A.'.repeat(32));
  });

  it('places segments in a folder per timeline and log, history files at the top', () => {
    expect(objectKey('0000000200000003000000FF')).toBe('wal/0000000200000003/0000000200000003000000FF');
    expect(objectKey('0000000200000003000000FF.partial')).toBe('wal/0000000200000003/0000000200000003000000FF.partial');
    expect(objectKey('00000002.history')).toBe('wal/00000002.history');
  });

  it('maps names to segment numbers and back for every segment size', () => {
    expect(segmentNumber(parseSegmentName('0000000100000001000000FF')!, 16 << 20)).toBe(256n + 255n);
    expect(segmentFileName(1, 511n, 16 << 20)).toBe('0000000100000001000000FF');
    expect(segmentFileName(3, 4096n, 1 << 20)).toBe('000000030000000100000000');
    expect(segmentNumber(parseSegmentName('000000030000000100000000')!, 1 << 20)).toBe(4096n);
  });

  it('turns a byte offset into the LSN PostgreSQL would print', () => {
    expect(formatLsn(lsnAtOffset('000000010000000000000003', 0x148, 16 << 20)!)).toBe('0/3000148');
    expect(formatLsn(lsnAtOffset('0000000100000001000000FF', 0, 16 << 20)!)).toBe('1/FF000000');
    expect(lsnAtOffset('00000002.history', 5, 16 << 20)).toBeNull();
    expect(lsnAtOffset('000000010000000000000003', 5, 12345)).toBeNull();
    expect(parseLsn('1/FF000000')).toBe(0x1ff000000n);
    expect(() => parseLsn('nope')).toThrow(/invalid LSN/);
  });
});
