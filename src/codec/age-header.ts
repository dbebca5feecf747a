// The age v1 header for X25519 keys (age-encryption.org/v1, "X25519 recipient stanza"), with Node's
// crypto (OpenSSL): X25519, HKDF-SHA-256, HMAC-SHA-256, ChaCha20-Poly1305.
//
// Why not the age-encryption package any more: loading it took 18 MiB of RSS and 51 ms, and its first
// X25519 operation in JavaScript 7-9 MiB and 83 ms more (Node 22, `node -e`), in every process that
// encrypts or decrypts: the backup with zstd and age peaked above 100 MiB because of it. It stays a
// development dependency: the tests check this code against it and against the `age` tool, both ways.
//
// Only what walvault supports: X25519 recipients (age1...) and identities (AGE-SECRET-KEY-1...).
// Reading, stanzas of other types are skipped (another recipient's, or grease); a file none of the
// given identities opens is refused with "no identity matched".
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';

const VERSION_LINE = 'age-encryption.org/v1';
const X25519_INFO = 'age-encryption.org/v1/X25519';
/** DER prefixes of a raw X25519 key (RFC 8410): PKCS #8 private, SubjectPublicKeyInfo public. */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
/** Characters per line of a stanza body; the last line of a body is shorter (possibly empty). */
const COLUMNS = 64;

// --- Bech32 (BIP 173), the encoding of age keys --------------------------------------------------

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATORS = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let check = 1;
  for (const value of values) {
    const top = check >>> 25;
    check = ((check & 0x1ffffff) << 5) ^ value;
    for (let bit = 0; bit < 5; bit += 1) if ((top >>> bit) & 1) check ^= GENERATORS[bit]!;
  }
  return check >>> 0;
}

function expandPrefix(prefix: string): number[] {
  return [...[...prefix].map((char) => char.charCodeAt(0) >> 5), 0, ...[...prefix].map((char) => char.charCodeAt(0) & 31)];
}

/** Regroups bits: 8 to 5 (with padding) or 5 to 8 (padding must be zero and short). */
function regroup(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | null {
  let accumulator = 0;
  let bits = 0;
  const out: number[] = [];
  for (let index = 0; index < data.length; index += 1) {
    accumulator = (accumulator << from) | data[index]!;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((accumulator >>> bits) & ((1 << to) - 1));
    }
    accumulator &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits > 0) out.push((accumulator << (to - bits)) & ((1 << to) - 1));
  } else if (bits >= from || accumulator !== 0) {
    return null;
  }
  return out;
}

/** The bytes of a Bech32 string with this prefix (case-insensitive, not mixed), or null when it is not one. */
function bech32Decode(text: string, prefix: string): Buffer | null {
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) return null;
  const lower = text.toLowerCase();
  const separator = lower.lastIndexOf('1');
  if (lower.slice(0, separator) !== prefix.toLowerCase() || lower.length - separator - 1 < 6) return null;
  const values: number[] = [];
  for (const char of lower.slice(separator + 1)) {
    const value = CHARSET.indexOf(char);
    if (value < 0) return null;
    values.push(value);
  }
  if (polymod([...expandPrefix(lower.slice(0, separator)), ...values]) !== 1) return null;
  const bytes = regroup(values.slice(0, -6), 5, 8, false);
  return bytes === null ? null : Buffer.from(bytes);
}

/** A Bech32 string of `bytes` under `prefix` (lower case). */
function bech32Encode(prefix: string, bytes: Uint8Array): string {
  const values = regroup(bytes, 8, 5, true)!;
  const check = polymod([...expandPrefix(prefix), ...values, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = Array.from({ length: 6 }, (_, index) => (check >>> (5 * (5 - index))) & 31);
  return `${prefix}1${[...values, ...checksum].map((value) => CHARSET[value]).join('')}`;
}

// --- Keys -----------------------------------------------------------------------------------------

/** The 32-byte X25519 public key of an `age1...` recipient; throws (message for the user) when it is not one. */
export function parseRecipient(recipient: string): Buffer {
  if (/^age1pq1/i.test(recipient)) throw new Error('post-quantum (age1pq1...) recipients are not supported; use an X25519 key from age-keygen');
  if (!/^age1/i.test(recipient)) throw new Error('not an age X25519 public key (age1...); plugin and SSH keys are not supported');
  const key = bech32Decode(recipient, 'age');
  if (key === null || key.length !== 32) throw new Error('malformed age1 key (bad Bech32 encoding or checksum)');
  return key;
}

/** An identity: its private key object and the raw public key (the salt of its stanzas). */
export interface X25519Identity {
  privateKey: KeyObject;
  publicKey: Buffer;
}

/** Parses an `AGE-SECRET-KEY-1...` identity; throws (message without the secret) when it is not one. */
export function parseIdentity(identity: string): X25519Identity {
  const scalar = bech32Decode(identity, 'AGE-SECRET-KEY-');
  if (scalar === null || scalar.length !== 32) throw new Error('malformed AGE-SECRET-KEY-1 line (bad Bech32 encoding or checksum)');
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, scalar]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
}

/** The `age1...` recipient of an identity (what `age-keygen -y` prints). */
export function identityToRecipient(identity: string): string {
  return bech32Encode('age', parseIdentity(identity).publicKey);
}

function rawPublicKey(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

/** X25519(private, public); an all-zero result (a low-order point) is refused, as the spec requires. */
function sharedSecret(privateKey: KeyObject, publicKey: Uint8Array): Buffer {
  const shared = diffieHellman({ privateKey, publicKey: publicKeyObject(publicKey) });
  if (shared.every((byte) => byte === 0)) throw new Error('X25519 share is a low-order point');
  return shared;
}

/** HKDF-SHA-256 to 32 bytes, as age derives every key (stanza wrap key, header MAC key, payload key). */
export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
}

const ZERO_NONCE = Buffer.alloc(12);

/** ChaCha20-Poly1305 with the all-zero nonce: a stanza body (the 16-byte file key and its tag). */
function sealFileKey(key: Buffer, fileKey: Buffer): Buffer {
  const cipher = createCipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 });
  return Buffer.concat([cipher.update(fileKey), cipher.final(), cipher.getAuthTag()]);
}

/** The file key from a stanza body, or null when this key does not open it. */
function openFileKey(key: Buffer, body: Buffer): Buffer | null {
  const decipher = createDecipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: 16 });
  decipher.setAuthTag(body.subarray(16));
  const fileKey = decipher.update(body.subarray(0, 16));
  try {
    decipher.final();
  } catch {
    return null;
  }
  return fileKey;
}

// --- Header ---------------------------------------------------------------------------------------

/** Base64 without padding, as age writes it. */
function base64Raw(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '');
}

/** Decodes canonical unpadded base64 (what base64Raw writes, nothing else); null otherwise. */
function fromBase64Raw(text: string): Buffer | null {
  if (!/^[A-Za-z0-9+/]*$/.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64');
  return base64Raw(bytes) === text ? bytes : null;
}

/** The header MAC: HMAC-SHA-256 under HKDF(file key, "header") of the header up to and including "---". */
function headerMac(fileKey: Buffer, headerUpToMarker: Buffer): Buffer {
  return createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header')).update(headerUpToMarker).digest();
}

/**
 * A header for `recipients` (age1... keys, parsed with parseRecipient) around a new random file key:
 * one X25519 stanza per recipient, each with its own ephemeral key, and the MAC line.
 */
export function encodeHeader(recipients: readonly Uint8Array[]): { header: Buffer; fileKey: Buffer } {
  const fileKey = randomBytes(16);
  const lines = [VERSION_LINE];
  for (const recipient of recipients) {
    const ephemeral = generateKeyPairSync('x25519');
    const share = rawPublicKey(ephemeral.publicKey);
    const wrapKey = hkdf(sharedSecret(ephemeral.privateKey, recipient), Buffer.concat([share, recipient]), X25519_INFO);
    // A 32-byte body is 43 characters: one line, shorter than 64 as the last line must be.
    lines.push(`-> X25519 ${base64Raw(share)}`, base64Raw(sealFileKey(wrapKey, fileKey)));
  }
  const upToMarker = Buffer.from(`${lines.join('\n')}\n---`, 'ascii');
  return { header: Buffer.concat([upToMarker, Buffer.from(` ${base64Raw(headerMac(fileKey, upToMarker))}\n`, 'ascii')]), fileKey };
}

interface Stanza {
  args: string[];
  body: Buffer;
}

/** Parses a whole header (through its MAC line's newline); throws on anything the format does not allow. */
function parseHeader(header: Buffer): { stanzas: Stanza[]; upToMarker: Buffer; mac: Buffer } {
  const text = header.toString('latin1');
  if (!text.endsWith('\n')) throw new Error('header does not end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines[0] !== VERSION_LINE) throw new Error('not an age v1 header');
  const stanzas: Stanza[] = [];
  let at = 1;
  while (at < lines.length && lines[at]!.startsWith('-> ')) {
    const args = lines[at]!.slice(3).split(' ');
    if (args.some((arg) => !/^[\x21-\x7e]+$/.test(arg))) throw new Error('malformed stanza line');
    at += 1;
    const parts: Buffer[] = [];
    for (;;) {
      const line = lines[at];
      if (line === undefined || line.length > COLUMNS) throw new Error('malformed stanza body');
      const bytes = fromBase64Raw(line);
      if (bytes === null) throw new Error('stanza body is not canonical base64');
      parts.push(bytes);
      at += 1;
      if (line.length < COLUMNS) break;
    }
    stanzas.push({ args, body: Buffer.concat(parts) });
  }
  const macLine = lines[at];
  if (at !== lines.length - 1 || macLine === undefined || !macLine.startsWith('--- ')) throw new Error('malformed header (no MAC line after the stanzas)');
  const mac = fromBase64Raw(macLine.slice(4));
  if (mac === null || mac.length !== 32) throw new Error('malformed header MAC');
  if (stanzas.length === 0) throw new Error('header has no recipient stanza');
  return { stanzas, upToMarker: header.subarray(0, header.length - macLine.length - 1 + 3), mac };
}

/**
 * The file key of a header (a Buffer holding the whole header through the MAC line), with the first
 * identity that opens one of its X25519 stanzas; the MAC is checked with it. Throws "no identity
 * matched" when none does, and a plain error for a malformed header or a wrong MAC.
 */
export function decryptHeader(header: Buffer, identities: readonly X25519Identity[]): Buffer {
  const { stanzas, upToMarker, mac } = parseHeader(header);
  let fileKey: Buffer | null = null;
  for (const stanza of stanzas) {
    if (stanza.args[0] !== 'X25519') continue;
    const share = stanza.args.length === 2 ? fromBase64Raw(stanza.args[1]!) : null;
    if (share === null || share.length !== 32 || stanza.body.length !== 32) throw new Error('malformed X25519 stanza');
    for (const identity of identities) {
      const wrapKey = hkdf(sharedSecret(identity.privateKey, share), Buffer.concat([share, identity.publicKey]), X25519_INFO);
      fileKey = openFileKey(wrapKey, stanza.body);
      if (fileKey !== null) break;
    }
    if (fileKey !== null) break;
  }
  if (fileKey === null) throw new Error('no identity matched any of the file\'s recipients');
  if (!timingSafeEqual(headerMac(fileKey, upToMarker), mac)) throw new Error('bad header MAC');
  return fileKey;
}
