// Runs one s3rver in its own process, so it can use Node's legacy OpenSSL provider (its ListObjectsV2
// continuation tokens use DES) without loading that provider into the test process.
// Usage: node --openssl-legacy-provider s3rver-child.mjs <directory> <bucket>...; prints {"port":N} on stdout
// and exits when its stdin closes (the parent died or is done).
import { createHash } from 'node:crypto';
import { mkdir, open, rm, rmdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
// @ts-expect-error s3rver ships no type declarations.
import S3rver from 's3rver';

// s3rver keeps an object as files in a folder per key prefix. Its deleteObject removes the folders the
// delete leaves empty, and its putObject/putPart create the folder, then open the file through a write
// stream without an 'error' listener: a delete that empties the folder in between (two clients writing
// and deleting scratch objects under one prefix, as walvault's If-None-Match probes do) makes the open
// fail with ENOENT, an unhandled 'error' event that ends the whole server. The writes below open the
// file before streaming into it, create the folder again when it vanished, and report any failure as
// the request's error; the delete stops at a folder that is no longer empty or already gone.
const require = createRequire(import.meta.url);
/** @type {{ prototype: Record<string, unknown> }} */
const FilesystemStore = require('s3rver/lib/stores/filesystem.js');

/**
 * What the replaced methods use of the store.
 * @typedef {object} Store
 * @property {(bucket: string, key: string | undefined, resource: string) => string} getResourcePath
 * @property {(bucket: string) => string} getBucketPath
 * @property {(bucket: string, key: string, metadata: object, md5: string) => Promise<void>} putMetadata
 */

/**
 * Writes a body into `file`, its folder created as needed; its size and MD5.
 * @param {string} file
 * @param {Buffer | AsyncIterable<Buffer>} content
 */
async function writeBody(file, content) {
  let handle;
  for (;;) {
    await mkdir(path.dirname(file), { recursive: true });
    try {
      handle = await open(file, 'w');
      break;
    } catch (error) {
      if (/** @type {NodeJS.ErrnoException} */ (error).code !== 'ENOENT') throw error;
    }
  }
  const md5 = createHash('md5');
  let size = 0;
  /** @param {AsyncIterable<Buffer>} chunks */
  const counted = async function* (chunks) {
    for await (const chunk of chunks) {
      md5.update(chunk);
      size += chunk.length;
      yield chunk;
    }
  };
  await pipeline(Buffer.isBuffer(content) ? Readable.from([content]) : content, counted, handle.createWriteStream());
  return { size, md5: md5.digest('hex') };
}

/**
 * @this {Store}
 * @param {{ bucket: string; key: string; metadata: object; content: Buffer | AsyncIterable<Buffer> }} object
 */
FilesystemStore.prototype.putObject = async function putObject(object) {
  const { size, md5 } = await writeBody(this.getResourcePath(object.bucket, object.key, 'object'), object.content);
  await this.putMetadata(object.bucket, object.key, object.metadata, md5);
  return { size, md5 };
};

/**
 * @this {Store}
 * @param {string} bucket
 * @param {string} uploadId
 * @param {number} partNumber
 * @param {AsyncIterable<Buffer>} content
 */
FilesystemStore.prototype.putPart = async function putPart(bucket, uploadId, partNumber, content) {
  const partPath = path.join(this.getResourcePath(bucket, undefined, 'uploads'), uploadId, partNumber.toString());
  const { size, md5 } = await writeBody(partPath, content);
  await writeFile(`${partPath}.md5`, md5);
  return { size, md5 };
};

/**
 * @this {Store}
 * @param {string} bucket
 * @param {string} key
 */
FilesystemStore.prototype.deleteObject = async function deleteObject(bucket, key) {
  await Promise.all(['object', 'object.md5', 'metadata.json'].map((resource) => rm(this.getResourcePath(bucket, key, resource), { force: true })));
  const parts = key.split('/').slice(0, -1);
  for (; parts.length > 0; parts.pop()) {
    try {
      await rmdir(path.join(this.getBucketPath(bucket), ...parts));
    } catch (error) {
      const code = /** @type {NodeJS.ErrnoException} */ (error).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOENT') break;
      throw error;
    }
  }
};

const [directory, ...buckets] = process.argv.slice(2);
const server = new S3rver({
  port: 0,
  address: '127.0.0.1',
  directory,
  silent: true,
  configureBuckets: buckets.map((name) => ({ name })),
});
const address = await server.run();
process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
