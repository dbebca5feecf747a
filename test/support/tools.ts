// Standard command-line tools some tests run (age, lz4, zstd, gzip, GNU time). scripts/setup.sh installs
// them; a test that needs one fails when it is missing instead of skipping, so CI cannot go green
// without the check having run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { expect } from 'vitest';

/** Debian package of each tool, for the failure message. */
const PACKAGE: Record<string, string> = { age: 'age', lz4: 'lz4', zstd: 'zstd', gzip: 'gzip', '/usr/bin/time': 'time' };

const runs = (tool: string): boolean => (tool.startsWith('/') ? existsSync(tool) : spawnSync(tool, ['--version'], { stdio: 'ignore' }).error === undefined);

/** Fails the calling test, naming the packages to install, unless every tool given runs here. */
export function needTools(...tools: string[]): void {
  const missing = tools.filter((tool) => !runs(tool));
  expect(missing, `not installed: ${missing.join(', ')}; run scripts/setup.sh as root or apt-get install ${missing.map((tool) => PACKAGE[tool] ?? tool).join(' ')}`).toEqual([]);
}
