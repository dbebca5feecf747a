// Compression and encryption through the built executables, as PostgreSQL calls them, on the local and NFS backends.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { filesystemTypeOf } from '../../src/backend/posix/core.js';
import { run } from '../support/cli.js';
import { walLikeData } from '../support/codec.js';
import { makeTempDir } from '../support/tmp.js';
import { needTools } from '../support/tools.js';
import { writeWalFile } from '../support/walfile.js';

let temp: { dir: string; remove(): Promise<void> };
let keyFile = '';
let otherKeyFile = '';
let recipient = '';
let otherRecipient = '';
let fsType = '';
let counter = 0;

beforeAll(async () => {
  temp = await makeTempDir();
  const identity = await generateX25519Identity();
  const other = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  otherRecipient = await identityToRecipient(other);
  keyFile = path.join(temp.dir, 'archive-key.txt');
  otherKeyFile = path.join(temp.dir, 'other-key.txt');
  await writeFile(keyFile, `# created: 2026-01-01T00:00:00Z\n# public key: ${recipient}\n${identity}\n`, { mode: 0o600 });
  await writeFile(otherKeyFile, `${other}\n`, { mode: 0o600 });
  fsType = (await filesystemTypeOf(temp.dir))?.type ?? 'unknown';
});
afterAll(() => temp.remove());

/** A fresh data directory and repository; `url` for the given backend. */
async function setup(backend: 'local' | 'nfs'): Promise<{ dataDir: string; repo: string; repoArgs: string[] }> {
  counter += 1;
  const dataDir = path.join(temp.dir, `data-${counter}`);
  const repo = path.join(temp.dir, `repo-${counter}`);
  await mkdir(dataDir);
  await mkdir(repo);
  const repoArgs = backend === 'local' ? [`--repo=${repo}`] : [`--repo=nfs://${repo}`, `--nfs-fstypes=${fsType}`];
  return { dataDir, repo, repoArgs };
}

const storedPath = (repo: string, name: string): string => path.join(repo, 'wal', name.slice(0, 16), name);
const storedMeta = async (repo: string, name: string): Promise<{ codec: string; encryption: string; contentSize: number }> =>
  JSON.parse(await readFile(`${storedPath(repo, name)}~meta`, 'utf8')) as { codec: string; encryption: string; contentSize: number };

const SEGMENT = '000000010000000000000005';
const COMBOS = ['none', 'gzip', 'lz4', 'zstd'].flatMap((codec) => [
  { codec, encrypted: false },
  { codec, encrypted: true },
]);

describe.each(['local', 'nfs'] as const)('round trip through walvault-archive and walvault-restore on %s', (backend) => {
  it.each(COMBOS)('codec $codec, encrypted $encrypted: stored in that format, restored byte for byte', async ({ codec, encrypted }) => {
    const { dataDir, repo, repoArgs } = await setup(backend);
    const content = walLikeData((1 << 20) + 4321, counter);
    const source = await writeWalFile(dataDir, SEGMENT, content);
    const archiveArgs = [...repoArgs, `--compress=${codec}`, ...(encrypted ? [`--encrypt-recipient=${recipient}`] : []), source, SEGMENT];
    const archived = await run('walvault-archive', archiveArgs, { cwd: dataDir });
    expect(archived.stderr).toMatch(new RegExp(`info: archived "${SEGMENT}" to ".*${SEGMENT}" \\(${content.length} bytes`));
    expect(archived.code).toBe(0);
    expect(await storedMeta(repo, SEGMENT)).toMatchObject({ codec, encryption: encrypted ? 'age' : 'none', contentSize: content.length });
    const stored = await readFile(storedPath(repo, SEGMENT));
    if (codec !== 'none') expect(stored.length).toBeLessThan(content.length / 2);
    if (encrypted) expect(stored.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
    else expect(stored.equals(content)).toBe(codec === 'none');

    await rm(path.join(dataDir, source));
    const restored = await run('walvault-restore', [...repoArgs, ...(encrypted ? [`--decrypt-identity-file=${keyFile}`] : []), SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(restored.stderr).toMatch(new RegExp(`info: restored "${SEGMENT}" from ".*" to "pg_wal/RECOVERYXLOG" \\(${content.length} bytes`));
    expect(restored.code).toBe(0);
    expect((await readFile(path.join(dataDir, 'pg_wal/RECOVERYXLOG'))).equals(content)).toBe(true);
  });
});

describe('stored objects are readable by hand with the standard tools', () => {
  it('`age -d -i key.txt stored | zstd -dc` gives the original segment', async () => {
    needTools('age', 'zstd');
    const { dataDir, repo, repoArgs } = await setup('local');
    const content = walLikeData(1 << 20, 77);
    const source = await writeWalFile(dataDir, SEGMENT, content);
    expect((await run('walvault-archive', [...repoArgs, '--compress=zstd', '--compress-level=9', `--encrypt-recipient=${recipient}`, source, SEGMENT], { cwd: dataDir })).code).toBe(0);
    const decrypted = execFileSync('age', ['-d', '-i', keyFile, storedPath(repo, SEGMENT)]);
    const original = execFileSync('zstd', ['-dc'], { input: decrypted, maxBuffer: 64 << 20 });
    expect(original.equals(content)).toBe(true);
  });
});

describe('refuse-to-overwrite compares original content, whatever the codec or encryption', () => {
  it('the same segment archived again with another codec and level is identical: exit 0 with a warning, stored copy untouched', async () => {
    const { dataDir, repo, repoArgs } = await setup('local');
    const source = await writeWalFile(dataDir, SEGMENT, walLikeData(1 << 20, 5));
    expect((await run('walvault-archive', [...repoArgs, '--compress=gzip', source, SEGMENT], { cwd: dataDir })).code).toBe(0);
    const before = await readFile(storedPath(repo, SEGMENT));
    const again = await run('walvault-archive', [...repoArgs, '--compress=zstd', '--compress-level=19', source, SEGMENT], { cwd: dataDir });
    expect(again.stderr).toContain(`warning: "${SEGMENT}" was already archived at "${storedPath(repo, SEGMENT)}" with identical content`);
    expect(again.code).toBe(0);
    expect((await readFile(storedPath(repo, SEGMENT))).equals(before)).toBe(true);
    expect((await storedMeta(repo, SEGMENT)).codec).toBe('gzip');
  });

  it('an encrypted copy is identical to the same segment archived unencrypted, without any key on the archiving host', async () => {
    const { dataDir, repoArgs } = await setup('nfs');
    const source = await writeWalFile(dataDir, SEGMENT, walLikeData(1 << 20, 6));
    expect((await run('walvault-archive', [...repoArgs, '--compress=lz4', `--encrypt-recipient=${recipient}`, source, SEGMENT], { cwd: dataDir })).code).toBe(0);
    const again = await run('walvault-archive', [...repoArgs, '--compress=none', source, SEGMENT], { cwd: dataDir });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('with identical content');
  });

  it('different content under the name of a compressed copy: exit 4, naming the byte offset, nothing changed', async () => {
    const { dataDir, repo, repoArgs } = await setup('local');
    const original = walLikeData(1 << 20, 7);
    const source = await writeWalFile(dataDir, SEGMENT, original);
    expect((await run('walvault-archive', [...repoArgs, '--compress=zstd', source, SEGMENT], { cwd: dataDir })).code).toBe(0);
    const before = await readFile(storedPath(repo, SEGMENT));
    const diverged = Buffer.from(original);
    diverged[300_000] = (diverged[300_000] ?? 0) ^ 0xff;
    await writeFile(path.join(dataDir, source), diverged);
    const refused = await run('walvault-archive', [...repoArgs, '--compress=gzip', source, SEGMENT], { cwd: dataDir });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain(`error: refusing to overwrite "${SEGMENT}" at "${storedPath(repo, SEGMENT)}": the archived copy is not "${source}", the contents differ at byte offset 300000`);
    expect((await readFile(storedPath(repo, SEGMENT))).equals(before)).toBe(true);
  });

  it('different content under the name of an encrypted copy, no key on the primary: exit 4 by the recorded hash', async () => {
    const { dataDir, repoArgs } = await setup('local');
    const original = walLikeData(1 << 20, 8);
    const source = await writeWalFile(dataDir, SEGMENT, original);
    expect((await run('walvault-archive', [...repoArgs, '--compress=zstd', `--encrypt-recipient=${recipient}`, source, SEGMENT], { cwd: dataDir })).code).toBe(0);
    const diverged = Buffer.from(original);
    diverged[1000] = (diverged[1000] ?? 0) ^ 0xff;
    await writeFile(path.join(dataDir, source), diverged);
    const refused = await run('walvault-archive', [...repoArgs, '--compress=zstd', `--encrypt-recipient=${recipient}`, source, SEGMENT], { cwd: dataDir });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/error: refusing to overwrite .*its recorded hash [0-9a-f]{16} \(1048576 bytes\) differs from this file's [0-9a-f]{16} \(1048576 bytes\)/);
  });
});

describe('keys on restore', () => {
  /** Archives an encrypted zstd segment and returns where to restore it. */
  async function encryptedArchive(): Promise<{ dataDir: string; repo: string; repoArgs: string[]; content: Buffer }> {
    const context = await setup('local');
    const content = walLikeData(1 << 20, 9);
    const source = await writeWalFile(context.dataDir, SEGMENT, content);
    expect((await run('walvault-archive', [...context.repoArgs, '--compress=zstd', `--encrypt-recipient=${recipient}`, source, SEGMENT], { cwd: context.dataDir })).code).toBe(0);
    await rm(path.join(context.dataDir, source));
    return { ...context, content };
  }
  const target = (dataDir: string): string => path.join(dataDir, 'pg_wal/RECOVERYXLOG');

  it('the wrong identity stops recovery (exit 128 in archive recovery) with a key message, never "not found", nothing written', async () => {
    const { dataDir, repoArgs } = await encryptedArchive();
    const result = await run('walvault-restore', [...repoArgs, `--decrypt-identity-file=${otherKeyFile}`, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(result.code).toBe(128);
    expect(result.stderr).toContain('error: none of the given age identities can decrypt the stored object (it was encrypted to other recipients); stopping recovery (--on-error=abort)');
    expect(result.stderr).not.toContain('not found');
    expect(existsSync(target(dataDir))).toBe(false);
  });

  it('no identity at all: the message says what to pass', async () => {
    const { dataDir, repoArgs } = await encryptedArchive();
    const result = await run('walvault-restore', [...repoArgs, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(result.code).toBe(128);
    expect(result.stderr).toContain('error: the stored object is encrypted (age) and no decryption identity was given; stopping recovery (--on-error=abort)');
    expect(result.stderr).toContain('HINT: pass --decrypt-identity-file FILE (or WALVAULT_DECRYPT_IDENTITY_FILE)');
    expect(existsSync(target(dataDir))).toBe(false);
  });

  it('an unreadable identity file is a key error naming the file', async () => {
    const { dataDir, repoArgs } = await encryptedArchive();
    const missing = path.join(temp.dir, 'no-such-key.txt');
    const result = await run('walvault-restore', [...repoArgs, `--decrypt-identity-file=${missing}`, '--on-error=missing', SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`error: could not read the age identity file "${missing}" (ENOENT); reporting "not available" to PostgreSQL (--on-error=missing)`);
    expect(existsSync(target(dataDir))).toBe(false);
  });

  it('a flipped byte in the stored encrypted object is detected (authentication), recovery stops, nothing written', async () => {
    const { dataDir, repo, repoArgs } = await encryptedArchive();
    const stored = await readFile(storedPath(repo, SEGMENT));
    stored[stored.length - 40] = (stored[stored.length - 40] ?? 0) ^ 0x01;
    await writeFile(storedPath(repo, SEGMENT), stored);
    const result = await run('walvault-restore', [...repoArgs, `--decrypt-identity-file=${keyFile}`, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(result.code).toBe(128);
    expect(result.stderr).toMatch(/error: the encrypted stored object fails authentication: .*; stopping recovery/);
    expect(existsSync(target(dataDir))).toBe(false);
  });

  it('an encrypted object whose metadata sidecar is lost is still recognised and restored', async () => {
    const { dataDir, repo, repoArgs, content } = await encryptedArchive();
    await rm(`${storedPath(repo, SEGMENT)}~meta`);
    const result = await run('walvault-restore', [...repoArgs, `--decrypt-identity-file=${keyFile}`, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir });
    expect(result.code).toBe(0);
    expect((await readFile(target(dataDir))).equals(content)).toBe(true);
  });
});

describe('codec options from flags, environment and config file', () => {
  it('WALVAULT_COMPRESS, WALVAULT_COMPRESS_LEVEL and WALVAULT_ENCRYPT_RECIPIENT (two keys) apply; each identity decrypts', async () => {
    const { dataDir, repo, repoArgs } = await setup('local');
    const content = walLikeData(500_000, 10);
    const source = await writeWalFile(dataDir, SEGMENT, content);
    const env = { WALVAULT_COMPRESS: 'gzip', WALVAULT_COMPRESS_LEVEL: '9', WALVAULT_ENCRYPT_RECIPIENT: `${recipient},${otherRecipient}` };
    expect((await run('walvault-archive', [...repoArgs, source, SEGMENT], { cwd: dataDir, env })).code).toBe(0);
    expect(await storedMeta(repo, SEGMENT)).toMatchObject({ codec: 'gzip', encryption: 'age' });
    for (const key of [keyFile, otherKeyFile]) {
      await rm(path.join(dataDir, 'pg_wal/RECOVERYXLOG'), { force: true });
      const restored = await run('walvault-restore', [...repoArgs, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, env: { WALVAULT_DECRYPT_IDENTITY_FILE: key } });
      expect(restored.code).toBe(0);
      expect((await readFile(path.join(dataDir, 'pg_wal/RECOVERYXLOG'))).equals(content)).toBe(true);
    }
  });

  it('a JSON config file with compress, encrypt-recipients-file and decrypt-identity-file serves both commands', async () => {
    const { dataDir, repo } = await setup('local');
    const recipientsFile = path.join(temp.dir, `recipients-${counter}.txt`);
    await writeFile(recipientsFile, `# archive key\n${recipient}\n`);
    const config = path.join(temp.dir, `walvault-${counter}.json`);
    await writeFile(config, JSON.stringify({ repo, compress: 'lz4', 'encrypt-recipients-file': recipientsFile, 'decrypt-identity-file': keyFile }));
    const content = walLikeData(300_000, 11);
    const source = await writeWalFile(dataDir, SEGMENT, content);
    expect((await run('walvault-archive', [`--config=${config}`, source, SEGMENT], { cwd: dataDir })).code).toBe(0);
    expect(await storedMeta(repo, SEGMENT)).toMatchObject({ codec: 'lz4', encryption: 'age' });
    await rm(path.join(dataDir, source));
    expect((await run('walvault-restore', [`--config=${config}`, SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir })).code).toBe(0);
    expect((await readFile(path.join(dataDir, 'pg_wal/RECOVERYXLOG'))).equals(content)).toBe(true);
  });

  it.each([
    [['--compress=brotli'], 2, /error: invalid --compress "brotli": expected one of none, gzip, lz4, zstd; HINT: /],
    [['--compress=gzip', '--compress-level=12'], 2, /error: compression level 12 is out of range for gzip; HINT: use a whole number from 1 to 9 for gzip/],
    [['--compress-level=3'], 2, /error: --compress-level needs a compression codec/],
    [['--encrypt-recipient=age1notakey'], 11, /error: invalid age recipient "age1notakey"/],
  ] as const)('bad codec options %j are refused with exit %i before anything is stored', async (flags, code, message) => {
    const { dataDir, repo, repoArgs } = await setup('local');
    const source = await writeWalFile(dataDir, SEGMENT, walLikeData(100_000, 12));
    const result = await run('walvault-archive', [...repoArgs, ...flags, source, SEGMENT], { cwd: dataDir });
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(code);
    expect(existsSync(storedPath(repo, SEGMENT))).toBe(false);
  });
});
