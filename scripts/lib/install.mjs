// Packs walvault and installs the tarball into a private prefix, the way an operator would
// (`npm pack` + `npm install -g`), so e2e tests and the demo run the executables users get.

import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './pg-harness.mjs';

/** The project root (this file lives in scripts/lib). */
export const PROJECT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The three commands package.json `bin` declares. */
export const COMMANDS = /** @type {const} */ (['walvault-archive', 'walvault-restore', 'walvault']);

/** Absolute path of a command's built executable in dist/, as package.json `bin` names it. */
export function builtCommand(/** @type {typeof COMMANDS[number]} */ command, /** @type {string} */ projectDir = PROJECT_DIR) {
  const manifest = /** @type {{ bin?: Record<string, string> }} */ (JSON.parse(readFileSync(path.join(projectDir, 'package.json'), 'utf8')));
  const relative = manifest.bin?.[command];
  if (relative === undefined) throw new Error(`package.json has no bin entry "${command}"`);
  return path.join(projectDir, relative);
}

/**
 * @typedef {object} InstalledWalvault
 * @property {string} prefix  the npm prefix the package was installed into
 * @property {string} archive  absolute path of the installed walvault-archive
 * @property {string} restore  absolute path of the installed walvault-restore
 * @property {string} walvault  absolute path of the installed walvault
 */

/**
 * Packs the already-built project (`npm pack`, without re-running the build) and runs
 * `npm install -g --prefix <prefix> <tarball>`; makes the prefix readable and executable by every
 * OS user (PostgreSQL runs the commands as postgres). `prefix` must not exist yet or be empty.
 */
export async function packAndInstall(/** @type {{ prefix: string, projectDir?: string }} */ options) {
  const projectDir = options.projectDir ?? PROJECT_DIR;
  for (const command of COMMANDS) {
    const built = builtCommand(command, projectDir);
    if (!existsSync(built)) throw new Error(`"${built}" is missing: run "npm run build" first`);
  }
  await fs.mkdir(options.prefix, { recursive: true });
  const packDir = path.join(options.prefix, 'pack');
  await fs.mkdir(packDir);
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], { cwd: projectDir, timeoutMs: 120_000 });
  const [manifest] = /** @type {{ filename: string }[]} */ (JSON.parse(packed.stdout));
  if (manifest === undefined) throw new Error(`npm pack printed no manifest: ${packed.stdout}`);
  const tarball = path.join(packDir, path.basename(manifest.filename));
  await run('npm', ['install', '-g', '--prefix', options.prefix, '--no-audit', '--no-fund', '--prefer-offline', tarball], {
    cwd: options.prefix,
    timeoutMs: 300_000,
  });
  await run('chmod', ['-R', 'a+rX', options.prefix]);
  /** @type {InstalledWalvault} */
  const installed = {
    prefix: options.prefix,
    archive: path.join(options.prefix, 'bin', 'walvault-archive'),
    restore: path.join(options.prefix, 'bin', 'walvault-restore'),
    walvault: path.join(options.prefix, 'bin', 'walvault'),
  };
  for (const file of [installed.archive, installed.restore, installed.walvault]) {
    if (!existsSync(file)) throw new Error(`npm install did not create "${file}"`);
  }
  return installed;
}
