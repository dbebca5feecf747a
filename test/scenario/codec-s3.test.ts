// Compression and encryption through the built executables on an S3 repository (s3rver behind the enforcing proxy).
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { walLikeData } from '../support/codec.js';
import { getRaw, runCli, s3Flags, segmentKey, useS3Scenario } from '../support/s3scenario.js';
import type { S3TestServer } from '../support/s3server.js';
import { needTools } from '../support/tools.js';
import { writeWalFile } from '../support/walfile.js';

let server: S3TestServer;
let work: { dir: string; remove(): Promise<void> };
let keyFile = '';
let recipient = '';
let counter = 0;
const SEGMENT = '000000010000000000000009';

useS3Scenario({ bind: (scenario) => ({ server, work } = scenario) });
beforeAll(async () => {
  const identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  keyFile = path.join(work.dir, 'key.txt');
  await writeFile(keyFile, `${identity}\n`, { mode: 0o600 });
});

/** A fresh data directory and repository prefix. */
async function fresh(): Promise<{ dataDir: string; prefix: string }> {
  counter += 1;
  const dataDir = path.join(work.dir, `data-${counter}`);
  await mkdir(dataDir);
  return { dataDir, prefix: `codec-${counter}` };
}

describe('round trip through walvault-archive and walvault-restore on s3', () => {
  it.each(['none', 'gzip', 'lz4', 'zstd'].flatMap((codec) => [{ codec, encrypted: false }, { codec, encrypted: true }]))(
    'codec $codec, encrypted $encrypted: object metadata names the format, restored byte for byte',
    async ({ codec, encrypted }) => {
      const { dataDir, prefix } = await fresh();
      const content = walLikeData((1 << 20) + 999, counter);
      const source = await writeWalFile(dataDir, SEGMENT, content);
      const archived = await runCli('walvault-archive', [...s3Flags(server, prefix), `--compress=${codec}`, ...(encrypted ? [`--encrypt-recipient=${recipient}`] : []), source, SEGMENT], { cwd: dataDir, env: server.env });
      expect(archived.stderr).toContain(`info: archived "${SEGMENT}"`);
      expect(archived.code).toBe(0);
      const stored = await getRaw(server, segmentKey(prefix, SEGMENT));
      expect(stored?.metadata).toMatchObject({ 'walvault-codec': codec, 'walvault-encryption': encrypted ? 'age' : 'none' });
      if (codec !== 'none') expect(stored?.body.length).toBeLessThan(content.length / 2);
      await rm(path.join(dataDir, source));
      const restored = await runCli('walvault-restore', [...s3Flags(server, prefix), ...(encrypted ? [`--decrypt-identity-file=${keyFile}`] : []), SEGMENT, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, env: server.env });
      expect(restored.stderr).toContain(`info: restored "${SEGMENT}"`);
      expect(restored.code).toBe(0);
      expect((await readFile(path.join(dataDir, 'pg_wal/RECOVERYXLOG'))).equals(content)).toBe(true);
    },
  );

  it('the same segment archived again with another codec is identical (exit 0, warning); a different one is refused (exit 4)', async () => {
    const { dataDir, prefix } = await fresh();
    const content = walLikeData(1 << 20, 42);
    const source = await writeWalFile(dataDir, SEGMENT, content);
    expect((await runCli('walvault-archive', [...s3Flags(server, prefix), '--compress=gzip', source, SEGMENT], { cwd: dataDir, env: server.env })).code).toBe(0);
    const again = await runCli('walvault-archive', [...s3Flags(server, prefix), '--compress=zstd', `--encrypt-recipient=${recipient}`, source, SEGMENT], { cwd: dataDir, env: server.env });
    expect(again.stderr).toContain('with identical content');
    expect(again.code).toBe(0);
    const diverged = Buffer.from(content);
    diverged[4096] = (diverged[4096] ?? 0) ^ 0xff;
    await writeFile(path.join(dataDir, source), diverged);
    const refused = await runCli('walvault-archive', [...s3Flags(server, prefix), '--compress=lz4', source, SEGMENT], { cwd: dataDir, env: server.env });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('the contents differ at byte offset 4096');
  });

  it('the stored S3 object decrypts and decompresses with `age -d | lz4 -dc`', async () => {
    needTools('age', 'lz4');
    const { dataDir, prefix } = await fresh();
    const content = walLikeData(1 << 20, 43);
    const source = await writeWalFile(dataDir, SEGMENT, content);
    expect((await runCli('walvault-archive', [...s3Flags(server, prefix), '--compress=lz4', `--encrypt-recipient=${recipient}`, source, SEGMENT], { cwd: dataDir, env: server.env })).code).toBe(0);
    const stored = await getRaw(server, segmentKey(prefix, SEGMENT));
    const original = execFileSync('lz4', ['-dc'], { input: execFileSync('age', ['-d', '-i', keyFile], { input: stored?.body }), maxBuffer: 64 << 20 });
    expect(original.equals(content)).toBe(true);
  });
});
