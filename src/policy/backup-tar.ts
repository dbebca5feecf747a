// The tar format of base backups: a small ustar writer (pax records for long names) and a streaming
// reader for restore-backup. Our own rather than a package: base backups need exactly regular files,
// directories and symlinks with sizes fixed before the data (a file that shrinks is padded, see
// backup.ts), and the reader must hand file data on in the chunks it arrives in; `tar -x` (GNU, bsdtar)
// reads what this writes.

/** One tar block. */
export const BLOCK = 512;

/** An entry as the writer takes it and the reader yields it. */
export interface TarEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits (e.g. 0o600). */
  mode: number;
  /** File size in bytes (0 for others). */
  size: number;
  /** Modification time, seconds since the epoch. */
  mtime: number;
  /** Symlink target. */
  linkTarget?: string;
  uid?: number;
  gid?: number;
}

const ZERO_BLOCK = Buffer.alloc(BLOCK);

function writeOctal(block: Buffer, offset: number, width: number, value: number): void {
  const text = value.toString(8).padStart(width - 1, '0');
  block.write(text, offset, width - 1, 'ascii');
  block[offset + width - 1] = 0;
}

/** A pax extended header ('x') carrying the records ustar cannot hold. */
function paxHeader(records: Record<string, string>, forPath: string): Buffer {
  let body = '';
  for (const [key, value] of Object.entries(records)) {
    const record = ` ${key}=${value}\n`;
    let length = Buffer.byteLength(record) + 1;
    while (String(length).length + Buffer.byteLength(record) !== length) length = String(length).length + Buffer.byteLength(record);
    body += `${length}${record}`;
  }
  const data = Buffer.from(body, 'utf8');
  const header = ustarHeader({ path: `PaxHeader/${forPath.slice(-80).replace(/[^\x20-\x7e]/g, '_')}`, type: 'file', mode: 0o644, size: data.length, mtime: 0 }, 'x');
  return Buffer.concat([header, data, Buffer.alloc(padding(data.length))]);
}

function ustarHeader(entry: TarEntry, typeFlag?: string): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(entry.path.slice(0, 100), 0, 100, 'utf8');
  writeOctal(block, 100, 8, entry.mode & 0o7777);
  writeOctal(block, 108, 8, Math.min(entry.uid ?? 0, 0o7777777));
  writeOctal(block, 116, 8, Math.min(entry.gid ?? 0, 0o7777777));
  writeOctal(block, 124, 12, entry.size < 8 ** 11 ? entry.size : 0);
  writeOctal(block, 136, 12, Math.max(0, Math.min(Math.floor(entry.mtime), 8 ** 11 - 1)));
  block.write(typeFlag ?? (entry.type === 'file' ? '0' : entry.type === 'directory' ? '5' : '2'), 156, 1, 'ascii');
  if (entry.linkTarget !== undefined) block.write(entry.linkTarget.slice(0, 100), 157, 100, 'utf8');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  block.write('postgres', 265, 32, 'ascii');
  block.write('postgres', 297, 32, 'ascii');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return block;
}

/** Zero bytes that pad `size` bytes of data to a whole block. */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** The header block(s) of an entry: a pax header first when the path, link or size needs one. */
export function tarHeader(entry: TarEntry): Buffer {
  const records: Record<string, string> = {};
  const fits = (text: string): boolean => Buffer.byteLength(text) <= 100 && /^[\x20-\x7e]*$/.test(text);
  if (!fits(entry.path)) records.path = entry.path;
  if (entry.linkTarget !== undefined && !fits(entry.linkTarget)) records.linkpath = entry.linkTarget;
  if (entry.size >= 8 ** 11) records.size = String(entry.size);
  const header = ustarHeader(entry);
  return Object.keys(records).length === 0 ? header : Buffer.concat([paxHeader(records, entry.path), header]);
}

/** The end of an archive: two zero blocks. */
export function tarEnd(): Buffer {
  return Buffer.concat([ZERO_BLOCK, ZERO_BLOCK]);
}

/** A byte source the reader pulls from: chunks of any size. */
class ChunkReader {
  private chunk: Buffer = Buffer.alloc(0);
  private readonly iterator: AsyncIterator<Buffer>;
  constructor(source: AsyncIterable<Buffer>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  /** Up to `max` bytes (at least one), or null at the end of the source. */
  async take(max: number): Promise<Buffer | null> {
    while (this.chunk.length === 0) {
      const next = await this.iterator.next();
      if (next.done === true) return null;
      this.chunk = next.value;
    }
    const part = this.chunk.subarray(0, Math.min(max, this.chunk.length));
    this.chunk = this.chunk.subarray(part.length);
    return part;
  }

  /** Exactly `length` bytes; null at a clean end before the first byte; throws on a cut. */
  async exact(length: number): Promise<Buffer | null> {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < length) {
      const part = await this.take(length - have);
      if (part === null) {
        if (have === 0) return null;
        throw new Error(`tar archive ends in the middle of a block (${have} of ${length} bytes)`);
      }
      parts.push(part);
      have += part.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}

function readString(block: Buffer, offset: number, width: number): string {
  const field = block.subarray(offset, offset + width);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? width : end).toString('utf8');
}

function readOctal(block: Buffer, offset: number, width: number): number {
  const text = readString(block, offset, width).trim();
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function parsePax(data: Buffer): Record<string, string> {
  const records: Record<string, string> = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space < 0) break;
    const length = Number(data.subarray(at, space).toString('ascii'));
    if (!Number.isInteger(length) || length <= 0) throw new Error('tar archive has a malformed pax record');
    const record = data.subarray(space + 1, at + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    records[record.slice(0, equals)] = record.slice(equals + 1);
    at += length;
  }
  return records;
}

/**
 * Reads a tar archive from a stream of chunks: calls `onEntry` for each entry, and for a file passes
 * its data, in the chunks it arrives in, to the sink `onEntry` returns. Throws on a damaged header
 * (checksum) or an archive cut short; ends at the two zero blocks.
 */
export async function readTar(
  source: AsyncIterable<Buffer>,
  onEntry: (entry: TarEntry) => Promise<{ write(data: Buffer): Promise<void> | void; end(): Promise<void> } | null>,
): Promise<void> {
  const reader = new ChunkReader(source);
  let pax: Record<string, string> = {};
  let longName: string | null = null;
  for (;;) {
    const block = await reader.exact(BLOCK);
    if (block === null) throw new Error('tar archive ends without its end-of-archive blocks');
    if (block.equals(ZERO_BLOCK)) return;
    const stored = readOctal(block, 148, 8);
    let sum = 0;
    for (let index = 0; index < BLOCK; index += 1) sum += index >= 148 && index < 156 ? 0x20 : block[index]!;
    if (sum !== stored) throw new Error('tar archive has a damaged header (checksum mismatch)');
    const type = String.fromCharCode(block[156]!);
    const size = pax.size !== undefined ? Number(pax.size) : readOctal(block, 124, 12);
    if (type === 'x' || type === 'g' || type === 'L') {
      const data = (await reader.exact(size + padding(size))) ?? Buffer.alloc(0);
      if (type === 'x') pax = { ...pax, ...parsePax(data.subarray(0, size)) };
      if (type === 'L') longName = readString(data, 0, size);
      continue;
    }
    const prefix = readString(block, 345, 155);
    const name = pax.path ?? longName ?? (prefix === '' ? readString(block, 0, 100) : `${prefix}/${readString(block, 0, 100)}`);
    const entry: TarEntry = {
      path: name.replace(/^\.\//, '').replace(/\/$/, ''),
      type: type === '5' ? 'directory' : type === '2' ? 'symlink' : 'file',
      mode: readOctal(block, 100, 8),
      size: type === '0' || type === '\0' || type === '7' ? size : 0,
      mtime: readOctal(block, 136, 12),
      ...(type === '2' ? { linkTarget: pax.linkpath ?? readString(block, 157, 100) } : {}),
    };
    pax = {};
    longName = null;
    if (!['0', '\0', '7', '5', '2'].includes(type)) throw new Error(`tar archive holds an entry of a type base backups never have ("${type}" for "${name}")`);
    const sink = await onEntry(entry);
    let left = entry.size;
    while (left > 0) {
      const part = await reader.take(left);
      if (part === null) throw new Error(`tar archive ends inside "${entry.path}"`);
      left -= part.length;
      if (sink !== null) await sink.write(part);
    }
    if (sink !== null) await sink.end();
    const pad = padding(entry.size);
    if (pad > 0 && (await reader.exact(pad)) === null) throw new Error(`tar archive ends inside "${entry.path}"`);
  }
}
