// The package as operators get it (npm pack + npm install -g): the install records the start-up
// bundle's V8 code cache for the installing Node (package.json postinstall; the cache is not in the
// tarball), and the installed commands, started through npm's bin links, run the bundle with it.
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installedWalvault, type InstalledWalvault } from '../support/install.js';
import { makeTempDir } from '../support/tmp.js';

describe('the installed package', () => {
  let walvault: InstalledWalvault;
  let temp: { dir: string; remove(): Promise<void> };

  beforeAll(async () => {
    walvault = await installedWalvault();
    temp = await makeTempDir();
  });
  afterAll(async () => {
    await temp.remove();
  });

  it('records the code cache at install, and its commands start from the bundle with it', async () => {
    const cli = path.join(walvault.prefix, 'lib', 'node_modules', 'walvault', 'dist', 'cli');
    expect((await stat(path.join(cli, 'walvault-bundle.cjs'))).isFile()).toBe(true);
    expect((await stat(path.join(cli, 'walvault-bundle.cjs.cache'))).size).toBeGreaterThan(10_000);
    const repo = path.join(temp.dir, 'repo');
    await mkdir(repo);
    const trace = path.join(temp.dir, 'trace');
    const missing = spawnSync(walvault.restore, [`--repo=${repo}`, '--prefetch=0', '00000009.history', path.join(temp.dir, 'RECOVERYHISTORY')], {
      encoding: 'utf8',
      env: { ...process.env, WALVAULT_TEST_MODULE_TRACE: trace },
    });
    expect(missing.status, missing.stderr).toBe(1);
    expect(missing.stderr).toContain('"00000009.history" not found');
    const loaded = (await readFile(trace, 'utf8')).split('\n');
    expect(loaded[0]).toBe('code-cache:accepted');
  });
});
