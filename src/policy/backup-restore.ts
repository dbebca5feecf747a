// `walvault restore-backup`: lays a complete backup out as a data directory (and its tablespaces),
// every file checked against the manifest while it is written, and sets up recovery through
// walvault-restore. A failure removes what it wrote: a half-restored directory is never left to start.
import * as nodeFs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Backend, OpContext } from '../backend/types.js';
import { createDecoder, type DecodeOptions } from '../codec/index.js';
import { Deadline, underDeadline } from '../core/deadline.js';
import { WalvaultError } from '../core/errors.js';
import { formatHash, HashingStream, loadXxhash } from '../core/hash.js';
import { silentLogger, type Logger } from '../core/log.js';
import { readTar } from './backup-tar.js';
import { chooseBackup, readManifest, readMarker, type BackupManifest, type ManifestObject } from './backup-repo.js';

/** Where recovery should stop (postgresql.conf's recovery_target_*). */
export interface RecoveryTargets {
  time?: string;
  lsn?: string;
  name?: string;
  xid?: string;
  /** recovery_target_action: pause, promote or shutdown. */
  action?: string;
  /** recovery_target_inclusive. */
  inclusive?: boolean;
  /** recovery_target_timeline. */
  timeline?: string;
}

/** Options of restoreBackup. */
export interface RestoreBackupOptions {
  /** A backup id or 'latest'. */
  backup: string;
  /** The data directory to create (absent or empty). */
  pgdata: string;
  /** Tablespace OID -> directory, for tablespaces not to be restored where they were. */
  tablespaceMap?: Record<string, string>;
  decode: DecodeOptions;
  /** The restore_command to write (the CLI builds it from its own options). */
  restoreCommand: string;
  targets?: RecoveryTargets;
  /** standby.signal instead of recovery.signal. */
  standby?: boolean;
  timeoutMs?: number;
  onProgress?: (progress: { bytes: number; files: number }) => void;
  log?: Logger;
}

/** What restore-backup did. */
export interface RestoreBackupResult {
  id: string;
  manifest: BackupManifest;
  files: number;
  bytes: number;
  tablespaces: Array<{ oid: string; directory: string }>;
}

/** Whether a directory is absent or empty (what restore-backup accepts as a target). */
async function absentOrEmpty(directory: string): Promise<'absent' | 'empty' | 'not-empty'> {
  try {
    return (await nodeFs.readdir(directory)).length === 0 ? 'empty' : 'not-empty';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return 'not-empty';
    throw error;
  }
}

/** A postgresql.conf string value. */
const confString = (value: string): string => `'${value.replace(/'/g, "''")}'`;

/** Refuses a tar path that would leave its directory. */
function safeJoin(root: string, relative: string): string {
  const target = path.resolve(root, relative);
  if (relative === '' || path.isAbsolute(relative) || (target !== root && !target.startsWith(root + path.sep))) {
    throw new WalvaultError('corrupt', `backup holds the path "${relative}", outside its directory`, { hint: 'the backup was tampered with; restore another backup' });
  }
  return target;
}

/** Restores a backup (see the file comment); throws a WalvaultError after removing what it wrote. */
export async function restoreBackup(backend: Backend, options: RestoreBackupOptions): Promise<RestoreBackupResult> {
  const log = options.log ?? silentLogger;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const withDeadline = <T>(what: string, work: (ctx: OpContext) => Promise<T>): Promise<T> => underDeadline(timeoutMs, what, work);
  const chosen = await withDeadline('listing backups', (ctx) => chooseBackup(backend, options.backup, ctx));
  const marker = await withDeadline('reading the completion marker', (ctx) => readMarker(backend, chosen.id, ctx));
  if (marker === null) throw new WalvaultError('usage', `backup "${chosen.id}" is not complete`, { hint: 'choose another backup (--backup latest)' });
  const manifest = await withDeadline('reading the manifest', (ctx) => readManifest(backend, chosen.id, marker, options.decode, ctx));

  const pgdata = path.resolve(options.pgdata);
  const targets: Array<{ object: ManifestObject; directory: string; state: 'absent' | 'empty' }> = [];
  for (const object of manifest.objects) {
    const directory = object.name === 'base' ? pgdata : path.resolve(options.tablespaceMap?.[object.name] ?? object.location ?? '');
    const state = await absentOrEmpty(directory);
    if (state === 'not-empty') {
      throw new WalvaultError('usage', `${object.name === 'base' ? 'data directory' : `directory of tablespace ${object.name}`} "${directory}" is not empty; nothing was restored`, {
        hint: object.name === 'base' ? 'give an empty or new directory with --pgdata' : `give an empty or new directory with --tablespace-map ${object.name}=DIR`,
      });
    }
    if (targets.some((other) => other.directory === directory)) throw new WalvaultError('usage', `two parts of the backup would go to "${directory}"`, { hint: 'map each tablespace to its own directory with --tablespace-map OID=DIR' });
    targets.push({ object, directory, state });
  }
  for (const oid of Object.keys(options.tablespaceMap ?? {})) {
    if (!manifest.tablespaces.some((tablespace) => tablespace.oid === oid)) {
      throw new WalvaultError('usage', `--tablespace-map names OID ${oid}, which backup "${manifest.id}" does not have`, { hint: `its tablespaces: ${manifest.tablespaces.map((tablespace) => `${tablespace.oid} (${tablespace.name})`).join(', ') || 'none'}` });
    }
  }
  // Owner of what is written: the target directory's (or its parent's, when it is new).
  const ownerOf = async (directory: string, state: string): Promise<{ uid: number; gid: number }> => {
    const info = await nodeFs.stat(state === 'absent' ? path.dirname(directory) : directory).catch(() => null);
    if (info === null) throw new WalvaultError('usage', `the parent of "${directory}" does not exist`, { hint: 'create it first (owned by the OS user that will run the server)' });
    return { uid: info.uid, gid: info.gid };
  };
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

  const created: string[] = [];
  let files = 0;
  let bytes = 0;
  try {
    const { create64 } = await loadXxhash();
    for (const target of targets) {
      const owner = await ownerOf(target.directory, target.state);
      const chown = async (file: string): Promise<void> => {
        if (isRoot) await nodeFs.lchown(file, owner.uid, owner.gid);
      };
      if (target.state === 'absent') {
        await nodeFs.mkdir(target.directory, { mode: 0o700 });
        created.push(target.directory);
        await chown(target.directory);
      } else created.push(...(await nodeFs.readdir(target.directory)).map((name) => path.join(target.directory, name)));
      await nodeFs.chmod(target.directory, 0o700);
      const expected = new Map(target.object.files.map((file) => [file.path, file]));
      const seen = new Set<string>();
      const directories: string[] = [target.directory];
      const current: { handle: nodeFs.FileHandle | null } = { handle: null };
      const deadline = new Deadline(Math.max(timeoutMs, 24 * 3600 * 1000), `restoring "${backend.describe(target.object.key)}"`);
      try {
        const stored = await deadline.race(backend.read(target.object.key, { signal: deadline.signal }));
        if (stored === null) throw new WalvaultError('corrupt', `"${backend.describe(target.object.key)}" of backup "${manifest.id}" is missing`, { hint: 'run walvault verify; restore another backup' });
        const storedHash = await HashingStream.create();
        const original = await HashingStream.create();
        const decoders = await createDecoder({ codec: manifest.codec, encryption: manifest.encryption }, options.decode);
        // Read through `original` (the tar); an error anywhere upstream destroys it, so readTar throws it.
        const flow = pipeline([stored.body, storedHash, ...decoders, original], { signal: deadline.signal });
        flow.catch(() => undefined);
        await readTar(original as AsyncIterable<Buffer>, async (entry) => {
          const full = safeJoin(target.directory, entry.path);
          if (entry.type === 'directory') {
            await nodeFs.mkdir(full, { recursive: true, mode: 0o700 });
            await nodeFs.chmod(full, 0o700);
            await chown(full);
            directories.push(full);
            return null;
          }
          if (entry.type === 'symlink') {
            await nodeFs.symlink(entry.linkTarget ?? '', full);
            await chown(full);
            return null;
          }
          const want = expected.get(entry.path);
          if (want === undefined || want.size !== entry.size) {
            throw new WalvaultError('corrupt', `"${entry.path}" in "${backend.describe(target.object.key)}" is not in the manifest${want === undefined ? '' : ' with that size'}`, { hint: 'the backup was changed after it was taken; restore another backup' });
          }
          seen.add(entry.path);
          const handle = await nodeFs.open(full, 'wx', 0o600);
          current.handle = handle;
          const hasher = create64();
          let position = 0;
          return {
            async write(data: Buffer) {
              hasher.update(data);
              let offset = 0;
              while (offset < data.length) {
                const { bytesWritten } = await handle.write(data, offset, data.length - offset, position);
                offset += bytesWritten;
                position += bytesWritten;
              }
              bytes += data.length;
            },
            async end() {
              try {
                await handle.sync();
              } finally {
                current.handle = null;
                await handle.close();
              }
              await chown(full);
              await nodeFs.utimes(full, entry.mtime, entry.mtime).catch(() => undefined);
              if (formatHash(hasher.digest()) !== want.hash) {
                throw new WalvaultError('corrupt', `"${entry.path}" of backup "${manifest.id}" does not match the hash in its manifest`, { hint: 'the stored backup is damaged; restore another backup' });
              }
              files += 1;
              options.onProgress?.({ bytes, files });
            },
          };
        });
        // Drain what follows the end-of-archive blocks (the tar's zero padding) so the hashes cover every byte.
        for await (const _rest of original as AsyncIterable<Buffer>) void _rest;
        await flow;
        if (original.bytes !== target.object.size || original.digest() !== target.object.hash) {
          throw new WalvaultError('corrupt', `"${backend.describe(target.object.key)}" does not match the manifest (${original.bytes} bytes, ${target.object.size} recorded)`, { hint: 'the stored backup is damaged; restore another backup' });
        }
        if (storedHash.bytes !== target.object.storedSize || storedHash.digest() !== target.object.storedHash) {
          throw new WalvaultError('corrupt', `"${backend.describe(target.object.key)}" does not match the stored size and hash in the manifest`, { hint: 'the stored backup is damaged; restore another backup' });
        }
      } finally {
        // A file cut short by a failure (a damaged tar, a wrong key) is closed here; the catch below removes it.
        await current.handle?.close().catch(() => undefined);
        deadline.dispose();
      }
      const missing = [...expected.keys()].filter((file) => !seen.has(file));
      if (missing.length > 0) throw new WalvaultError('corrupt', `${missing.length} file(s) of the manifest are not in "${backend.describe(target.object.key)}", e.g. "${missing[0]}"`, { hint: 'the stored backup is damaged; restore another backup' });
      for (const directory of directories.reverse()) {
        const handle = await nodeFs.open(directory, 'r');
        await handle.sync().finally(() => handle.close());
      }
    }

    // Tablespaces: links in pg_tblspc, and a tablespace_map naming where they are now.
    const tablespaces: Array<{ oid: string; directory: string }> = [];
    const baseOwner = await nodeFs.stat(pgdata);
    for (const target of targets.filter((candidate) => candidate.object.name !== 'base')) {
      tablespaces.push({ oid: target.object.name, directory: target.directory });
    }
    if (tablespaces.length > 0) {
      await nodeFs.mkdir(path.join(pgdata, 'pg_tblspc'), { recursive: true, mode: 0o700 });
      for (const tablespace of tablespaces) {
        const link = path.join(pgdata, 'pg_tblspc', tablespace.oid);
        await nodeFs.symlink(tablespace.directory, link);
        if (isRoot) await nodeFs.lchown(link, baseOwner.uid, baseOwner.gid);
      }
      const map = tablespaces.map((tablespace) => `${tablespace.oid} ${tablespace.directory}\n`).join('');
      await nodeFs.writeFile(path.join(pgdata, 'tablespace_map'), map, { mode: 0o600 });
      if (isRoot) await nodeFs.chown(path.join(pgdata, 'tablespace_map'), baseOwner.uid, baseOwner.gid);
    }
    for (const folder of ['pg_wal/archive_status', 'pg_wal/summaries']) {
      if (folder.endsWith('summaries') && manifest.system.serverVersionNum < 170000) continue;
      await nodeFs.mkdir(path.join(pgdata, folder), { recursive: true, mode: 0o700 });
      if (isRoot) await nodeFs.chown(path.join(pgdata, folder), baseOwner.uid, baseOwner.gid);
    }

    // Recovery settings: appended to postgresql.auto.conf (the last word over postgresql.conf).
    const targetsOf = options.targets ?? {};
    const lines = [`# added by walvault restore-backup (backup ${manifest.id}, ${new Date().toISOString()})`, `restore_command = ${confString(options.restoreCommand)}`];
    if (targetsOf.time !== undefined) lines.push(`recovery_target_time = ${confString(targetsOf.time)}`);
    if (targetsOf.lsn !== undefined) lines.push(`recovery_target_lsn = ${confString(targetsOf.lsn)}`);
    if (targetsOf.name !== undefined) lines.push(`recovery_target_name = ${confString(targetsOf.name)}`);
    if (targetsOf.xid !== undefined) lines.push(`recovery_target_xid = ${confString(targetsOf.xid)}`);
    if (targetsOf.action !== undefined) lines.push(`recovery_target_action = ${confString(targetsOf.action)}`);
    if (targetsOf.inclusive !== undefined) lines.push(`recovery_target_inclusive = ${targetsOf.inclusive ? 'on' : 'off'}`);
    if (targetsOf.timeline !== undefined) lines.push(`recovery_target_timeline = ${confString(targetsOf.timeline)}`);
    const autoConf = path.join(pgdata, 'postgresql.auto.conf');
    await nodeFs.appendFile(autoConf, `\n${lines.join('\n')}\n`, { mode: 0o600 });
    const signal = path.join(pgdata, options.standby === true ? 'standby.signal' : 'recovery.signal');
    await nodeFs.writeFile(signal, '', { mode: 0o600 });
    for (const file of [autoConf, signal]) {
      if (isRoot) await nodeFs.chown(file, baseOwner.uid, baseOwner.gid);
      const handle = await nodeFs.open(file, 'r');
      await handle.sync().finally(() => handle.close());
    }
    const top = await nodeFs.open(pgdata, 'r');
    await top.sync().finally(() => top.close());
    log.debug(`restored backup "${manifest.id}" into "${pgdata}"`);
    return { id: manifest.id, manifest, files, bytes, tablespaces };
  } catch (error) {
    // Remove what was written: the target was absent or empty, so everything in it is ours.
    for (const target of targets) {
      if (target.state === 'absent') await nodeFs.rm(target.directory, { recursive: true, force: true }).catch(() => undefined);
      else for (const name of await nodeFs.readdir(target.directory).catch(() => [] as string[])) await nodeFs.rm(path.join(target.directory, name), { recursive: true, force: true }).catch(() => undefined);
    }
    if (error instanceof WalvaultError) {
      throw new WalvaultError(error.kind, `restore of backup "${manifest.id}" failed: ${error.message}; nothing was left behind`, { hint: error.hint ?? 'run walvault verify', cause: error });
    }
    const message = (error as Error).message;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') throw new WalvaultError('no-space', `restore of backup "${manifest.id}" ran out of space: ${message}; nothing was left behind`, { hint: 'free space on the target filesystem (or map tablespaces elsewhere) and run restore-backup again' });
    if (code === 'EACCES' || code === 'EPERM') throw new WalvaultError('usage', `restore of backup "${manifest.id}" failed: ${message}; nothing was left behind`, { hint: 'run restore-backup as root or as the OS user that owns the target directory' });
    throw new WalvaultError('corrupt', `restore of backup "${manifest.id}" failed: ${message}; nothing was left behind`, { hint: 'run walvault verify; restore another backup if this one is damaged' });
  }
}
