// A throwaway single-host Ceph cluster with a RADOS Gateway on loopback, for the RGW test tier: one
// mon, one OSD keeping its objects in RAM (memstore, bounded), radosgw with the beast frontend, and
// one S3 user with fixed keys. One cluster per `vitest run`: the first test file that needs it starts
// it under a lock in the run's Ceph directory (see ceph-global.ts), later ones reuse it, and the
// global teardown stops it. A watchdog kills the daemons if the vitest process dies without a teardown.
//
// Why each setting (Debian's Ceph 16.2 packages):
// - auth none, so no keyrings; it also needs every ms_*_mode at crc, or daemons fail with
//   "get_initial_auth_request returned -13".
// - memstore with `memstore device bytes`: no disk, and a hard bound on what the tests can store
//   (the OSD's RSS grows to about twice its live data).
// - pools of size 1 on one host (crush chooseleaf type 0); no mgr is needed.
// - paxos propose interval 0.1 s: the mon commits quickly, which brings start-up to a few seconds.
// - radosgw's garbage collection runs every few seconds, so deleted objects leave the memstore.
// - The mon's port is written into its monmap: each cluster picks a free one when it is created.
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';

/** Fixed keys of the test user (the cluster lives only on loopback, for one run). */
export const RGW_ACCESS_KEY = 'WALVAULTRGWTESTKEY01';
export const RGW_SECRET_KEY = 'walvault-rgw-test-secret-key-0000000001';

/** What the memstore may hold; the tier's largest tests store a few 32 MiB objects at once. */
const MEMSTORE_BYTES = 768 * 1024 * 1024;

/** A running cluster as recorded in its directory (state.json), for the tests and the teardown. */
export interface RgwClusterState {
  dir: string;
  endpoint: string;
  monPort: number;
  rgwPort: number;
  /** Daemon pids: mon, osd, radosgw. */
  pids: number[];
  watchdogPid: number;
}

/** An S3 store for tests: the endpoint, the credentials as environment variables, and a client. */
export interface RgwStore {
  endpoint: string;
  /** AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_REGION for the walvault processes. */
  env: Record<string, string>;
  client: S3Client;
  /** Creates a bucket of this name (idempotent) and returns the name. */
  bucket(name: string): Promise<string>;
}

const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph'];

/** Fails with the fix when a Ceph binary is missing (scripts/setup-ceph.sh installs them). */
function requireBinaries(): void {
  const missing = BINARIES.filter((binary) => spawnSync('sh', ['-c', `command -v ${binary}`]).status !== 0);
  if (missing.length > 0) {
    throw new Error(`the RGW test tier needs ${missing.join(', ')}; run scripts/setup-ceph.sh as root (Debian packages ceph-mon, ceph-osd, radosgw, ceph-common)`);
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms bind msgr1 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
paxos propose interval = 0.1
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
mon cluster log file = ${dir}/log/cluster.log
crash dir = ${dir}/crash
[mon]
mon data = ${dir}/mon
[osd]
osd data = ${dir}/osd
osd objectstore = memstore
memstore device bytes = ${MEMSTORE_BYTES}
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
rgw gc obj min wait = 2
rgw gc processor period = 4
rgw gc processor max time = 4
`;
}

/** Runs a Ceph tool to completion; throws with its output when it fails. */
async function tool(dir: string, command: string, args: string[]): Promise<string> {
  const child = spawn(command, args, { env: { ...process.env, CEPH_CONF: path.join(dir, 'ceph.conf') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${code}): ${err.trim() || out.trim()}`);
  return out;
}

/** Starts a daemon in the foreground, in its own process group, detached from this (worker) process. */
function daemon(dir: string, name: string, command: string, args: string[]): number {
  const log = openSync(path.join(dir, 'log', `${name}.out`), 'a');
  const child = spawn(command, [...args, '-f'], { env: { ...process.env, CEPH_CONF: path.join(dir, 'ceph.conf') }, stdio: ['ignore', log, log], detached: true });
  closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  return child.pid;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits (bounded) until `ready` holds, failing early with the daemon's log when it died. */
async function waitFor(what: string, ready: () => Promise<boolean>, options: { pid?: number; dir: string; log: string; timeoutMs?: number }): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 90_000);
  while (Date.now() < deadline) {
    if (await ready().catch(() => false)) return;
    if (options.pid !== undefined && !alive(options.pid)) break;
    await sleep(100);
  }
  const tail = await fs.readFile(path.join(options.dir, 'log', options.log), 'utf8').catch(() => '');
  throw new Error(`${what} did not come up; last log lines:\n${tail.split('\n').slice(-15).join('\n')}`);
}

/**
 * Creates and starts a cluster in `dir` (created if missing), guarded by a watchdog: when `ownerPid`
 * (the vitest main process) is gone, it kills the daemons and removes `removeDir` (default `dir`).
 */
export async function startRgwCluster(dir: string, guard: { ownerPid: number; removeDir?: string }): Promise<RgwClusterState> {
  requireBinaries();
  for (const sub of ['mon', 'osd', 'run', 'log', 'rgw', 'crash']) await fs.mkdir(path.join(dir, sub), { recursive: true });
  const fsid = randomUUID();
  const monPort = await freePort();
  const rgwPort = await freePort();
  await fs.writeFile(path.join(dir, 'ceph.conf'), cephConf(dir, fsid, monPort, rgwPort));
  const pidsFile = path.join(dir, 'pids');
  await fs.writeFile(pidsFile, '');
  // The watchdog outlives a crashed or killed vitest: it kills the daemons and removes the directory.
  const watchdog = spawn(
    'sh',
    ['-c', `while kill -0 ${guard.ownerPid} 2>/dev/null; do sleep 2; done; kill -9 $(cat '${pidsFile}') 2>/dev/null; sleep 1; rm -rf '${guard.removeDir ?? dir}'`],
    { stdio: 'ignore', detached: true },
  );
  watchdog.unref();
  const pids: number[] = [];
  const track = async (pid: number): Promise<void> => {
    pids.push(pid);
    await fs.appendFile(pidsFile, `${pid}\n`);
  };

  await tool(dir, 'monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, path.join(dir, 'monmap')]);
  await tool(dir, 'ceph-mon', ['--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap')]);
  const mon = daemon(dir, 'mon', 'ceph-mon', ['-i', 'a']);
  await track(mon);
  const osdUuid = randomUUID();
  // `ceph osd new` also waits for the mon to form its quorum.
  const osdId = (await tool(dir, 'ceph', ['--connect-timeout', '60', 'osd', 'new', osdUuid])).trim();
  await tool(dir, 'ceph-osd', ['-i', osdId, '--mkfs', '--osd-uuid', osdUuid]);
  const osd = daemon(dir, 'osd', 'ceph-osd', ['-i', osdId]);
  await track(osd);
  await waitFor('the ceph OSD', async () => /1 up/.test(await tool(dir, 'ceph', ['osd', 'stat'])), { pid: osd, dir, log: 'osd.out' });
  const rgw = daemon(dir, 'rgw', 'radosgw', ['-n', 'client.rgw']);
  await track(rgw);
  const endpoint = `http://127.0.0.1:${rgwPort}`;
  await waitFor('radosgw', async () => (await fetch(endpoint)).status === 200, { pid: rgw, dir, log: 'rgw.out' });
  await tool(dir, 'radosgw-admin', ['user', 'create', '--uid', 'walvault', '--display-name', 'walvault tests', '--access-key', RGW_ACCESS_KEY, '--secret-key', RGW_SECRET_KEY]);
  return { dir, endpoint, monPort, rgwPort, pids: [mon, osd, rgw], watchdogPid: watchdog.pid ?? 0 };
}

/** Stops the daemons (TERM, then KILL after a bounded wait), the watchdog, and removes the directory. */
export async function stopRgwCluster(state: RgwClusterState): Promise<void> {
  for (const pid of [...state.pids].reverse()) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 15_000;
  while (state.pids.some(alive) && Date.now() < deadline) await sleep(100);
  for (const pid of state.pids.filter(alive)) process.kill(pid, 'SIGKILL');
  while (state.pids.some(alive) && Date.now() < deadline + 5_000) await sleep(50);
  if (state.watchdogPid > 0 && alive(state.watchdogPid)) process.kill(state.watchdogPid, 'SIGKILL');
}

const STATE_FILE = 'state.json';
const ERROR_FILE = 'error.txt';

/** The run's cluster: started by the first caller in any worker (under a lock), reused by the rest. */
async function sharedCluster(): Promise<RgwClusterState> {
  const base = inject('walvaultCephDir');
  const ownerPid = inject('walvaultCephOwnerPid');
  const stateFile = path.join(base, STATE_FILE);
  const cluster = path.join(base, 'cluster');
  let owner = false;
  try {
    await fs.mkdir(cluster);
    owner = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  if (owner) {
    try {
      const state = await startRgwCluster(cluster, { ownerPid, removeDir: base });
      await fs.writeFile(`${stateFile}.tmp`, JSON.stringify(state));
      await fs.rename(`${stateFile}.tmp`, stateFile);
      return state;
    } catch (error) {
      await fs.writeFile(path.join(base, ERROR_FILE), String((error as Error).message));
      throw error;
    }
  }
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline) {
    const text = await fs.readFile(stateFile, 'utf8').catch(() => undefined);
    if (text !== undefined) return JSON.parse(text) as RgwClusterState;
    const failure = await fs.readFile(path.join(base, ERROR_FILE), 'utf8').catch(() => undefined);
    if (failure !== undefined) throw new Error(`the run's Ceph cluster failed to start: ${failure}`);
    await sleep(100);
  }
  throw new Error('the run\'s Ceph cluster did not start within 180 s');
}

/**
 * The state of the run's cluster, if one was started (for the global teardown); from its pids file
 * when the start failed partway.
 */
export async function readClusterState(base: string): Promise<RgwClusterState | undefined> {
  const text = await fs.readFile(path.join(base, STATE_FILE), 'utf8').catch(() => undefined);
  if (text !== undefined) return JSON.parse(text) as RgwClusterState;
  const pids = await fs.readFile(path.join(base, 'cluster', 'pids'), 'utf8').catch(() => undefined);
  if (pids === undefined) return undefined;
  return { dir: path.join(base, 'cluster'), endpoint: '', monPort: 0, rgwPort: 0, pids: pids.split('\n').filter(Boolean).map(Number), watchdogPid: 0 };
}

let store: Promise<RgwStore> | undefined;

/** The RGW store of this run (its cluster started on first use). */
export function rgwStore(): Promise<RgwStore> {
  store ??= sharedCluster().then((state) => {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const env = { AWS_ACCESS_KEY_ID: RGW_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: RGW_SECRET_KEY, AWS_REGION: 'us-east-1', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    const quiet = (): undefined => undefined;
    // The tests assert what the store answers; the SDK's own console notes about it are noise.
    const client = new S3Client({
      endpoint: state.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: RGW_ACCESS_KEY, secretAccessKey: RGW_SECRET_KEY },
      logger: { trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet },
    });
    return {
      endpoint: state.endpoint,
      env,
      client,
      bucket: async (name: string) => {
        try {
          await client.send(new CreateBucketCommand({ Bucket: name }));
        } catch (error) {
          if ((error as { name?: string }).name !== 'BucketAlreadyOwnedByYou') throw error;
        }
        return name;
      },
    };
  });
  return store;
}
