// Once per `vitest run`: a directory for the run's Ceph RGW cluster (started lazily by the first test
// file that needs it, see ceph.ts), and its shutdown when the run ends, whatever the tests did.
import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { readClusterState, stopRgwCluster } from './ceph.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where the run's Ceph cluster lives once started (state.json, cluster/). */
    walvaultCephDir: string;
    /** The vitest main process: the cluster's watchdog stops it if this process dies. */
    walvaultCephOwnerPid: number;
  }
}

/** Provides the run's Ceph directory; stops the cluster (if a test started one) and removes it at the end. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'walvault-ceph-'));
  project.provide('walvaultCephDir', dir);
  project.provide('walvaultCephOwnerPid', process.pid);
  return async () => {
    const state = await readClusterState(dir);
    if (state !== undefined) await stopRgwCluster(state);
    if (process.env.WALVAULT_KEEP_TMP) return;
    await fs.rm(dir, { recursive: true, force: true });
  };
}
