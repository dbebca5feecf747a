// Reading age keys from files: recipients (public, on the primary) and identities (secret, where restores run).
import { readFile } from 'node:fs/promises';
import { WalvaultError } from '../core/errors.js';

/** Key lines of an age key file: blank lines and `#` comments (age-keygen writes some) are skipped. */
function keyLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

async function readKeyFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new WalvaultError('key', `could not read the ${what} file "${path}" (${code})`, {
      hint: `check the path and that the OS user running walvault (usually postgres) can read it`,
      cause: error,
    });
  }
}

/** Reads an age identity file (as written by `age-keygen -o FILE`): one AGE-SECRET-KEY-1... per line. */
export async function readIdentityFile(path: string): Promise<string[]> {
  const identities = keyLines(await readKeyFile(path, 'age identity'));
  if (identities.length === 0) {
    throw new WalvaultError('key', `the age identity file "${path}" holds no key`, { hint: 'create one with `age-keygen -o FILE`' });
  }
  const stray = identities.find((line) => !line.startsWith('AGE-SECRET-KEY-'));
  if (stray !== undefined) {
    throw new WalvaultError('key', `the age identity file "${path}" has a line that is not an age secret key`, {
      hint: 'an identity file holds AGE-SECRET-KEY-1... lines (passphrase-protected or plugin identities are not supported)',
    });
  }
  return identities;
}

/** Reads an age recipients file (`age -R` format): one age1... public key per line. */
export async function readRecipientsFile(path: string): Promise<string[]> {
  const recipients = keyLines(await readKeyFile(path, 'age recipients'));
  if (recipients.length === 0) {
    throw new WalvaultError('key', `the age recipients file "${path}" holds no key`, { hint: 'put the output of `age-keygen -y IDENTITY-FILE` in it' });
  }
  return recipients;
}
