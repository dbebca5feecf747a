// Shared pieces of the S3 scenario tests: the per-file server set-up, running the built executables against the test server, WAL-like files, raw SDK access.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CreateMultipartUploadCommand, GetObjectCommand, PutObjectCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { createS3Backend, type S3Backend, type S3BackendOptions } from '../../src/backend/s3.js';
import type { Logger } from '../../src/core/log.js';
import { run, type RunResult } from './cli.js';
import { startS3Server, type S3TestServer } from './s3server.js';
import { makeTempDir } from './tmp.js';

/** What an S3 scenario file works with once its set-up has run. */
export interface S3Scenario {
  /** s3rver and its proxy (see s3server.ts); the SDK credentials are in process.env. */
  readonly server: S3TestServer;
  /** A scratch directory, removed after the file (with `scratch: false`, an error to use). */
  readonly work: { dir: string; remove(): Promise<void> };
}

/** Options of useS3Scenario. */
export interface S3ScenarioOptions {
  /** Make the scratch directory `work` (default true). */
  scratch?: boolean;
  /** Before each test: no faults, no added latency, If-None-Match enforced, an empty request log. */
  resetEachTest?: boolean;
  /** Called with the scenario once it is up, for files that keep it in variables of their own. */
  bind?: (scenario: S3Scenario) => void;
}

/**
 * The set-up every S3 scenario file shares: one s3rver and its proxy for the file (in beforeAll, in
 * the describe block it is called in), their credentials in process.env for the SDK and the
 * executables, a scratch directory; all stopped and removed in afterAll, also when a test failed.
 */
export function useS3Scenario(options: S3ScenarioOptions = {}): S3Scenario {
  let server: S3TestServer | undefined;
  let work: { dir: string; remove(): Promise<void> } | undefined;
  const scenario: S3Scenario = {
    get server() {
      if (server === undefined) throw new Error('the S3 scenario is used before its beforeAll ran');
      return server;
    },
    get work() {
      if (work === undefined) throw new Error(options.scratch === false ? 'this S3 scenario has no scratch directory' : 'the S3 scenario is used before its beforeAll ran');
      return work;
    },
  };
  beforeAll(async () => {
    server = await startS3Server();
    Object.assign(process.env, server.env);
    if (options.scratch !== false) work = await makeTempDir();
    options.bind?.(scenario);
  });
  afterAll(async () => {
    await server?.close();
    await work?.remove();
  });
  if (options.resetEachTest === true) {
    beforeEach(() => {
      scenario.server.clearFaults();
      scenario.server.latencyMs = 0;
      scenario.server.enforceConditionalWrites = true;
      scenario.server.resetRequests();
    });
  }
  return scenario;
}

/** Runs a built walvault executable (its sh launcher); WALVAULT_* variables are not inherited. */
export const runCli = run;

/** What a finished command returned. */
export type CliResult = RunResult;

/** Command-line flags pointing walvault at the test server (through the proxy unless `bare`). */
export function s3Flags(server: S3TestServer, prefix: string, options: { bare?: boolean } = {}): string[] {
  return [`--repo=s3://${server.bucket}/${prefix}`, `--s3-endpoint=${options.bare === true ? server.bareEndpoint : server.endpoint}`, '--s3-force-path-style'];
}

/** A backend on the test server. */
export function s3Backend(server: S3TestServer, prefix: string, options: Partial<S3BackendOptions> & { bare?: boolean } = {}): S3Backend {
  const { bare, ...rest } = options;
  return createS3Backend({ bucket: server.bucket, prefix, endpoint: bare === true ? server.bareEndpoint : server.endpoint, forcePathStyle: true, ...rest });
}

/** A plain SDK client on the bare server: "another tool" writing or reading objects behind walvault's back. */
export function rawClient(server: S3TestServer): S3Client {
  return new S3Client({ endpoint: server.bareEndpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
}

/** Writes an object with another tool (no walvault metadata unless given). */
export async function putRaw(server: S3TestServer, key: string, body: Buffer, metadata?: Record<string, string>): Promise<void> {
  await rawClient(server).send(new PutObjectCommand({ Bucket: server.bucket, Key: key, Body: body, ...(metadata === undefined ? {} : { Metadata: metadata }) }));
}

/** Reads an object's bytes and user metadata with another tool; null when missing. */
export async function getRaw(server: S3TestServer, key: string): Promise<{ body: Buffer; metadata: Record<string, string> } | null> {
  try {
    const response = await rawClient(server).send(new GetObjectCommand({ Bucket: server.bucket, Key: key }));
    return { body: Buffer.from(await response.Body!.transformToByteArray()), metadata: response.Metadata ?? {} };
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return null;
    throw error;
  }
}

/** A file with random content in `dir`, returned with its bytes. */
export async function randomFile(dir: string, name: string, size: number): Promise<{ path: string; data: Buffer }> {
  const data = randomBytes(size);
  const file = path.join(dir, name);
  await fs.writeFile(file, data);
  return { path: file, data };
}

/** A logger that keeps its lines, for asserting warnings. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    debug: (message) => lines.push(`debug: ${message}`),
    info: (message) => lines.push(`info: ${message}`),
    warn: (message) => lines.push(`warning: ${message}`),
    error: (message) => lines.push(`error: ${message}`),
  };
}

/** Bucket key of a WAL segment under a repository prefix (as src/wal/names.ts lays it out). */
export function segmentKey(prefix: string, segment: string): string {
  return `${prefix}/wal/${segment.slice(0, 16)}/${segment}`;
}

/** A small first part for putLarge in tests (S3's minimum), doubling every 2 parts, parts above 8 MiB spooled: a 25 MiB stream meets every kind of part. */
export const SMALL_MULTIPART = { partBytes: 5 * 1024 * 1024, partsPerDoubling: 2, memoryPartBytes: 8 * 1024 * 1024 };

/** Starts a multipart upload of `key` with one part and leaves it, as a backup killed mid-upload does. */
export async function leaveUnfinishedUpload(backend: S3Backend, key: string): Promise<string> {
  const objectKey = backend.objectKey(key);
  const created = await backend.client.send(new CreateMultipartUploadCommand({ Bucket: backend.bucket, Key: objectKey }));
  await backend.client.send(new UploadPartCommand({ Bucket: backend.bucket, Key: objectKey, UploadId: created.UploadId, PartNumber: 1, Body: Buffer.alloc(1024, 1) }));
  return created.UploadId!;
}
