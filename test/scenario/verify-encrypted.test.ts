// verify on an encrypted archive: without the identity it must say which key to pass, not blame the bytes.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalBackend } from '../../src/backend/local.js';
import { Deadline } from '../../src/core/deadline.js';
import { silentLogger } from '../../src/core/log.js';
import { archiveFile } from '../../src/policy/archive.js';
import { verifyArchive } from '../../src/policy/verify.js';
import { makeTempDir } from '../support/tmp.js';
import { pseudoRandomBytes, writeWalFile } from '../support/walfile.js';

const NAME = '00000001000000000000000B';
let temp: { dir: string; remove(): Promise<void> };
let identity: string;

beforeAll(async () => {
  temp = await makeTempDir();
  await mkdir(path.join(temp.dir, 'repo'));
  identity = await generateX25519Identity();
  const source = await writeWalFile(temp.dir, NAME, pseudoRandomBytes(1 << 20, 'encrypted'));
  await archiveFile({
    backend: createLocalBackend({ root: path.join(temp.dir, 'repo') }),
    sourcePath: path.join(temp.dir, source),
    fileName: NAME,
    encode: { compress: 'zstd', recipients: [await identityToRecipient(identity)] },
    deadline: new Deadline(30_000, 'test'),
    log: silentLogger,
  });
});
afterAll(async () => {
  await temp?.remove();
});

describe('walvault verify on an encrypted archive', () => {
  it('without the identity, reports the object as unreadable and tells the operator to pass --decrypt-identity-file', async () => {
    const report = await verifyArchive(createLocalBackend({ root: path.join(temp.dir, 'repo') }));
    const finding = report.findings.find((item) => item.file === NAME && item.code === 'unreadable');
    expect(finding?.message).toContain('the stored object is encrypted (age) and no decryption identity was given');
    expect(finding?.hint).toContain('walvault verify --decrypt-identity-file FILE');
    expect(finding?.hint).not.toContain('damaged');
  });

  it('with the identity, decrypts the object and finds its content hash intact', async () => {
    const report = await verifyArchive(createLocalBackend({ root: path.join(temp.dir, 'repo') }), { decode: { identities: [identity] } });
    // The content is random bytes, not WAL, so header findings are expected; decoding and hashing must pass.
    const codes = report.findings.filter((item) => item.file === NAME).map((item) => item.code);
    expect(codes).not.toContain('unreadable');
    expect(codes).not.toContain('hash-mismatch');
    expect(codes.length).toBeGreaterThan(0);
  });
});
