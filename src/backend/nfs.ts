// The NFS backend: the POSIX core plus a mount guard, so a dropped mount never turns into writes to the bare mountpoint.
import { PosixBackend, type PosixOps } from './posix/core.js';
import type { Backend } from './types.js';

/** Filesystem types accepted by default: the kernel NFS client's. */
export const DEFAULT_NFS_FSTYPES: readonly string[] = ['nfs', 'nfs4'];

/** Options of the NFS backend. */
export interface NfsOptions {
  /** Absolute path of the repository directory on the NFS mount (must exist). */
  root: string;
  /** Mode of archived files; default 0o600. */
  fileMode?: number;
  /** Mode of created directories; default 0o700. */
  dirMode?: number;
  /**
   * Filesystem types the directory must be on (names from /proc/self/mountinfo); default nfs, nfs4.
   * Add e.g. 'fuse.rclone' for an NFS-like FUSE gateway.
   */
  fsTypes?: readonly string[];
  /** Replaces filesystem calls; used by tests to inject NFS faults (lost LINK replies, ESTALE). */
  ops?: Partial<PosixOps>;
  /** Host name used in temp file names (default: os.hostname()). */
  host?: string;
}

/** Opens a repository in a directory on an NFS mount. */
export function createNfsBackend(options: NfsOptions): Backend {
  return new PosixBackend({
    kind: 'nfs',
    root: options.root,
    fileMode: options.fileMode,
    dirMode: options.dirMode,
    requiredFsTypes: options.fsTypes ?? DEFAULT_NFS_FSTYPES,
    // Early flushes stay fdatasyncs (an NFS COMMIT) on the thread pool: the WASI writeback runs on the
    // main thread, where a hung server would also stop the deadline that ends the process.
    ops: { writeback: () => null, ...options.ops },
    host: options.host,
  });
}
