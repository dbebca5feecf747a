// The backend contract run against the local and NFS backends (the NFS one on a local filesystem, its guard told to accept it).
import { createLocalBackend } from '../../src/backend/local.js';
import { createNfsBackend } from '../../src/backend/nfs.js';
import { filesystemTypeOf, PosixBackend } from '../../src/backend/posix/core.js';
import { makeTempDir } from '../support/tmp.js';
import { runBackendContract } from './contract.js';

/** The large-object cases run once the POSIX core has putLarge (the base-backup work adds it). */
const putLarge = 'putLarge' in PosixBackend.prototype;

runBackendContract('local', async () => {
  const temp = await makeTempDir();
  return { backend: createLocalBackend({ root: temp.dir }), cleanup: temp.remove };
}, { putLarge });

runBackendContract('nfs (guard accepting the local filesystem type)', async () => {
  const temp = await makeTempDir();
  const fsType = (await filesystemTypeOf(temp.dir))?.type ?? 'unknown';
  return { backend: createNfsBackend({ root: temp.dir, fsTypes: [fsType] }), cleanup: temp.remove };
}, { putLarge });
