// The postgres OS user's ids, for tests that must not run as root (root reads every file).
import { execFileSync } from 'node:child_process';

const idOf = (flag: '-u' | '-g'): number => Number.parseInt(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim(), 10);

/** Uid of the postgres OS user (throws when it does not exist). */
export const postgresUid = (): number => idOf('-u');

/** Primary gid of the postgres OS user (throws when it does not exist). */
export const postgresGid = (): number => idOf('-g');
