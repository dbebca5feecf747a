// Where base backups live in a repository and how they are found: backups/<id>/ with the tar objects,
// manifest.json (encoded like WAL) and the completion marker written last (see BACKUP.md).
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Backend, OpContext } from '../backend/types.js';
import { createEncoder, type DecodeOptions, type EncodeOptions } from '../codec/index.js';
import { WalvaultError } from '../core/errors.js';
import { hashBuffer } from '../core/hash.js';
import { openDecoded } from './stored.js';

/** The folder of all base backups. */
export const BACKUP_PREFIX = 'backups/';
/** The completion marker's name inside a backup's folder: written last, only when the backup is restorable. */
export const MARKER_NAME = 'complete';
/** The manifest's name inside a backup's folder. */
export const MANIFEST_NAME = 'manifest.json';

/** A backup id: start time in UTC (sortable) and a random suffix, e.g. 20261207T031500Z-3fa9c1. */
export function newBackupId(now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

/** Whether a string has the form of a backup id. */
export function isBackupId(text: string): boolean {
  return /^\d{8}T\d{6}Z-[0-9a-f]{6}$/.test(text);
}

/** The start time a backup id carries. */
export function timeOfBackupId(id: string): Date {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(id);
  return match === null ? new Date(0) : new Date(`${match[1]}-${match[2]}-${match[3]}T${match[4]}:${match[5]}:${match[6]}Z`);
}

/** The key of an object of a backup. */
export function backupKey(id: string, name: string): string {
  return `${BACKUP_PREFIX}${id}/${name}`;
}

/** The label walvault gives pg_backup_start (so the backup history file names the backup). */
export function backupLabelOf(id: string): string {
  return `walvault backup ${id}`;
}

/** One file inside a tar object. */
export interface ManifestFile {
  path: string;
  /** Bytes in the tar (the size when the copy began; a file that shrank is padded with zeros). */
  size: number;
  /** xxh64 of those bytes. */
  hash: string;
  mtime: number;
}

/** One stored tar object: base.tar or one tar per tablespace. */
export interface ManifestObject {
  /** 'base' or the tablespace OID. */
  name: string;
  key: string;
  /** Bytes of the tar, and its xxh64. */
  size: number;
  hash: string;
  /** Bytes as stored (after compression and encryption), and their xxh64. */
  storedSize: number;
  storedHash: string;
  /** For a tablespace: where it was on the server. */
  location?: string;
  files: ManifestFile[];
}

/** Everything a backup is: what restore, verify and cleanup need. */
export interface BackupManifest {
  version: 1;
  id: string;
  label: string;
  system: { identifier: string; serverVersion: string; serverVersionNum: number; segmentSize: number };
  dataDirectory: string;
  start: { lsn: string; wal: string; timeline: number; time: string };
  stop: { lsn: string; wal: string; timeline: number; time: string };
  /** The backup history file the server archived for this backup. */
  backupHistoryFile: string;
  codec: string;
  encryption: string;
  /** backup_label and tablespace_map exactly as pg_backup_stop returned them (also at the end of base.tar). */
  backupLabel: string;
  tablespaceMap: string;
  tablespaces: Array<{ oid: string; name: string; location: string }>;
  objects: ManifestObject[];
}

/** The marker: small, plain JSON (no secrets), so status can read it without keys. */
export interface BackupMarker {
  version: 1;
  id: string;
  completedAt: string;
  /** xxh64 of manifest.json's original bytes. */
  manifestHash: string;
  startWal: string;
  stopWal: string;
  stopLsn: string;
  timeline: number;
  size: number;
  storedSize: number;
}

/** A backup folder as listed. */
export interface ListedBackup {
  id: string;
  /** The marker is there: the backup is complete. */
  complete: boolean;
  /** Keys of the folder, and the newest modification time among them. */
  keys: string[];
  storedBytes: number;
  newest: Date;
}

/** Lists the backup folders, newest id first. */
export async function listBackups(backend: Backend, ctx: OpContext): Promise<ListedBackup[]> {
  const byId = new Map<string, ListedBackup>();
  for await (const entry of backend.list(BACKUP_PREFIX, ctx)) {
    const rest = entry.key.slice(BACKUP_PREFIX.length);
    const slash = rest.indexOf('/');
    if (slash < 0) continue;
    const id = rest.slice(0, slash);
    if (!isBackupId(id)) continue;
    const known = byId.get(id) ?? { id, complete: false, keys: [], storedBytes: 0, newest: new Date(0) };
    byId.set(id, known);
    known.keys.push(entry.key);
    known.storedBytes += entry.storedSize;
    if (entry.modified > known.newest) known.newest = entry.modified;
    if (!entry.temp && rest.slice(slash + 1) === MARKER_NAME) known.complete = true;
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

/** Reads a marker; null when absent; throws 'corrupt' when it is not valid. */
export async function readMarker(backend: Backend, id: string, ctx: OpContext): Promise<BackupMarker | null> {
  const text = await backend.readText(backupKey(id, MARKER_NAME), ctx);
  if (text === null) return null;
  try {
    const marker = JSON.parse(text) as BackupMarker;
    if (marker.id !== id || typeof marker.manifestHash !== 'string') throw new Error('fields missing');
    return marker;
  } catch {
    throw new WalvaultError('corrupt', `completion marker "${backend.describe(backupKey(id, MARKER_NAME))}" is not valid`, { hint: 'run walvault verify; restore another backup' });
  }
}

/** Reads and decodes a manifest, checked against the hash its marker records. */
export async function readManifest(backend: Backend, id: string, marker: BackupMarker, decode: DecodeOptions, ctx: OpContext): Promise<BackupManifest> {
  const key = backupKey(id, MANIFEST_NAME);
  const decoded = await openDecoded(backend, key, decode, ctx);
  if (decoded === null) {
    throw new WalvaultError('corrupt', `backup "${id}" is marked complete but its manifest "${backend.describe(key)}" is missing`, { hint: 'run walvault verify; restore another backup' });
  }
  const chunks: Buffer[] = [];
  for await (const chunk of decoded.content) chunks.push(chunk as Buffer);
  await decoded.finished;
  const bytes = Buffer.concat(chunks);
  if ((await hashBuffer(bytes)) !== marker.manifestHash) {
    throw new WalvaultError('corrupt', `manifest "${backend.describe(key)}" does not match the hash its completion marker records`, { hint: 'the manifest was changed or damaged; restore another backup' });
  }
  const manifest = JSON.parse(bytes.toString('utf8')) as BackupManifest;
  if (manifest.version !== 1 || manifest.id !== id) {
    throw new WalvaultError('corrupt', `manifest "${backend.describe(key)}" is not the manifest of backup "${id}"`, { hint: 'restore another backup' });
  }
  return manifest;
}

/** Stores the manifest like an archived file (compressed and encrypted as the backup, metadata recorded); returns its hash. */
export async function writeManifest(backend: Backend, manifest: BackupManifest, encode: EncodeOptions, ctx: OpContext): Promise<string> {
  const bytes = Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`, 'utf8');
  const hash = await hashBuffer(bytes);
  const encoder = await createEncoder(encode);
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      parts.push(chunk);
      callback();
    },
  });
  await pipeline([Readable.from([bytes]), ...encoder.transforms, sink]);
  const key = backupKey(manifest.id, MANIFEST_NAME);
  const result = await backend.putIfAbsent(key, Buffer.concat(parts), { contentHash: hash, contentSize: bytes.length, codec: encoder.codec, encryption: encoder.encryption }, ctx);
  if (!result.created) throw new WalvaultError('mismatch', `"${backend.describe(key)}" already exists; nothing was changed`, { hint: 'a backup id is never reused: take a new backup' });
  return hash;
}

/** The newest complete backup (or the one named); throws 'usage' naming what exists when there is none. */
export async function chooseBackup(backend: Backend, wanted: string, ctx: OpContext): Promise<ListedBackup> {
  const backups = await listBackups(backend, ctx);
  const complete = backups.filter((backup) => backup.complete);
  if (wanted === 'latest') {
    if (complete[0] === undefined) {
      throw new WalvaultError('usage', `no complete backup in repository "${backend.describe('')}"${backups.length > 0 ? ` (${backups.length} incomplete: interrupted or still running)` : ''}`, { hint: 'take one with walvault backup --repo=URL' });
    }
    return complete[0];
  }
  const found = backups.find((backup) => backup.id === wanted);
  if (found === undefined || !found.complete) {
    throw new WalvaultError('usage', `backup "${wanted}" ${found === undefined ? 'is not' : 'is not complete'} in repository "${backend.describe('')}"`, {
      hint: complete.length === 0 ? 'take one with walvault backup --repo=URL' : `complete backups: ${complete.slice(0, 5).map((backup) => backup.id).join(', ')}${complete.length > 5 ? ', ...' : ''} (or --backup latest)`,
    });
  }
  return found;
}
