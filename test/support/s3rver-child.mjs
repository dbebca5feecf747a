// Runs one s3rver in its own process, so it can use Node's legacy OpenSSL provider (its ListObjectsV2
// continuation tokens use DES) without loading that provider into the test process.
// Usage: node --openssl-legacy-provider s3rver-child.mjs <directory> <bucket>...; prints {"port":N} on stdout
// and exits when its stdin closes (the parent died or is done).
// @ts-expect-error s3rver ships no type declarations; this file only starts it.
import S3rver from 's3rver';

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
