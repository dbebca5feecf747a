// The age header of src/codec/age-header.ts (X25519 stanzas, header MAC, Bech32 keys) against the
// age-encryption package and the `age` tools: files each side writes open on the other, keys agree,
// and damage or a foreign key is refused.
import { execFileSync } from 'node:child_process';
import { createHmac, hkdfSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient as theirRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDecoder, createEncoder } from '../../../src/codec/index.js';
import { decryptHeader, encodeHeader, identityToRecipient, parseIdentity, parseRecipient } from '../../../src/codec/age-header.js';
import { runThrough, walLikeData } from '../../support/codec.js';
import { makeTempDir } from '../../support/tmp.js';

let temp: { dir: string; remove(): Promise<void> };
beforeAll(async () => {
  temp = await makeTempDir();
});
afterAll(() => temp.remove());

const hasAge = (() => {
  try {
    execFileSync('age', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** The header of an age file: through the MAC line. */
function headerOf(file: Buffer): Buffer {
  const mac = file.indexOf('\n--- ');
  return file.subarray(0, file.indexOf('\n', mac + 1) + 1);
}

async function encryptOurs(data: Buffer, recipients: string[]): Promise<Buffer> {
  return runThrough(data, (await createEncoder({ compress: 'none', recipients })).transforms);
}

async function decryptOurs(file: Buffer, identities: string[]): Promise<Buffer> {
  return runThrough(file, await createDecoder({ codec: 'none', encryption: 'age' }, { identities }));
}

describe('age header (X25519) against the age-encryption package and the age tools', () => {
  it('identityToRecipient agrees with the package and with `age-keygen -y`', async () => {
    for (let round = 0; round < 8; round += 1) {
      const identity = await generateX25519Identity();
      expect(identityToRecipient(identity)).toBe(await theirRecipient(identity));
      expect(parseRecipient(identityToRecipient(identity))).toEqual(parseIdentity(identity).publicKey);
    }
    if (hasAge) {
      const keyFile = path.join(temp.dir, 'keygen.txt');
      execFileSync('age-keygen', ['-o', keyFile], { stdio: 'ignore' });
      const identity = execFileSync('grep', ['^AGE-SECRET', keyFile]).toString().trim();
      expect(identityToRecipient(identity)).toBe(execFileSync('age-keygen', ['-y', keyFile]).toString().trim());
    }
  });

  it('our files, to three recipients, open with each identity in the package; the package\'s open with ours', async () => {
    const identities = await Promise.all([1, 2, 3].map(() => generateX25519Identity()));
    const recipients = await Promise.all(identities.map((identity) => theirRecipient(identity)));
    const data = walLikeData(300_000, 5);
    const ours = await encryptOurs(data, recipients);
    for (const identity of identities) {
      const decrypter = new Decrypter();
      decrypter.addIdentity(identity);
      expect(Buffer.from(await decrypter.decrypt(ours)).equals(data)).toBe(true);
    }
    const encrypter = new Encrypter();
    for (const recipient of recipients) encrypter.addRecipient(recipient);
    const theirs = Buffer.from(await encrypter.encrypt(data));
    for (const identity of identities) expect((await decryptOurs(theirs, [identity])).equals(data)).toBe(true);
  });

  it.runIf(hasAge)('a file from `age -r A -r B` opens with either identity; ours opens with `age -d`', async () => {
    const [one, two] = await Promise.all([generateX25519Identity(), generateX25519Identity()]);
    const data = walLikeData(70_000, 6);
    const theirs = execFileSync('age', ['-r', await theirRecipient(one!), '-r', await theirRecipient(two!)], { input: data });
    expect((await decryptOurs(theirs, [two!])).equals(data)).toBe(true);
    const keyFile = path.join(temp.dir, 'one.txt');
    writeFileSync(keyFile, `${one}\n`);
    expect(execFileSync('age', ['-d', '-i', keyFile], { input: await encryptOurs(data, [await theirRecipient(one!)]) }).equals(data)).toBe(true);
  });

  it('skips stanzas of other types (grease) and refuses a file for other keys (key error)', async () => {
    const [mine, other] = await Promise.all([generateX25519Identity(), generateX25519Identity()]);
    const { header, fileKey } = encodeHeader([parseRecipient(await theirRecipient(mine!))]);
    // A stanza of an unknown type first, and the MAC recomputed, as a future age could write.
    const stanzas = header.toString('latin1').split('\n---')[0]!.split('\n').slice(1).join('\n');
    const upToMarker = Buffer.from(`age-encryption.org/v1\n-> grease-x !foo\nAAEC\n${stanzas}\n---`, 'latin1');
    const mac = createHmac('sha256', Buffer.from(hkdfSync('sha256', fileKey, Buffer.alloc(0), 'header', 32))).update(upToMarker).digest('base64').replace(/=+$/, '');
    const greased = Buffer.concat([upToMarker, Buffer.from(` ${mac}\n`)]);
    expect(decryptHeader(greased, [parseIdentity(mine!)]).equals(fileKey)).toBe(true);
    expect(() => decryptHeader(greased, [parseIdentity(other!)])).toThrow(/no identity matched/);
    await expect(decryptOurs(await encryptOurs(Buffer.from('x'), [await theirRecipient(mine!)]), [other!])).rejects.toMatchObject({ kind: 'key' });
  });

  it('refuses a damaged header: MAC, stanza share, non-canonical base64, a 64-column last body line, no MAC line', async () => {
    const identity = await generateX25519Identity();
    const keys = [parseIdentity(identity)];
    const file = await encryptOurs(Buffer.from('payload'), [await theirRecipient(identity)]);
    const header = headerOf(file);
    expect(() => decryptHeader(header, keys)).not.toThrow();
    const text = header.toString('latin1');
    const lines = text.split('\n');
    const variants: Array<[string, string]> = [
      ['MAC', text.replace(/--- (.)/, (_, first: string) => `--- ${first === 'A' ? 'B' : 'A'}`)],
      ['share', text.replace(/-> X25519 (.)/, (_, first: string) => `-> X25519 ${first === 'A' ? 'B' : 'A'}`)],
      ['non-canonical base64', [lines[0], lines[1], `${lines[2]!.slice(0, -1)}${lines[2]!.endsWith('A') ? 'B' : 'A'}`, ...lines.slice(3)].join('\n')],
      ['64-column last line', [lines[0], lines[1], `${lines[2]}${'A'.repeat(64 - lines[2]!.length)}`, ...lines.slice(3)].join('\n')],
      ['no MAC line', `${lines.slice(0, 3).join('\n')}\n`],
    ];
    for (const [what, damaged] of variants) expect(() => decryptHeader(Buffer.from(damaged, 'latin1'), keys), what).toThrow();
    const flipped = Buffer.from(file);
    flipped[header.length - 3] = (flipped[header.length - 3] ?? 0) ^ 1;
    await expect(decryptOurs(flipped, [identity])).rejects.toMatchObject({ kind: 'corrupt' });
  });

  it('parses keys strictly: checksum, mixed case, post-quantum and SSH keys are refused with a reason', async () => {
    const identity = await generateX25519Identity();
    const recipient = await theirRecipient(identity);
    const lastChar = recipient.at(-1) === 'q' ? 'p' : 'q';
    expect(() => parseRecipient(`${recipient.slice(0, -1)}${lastChar}`)).toThrow(/checksum/);
    expect(() => parseRecipient(`${recipient.slice(0, 10)}${recipient.slice(10).toUpperCase()}`)).toThrow(/Bech32/);
    expect(parseRecipient(recipient.toUpperCase())).toEqual(parseRecipient(recipient));
    expect(() => parseRecipient('age1pq1abcdef')).toThrow(/post-quantum/);
    expect(() => parseRecipient('ssh-ed25519 AAAA')).toThrow(/not an age X25519 public key/);
    expect(() => parseIdentity(`${identity.slice(0, -1)}${identity.at(-1) === 'Q' ? 'P' : 'Q'}`)).toThrow(/checksum/);
  });
});
