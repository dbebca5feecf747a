// `walvault verify`, reading phase: one object read through its decoder against the hash recorded when
// it was archived (or, quick, its metadata only), and the segment header checks; the rest of verify
// (src/policy/verify.ts) reasons over what this finds.
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Backend, ListEntry, ObjectMeta, OpContext } from '../backend/types.js';
import type { DecodeOptions } from '../codec/index.js';
import { WalvaultError } from '../core/errors.js';
import { HashingStream } from '../core/hash.js';
import { checkSegmentHeader, type LongPageHeader } from '../wal/header.js';
import { isValidSegmentSize, type WalFileKind } from '../wal/names.js';
import { decodeStored } from './stored.js';
import type { Finding } from './verify.js';

/** An object of the repository, classified, with what reading it found. */
export interface Item {
  key: string;
  name: string;
  kind: WalFileKind | 'temp' | 'document' | 'base-backup';
  entry: ListEntry;
  meta: ObjectMeta | null;
  /** Original size: bytes decoded (full) or recorded (quick); null when unknown. */
  size: number | null;
  /** Content matched its recorded hash (or had none and read fine); false once a content finding was made. */
  intact: boolean;
  header: LongPageHeader | null;
  text: string | null;
  segno: bigint | null;
  timeline: number | null;
}

/** Reads one object through the decoder, checks size and hash against its metadata, and keeps what analysis needs. */
export async function readAndCheck(backend: Backend, item: Item, decode: DecodeOptions, ctx: OpContext, add: (finding: Finding) => void): Promise<void> {
  const stored = await backend.read(item.key, ctx);
  if (stored === null) {
    item.intact = false;
    add({ severity: 'error', code: 'vanished', file: item.name, message: `"${backend.describe(item.key)}" disappeared while verify was running` });
    return;
  }
  item.meta = stored.meta;
  const small = item.kind === 'history' || item.kind === 'backup';
  const hasher = await HashingStream.create({ headLimit: small ? 1 << 20 : 40 });
  try {
    const decoded = await decodeStored(stored, decode);
    await pipeline([decoded.content, hasher, new Writable({ write: (_chunk, _encoding, callback) => callback() })], { signal: ctx.signal });
    await decoded.finished;
  } catch (error) {
    stored.body.destroy();
    if (ctx.signal.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : error;
    item.intact = false;
    const detail = error instanceof WalvaultError ? error.message : (error as Error).message;
    // A missing or wrong key is not damage: say which key to pass instead of blaming the bytes.
    const hint = error instanceof WalvaultError && error.kind === 'key'
      ? `${error.hint ?? 'pass the age identity that can decrypt it'} (walvault verify --decrypt-identity-file FILE)`
      : 'the stored bytes are damaged; restore of this file would fail';
    add({ severity: 'error', code: 'unreadable', file: item.name, message: `"${backend.describe(item.key)}" cannot be decoded: ${detail}`, hint });
    return;
  }
  item.size = hasher.bytes;
  const head = hasher.head;
  if (stored.meta === null) {
    add({ severity: 'warning', code: 'no-hash', file: item.name, message: `"${backend.describe(item.key)}" has no recorded content hash (archived by another tool, or interrupted); its content cannot be checked`, hint: 'if PostgreSQL still has the file, archiving it again records the hash' });
  } else if (hasher.bytes !== stored.meta.contentSize) {
    item.intact = false;
    add({ severity: 'error', code: 'truncated', file: item.name, message: `"${backend.describe(item.key)}" holds ${hasher.bytes} bytes, but ${stored.meta.contentSize} were archived`, hint: 'the stored copy is truncated or overwritten; restore of this file would fail' });
    return;
  } else if (hasher.digest() !== stored.meta.contentHash) {
    item.intact = false;
    add({ severity: 'error', code: 'hash-mismatch', file: item.name, message: `"${backend.describe(item.key)}" does not match the hash recorded when it was archived (recorded ${stored.meta.contentHash}, read ${hasher.digest()})`, hint: 'the stored bytes changed after archiving (bit rot, tampering, a bad disk); restore refuses this file' });
    return;
  }
  if (small) {
    item.text = head.toString('utf8');
    return;
  }
  checkHeader(item, head, hasher.bytes, add);
}

/** Quick mode: metadata only, no content. */
export async function statAndCheck(backend: Backend, item: Item, ctx: OpContext, add: (finding: Finding) => void): Promise<void> {
  const stat = await backend.stat(item.key, ctx);
  if (!stat.exists) {
    item.intact = false;
    add({ severity: 'error', code: 'vanished', file: item.name, message: `"${backend.describe(item.key)}" disappeared while verify was running` });
    return;
  }
  item.meta = stat.meta;
  if (stat.meta === null) {
    add({ severity: 'warning', code: 'no-hash', file: item.name, message: `"${backend.describe(item.key)}" has no recorded content hash (archived by another tool, or interrupted); its content cannot be checked`, hint: 'if PostgreSQL still has the file, archiving it again records the hash' });
    return;
  }
  item.size = stat.meta.contentSize;
  if (!/^[0-9a-f]{16}$/.test(stat.meta.contentHash)) {
    item.intact = false;
    add({ severity: 'error', code: 'bad-metadata', file: item.name, message: `"${backend.describe(item.key)}" has an invalid recorded hash "${stat.meta.contentHash}"` });
  } else if (stat.meta.codec === 'none' && stat.meta.encryption === 'none' && stat.storedSize !== stat.meta.contentSize) {
    item.intact = false;
    add({ severity: 'error', code: 'truncated', file: item.name, message: `"${backend.describe(item.key)}" holds ${stat.storedSize} bytes, but ${stat.meta.contentSize} were archived`, hint: 'the stored copy is truncated or overwritten; restore of this file would fail' });
  } else if (!isValidSegmentSize(stat.meta.contentSize)) {
    item.intact = false;
    add({ severity: 'error', code: 'header', file: item.name, message: `"${item.name}" was archived with ${stat.meta.contentSize} bytes, which is no valid WAL segment size` });
  }
}

/** Header checks of a segment whose content is intact. */
function checkHeader(item: Item, head: Buffer, size: number, add: (finding: Finding) => void): void {
  // Any lower timeline is accepted here; step 5 checks it against the history files.
  const result = checkSegmentHeader(item.name, head, { fileSize: size });
  item.header = result.header;
  if (result.problems.length > 0) {
    item.intact = false;
    add({ severity: 'error', code: 'header', file: item.name, message: result.problems.join('; '), hint: 'the file is not the WAL segment its name says; PostgreSQL would reject it during recovery' });
  }
}
