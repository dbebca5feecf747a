// The packed-and-installed walvault executables for e2e tests: `npm pack` + `npm install -g
// --prefix` happen once per test run, whichever test file asks first; the others wait for it.

import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { inject } from 'vitest';
import { packAndInstall, type InstalledWalvault } from '../../scripts/lib/install.mjs';
import { makeScratchDir } from '../../scripts/lib/pg-harness.mjs';

export type { InstalledWalvault };

let cached: Promise<InstalledWalvault> | undefined;

/**
 * Absolute paths of the installed walvault-archive, walvault-restore and walvault (readable and
 * executable by the postgres user). The first call in a run packs and installs; a lock directory
 * in the run's scratch dir makes every other worker reuse that install.
 */
export function installedWalvault(): Promise<InstalledWalvault> {
  cached ??= installOnce();
  return cached;
}

async function installOnce(): Promise<InstalledWalvault> {
  const runDir = runDirectory() ?? (await makeScratchDir('walvault-install'));
  const lock = path.join(runDir, 'install.lock');
  const done = path.join(runDir, 'install.json');
  const failed = path.join(runDir, 'install.error');
  try {
    await fs.mkdir(lock);
  } catch {
    return waitForOtherInstaller(done, failed);
  }
  try {
    const installed = await packAndInstall({ prefix: path.join(runDir, 'prefix') });
    await fs.writeFile(done, JSON.stringify(installed));
    return installed;
  } catch (error) {
    await fs.writeFile(failed, String(error instanceof Error ? error.stack : error));
    throw error;
  }
}

function runDirectory(): string | undefined {
  try {
    return inject('walvaultRunDir');
  } catch {
    return undefined;
  }
}

async function waitForOtherInstaller(done: string, failed: string): Promise<InstalledWalvault> {
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    if (existsSync(done)) return JSON.parse(await fs.readFile(done, 'utf8')) as InstalledWalvault;
    if (existsSync(failed)) throw new Error(`installing walvault failed in another worker:\n${await fs.readFile(failed, 'utf8')}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error('timed out waiting for another worker to install walvault');
}
