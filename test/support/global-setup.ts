// Once per `vitest run`: a scratch directory shared by all test files (e.g. the one installed copy
// of walvault, see install.ts), removed when the run ends.

import * as fs from 'node:fs/promises';
import type { TestProject } from 'vitest/node';
import { makeScratchDir } from '../../scripts/lib/pg-harness.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Scratch directory of this test run, reachable by the postgres OS user. */
    walvaultRunDir: string;
  }
}

/** Creates the run directory, hands it to the tests via inject('walvaultRunDir'), removes it at the end. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const runDir = await makeScratchDir('walvault-run');
  project.provide('walvaultRunDir', runDir);
  return async () => {
    if (process.env.WALVAULT_KEEP_TMP) return;
    await fs.rm(runDir, { recursive: true, force: true });
  };
}
