// Stored objects are standard files: gunzip, lz4, zstd and age read ours, and we read theirs (a missing tool fails the test).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { createDecoder, createEncoder, detectStoredFormat } from '../../../src/codec/index.js';
import { runThrough, walLikeData } from '../../support/codec.js';
import { makeTempDir } from '../../support/tmp.js';
import { needTools } from '../../support/tools.js';

const DECOMPRESS: Record<string, string[]> = { gzip: ['gzip', '-dc'], lz4: ['lz4', '-dc'], zstd: ['zstd', '-dcq'] };
const COMPRESS: Record<string, string[][]> = {
  gzip: [['gzip', '-c', '-6']],
  lz4: [['lz4', '-c'], ['lz4', '-c', '-BD'], ['lz4', '-c', '-B4', '--no-frame-crc'], ['lz4', '-c', '-9']],
  zstd: [['zstd', '-c', '-q'], ['zstd', '-c', '-q', '-9', '--no-check']],
};

let dir = '';
let remove: () => Promise<void> = async () => undefined;
let identity = '';
let identityFile = '';
let recipient = '';
const data = walLikeData((16 << 20) + 12_345, 3);

beforeAll(async () => {
  ({ dir, remove } = await makeTempDir());
  identity = await generateX25519Identity();
  recipient = await identityToRecipient(identity);
  identityFile = path.join(dir, 'key.txt');
  writeFileSync(identityFile, `# created: test\n# public key: ${recipient}\n${identity}\n`, { mode: 0o600 });
});

afterAll(() => remove());

function run(command: string[], input: Buffer): Buffer {
  const [tool, ...args] = command;
  return execFileSync(tool ?? '', args, { input, maxBuffer: 256 << 20, stdio: ['pipe', 'pipe', 'ignore'] });
}

describe.each(['gzip', 'lz4', 'zstd'] as const)('%s', (codec) => {
  it(`our stored object decompresses with \`${DECOMPRESS[codec]?.join(' ')}\` to the original bytes`, async () => {
    needTools(codec);
    const stored = await runThrough(data, (await createEncoder({ compress: codec })).transforms);
    const restored = run(DECOMPRESS[codec] ?? [], stored);
    expect(restored.length).toBe(data.length);
    expect(restored.equals(data)).toBe(true);
  });

  it(`encrypted: \`age -d -i key.txt | ${DECOMPRESS[codec]?.join(' ')}\` gives the original bytes`, async () => {
    needTools(codec, 'age');
    const stored = await runThrough(data, (await createEncoder({ compress: codec, recipients: [recipient] })).transforms);
    const decrypted = run(['age', '-d', '-i', identityFile], stored);
    const restored = run(DECOMPRESS[codec] ?? [], decrypted);
    expect(restored.equals(data)).toBe(true);
  });

  it('files made by the tool (no metadata) are recognised and decoded', async () => {
    needTools(codec);
    for (const command of COMPRESS[codec] ?? []) {
      const made = run(command, data);
      const format = detectStoredFormat(made.subarray(0, 16));
      expect(format, command.join(' ')).toEqual({ codec, encryption: 'none' });
      const restored = await runThrough(made, await createDecoder(format, {}));
      expect(restored.equals(data), command.join(' ')).toBe(true);
    }
  });
});

describe('age', () => {
  it('uncompressed encrypted object decrypts with `age -d -i key.txt`', async () => {
    needTools('age');
    const stored = await runThrough(data, (await createEncoder({ compress: 'none', recipients: [recipient] })).transforms);
    expect(run(['age', '-d', '-i', identityFile], stored).equals(data)).toBe(true);
  });

  it('`zstd | age -r` made by hand (no metadata) is recognised and decoded', async () => {
    needTools('age', 'zstd');
    const made = run(['age', '-r', recipient], run(['zstd', '-c', '-q'], data));
    const format = detectStoredFormat(made.subarray(0, 64));
    expect(format).toEqual({ codec: 'auto', encryption: 'age' });
    const restored = await runThrough(made, await createDecoder(format, { identities: [identity] }));
    expect(restored.equals(data)).toBe(true);
  });

  it('a key from `age-keygen` works as identity and its public key as recipient', async () => {
    needTools('age');
    const keyFile = path.join(dir, 'keygen.txt');
    execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
    const publicKey = execFileSync('age-keygen', ['-y', keyFile]).toString().trim();
    const { readIdentityFile } = await import('../../../src/codec/index.js');
    const identities = await readIdentityFile(keyFile);
    const stored = await runThrough(data.subarray(0, 100_000), (await createEncoder({ compress: 'lz4', recipients: [publicKey] })).transforms);
    const restored = await runThrough(stored, await createDecoder({ codec: 'lz4', encryption: 'age' }, { identities }));
    expect(restored.equals(data.subarray(0, 100_000))).toBe(true);
  });
});

describe('age payload interoperability at chunk boundaries (64 KiB STREAM chunks)', () => {
  const sizes = [0, 1, 65_535, 65_536, 65_537, 131_072, 200_000];

  it.each(sizes)('%i bytes: ours decrypts with the age-encryption package, and the package\'s with ours', async (size) => {
    const { Decrypter, Encrypter } = await import('age-encryption');
    const plain = data.subarray(0, size);
    const ours = await runThrough(plain, (await createEncoder({ compress: 'none', recipients: [recipient] })).transforms);
    const decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    expect(Buffer.from(await decrypter.decrypt(ours)).equals(plain)).toBe(true);
    const encrypter = new Encrypter();
    encrypter.addRecipient(recipient);
    const theirs = Buffer.from(await encrypter.encrypt(plain));
    expect((await runThrough(theirs, await createDecoder({ codec: 'none', encryption: 'age' }, { identities: [identity] }))).equals(plain)).toBe(true);
  });

  it('exact multiples of the chunk size decrypt with `age -d`, and `age -r` output decrypts with ours', async () => {
    needTools('age');
    for (const size of [65_536, 131_072]) {
      const plain = data.subarray(0, size);
      const ours = await runThrough(plain, (await createEncoder({ compress: 'none', recipients: [recipient] })).transforms);
      expect(run(['age', '-d', '-i', identityFile], ours).equals(plain)).toBe(true);
      const theirs = run(['age', '-r', recipient], plain);
      expect((await runThrough(theirs, await createDecoder({ codec: 'none', encryption: 'age' }, { identities: [identity] }))).equals(plain)).toBe(true);
    }
  });
});
