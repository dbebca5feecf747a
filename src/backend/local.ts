// The local-directory backend: the POSIX core with no mount guard.
import { PosixBackend } from './posix/core.js';
import type { Backend } from './types.js';

/** Options of the local backend. */
export interface LocalOptions {
  /** Absolute path of the repository directory (must exist). */
  root: string;
  /** Mode of archived files; default 0o600. */
  fileMode?: number;
  /** Mode of created directories; default 0o700. */
  dirMode?: number;
}

/** Opens a repository in a local directory. */
export function createLocalBackend(options: LocalOptions): Backend {
  return new PosixBackend({ kind: 'local', root: options.root, fileMode: options.fileMode, dirMode: options.dirMode });
}
