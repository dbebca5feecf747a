// A real S3-speaking HTTP server for tests: s3rver in a child process, plus a small proxy in front of
// it that enforces If-None-Match: * (s3rver ignores it), emulates AbortMultipartUpload (s3rver
// answers 405) and injects faults (500, 503 SlowDown, dropped connections, stalls, latency).
//
// What s3rver 3.7 does not implement, and what the proxy does about it:
// - If-None-Match on PutObject / CompleteMultipartUpload: ignored, the object is overwritten. The
//   proxy enforces it (412 PreconditionFailed when the key exists); "bare" endpoints show the raw behaviour.
// - AbortMultipartUpload (DELETE ?uploadId): 405 MethodNotAllowed. The proxy removes the upload's
//   parts from s3rver's storage directory and answers 204; on the bare endpoint aborts fail.
// - ListMultipartUploads (GET ?uploads): NotImplemented. The proxy answers it from s3rver's storage
//   directory (each upload's folder holds its key; started = the folder's mtime; one page, no markers).
// - Transfer checksums (x-amz-checksum-*, aws-chunked trailers): not verified, not returned. The proxy
//   verifies an x-amz-checksum-crc32 header as S3 does: it reads the whole body first, answers 400
//   BadDigest on a mismatch, and forwards nothing when the client gives up before the body's end (S3
//   stores nothing then either). Bodies sent with aws-chunked encoding would be stored with their chunk
//   framing (walvault never sends them).
// - Writes to one key are not atomic (the file is written in place): the proxy forwards PUTs and
//   completes of one key one at a time, as S3 replaces an object whole.
// - Folders: a delete removes the folders it leaves empty, and a PUT opens its file without an error
//   listener, so a delete emptying the folder of a concurrent PUT (two walvault processes probing
//   If-None-Match under one prefix) would end s3rver with an unhandled ENOENT. s3rver-child.mjs replaces
//   those store methods: the PUT creates its folder again, the delete stops at a folder in use.
// - Signature V4 is checked only partially; SSE, storage classes other than its fixed list, object
//   lock and versioning are not implemented.
// - ListObjectsV2 continuation tokens use DES, which OpenSSL 3 refuses: the child runs with
//   --openssl-legacy-provider.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import zlib from 'node:zlib';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** What the proxy can do to a request instead of (or on top of) forwarding it. */
export type Fault =
  /** Answer with an S3 error document and this status, without forwarding. */
  | { type: 'status'; status: number; code: string; message?: string }
  /** Destroy the connection before answering (the client sees a reset / "socket hang up"). */
  | { type: 'drop' }
  /** Hold the request without answering for `ms`, then destroy the connection. */
  | { type: 'stall'; ms: number }
  /** Forward, but cut the response body after `afterBytes` bytes by destroying the connection. */
  | { type: 'truncate'; afterBytes: number }
  /** Forward, but invert the response body's byte at `atByte` in transit (the stored object stays intact). */
  | { type: 'flip'; atByte: number }
  /** Hold the request for `ms`, then handle it normally (to order concurrent requests). */
  | { type: 'delay'; ms: number };

/** Which requests a fault applies to; omitted fields match anything. */
export interface FaultMatch {
  method?: string;
  /** Matches the object key (without bucket); a string matches by inclusion. */
  key?: string | RegExp;
  /** A query parameter that must be present, e.g. 'uploadId' or 'partNumber'. */
  query?: string;
}

/** A fault with its filter and how many requests it hits (default 1). */
export interface FaultRule {
  fault: Fault;
  match?: FaultMatch;
  times?: number;
}

/** One request as the proxy saw it, for asserting how many round trips an operation cost. */
export interface RequestRecord {
  method: string;
  bucket: string;
  key: string;
  query: string;
  ifNoneMatch: string | undefined;
  /** The x-amz-checksum-crc32 header, when the request carried one (the proxy checks it). */
  checksumCrc32: string | undefined;
  /** The content-encoding header (aws-chunked framing must never be sent). */
  contentEncoding: string | undefined;
  /** What the proxy did: forwarded, refused (412), a fault type, or 'abort' (emulated). */
  outcome: string;
  /** All request headers (lower-case names), e.g. x-amz-storage-class or x-amz-server-side-encryption. */
  headers: http.IncomingHttpHeaders;
}

/** Common S3 faults, by name. */
export const faults = {
  internalError: (): Fault => ({ type: 'status', status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.' }),
  slowDown: (): Fault => ({ type: 'status', status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' }),
  conditionalConflict: (): Fault => ({
    type: 'status',
    status: 409,
    code: 'ConditionalRequestConflict',
    message: 'A conflicting conditional operation is currently in progress against this resource. Please try again.',
  }),
  accessDenied: (): Fault => ({ type: 'status', status: 403, code: 'AccessDenied', message: 'Access Denied' }),
  notImplemented: (): Fault => ({ type: 'status', status: 501, code: 'NotImplemented', message: 'A header you provided implies functionality that is not implemented' }),
  drop: (): Fault => ({ type: 'drop' }),
  stall: (ms: number): Fault => ({ type: 'stall', ms }),
  truncate: (afterBytes: number): Fault => ({ type: 'truncate', afterBytes }),
  delay: (ms: number): Fault => ({ type: 'delay', ms }),
};

/** A running s3rver + proxy; close() stops both and removes the storage directory. */
export interface S3TestServer {
  /** Proxy endpoint: If-None-Match enforced, aborts emulated, faults injectable. */
  endpoint: string;
  /** s3rver itself: ignores If-None-Match, cannot abort multipart uploads. */
  bareEndpoint: string;
  bucket: string;
  /** s3rver's storage directory. */
  directory: string;
  /** Environment for the AWS SDK default credential chain (and for child processes). */
  env: Record<string, string>;
  /** Adds a fault rule; rules are tried in order. */
  inject(rule: FaultRule): void;
  clearFaults(): void;
  /** Latency added to every proxied request, in ms. */
  latencyMs: number;
  /** Turns If-None-Match enforcement of the proxy on or off (default on). */
  enforceConditionalWrites: boolean;
  /** Requests seen by the proxy since the last resetRequests(). */
  requests: RequestRecord[];
  /** Most GET requests of objects the proxy had open at once since the last resetRequests() (to see a client's parallelism). */
  maxConcurrentGets: number;
  resetRequests(): void;
  /** Path of the file holding an object's bytes inside s3rver's storage (to corrupt it). */
  objectFile(key: string): string;
  /** Path of the JSON file holding an object's metadata inside s3rver's storage. */
  metadataFile(key: string): string;
  /** Multipart uploads started and neither completed nor aborted. */
  openUploads(): Promise<string[]>;
  close(): Promise<void>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** Credentials s3rver accepts by default, plus settings that keep the SDK off the network. */
export const S3RVER_ENV: Readonly<Record<string, string>> = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};

/** Starts s3rver (child process) and the proxy, both on loopback with random ports. */
export async function startS3Server(options: { bucket?: string; extraBuckets?: string[] } = {}): Promise<S3TestServer> {
  const bucket = options.bucket ?? 'walvault-test';
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'walvault-s3rver-'));
  const child = spawn(
    process.execPath,
    ['--openssl-legacy-provider', path.join(here, 's3rver-child.mjs'), directory, bucket, ...(options.extraBuckets ?? [])],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let port: number;
  try {
    port = await readPort(child);
  } catch (error) {
    child.kill('SIGKILL');
    await fs.rm(directory, { recursive: true, force: true });
    throw error;
  }
  const upstream = { host: '127.0.0.1', port };
  const agent = new http.Agent({ keepAlive: true });
  const rules: Array<FaultRule & { left: number }> = [];
  const keyLocks = new Map<string, Promise<void>>();
  const sockets = new Set<import('node:net').Socket>();

  const state = {
    latencyMs: 0,
    enforceConditionalWrites: true,
    requests: [] as RequestRecord[],
    getsInFlight: 0,
    maxConcurrentGets: 0,
  };

  const objectFile = (key: string): string => path.join(directory, bucket, `${key}._S3rver_object`);
  const metadataFile = (key: string): string => path.join(directory, bucket, `${key}._S3rver_metadata.json`);
  const uploadsDir = (bucketName: string): string => path.join(directory, bucketName, '._S3rver_uploads');

  const takeFault = (method: string, key: string, query: URLSearchParams): Fault | undefined => {
    for (const rule of rules) {
      if (rule.left <= 0) continue;
      const match = rule.match ?? {};
      if (match.method !== undefined && match.method !== method) continue;
      if (match.query !== undefined && !query.has(match.query)) continue;
      if (match.key !== undefined && (typeof match.key === 'string' ? !key.includes(match.key) : !match.key.test(key))) continue;
      rule.left -= 1;
      return rule.fault;
    }
    return undefined;
  };

  /** Serialises check-then-write per key, so enforcement is atomic against concurrent writers. */
  const withKeyLock = async <T>(lockKey: string, work: () => Promise<T>): Promise<T> => {
    const previous = keyLocks.get(lockKey) ?? Promise.resolve();
    let release: () => void = () => undefined;
    const current = new Promise<void>((resolve) => (release = resolve));
    const chained = previous.then(() => current);
    keyLocks.set(lockKey, chained);
    await previous;
    try {
      return await work();
    } finally {
      release();
      if (keyLocks.get(lockKey) === chained) keyLocks.delete(lockKey);
    }
  };

  const exists = async (bucketName: string, key: string): Promise<boolean> => {
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = http.request({ ...upstream, agent, method: 'HEAD', path: `/${bucketName}/${encodeKey(key)}` }, resolve);
      request.on('error', reject);
      request.end();
    });
    response.resume();
    return response.statusCode === 200;
  };

  /**
   * A body with an x-amz-checksum-crc32 header, read whole and checked as S3 does: its bytes, 'bad'
   * (mismatch) or 'incomplete' (the client went away first); undefined without the header.
   */
  const checkedBody = async (req: http.IncomingMessage): Promise<Buffer | 'bad' | 'incomplete' | undefined> => {
    const header = req.headers['x-amz-checksum-crc32'];
    if (typeof header !== 'string') return undefined;
    const chunks: Buffer[] = [];
    const complete = await new Promise<boolean>((resolve) => {
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => resolve(true));
      req.on('close', () => resolve(req.complete));
      req.on('error', () => resolve(false));
    });
    if (!complete) return 'incomplete';
    const body = Buffer.concat(chunks);
    const expected = Buffer.alloc(4);
    expected.writeUInt32BE(zlib.crc32(body));
    return expected.toString('base64') === header ? body : 'bad';
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, truncateAfter?: number, body?: Buffer, flipAt?: number): Promise<void> =>
    new Promise((resolve) => {
      const headers = { ...req.headers };
      delete headers.expect;
      delete headers.connection;
      const request = http.request({ ...upstream, agent, method: req.method, path: req.url, headers }, (response) => {
        res.writeHead(response.statusCode ?? 502, response.headers);
        if (flipAt !== undefined) {
          let seen = 0;
          response.on('data', (chunk: Buffer) => {
            if (flipAt >= seen && flipAt < seen + chunk.length) {
              chunk = Buffer.from(chunk);
              chunk[flipAt - seen] = (chunk[flipAt - seen] ?? 0) ^ 0xff;
            }
            seen += chunk.length;
            res.write(chunk);
          });
          response.on('end', () => {
            res.end();
            resolve();
          });
          response.on('error', () => resolve());
          return;
        }
        if (truncateAfter === undefined) {
          response.pipe(res);
          response.on('end', () => resolve());
          response.on('error', () => resolve());
          return;
        }
        let sent = 0;
        response.on('data', (chunk: Buffer) => {
          if (sent >= truncateAfter) return;
          const room = truncateAfter - sent;
          res.write(chunk.subarray(0, room));
          sent += Math.min(room, chunk.length);
          if (sent >= truncateAfter) {
            response.destroy();
            setTimeout(() => res.socket?.destroy(), 20);
            resolve();
          }
        });
        response.on('end', () => {
          res.end();
          resolve();
        });
      });
      request.on('error', () => {
        res.socket?.destroy();
        resolve();
      });
      if (body === undefined) req.pipe(request);
      else request.end(body);
    });

  const sendError = (req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string, key: string): void => {
    req.resume();
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><Key>${key}</Key><RequestId>proxy</RequestId></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const [, bucketName = '', ...keyParts] = url.pathname.split('/');
    const key = decodeURIComponent(keyParts.join('/'));
    const method = req.method ?? 'GET';
    const record: RequestRecord = {
      method,
      bucket: bucketName,
      key,
      query: url.search,
      ifNoneMatch: req.headers['if-none-match'] as string | undefined,
      checksumCrc32: req.headers['x-amz-checksum-crc32'] as string | undefined,
      contentEncoding: req.headers['content-encoding'],
      outcome: 'forwarded',
      headers: { ...req.headers },
    };
    state.requests.push(record);
    if (method === 'GET' && key !== '') {
      state.getsInFlight += 1;
      state.maxConcurrentGets = Math.max(state.maxConcurrentGets, state.getsInFlight);
      res.once('close', () => (state.getsInFlight -= 1));
    }
    if (state.latencyMs > 0) await sleep(state.latencyMs);

    let fault = takeFault(method, key, url.searchParams);
    if (fault?.type === 'delay') {
      await sleep(fault.ms);
      fault = undefined;
    }
    if (fault !== undefined) {
      record.outcome = fault.type === 'status' ? String(fault.status) : fault.type;
      switch (fault.type) {
        case 'status':
          sendError(req, res, fault.status, fault.code, fault.message ?? fault.code, key);
          return;
        case 'drop':
          req.socket.destroy();
          return;
        case 'stall': {
          const timer = setTimeout(() => req.socket.destroy(), fault.ms);
          req.socket.once('close', () => clearTimeout(timer));
          req.resume();
          return;
        }
        case 'truncate':
          await forward(req, res, fault.afterBytes);
          return;
        case 'flip':
          await forward(req, res, undefined, undefined, fault.atByte);
          return;
        default:
          return;
      }
    }

    const body = method === 'PUT' ? await checkedBody(req) : undefined;
    if (body === 'incomplete') {
      record.outcome = 'incomplete';
      req.socket.destroy();
      return;
    }
    if (body === 'bad') {
      record.outcome = '400';
      sendError(req, res, 400, 'BadDigest', 'The CRC32 you specified did not match the calculated checksum.', key);
      return;
    }
    const isObjectPut = method === 'PUT' && key !== '' && !url.searchParams.has('uploadId') && !url.searchParams.has('tagging') && req.headers['x-amz-copy-source'] === undefined;
    const isComplete = method === 'POST' && key !== '' && url.searchParams.has('uploadId');
    if (method === 'GET' && key === '' && url.searchParams.has('uploads')) {
      record.outcome = 'list-uploads';
      req.resume();
      const prefix = url.searchParams.get('prefix') ?? '';
      const dir = uploadsDir(bucketName);
      const uploads: Array<{ key: string; id: string; started: Date }> = [];
      for (const id of await fs.readdir(dir).catch(() => [] as string[])) {
        const uploadKey = await fs.readFile(path.join(dir, id, 'key'), 'utf8').catch(() => undefined);
        const info = await fs.stat(path.join(dir, id)).catch(() => undefined);
        if (uploadKey !== undefined && info !== undefined && uploadKey.startsWith(prefix)) uploads.push({ key: uploadKey, id, started: info.mtime });
      }
      uploads.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : 1));
      const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
      const body =
        `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${escape(bucketName)}</Bucket>` +
        `<KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>${escape(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>` +
        uploads.map((upload) => `<Upload><Key>${escape(upload.key)}</Key><UploadId>${upload.id}</UploadId><Initiated>${upload.started.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`).join('') +
        '</ListMultipartUploadsResult>';
      res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (method === 'DELETE' && key !== '' && url.searchParams.has('uploadId')) {
      record.outcome = 'abort';
      const uploadId = url.searchParams.get('uploadId') ?? '';
      const dir = path.join(uploadsDir(bucketName), path.basename(uploadId));
      const present = await fs.stat(dir).then(() => true, () => false);
      if (!present) {
        sendError(req, res, 404, 'NoSuchUpload', 'The specified upload does not exist.', key);
        return;
      }
      await fs.rm(dir, { recursive: true, force: true });
      req.resume();
      res.writeHead(204);
      res.end();
      return;
    }
    if (state.enforceConditionalWrites && (isObjectPut || isComplete) && req.headers['if-none-match'] === '*') {
      await withKeyLock(`${bucketName}/${key}`, async () => {
        if (await exists(bucketName, key)) {
          // A refused complete leaves the upload open, as on AWS: the client must abort it.
          record.outcome = '412';
          sendError(req, res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', key);
          return;
        }
        await forward(req, res, undefined, body);
      });
      return;
    }
    if (isObjectPut || isComplete) {
      // s3rver writes an object's file in place, so two concurrent PUTs of one key can leave a mix of
      // both bodies; S3 replaces objects atomically (the last complete PUT wins): one at a time per key.
      await withKeyLock(`${bucketName}/${key}`, () => forward(req, res, undefined, body));
      return;
    }
    await forward(req, res, undefined, body);
  };

  const proxy = http.createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  proxy.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  const proxyPort = (proxy.address() as AddressInfo).port;

  return {
    endpoint: `http://127.0.0.1:${proxyPort}`,
    bareEndpoint: `http://127.0.0.1:${port}`,
    bucket,
    directory,
    env: { ...S3RVER_ENV },
    inject(rule) {
      rules.push({ ...rule, left: rule.times ?? 1 });
    },
    clearFaults() {
      rules.length = 0;
    },
    get latencyMs() {
      return state.latencyMs;
    },
    set latencyMs(value: number) {
      state.latencyMs = value;
    },
    get enforceConditionalWrites() {
      return state.enforceConditionalWrites;
    },
    set enforceConditionalWrites(value: boolean) {
      state.enforceConditionalWrites = value;
    },
    get requests() {
      return state.requests;
    },
    get maxConcurrentGets() {
      return state.maxConcurrentGets;
    },
    resetRequests() {
      state.maxConcurrentGets = state.getsInFlight;
      state.requests = [];
    },
    objectFile,
    metadataFile,
    async openUploads() {
      const entries = await fs.readdir(uploadsDir(bucket)).catch(() => [] as string[]);
      return entries;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      proxy.close();
      agent.destroy();
      child.stdin?.end();
      child.kill('SIGTERM');
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
      await fs.rm(directory, { recursive: true, force: true });
    },
  };
}

/** Encodes a key for a path-style URL, keeping the '/' separators. */
function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for the child's {"port":N} line (or its death). */
async function readPort(child: ChildProcess): Promise<number> {
  if (child.stdout === null) throw new Error('s3rver child has no stdout');
  const lines = createInterface({ input: child.stdout });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`s3rver child exited with code ${String(code)} before listening`);
  });
  const first = (async () => {
    for await (const line of lines) {
      const parsed = JSON.parse(line) as { port: number };
      return parsed.port;
    }
    throw new Error('s3rver child closed its stdout before listening');
  })();
  const timeout = new Promise<never>((_, reject) => {
    setTimeout(() => reject(new Error('s3rver child did not start within 15 s')), 15_000).unref();
  });
  try {
    return await Promise.race([first, exited, timeout]);
  } finally {
    exited.catch(() => undefined);
    timeout.catch(() => undefined);
  }
}
