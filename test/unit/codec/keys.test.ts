// Reading age key files: comments and blank lines skipped, empty or foreign files refused with a 'key' error naming the file.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readIdentityFile, readRecipientsFile } from '../../../src/codec/index.js';
import { makeTempDir } from '../../support/tmp.js';

let temp: { dir: string; remove(): Promise<void> };
beforeAll(async () => {
  temp = await makeTempDir();
});
afterAll(() => temp.remove());

async function file(name: string, text: string): Promise<string> {
  const target = path.join(temp.dir, name);
  await writeFile(target, text);
  return target;
}

describe('readIdentityFile', () => {
  it('reads the keys of an age-keygen file, skipping its comments and blank lines', async () => {
    const keyFile = await file('key.txt', '# created: 2026-01-01T00:00:00Z\n# public key: age1abc\nAGE-SECRET-KEY-1AAA\n\r\nAGE-SECRET-KEY-1BBB\r\n');
    expect(await readIdentityFile(keyFile)).toEqual(['AGE-SECRET-KEY-1AAA', 'AGE-SECRET-KEY-1BBB']);
  });

  it('a missing file is a key error naming it', async () => {
    const missing = path.join(temp.dir, 'nope.txt');
    await expect(readIdentityFile(missing)).rejects.toMatchObject({ kind: 'key', message: `could not read the age identity file "${missing}" (ENOENT)` });
  });

  it('a file without keys is a key error', async () => {
    const empty = await file('empty.txt', '# nothing here\n\n');
    await expect(readIdentityFile(empty)).rejects.toMatchObject({ kind: 'key', message: `the age identity file "${empty}" holds no key` });
  });

  it('a recipients file given as identity file is refused without echoing its lines', async () => {
    const wrong = await file('recipients-as-identity.txt', 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n');
    const error = await readIdentityFile(wrong).catch((caught: unknown) => caught as Error);
    expect(error).toMatchObject({ kind: 'key', message: `the age identity file "${wrong}" has a line that is not an age secret key` });
  });
});

describe('readRecipientsFile', () => {
  it('reads one public key per line, skipping comments', async () => {
    const recipients = await file('recipients.txt', '# site A\nage1aaa\n\n# escrow\nage1bbb\n');
    expect(await readRecipientsFile(recipients)).toEqual(['age1aaa', 'age1bbb']);
  });

  it('an empty recipients file is a key error', async () => {
    const empty = await file('no-recipients.txt', '\n');
    await expect(readRecipientsFile(empty)).rejects.toMatchObject({ kind: 'key', message: `the age recipients file "${empty}" holds no key` });
  });
});
