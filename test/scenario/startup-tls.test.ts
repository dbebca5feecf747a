// NODE_EXTRA_CA_CERTS without Node's start-up parse: the archive and restore launchers start Node without
// the variable (it would parse the whole bundle in every process) and hand its value on as
// WALVAULT_NODE_EXTRA_CA_CERTS; the S3 backend trusts those certificates itself (src/backend/extra-ca.ts).
// Proved here with an S3 server behind TLS whose certificate is signed by a CA made for the test
// (openssl) and given ONLY through NODE_EXTRA_CA_CERTS: archive and restore through the installed
// launchers, with no record (--push-ahead=0, --prefetch=0) and with records (a pusher, a prefetcher, a
// launcher that matched its record and started Node). Without the variable the same calls fail.
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomFile, runCli, s3Flags } from '../support/s3scenario.js';
import { startS3Server, type S3TestServer } from '../support/s3server.js';
import { killWorker, waitForWorkerExit } from '../support/spool.js';
import { makeTempDir } from '../support/tmp.js';

let server: S3TestServer;
let work: { dir: string; remove(): Promise<void> };
let proxy: tls.Server;
let endpoint: string;
let caFile: string;
let wrapper: string;
let seenFile: string;

/** A CA and a server certificate for 127.0.0.1 signed by it (openssl, in `dir`). */
function makeCertificates(dir: string): { ca: string; key: Buffer; cert: Buffer } {
  const at = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('ca.key'), '-out', at('ca.pem'), '-days', '2', '-subj', '/CN=walvault test CA');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', at('server.key'), '-out', at('server.csr'), '-subj', '/CN=127.0.0.1');
  execFileSync('sh', ['-c', `printf 'subjectAltName=IP:127.0.0.1\\n' > '${at('san.ext')}'`]);
  openssl('x509', '-req', '-in', at('server.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial', '-out', at('server.pem'), '-days', '2', '-extfile', at('san.ext'));
  return { ca: at('ca.pem'), key: execFileSync('cat', [at('server.key')]), cert: execFileSync('cat', [at('server.pem')]) };
}

beforeAll(async () => {
  server = await startS3Server();
  Object.assign(process.env, server.env);
  work = await makeTempDir();
  const certs = makeCertificates(work.dir);
  caFile = certs.ca;
  // TLS in front of the test server's plain HTTP endpoint (bytes passed through both ways).
  const upstream = new URL(server.endpoint);
  proxy = tls.createServer({ key: certs.key, cert: certs.cert }, (socket) => {
    const plain = net.connect(Number(upstream.port), upstream.hostname);
    socket.pipe(plain).pipe(socket);
    socket.on('error', () => plain.destroy());
    plain.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  endpoint = `https://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
  // Node as the launchers start it, recording NODE_EXTRA_CA_CERTS as that Node process sees it.
  seenFile = path.join(work.dir, 'seen');
  wrapper = path.join(work.dir, 'node-recording-ca');
  await fs.writeFile(wrapper, `#!/bin/sh\necho "\${NODE_EXTRA_CA_CERTS-unset}" >> '${seenFile}'\nexec node "$@"\n`, { mode: 0o755 });
});
afterAll(async () => {
  await new Promise((resolve) => proxy?.close(resolve));
  await server?.close();
  await work?.remove();
});

const segment = (n: number): string => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, '0')}`;
const flags = (prefix: string): string[] => [`--repo=s3://${server.bucket}/${prefix}`, `--s3-endpoint=${endpoint}`, '--s3-force-path-style'];
/** The CA given only through NODE_EXTRA_CA_CERTS; Node started through the recording wrapper. */
/** The value a launcher record (sh assignments, SPOOL.md "Records") holds for WALVAULT_NODE_EXTRA_CA_CERTS, quoted, or null. */
function recordedCa(record: string): string | null {
  const names = /^wv_r_set='(.*)'$/m.exec(record)?.[1]?.split(' ') ?? [];
  const index = names.indexOf('WALVAULT_NODE_EXTRA_CA_CERTS');
  return index < 0 ? null : (new RegExp(`^wv_r_e${index + 1}=(.*)$`, 'm').exec(record)?.[1] ?? null);
}
const withCa = (): Record<string, string> => ({ NODE_EXTRA_CA_CERTS: caFile, WALVAULT_NODE: wrapper });
/** What each Node the launchers started saw (and forgets it). */
async function seen(): Promise<string[]> {
  const lines = (await fs.readFile(seenFile, 'utf8').catch(() => '')).split('\n').filter((line) => line !== '');
  await fs.rm(seenFile, { force: true });
  return lines;
}
/** The object's bytes as the plain HTTP endpoint returns them (walvault stores segments uncompressed by default). */
async function stored(prefix: string, name: string): Promise<Buffer> {
  const restored = path.join(work.dir, `check-${prefix}-${name}`);
  const result = await runCli('walvault-restore', [...s3Flags(server, prefix), '--prefetch=0', name, restored]);
  expect(result, result.stderr).toMatchObject({ code: 0 });
  return fs.readFile(restored);
}

describe('an S3 server whose CA comes only from NODE_EXTRA_CA_CERTS', () => {
  it('without records: archive and restore work, and no Node start parses the bundle', async () => {
    const prefix = 'tls-plain';
    const name = segment(1);
    const file = await randomFile(work.dir, `plain-${name}`, 1 << 20);
    await seen();
    const archived = await runCli('walvault-archive', [...flags(prefix), '--push-ahead=0', file.path, name], { env: withCa() });
    expect(archived, archived.stderr).toMatchObject({ code: 0 });
    expect(await stored(prefix, name)).toEqual(file.data);
    const target = path.join(work.dir, 'plain-restored');
    const restored = await runCli('walvault-restore', [...flags(prefix), '--prefetch=0', name, target], { env: withCa() });
    expect(restored, restored.stderr).toMatchObject({ code: 0 });
    expect(await fs.readFile(target)).toEqual(file.data);
    expect(await seen()).toEqual(['unset', 'unset']);
  });

  it('without the variable the same calls fail: the certificate is trusted through it alone', async () => {
    const prefix = 'tls-plain';
    const name = segment(2);
    const file = await randomFile(work.dir, `untrusted-${name}`, 1 << 20);
    const archived = await runCli('walvault-archive', [...flags(prefix), '--push-ahead=0', '--timeout=20', file.path, name], { env: { NODE_EXTRA_CA_CERTS: '' } });
    expect(archived.code).not.toBe(0);
    expect(archived.stderr).toMatch(/certificate/i);
    const restored = await runCli('walvault-restore', [...flags(prefix), '--prefetch=0', '--timeout=20', segment(1), path.join(work.dir, 'untrusted-restored')], { env: { NODE_EXTRA_CA_CERTS: '' } });
    expect(restored.code).not.toBe(0);
    expect(restored.code).not.toBe(1);
    // A bundle that cannot be read is reported and ignored, as Node does with NODE_EXTRA_CA_CERTS.
    const unreadable = path.join(work.dir, 'no-such-bundle.pem');
    const ignored = await runCli('walvault-archive', [...flags(prefix), '--push-ahead=0', '--timeout=20', file.path, name], { env: { NODE_EXTRA_CA_CERTS: unreadable } });
    expect(ignored.code).not.toBe(0);
    expect(ignored.stderr).toContain(`ignoring extra CA certificates from "${unreadable}" (NODE_EXTRA_CA_CERTS)`);
  });

  it('with records: the pusher, the launcher answering, and Node started by a launcher whose record matched', async () => {
    const prefix = 'tls-push';
    const dataDir = path.join(work.dir, 'data-archive');
    const status = path.join(dataDir, 'pg_wal', 'archive_status');
    await fs.mkdir(status, { recursive: true });
    const names = [1, 2, 3, 4].map(segment);
    const data = new Map<string, Buffer>();
    for (const name of names) {
      const file = await randomFile(work.dir, `push-${name}`, 1 << 20);
      data.set(name, file.data);
      await fs.copyFile(file.path, path.join(dataDir, 'pg_wal', name));
    }
    for (const name of names.slice(0, 3)) await fs.writeFile(path.join(status, `${name}.ready`), '');
    const spool = path.join(dataDir, 'pg_wal', 'walvault');
    try {
      await seen();
      const first = await runCli('walvault-archive', [...flags(prefix), `pg_wal/${names[0]}`, names[0]!], { cwd: dataDir, env: withCa() });
      expect(first, first.stderr).toMatchObject({ code: 0 });
      await fs.rename(path.join(status, `${names[0]}.ready`), path.join(status, `${names[0]}.done`));
      await waitForWorkerExit(spool, 'archive', { expectWorker: false });
      expect(await fs.readFile(path.join(spool, 'archive.record.sh'), 'utf8').then(recordedCa)).toBe(`'${caFile}'`);
      // Pushed by the pusher (over TLS): answered by the launcher from its marker.
      const second = await runCli('walvault-archive', [...flags(prefix), `pg_wal/${names[1]}`, names[1]!], { cwd: dataDir, env: withCa() });
      expect(second, second.stderr).toMatchObject({ code: 0 });
      expect(second.stderr).toContain(`"${names[1]}" was pushed ahead and is durable in the repository`);
      // Not pushed ahead (no .ready): the record matches, the launcher starts Node, which stores it over TLS.
      const fourth = await runCli('walvault-archive', [...flags(prefix), `pg_wal/${names[3]}`, names[3]!], { cwd: dataDir, env: withCa() });
      expect(fourth, fourth.stderr).toMatchObject({ code: 0 });
      expect(fourth.stderr).toContain(`archived "${names[3]}"`);
      expect(await seen()).toEqual(['unset', 'unset']);
      for (const name of names) expect(await stored(prefix, name)).toEqual(data.get(name));
    } finally {
      await killWorker(spool, 'archive').catch(() => undefined);
    }
  });

  it('with records: the prefetcher fetches over TLS and the launcher hands its files over', async () => {
    const prefix = 'tls-fetch';
    const names = [1, 2, 3].map(segment);
    const data = new Map<string, Buffer>();
    for (const name of names) {
      const file = await randomFile(work.dir, `fetch-${name}`, 1 << 20);
      data.set(name, file.data);
      const archived = await runCli('walvault-archive', [...s3Flags(server, prefix), '--push-ahead=0', file.path, name]);
      expect(archived, archived.stderr).toMatchObject({ code: 0 });
    }
    const dataDir = path.join(work.dir, 'data-restore');
    await fs.mkdir(path.join(dataDir, 'pg_wal'), { recursive: true });
    await fs.writeFile(path.join(dataDir, 'recovery.signal'), '');
    const spool = path.join(dataDir, 'pg_wal', 'walvault');
    const target = path.join(dataDir, 'pg_wal', 'RECOVERYXLOG');
    try {
      await seen();
      for (const name of names) {
        const restored = await runCli('walvault-restore', [...flags(prefix), name, 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, env: withCa(), waitFor: 'exit' });
        expect(restored, restored.stderr).toMatchObject({ code: 0 });
        expect(await fs.readFile(target)).toEqual(data.get(name));
        if (name === names[0]) expect(await fs.readFile(path.join(spool, 'restore.record.sh'), 'utf8').then(recordedCa)).toBe(`'${caFile}'`);
      }
      // The end of the archive, as the prefetcher (over TLS) or Node tells it: exit 1, not an error.
      const missing = await runCli('walvault-restore', [...flags(prefix), segment(9), 'pg_wal/RECOVERYXLOG'], { cwd: dataDir, env: withCa(), waitFor: 'exit' });
      expect(missing, missing.stderr).toMatchObject({ code: 1 });
      expect((await seen()).every((value) => value === 'unset')).toBe(true);
    } finally {
      await killWorker(spool, 'restore').catch(() => undefined);
    }
  });
});
