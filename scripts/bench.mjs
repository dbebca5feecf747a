#!/usr/bin/env node
// Side-by-side throughput benchmark on one real PostgreSQL 15 cluster (see README, section "Performance").
//
// One run: initdb a throwaway cluster, take a base backup, generate a backlog of N segments of
// incompressible WAL with archiving paused (the files stay .ready), then for each tool: set
// archive_command (or archive_library), reload, and time the server's own archiver until every backlog
// file is .done; pause archiving, turn the backlog's .done back into .ready, next tool. Recovery: copy
// the base backup, set restore_command, time the server's start (replay of the whole archive, end of
// recovery, promotion; timed until the server logs "ready to accept connections"). Medians over --repeats, taken round-robin across the archive tools (run r of every tool, then run r+1: this VM's disk slows down as gigabytes are written; every tool takes every place in the round in turn); the first run of each tool is a warm-up that also
// measures peak memory (GNU time's max RSS of each archive command, plus /proc polling of helpers
// that run in the background).
//
// Codec rows (key `codecs`, or one row by its key `codec-...`): after the rows above, a second backlog of
// compressible WAL (pgbench -i plus pgbench transactions, --codec-segments files) is drained by walvault
// and pgBackRest async with each codec into a fresh local repo; segments/s and stored bytes per segment
// (the archived files only: walvault's ~meta sidecars and walvault.json, pgBackRest's archive.info are
// not counted). One run per row unless --codec-repeats. When no row outside the codec phase is selected
// (`--only codecs`), the codec backlog is the whole archive from the base backup on, so recovery is also
// timed from the compressed repositories (rows `codec-restore-...`: walvault lz4 and zstd, pgBackRest
// archive-get async lz4 and zst, and `cp` from an uncompressed copy of the same backlog, `codec-cp`).
// --codec-memory adds one more, untimed run per codec row that measures the peak memory of every process
// of that tool (as the warm-up of the rows above does), shown in a column of the codec table.
//
// Usage: scripts/bench [--segments N] [--repeats R] [--latency MS] [--only key,key] [--skip key,key] [--trace-restore]
//                      [--codec-segments N] [--codec-repeats R] [--codec-memory] [--keep] [--json FILE] [--markdown FILE]
//                      [--command 'KEY=ARCHIVE COMMAND'] ... [--restore-command 'KEY=RESTORE COMMAND'] ... [--timeline]
//                      [--backup-scale N] [--backup-codec lz4|zstd|gzip] [--backup-other PATH]
// --timeline logs, after each archive run, when each backlog file was stored in the repository and
// when PostgreSQL marked it .done (ms after the reload that started archiving; from file ctimes).
// --command adds an archive row of your own (repeatable; `--only` selects it by KEY): PostgreSQL's %p
// and %f as usual, `{repo}` becomes a fresh empty directory per run (the same one wherever it appears), `{s3}` the options of a fresh
// prefix on the bench's s3rver (when an S3 row runs too), `{walvault}` the built walvault-archive.
// E.g. --command 'wv-p4={walvault} --repo={repo} --parallel=4 %p %f'. A KEY starting with `codec-` makes a
// codec row instead (the compressible backlog; `{age-recipient}` is the age row's recipient; compared with
// pgBackRest with the codec the KEY ends with), e.g. --command 'codec-old-lz4=/old/dist/cli/walvault-archive
// --repo={repo} --compress=lz4 %p %f'.
// --restore-command adds a recovery row of your own (repeatable; `--only` selects it by KEY): %f and %p
// as usual, `{repo}` the local repository the walvault row archived into, `{s3}` the options of the
// walvault-s3 row's repository behind the latency proxy (as the S3 recovery rows use it), `{walvault}` the built
// walvault-restore. E.g. --restore-command 'old-wv=/old/dist/cli/walvault-restore --repo={repo} %f %p'.
// --trace-restore logs, for the warm-up run of each recovery row, every restore_command call: when it
// started and ended (ms after the server was started), its exit code, %f and %p (a sh wrapper around
// the command; the timed runs are not wrapped). Shows which requests pay a repository's latency.
// Base-backup rows (keys `backups`, or one row by its key `backup-...`; only when selected with --only, and
// then nothing else runs): a fresh cluster of `pgbench -i -s --backup-scale` (default 200, about 3 GiB),
// archiving into both walvault and pgBackRest; wall time of `walvault backup` to a local repository (no
// compression and --backup-codec, default lz4), `pg_basebackup -Ft -X none` to a local directory (the same
// two), and `pgbackrest backup --type=full --process-max=2` with the same codec; stored bytes of each,
// and the peak RSS of each walvault backup (GNU time). --backup-other PATH adds the same two rows for
// another build's walvault executable (e.g. a copy of main's dist/cli/walvault), each run right before
// this build's row: before/after side by side in one run.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PGBIN = process.env.PGBIN ?? '/usr/lib/postgresql/15/bin';
const args = parseArgs(process.argv.slice(2));
if (args.help) {
  // The usage is this file's opening comment.
  const head = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
  process.stdout.write(`${head.slice(0, head.findIndex((line) => !line.startsWith('//'))).map((line) => line.replace(/^\/\/ ?/, '')).join('\n')}\n`);
  process.exit(0);
}
const SEGMENTS = Number(args.segments ?? 32);
const REPEATS = Number(args.repeats ?? 3);
const LATENCY_MS = Number(args.latency ?? 20);
const only = args.only ? new Set(String(args.only).split(',')) : null;
const skip = new Set(args.skip ? String(args.skip).split(',') : []);
const wanted = (key) => (only === null || only.has(key)) && !skip.has(key);
const CODEC_SEGMENTS = Number(args['codec-segments'] ?? 32);
/** Pause before every timed archive run, the same for every tool (see the round-robin below). */
const SETTLE_MS = 1000;
const CODEC_REPEATS = Number(args['codec-repeats'] ?? 1);
const wantedCodec = (key) => (only === null || only.has('codecs') || only.has(key)) && !skip.has('codecs') && !skip.has(key);
/** Whether any row outside the codec phase is selected (else the random backlog and process-cost runs are skipped). */
const mainWanted = only === null || [...only].some((key) => key !== 'codecs' && !key.startsWith('codec-'));
const isRoot = process.getuid?.() === 0;
const log = (...parts) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${parts.join(' ')}\n`);

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) throw new Error(`unexpected argument "${arg}"`);
    const eq = arg.indexOf('=');
    let key;
    let value;
    if (eq > 0) [key, value] = [arg.slice(2, eq), arg.slice(eq + 1)];
    else if (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) [key, value] = [arg.slice(2), argv[++i]];
    else [key, value] = [arg.slice(2), true];
    if (key === 'command') (out.command ??= []).push(String(value));
    else if (key === 'restore-command') (out['restore-command'] ??= []).push(String(value));
    else out[key] = value;
  }
  return out;
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Installs pgBackRest and barman-cli-cloud from Debian's packages when they are missing (root only). */
function ensureTools() {
  const missing = [];
  if (!have('pgbackrest')) missing.push('pgbackrest');
  if (!have('barman-cloud-wal-archive')) missing.push('barman-cli-cloud', 'python3-boto3');
  if (missing.length === 0) return;
  if (!isRoot || !have('apt-get')) {
    log(`missing ${missing.join(', ')} and cannot apt-get install them: those rows are skipped`);
    return;
  }
  log(`installing ${missing.join(' ')} from Debian's packages`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let res = spawnSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env });
  if (res.status !== 0) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    res = spawnSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env });
  }
  if (res.status !== 0) log('apt-get failed: the pgBackRest / barman rows are skipped');
}

function run(cmd, argv, options = {}) {
  const res = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (res.status !== 0 && !options.allowFail) {
    throw new Error(`${cmd} ${argv.join(' ')} failed (${res.status ?? res.signal}): ${res.stderr}${res.stdout}`);
  }
  return res;
}

/** Runs a command as the postgres OS user when we are root (PostgreSQL refuses to run as root). */
function asPg(cmd, argv, options = {}) {
  return isRoot ? run('runuser', ['-u', 'postgres', '--', cmd, ...argv], options) : run(cmd, argv, options);
}

function chownPg(target) {
  if (isRoot) run('chown', ['-R', 'postgres:postgres', target]);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
/** A postgresql.conf string literal: the GUC lexer reads a backslash as an escape, so it is doubled too. */
const sq = (text) => `'${text.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;

/**
 * Processes (not PostgreSQL's own) whose command line mentions the bench directory, or which run in it
 * (archive_command runs in the data directory, and helpers it starts inherit that): archive helpers
 * and their daemons, such as walvault's pusher, whose command line names an S3 repository only.
 */
function helperPids(marker, exclude) {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || exclude.has(pid)) continue;
    let cmdline;
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    let cwd = '';
    try {
      cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // gone, or not ours to read
    }
    if (!cmdline.includes(marker) && !cwd.startsWith(marker)) continue;
    const argv0 = cmdline.split('\0')[0] ?? '';
    if (argv0.endsWith('/postgres') || argv0.startsWith('postgres:') || argv0.endsWith('/pg_ctl') || argv0 === 'runuser') continue;
    if (cmdline.includes('bench.mjs')) continue;
    pids.push(pid);
  }
  return pids;
}

/** What a polled process is, for the memory log line: a walvault worker's kind, else its program. */
function processKind(pid) {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const worker = argv.find((arg) => arg.startsWith('--internal-worker='));
    return worker ? `walvault ${worker.slice('--internal-worker='.length)} worker` : argv.slice(0, 2).map((arg) => path.basename(arg)).join(' ');
  } catch {
    return 'gone';
  }
}

function peakRssKiB(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** A TCP proxy that delays every client-to-server chunk by `delayMs`: per-request latency for S3 over loopback. */
function startLatencyProxy(targetPort, delayMs) {
  return new Promise((resolve) => {
    const server = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      client.on('data', (chunk) => {
        client.pause();
        setTimeout(() => {
          upstream.write(chunk);
          client.resume();
        }, delayMs);
      });
      upstream.pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end);
      upstream.on('error', end);
      client.on('close', end);
      upstream.on('close', end);
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port }));
  });
}

async function main() {
  if (!fs.existsSync(`${PGBIN}/postgres`)) throw new Error(`PostgreSQL 15 not found in "${PGBIN}" (set PGBIN)`);
  if (only !== null && [...only].every((key) => key === 'backups' || key.startsWith('backup-'))) return benchBackups();
  ensureTools();
  const hasPgbr = have('pgbackrest');
  const hasBarman = have('barman-cloud-wal-archive');

  // walvault: build (tsc + bundle) and use the package's own bin launchers, as an installed package would.
  let walvault = null;
  if (fs.existsSync(path.join(ROOT, 'package.json')) && !args['no-build']) {
    log('building walvault (npm run build)');
    run('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const binArchive = pkg.bin?.['walvault-archive'] && path.join(ROOT, pkg.bin['walvault-archive']);
  const binRestore = pkg.bin?.['walvault-restore'] && path.join(ROOT, pkg.bin['walvault-restore']);
  const launch = (bin) => (bin.endsWith('.js') || bin.endsWith('.mjs') ? `node ${bin}` : bin);
  if (binArchive && fs.existsSync(binArchive) && binRestore && fs.existsSync(binRestore)) {
    walvault = { archive: launch(binArchive), restore: launch(binRestore) };
  } else {
    log('walvault is not built (no bin files): its rows are skipped');
  }

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'walvault-bench-'));
  fs.chmodSync(tmp, 0o755);
  const data = path.join(tmp, 'data');
  const sock = tmp;
  const port = await freePort();
  const s3Port = await freePort();
  const pgLog = path.join(tmp, 'postgres.log');
  const awsEnv = {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  const pgEnv = { ...process.env, ...awsEnv };
  const children = [];
  let postmasterUp = [];
  const cleanup = () => {
    for (const dir of postmasterUp) asPg(`${PGBIN}/pg_ctl`, ['-D', dir, '-m', 'immediate', 'stop'], { allowFail: true });
    postmasterUp = [];
    for (const child of children) child.kill('SIGKILL');
    if (!args.keep) fs.rmSync(tmp, { recursive: true, force: true });
    else log(`kept "${tmp}"`);
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });

  const results = { archive: [], restore: [], overhead: {}, codecs: [], machine: describeMachine(tmp), segments: 0, repeats: REPEATS };
  try {
    // ---- cluster ------------------------------------------------------------------------------
    log(`initdb in "${tmp}" (port ${port})`);
    chownPg(tmp);
    asPg(`${PGBIN}/initdb`, ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-instructions', '-N']);
    fs.appendFileSync(
      path.join(data, 'postgresql.conf'),
      [
        `port = ${port}`,
        `listen_addresses = ''`,
        `unix_socket_directories = ${sq(sock)}`,
        `archive_mode = on`,
        `wal_level = replica`,
        `wal_compression = off`,
        `max_wal_size = '64GB'`,
        `min_wal_size = '80MB'`,
        `checkpoint_timeout = '1d'`,
        `wal_keep_size = '0'`,
        `shared_buffers = '128MB'`,
        `logging_collector = off`,
        `include_if_exists = 'bench.conf'`,
        '',
      ].join('\n'),
    );
    const benchConf = path.join(data, 'bench.conf');
    let currentLibrary = '';
    const setArchiving = ({ command = '', library = '', extra = [] }) => {
      fs.writeFileSync(benchConf, [`archive_command = ${sq(command)}`, `archive_library = ${sq(library)}`, ...extra, ''].join('\n'));
      chownPg(benchConf);
    };
    // Changing archive_library makes the archiver exit; the postmaster starts a new one on its next
    // wake-up (up to a minute later). Done untimed, with archiving still unconfigured, nudging the
    // postmaster with SIGHUP until the new archiver runs.
    const switchLibrary = async (library, extra = []) => {
      if (library === currentLibrary) return;
      const old = archiverPid();
      setArchiving({ library, extra });
      const until = performance.now() + 120_000;
      while (performance.now() < until) {
        reload();
        await sleep(200);
        const now = archiverPid();
        if (now !== null && now !== old) break;
      }
      currentLibrary = library;
    };
    const archiverPid = () => {
      for (const entry of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(entry)) continue;
        try {
          if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').startsWith('postgres: archiver')) return Number(entry);
        } catch {}
      }
      return null;
    };
    setArchiving({});
    asPg(`${PGBIN}/pg_ctl`, ['-D', data, '-l', pgLog, '-w', 'start'], { env: pgEnv });
    postmasterUp.push(data);
    const postmasterPid = () => Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const sql = (query) => asPg(`${PGBIN}/psql`, ['-h', sock, '-p', String(port), '-d', 'postgres', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query]).stdout.trim();
    const reload = () => process.kill(postmasterPid(), 'SIGHUP');

    log('base backup (for the recovery runs)');
    const base = path.join(tmp, 'base');
    asPg(`${PGBIN}/pg_basebackup`, ['-h', sock, '-p', String(port), '-U', 'postgres', '-D', base, '-X', 'stream', '-c', 'fast', '--no-sync']);

    // ---- backlog of incompressible WAL ----------------------------------------------------------
    const statusDir = path.join(data, 'pg_wal', 'archive_status');
    const readyNames = () => fs.readdirSync(statusDir).filter((f) => f.endsWith('.ready')).map((f) => f.slice(0, -6));
    if (mainWanted) {
      sql('CREATE EXTENSION IF NOT EXISTS pgcrypto');
      sql('CREATE TABLE blobs (id serial, payload bytea) WITH (autovacuum_enabled = off)');
      sql('ALTER TABLE blobs ALTER COLUMN payload SET STORAGE EXTERNAL');
      log(`generating ${SEGMENTS} segments of random WAL`);
      while (readyNames().length < SEGMENTS - 1) {
        sql(`INSERT INTO blobs (payload) SELECT (SELECT string_agg(gen_random_bytes(1024), ''::bytea) FROM generate_series(1, 1024) WHERE g > 0) FROM generate_series(1, 8) g`);
      }
      sql('SELECT pg_switch_wal()');
      await sleep(200);
    }
    // `let`: the codec phase swaps in its own backlog of compressible WAL.
    let backlog = mainWanted ? readyNames().sort() : [];
    let N = backlog.length;
    results.segments = N;
    if (N > 0) {
      const segBytes = backlog.filter((n) => /^[0-9A-F]{24}$/.test(n)).map((n) => fs.statSync(path.join(data, 'pg_wal', n)).size);
      log(`backlog: ${N} files (${backlog[0]} .. ${backlog[N - 1]}), segment size ${segBytes[0]} bytes`);
      sql('CHECKPOINT');
    }
    run('sync', []);

    const doneCount = () => {
      let done = 0;
      for (const name of backlog) if (fs.existsSync(path.join(statusDir, `${name}.done`))) done++;
      return done;
    };
    const resetBacklog = () => {
      for (const name of backlog) {
        const done = path.join(statusDir, `${name}.done`);
        if (fs.existsSync(done)) fs.renameSync(done, path.join(statusDir, `${name}.ready`));
      }
    };
    // After a row failed: log it, put archiving back as it was, and the backlog back to .ready for the next row.
    const abandonRow = async (key, error) => {
      log(`  ${key} FAILED: ${error.message}`);
      setArchiving({ library: currentLibrary });
      reload();
      await sleep(1000);
      resetBacklog();
    };
    const archiverStats = () => {
      const [archived, failed] = sql('SELECT archived_count, failed_count FROM pg_stat_archiver').split('|').map(Number);
      return { archived, failed };
    };

    // ---- the S3 server (s3rver, a real S3-speaking server) in its own process --------------------
    let s3 = null;
    const needS3 =
      ['walvault-s3', 'walvault-s3-sync', 's3-loop', 'barman-cloud', 'restore-walvault-s3', 'restore-walvault-s3-noprefetch', 'restore-barman-cloud'].some(wanted) ||
      (args.command ?? []).some((spec) => spec.includes('{s3}') && wanted(spec.slice(0, spec.indexOf('='))));
    if (needS3 && fs.existsSync(path.join(ROOT, 'node_modules', 's3rver'))) {
      const s3dir = path.join(tmp, 's3');
      fs.mkdirSync(s3dir);
      const script = `import S3rver from 's3rver';
        const server = new S3rver({ port: ${s3Port}, address: '127.0.0.1', silent: true, directory: ${JSON.stringify(s3dir)},
          configureBuckets: [{ name: 'bench' }, { name: 'loop' }] });
        await server.run(); console.log('ready');`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(child);
      await new Promise((resolve, reject) => {
        child.stdout.on('data', (d) => String(d).includes('ready') && resolve());
        child.on('exit', (code) => reject(new Error(`s3rver exited (${code})`)));
      });
      s3 = { endpoint: `http://127.0.0.1:${s3Port}`, pid: child.pid };
      log(`s3rver on ${s3.endpoint}`);
    } else if (needS3) {
      log('s3rver is not installed (npm install): S3 rows are skipped');
    }
    const excludePids = new Set(children.map((c) => c.pid));

    // ---- archive runs ---------------------------------------------------------------------------
    const minimalScript = path.join(tmp, 'minimal-archive.mjs');
    fs.writeFileSync(
      minimalScript,
      `import fs from 'node:fs'; import path from 'node:path';
const [src, dst] = process.argv.slice(2);
const tmpName = dst + '.tmp.' + process.pid;
fs.copyFileSync(src, tmpName);
const fd = fs.openSync(tmpName, 'r'); fs.fsyncSync(fd); fs.closeSync(fd);
fs.linkSync(tmpName, dst); fs.unlinkSync(tmpName);
const dfd = fs.openSync(path.dirname(dst), 'r'); fs.fsyncSync(dfd); fs.closeSync(dfd);
`,
    );
    const pgbrConf = (name, repo, { async, pgPath = data, pgPort = port, compress = 'none' }) => {
      const file = path.join(tmp, `${name}.conf`);
      fs.writeFileSync(
        file,
        [
          '[global]',
          `repo1-path=${repo}`,
          `compress-type=${compress}`,
          `log-path=${tmp}/pgbr-log`,
          `lock-path=${tmp}/pgbr-lock`,
          `spool-path=${tmp}/pgbr-spool`,
          'log-level-console=warn',
          'log-level-stderr=warn',
          'log-level-file=off',
          `archive-async=${async ? 'y' : 'n'}`,
          'process-max=2',
          '',
          '[bench]',
          `pg1-path=${pgPath}`,
          `pg1-port=${pgPort}`,
          `pg1-socket-path=${sock}`,
          'pg1-user=postgres',
          '',
        ].join('\n'),
      );
      chownPg(file);
      return file;
    };
    let repoSeq = 0;
    // Every repository an archive run wrote (S3: the prefix's folder in s3rver's directory). Runs keep
    // only what a later phase reads (repoOf): see disposeRepos.
    const written = new Set();
    let lastRepo = null;
    const freshDir = (label) => {
      const dir = path.join(tmp, `repo-${label}-${++repoSeq}`);
      written.add(dir);
      lastRepo = dir;
      fs.mkdirSync(dir, { mode: 0o700 });
      chownPg(dir);
      return dir;
    };
    const s3Opts = (prefix) => {
      written.add(path.join(tmp, 's3', 'bench', prefix));
      return `--repo=s3://bench/${prefix} --s3-endpoint=${s3.endpoint} --s3-force-path-style`;
    };
    // Deletes (untimed) what earlier runs stored and no later phase reads. On this VM, once a few GB
    // of newly written files had piled up, every tool (basic_archive and a 20-line C copier included)
    // wrote 3-5x slower than at the start of the run, so rows measured late in a round measured the
    // VM's memory state rather than the tool; deleting the copies keeps every run in the same state.
    const disposeRepos = () => {
      const keep = new Set(Object.values(repoOf).map((repo) => (path.isAbsolute(repo) ? repo : path.join(tmp, 's3', 'bench', repo))));
      for (const dir of written) {
        if (keep.has(dir)) continue;
        // s3rver may still be finishing a request a helper abandoned: retry a folder that filled up meanwhile.
        fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
        written.delete(dir);
      }
      run('sync', []);
    };

    // Each tool: key, label, mode, whether it is slow (one run only), and prepare() → archiving settings.
    const repoOf = {};
    const archiveTools = [
      { key: 'node-min', tool: 'minimal Node script', mode: 'copy+fsync+link, one process per file', prepare: () => { const d = freshDir('nodemin'); return { command: `node ${minimalScript} %p ${d}/%f` }; } },
      hasPgbr && { key: 'pgbackrest-sync', tool: 'pgBackRest 2.45', mode: 'archive-push, sync', prepare: () => {
        const d = freshDir('pgbr-sync');
        const conf = pgbrConf('pgbr-sync', d, { async: false });
        asPg('pgbackrest', [`--config=${conf}`, '--stanza=bench', 'stanza-create']);
        repoOf['pgbackrest'] = d;
        return { command: `pgbackrest --config=${conf} --stanza=bench archive-push %p` };
      } },
      hasPgbr && { key: 'pgbackrest-async', tool: 'pgBackRest 2.45', mode: 'archive-push, async, process-max=2', prepare: () => {
        const d = freshDir('pgbr-async');
        fs.rmSync(path.join(tmp, 'pgbr-spool'), { recursive: true, force: true });
        const conf = pgbrConf('pgbr-async', d, { async: true });
        asPg('pgbackrest', [`--config=${conf}`, '--stanza=bench', 'stanza-create']);
        repoOf['pgbackrest'] = d;
        return { command: `pgbackrest --config=${conf} --stanza=bench archive-push %p` };
      } },
      { key: 'basic_archive', tool: 'basic_archive', mode: 'in-server module, durable copy', inServer: true, prepare: () => {
        const d = freshDir('basic');
        // Loaded with an empty archive_directory first (= "not configured", nothing archived), so the
        // timed part starts with the module already running in a fresh archiver.
        return { library: 'basic_archive', libraryOff: "basic_archive.archive_directory = ''", extra: [`basic_archive.archive_directory = ${sq(d)}`] };
      } },
      { key: 'cp', tool: 'cp', mode: 'not durable', prepare: () => {
        const d = freshDir('cp');
        repoOf['cp'] = d;
        return { command: `test ! -f ${d}/%f && cp %p ${d}/%f` };
      } },
      walvault && { key: 'walvault-sync', tool: 'walvault', mode: 'local, --push-ahead=0 (sync)', prepare: () => {
        const d = freshDir('wv-sync');
        return { command: `${walvault.archive} --repo=${d} --push-ahead=0 %p %f` };
      } },
      walvault && { key: 'walvault', tool: 'walvault', mode: 'local, defaults (push-ahead)', prepare: () => {
        const d = freshDir('wv');
        repoOf['walvault'] = d;
        return { command: `${walvault.archive} --repo=${d} %p %f` };
      } },
      walvault && s3 && { key: 'walvault-s3-sync', tool: 'walvault', mode: 'S3 (s3rver), --push-ahead=0', prepare: () => ({ command: `${walvault.archive} ${s3Opts(`wv-sync-${++repoSeq}`)} --push-ahead=0 %p %f` }) },
      walvault && s3 && { key: 'walvault-s3', tool: 'walvault', mode: 'S3 (s3rver), defaults', prepare: () => {
        const prefix = `wv-${++repoSeq}`;
        repoOf['walvault-s3'] = prefix;
        return { command: `${walvault.archive} ${s3Opts(prefix)} %p %f` };
      } },
      hasBarman && s3 && { key: 'barman-cloud', tool: 'barman-cloud-wal-archive 3.4', mode: 'S3 (s3rver)', slow: true, prepare: () => ({
        command: `barman-cloud-wal-archive --endpoint-url ${s3.endpoint} s3://bench/barman-${++repoSeq} bench %p`,
      }) },
      ...(args.command ?? []).filter((spec) => !spec.startsWith('codec-')).map((spec) => {
        const eq = spec.indexOf('=');
        if (eq < 1) throw new Error(`--command "${spec}": expected KEY=COMMAND`);
        const key = spec.slice(0, eq);
        const template = spec.slice(eq + 1);
        // One fresh repository (or prefix) per run, however often the command names it.
        const fill = (text) => {
          let repo;
          let prefix;
          return text
            .replaceAll('{repo}', () => (repo ??= freshDir(key)))
            .replaceAll('{s3}', () => (prefix ??= s3 ? s3Opts(`${key}-${++repoSeq}`) : '--s3-is-not-running'))
            .replaceAll('{walvault}', walvault ? walvault.archive : 'walvault-archive');
        };
        return { key, tool: key, mode: template, prepare: () => ({ command: fill(template) }) };
      }),
    ].filter(Boolean).filter((t) => wanted(t.key));

    const archiveOnce = async (tool, { measureMemory }) => {
      const settings = tool.prepare();
      fs.rmSync(path.join(data, 'pg_wal', 'walvault'), { recursive: true, force: true });
      const rssFile = path.join(tmp, `rss-${tool.key}.txt`);
      fs.rmSync(rssFile, { force: true });
      if (measureMemory && settings.command) {
        fs.writeFileSync(rssFile, '');
        chownPg(rssFile);
        settings.command = `/usr/bin/time -f %M -a -o ${rssFile} sh -c ${shq(settings.command)}`;
      }
      await switchLibrary(settings.library ?? '', settings.library ? [`${settings.libraryOff}`] : []);
      await sleep(SETTLE_MS);
      const before = archiverStats();
      setArchiving(settings);
      let polledPeak = 0;
      let polledWho = '';
      const poll = () => {
        for (const pid of helperPids(tmp, excludePids)) {
          const kib = peakRssKiB(pid);
          if (kib > polledPeak) [polledPeak, polledWho] = [kib, processKind(pid)];
        }
      };
      const t0 = performance.now();
      const wall0 = Date.now();
      reload();
      const deadline = t0 + Math.max(300_000, N * 5_000);
      let lastPoll = 0;
      while (doneCount() < N) {
        if (performance.now() > deadline) throw new Error(`${tool.key}: archiving did not finish in time; see "${pgLog}"`);
        if (measureMemory && performance.now() - lastPoll > 25) {
          lastPoll = performance.now();
          poll();
        }
        await sleep(measureMemory ? 2 : 5);
      }
      const seconds = (performance.now() - t0) / 1000;
      setArchiving({ library: currentLibrary, extra: settings.libraryOff ? [settings.libraryOff] : [] });
      reload();
      // Wait for background helpers (pgBackRest's async process, walvault's pusher) to finish.
      const quietBy = performance.now() + 60_000;
      while (helperPids(tmp, excludePids).length > 0 && performance.now() < quietBy) {
        if (measureMemory) poll();
        await sleep(20);
      }
      await sleep(100);
      const after = archiverStats();
      if (args.timeline) printTimeline(tool.key, wall0, lastRepo);
      resetBacklog();
      disposeRepos();
      let timedRss = 0;
      if (fs.existsSync(rssFile)) for (const line of fs.readFileSync(rssFile, 'utf8').split('\n')) if (/^\d+$/.test(line.trim())) timedRss = Math.max(timedRss, Number(line));
      if (measureMemory) log(`  ${tool.key}: peak RSS ${timedRss} KiB of the archive commands (GNU time), ${polledPeak} KiB polled${polledWho ? ` (${polledWho})` : ''}`);
      return { seconds, failed: after.failed - before.failed, rssKiB: Math.max(timedRss, polledPeak) };
    };

    // --timeline: when each backlog file was stored (its repository file's ctime: the temp file's
    // unlink after link and directory fsync) and acknowledged (its .done's ctime: the archiver's rename),
    // in ms after the reload that started archiving.
    const printTimeline = (key, wall0, repo) => {
      const at = (file) => {
        try {
          return Math.round(fs.statSync(file).ctimeMs - wall0);
        } catch {
          return null;
        }
      };
      const stored = backlog.map((name) => (repo === null ? null : at(path.join(repo, name)) ?? at(path.join(repo, 'wal', name.slice(0, 16), name))));
      const done = backlog.map((name) => at(path.join(statusDir, `${name}.done`)));
      log(`timeline ${key}: stored ${stored.join(' ')}`);
      log(`timeline ${key}: done   ${done.join(' ')}`);
    };

    // Runs go round-robin (a warm-up of every tool, then run r of every tool, ...): this VM's disk
    // gets slower as gigabytes are written (the same tool measured 0.78 s, then 2.27 s five runs
    // later), so measuring one tool's runs back to back would favour the tools measured first.
    // basic_archive goes first in the warm-up (the library is switched twice per round, untimed).
    archiveTools.sort((a, b) => (b.inServer ? 1 : 0) - (a.inServer ? 1 : 0));
    const measured = new Map();
    for (const tool of archiveTools) {
      log(`archive: ${tool.key} (warm-up, memory)`);
      try {
        const warm = await archiveOnce(tool, { measureMemory: true });
        measured.set(tool.key, { warm, times: tool.slow || REPEATS < 1 ? [warm.seconds] : [], failed: warm.failed });
      } catch (error) {
        await abandonRow(tool.key, error);
      }
    }
    // Every tool, basic_archive too, takes every place in the round in turn: this VM's disk has slow
    // phases (measured: ~1.4 GB/s at first, ~330 MB/s for minutes after a few GiB), so a run that
    // follows another's 512 MiB can find it slower: with a fixed order, the tool right after
    // basic_archive ran up to 3x slower in some runs.
    // Each timed run also starts after the same pause (SETTLE_MS; the library switches of some runs
    // would otherwise rest the disk for them only).
    for (let r = 0; r < REPEATS; r++) {
      const turn = r % archiveTools.length;
      for (const tool of [...archiveTools.slice(turn), ...archiveTools.slice(0, turn)]) {
        const state = measured.get(tool.key);
        if (state === undefined || tool.slow) continue;
        try {
          const res = await archiveOnce(tool, { measureMemory: false });
          state.times.push(res.seconds);
          state.failed += res.failed;
        } catch (error) {
          measured.delete(tool.key);
          await abandonRow(tool.key, error);
        }
      }
      log(`archive: round ${r + 1} of ${REPEATS} done`);
    }
    for (const tool of archiveTools) {
      const state = measured.get(tool.key);
      if (state === undefined) continue;
      const { warm, times, failed } = state;
      const secs = median(times);
      const row = { key: tool.key, tool: tool.tool, mode: tool.mode, seconds: secs, runs: times, segPerSec: N / secs, rssKiB: tool.inServer ? null : warm.rssKiB, failed };
      results.archive.push(row);
      log(`  ${tool.key}: ${row.segPerSec.toFixed(1)} seg/s (runs ${times.map((t) => t.toFixed(2)).join(', ')} s), peak ${row.rssKiB ?? '-'} KiB, failures ${failed}`);
    }

    // Plain in-process upload loop to the same S3 server: what the server accepts from one client.
    if (s3 && wanted('s3-loop')) {
      log('archive: s3-loop');
      const loopScript = `import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3'; import fs from 'node:fs';
        const client = new S3Client({ endpoint: ${JSON.stringify(s3.endpoint)}, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
        const files = ${JSON.stringify(backlog.map((n) => path.join(data, 'pg_wal', n)))};
        const prefix = process.argv[1];
        const t0 = performance.now();
        for (const file of files) await client.send(new PutObjectCommand({ Bucket: 'loop', Key: prefix + '/' + file.split('/').pop(), Body: fs.readFileSync(file) }));
        console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, rss: process.resourceUsage().maxRSS }));`;
      const times = [];
      let rss = 0;
      for (let r = 0; r < Math.max(1, REPEATS); r++) {
        const out = run(process.execPath, ['--input-type=module', '-e', loopScript, `run${r}`], { cwd: ROOT, env: { ...process.env, ...awsEnv } });
        const parsed = JSON.parse(out.stdout.trim().split('\n').pop());
        times.push(parsed.seconds);
        rss = Math.max(rss, parsed.rss);
      }
      const secs = median(times);
      results.archive.push({ key: 's3-loop', tool: 'plain upload loop', mode: 'S3 (s3rver), one client, sequential PutObject', seconds: secs, runs: times, segPerSec: N / secs, rssKiB: rss, failed: 0 });
      log(`  s3-loop: ${(N / secs).toFixed(1)} seg/s`);
    }

    // ---- process overhead of one synchronous archive ----------------------------------------------
    const timeIt = (argv, options = {}) => {
      const spawnOptions = { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', ...options };
      const t0 = performance.now();
      const res = isRoot ? spawnSync('runuser', ['-u', 'postgres', '--', ...argv], spawnOptions) : spawnSync(argv[0], argv.slice(1), spawnOptions);
      const ms = performance.now() - t0;
      // walvault-archive's log line says how long the archive itself took ("(N bytes, 21 ms)" or "1.05 s"):
      // the wall time minus that is the process's own cost (start, load, parse, open, exit).
      const work = /\(\d+ bytes, ([\d.]+) (ms|s)\)/.exec(res.stderr ?? '');
      const workMs = work === null ? undefined : Number(work[1]) * (work[2] === 's' ? 1000 : 1);
      return { ms, status: res.status, workMs };
    };
    if (mainWanted) {
      // Interleaved (one sample of each case per round, repeated), so a noisy moment hits all alike.
      const reps = 21;
      const seg = backlog.find((n) => /^[0-9A-F]{24}$/.test(n));
      // A small file through the whole durable path (temp file, fsyncs, link, directory fsync): the
      // process cost of one archive without 16 MiB of copying.
      const smallDir = path.join(tmp, 'small');
      fs.mkdirSync(smallDir, { recursive: true });
      const small = path.join(smallDir, '00000099.history');
      fs.writeFileSync(small, '98\t0/9000000\tno recovery target specified\n');
      fs.chmodSync(smallDir, 0o755);
      fs.chmodSync(small, 0o644);
      // Node parses every certificate of NODE_EXTRA_CA_CERTS at start-up (tens of ms for a whole bundle);
      // where it is set, also measure node -e 0 without it, and run the minimal script without it: the
      // start walvault's archive and restore launchers give node.
      const clean = { ...process.env };
      delete clean.NODE_EXTRA_CA_CERTS;
      const cases = [
        ['shMs', () => timeIt(['sh', '-c', 'exit 0'])],
        ['nodeMs', () => timeIt(['node', '-e', '0'])],
        ['minimalMs', () => timeIt(['node', minimalScript, `pg_wal/${seg}`, `${freshDir('one')}/${seg}`], { cwd: data, env: clean })],
        ['minimalSmallMs', () => timeIt(['node', minimalScript, small, `${freshDir('small-min')}/00000099.history`], { cwd: data, env: clean })],
      ];
      if (process.env.NODE_EXTRA_CA_CERTS) cases.push(['nodeCleanMs', () => timeIt(['node', '-e', '0'], { env: clean })]);
      if (walvault) {
        const wv = walvault.archive.split(' ');
        // A restore_command the sh fast path cannot answer: a history file not in the archive (Node starts).
        // Not a freshDir: the copies of each round are deleted after it, this one stays.
        const emptyRepo = path.join(tmp, 'probe-repo');
        fs.mkdirSync(emptyRepo, { recursive: true, mode: 0o700 });
        chownPg(emptyRepo);
        cases.push(
          ['walvaultOneMs', () => timeIt([...wv, `--repo=${freshDir('one')}`, '--push-ahead=0', `pg_wal/${seg}`, seg], { cwd: data })],
          ['walvaultSmallMs', () => timeIt([...wv, `--repo=${freshDir('small-wv')}`, '--push-ahead=0', small, '00000099.history'], { cwd: data })],
          ['walvaultUsageMs', () => timeIt([...wv, '--repo=/nonexistent', '--push-ahead=0', 'pg_wal/x', '../bad'], { cwd: data })],
          ['walvaultProbeMs', () => timeIt([...walvault.restore.split(' '), `--repo=${emptyRepo}`, '--on-error=missing', '00000099.history', 'pg_wal/RECOVERYHISTORY'], { cwd: data })],
        );
      }
      const samples = new Map(cases.map(([key]) => [key, []]));
      const processCost = new Map();
      for (let round = 0; round < reps; round++) {
        for (const [key, measure] of cases) {
          const { ms, workMs } = measure();
          samples.get(key).push(ms);
          if (workMs !== undefined) processCost.set(key, [...(processCost.get(key) ?? []), ms - workMs]);
        }
        // Untimed: the round's copies go (this VM writes slower as new files pile up, see the archive runs).
        disposeRepos();
      }
      for (const [key, values] of samples) results.overhead[key] = median(values);
      for (const [key, values] of processCost) if (values.length === reps) results.overhead[key.replace(/Ms$/, 'ProcessMs')] = median(values);
      if (walvault) {
        // An answer from the spool: a segment pushed ahead earlier (the launcher alone, no Node).
        const wv = walvault.archive.split(' ');
        const repo = freshDir('spool');
        timeIt([...wv, `--repo=${repo}`, `pg_wal/${backlog[0]}`, backlog[0]], { cwd: data });
        await sleep(1500);
        results.overhead.walvaultSpoolMs = median(Array.from({ length: reps }, () => timeIt([...wv, `--repo=${repo}`, `pg_wal/${backlog[1]}`, backlog[1]], { cwd: data }).ms));
        fs.rmSync(path.join(data, 'pg_wal', 'walvault'), { recursive: true, force: true });
        disposeRepos();
      }
      log(`overhead: ${JSON.stringify(results.overhead)}`);
    }

    // ---- codecs: a backlog of compressible WAL, each codec into a fresh local repo ----------------
    let ageRecipient = null;
    if (walvault && (wantedCodec('codec-walvault-zstd-age') || (args.command ?? []).some((spec) => spec.includes('{age-recipient}'))) && have('age-keygen')) {
      const identity = path.join(tmp, 'age-identity.txt');
      run('age-keygen', ['-o', identity]);
      ageRecipient = run('age-keygen', ['-y', identity]).stdout.trim();
    }
    const wvCodec = (key, mode, options) => walvault && { key, tool: 'walvault', mode, prepare: () => {
      const d = freshDir(key);
      repoOf[key] = d;
      return { command: `${walvault.archive} --repo=${d} ${options} %p %f` };
    } };
    const pgbrCodec = (key, type) => hasPgbr && { key, tool: 'pgBackRest 2.45', mode: `archive-push, async, process-max=2, compress-type=${type}`, codec: type, prepare: () => {
      const d = freshDir(key);
      fs.rmSync(path.join(tmp, 'pgbr-spool'), { recursive: true, force: true });
      const conf = pgbrConf(key, d, { async: true, compress: type });
      asPg('pgbackrest', [`--config=${conf}`, '--stanza=bench', 'stanza-create']);
      repoOf[key] = d;
      return { command: `pgbackrest --config=${conf} --stanza=bench archive-push %p` };
    } };
    // Each walvault row names the pgBackRest row with the same codec (`peer`) for the ratio column.
    // Recovery from the codec repositories needs them complete from the base backup on: only without the random backlog.
    const codecRecovery = !mainWanted;
    const codecCp = codecRecovery && { key: 'codec-cp', tool: 'cp', mode: 'not durable, uncompressed (the recovery rows\' baseline)', keep: true, prepare: () => {
      const d = freshDir('codec-cp');
      repoOf['codec-cp'] = d;
      return { command: `test ! -f ${d}/%f && cp %p ${d}/%f` };
    } };
    const codecTools = [
      codecCp,
      { ...wvCodec('codec-walvault-none', 'local, defaults, --compress=none', '--compress=none'), peer: 'codec-pgbackrest-none' },
      pgbrCodec('codec-pgbackrest-none', 'none'),
      { ...wvCodec('codec-walvault-gzip', 'local, defaults, --compress=gzip (level 6)', '--compress=gzip'), peer: 'codec-pgbackrest-gz' },
      pgbrCodec('codec-pgbackrest-gz', 'gz'),
      { ...wvCodec('codec-walvault-lz4', 'local, defaults, --compress=lz4', '--compress=lz4'), peer: 'codec-pgbackrest-lz4', keep: codecRecovery },
      { ...pgbrCodec('codec-pgbackrest-lz4', 'lz4'), keep: codecRecovery },
      { ...wvCodec('codec-walvault-zstd', 'local, defaults, --compress=zstd (level 3)', '--compress=zstd'), peer: 'codec-pgbackrest-zst', keep: codecRecovery },
      { ...pgbrCodec('codec-pgbackrest-zst', 'zst'), keep: codecRecovery },
      ageRecipient && { ...wvCodec('codec-walvault-zstd-age', 'local, defaults, --compress=zstd + --encrypt-recipient (age)', `--compress=zstd --encrypt-recipient=${ageRecipient}`), peer: 'codec-pgbackrest-zst' },
      // --command rows whose key starts with `codec-` drain the compressible backlog (e.g. an older build
      // beside this one); `{age-recipient}` is the recipient of the age row. The peer is pgBackRest with the
      // codec the key ends with (-lz4, -zstd, -none, -gzip; -zstd-age compares with zst).
      ...(args.command ?? []).filter((spec) => spec.startsWith('codec-')).map((spec) => {
        const eq = spec.indexOf('=');
        if (eq < 1) throw new Error(`--command "${spec}": expected KEY=COMMAND`);
        const key = spec.slice(0, eq);
        const template = spec.slice(eq + 1);
        const ending = ['zstd-age', 'zstd', 'lz4', 'gzip', 'none'].find((codec) => key.endsWith(`-${codec}`));
        const peer = ending && `codec-pgbackrest-${{ 'zstd-age': 'zst', zstd: 'zst', lz4: 'lz4', gzip: 'gz', none: 'none' }[ending]}`;
        return { key, tool: key, mode: template, peer, prepare: () => {
          const d = freshDir(key);
          repoOf[key] = d;
          return { command: template.replaceAll('{repo}', d).replaceAll('{walvault}', walvault ? walvault.archive : 'walvault-archive').replaceAll('{age-recipient}', ageRecipient ?? '') };
        } };
      }),
    ].filter((t) => t && t.key && wantedCodec(t.key));
    // Bytes of the archived files in a repo: walvault's own files (names with '~', walvault.json) and
    // pgBackRest's archive.info are left out.
    const storedBytes = (dir) => {
      let total = 0;
      for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
        if (!entry.isFile() || entry.name.includes('~') || entry.name === 'walvault.json' || entry.name.startsWith('archive.info')) continue;
        total += fs.statSync(path.join(entry.parentPath ?? entry.path, entry.name)).size;
      }
      return total;
    };
    if (codecTools.length > 0) {
      // The random backlog is finished with: marked archived, so the archiver sees only the new one.
      for (const name of readyNames()) fs.renameSync(path.join(statusDir, `${name}.ready`), path.join(statusDir, `${name}.done`));
      const pgbenchEnv = { ...process.env, PGOPTIONS: '-c synchronous_commit=off' };
      const pgbench = (argv) => asPg(`${PGBIN}/pgbench`, ['-h', sock, '-p', String(port), ...argv, 'postgres'], { env: pgbenchEnv });
      log(`generating ${CODEC_SEGMENTS} segments of compressible WAL (pgbench)`);
      while (readyNames().length < CODEC_SEGMENTS - 1) {
        pgbench(['-i', '-q', '-s', '4']);
        pgbench(['-n', '-c', '2', '-j', '2', '-T', '3']);
      }
      sql('SELECT pg_switch_wal()');
      await sleep(200);
      backlog = readyNames().sort();
      N = backlog.length;
      results.codecSegments = N;
      results.codecRepeats = CODEC_REPEATS;
      const originalBytes = backlog.filter((n) => /^[0-9A-F]{24}$/.test(n)).reduce((sum, n) => sum + fs.statSync(path.join(data, 'pg_wal', n)).size, 0);
      log(`codec backlog: ${N} files (${backlog[0]} .. ${backlog[N - 1]})`);
      // pgbench left dirty buffers: flushed now, not by a checkpoint during the first rows.
      sql('CHECKPOINT');
      run('sync', []);
      for (const tool of codecTools) {
        log(`codecs: ${tool.key}`);
        try {
          const times = [];
          let failed = 0;
          let bytes = 0;
          let rssKiB;
          for (let r = 0; r < Math.max(1, CODEC_REPEATS); r++) {
            // Untimed, before the first timed run (GNU time and /proc polling cost time); its copy is not kept.
            if (args['codec-memory'] && r === 0) rssKiB = (await archiveOnce(tool, { measureMemory: true })).rssKiB;
            const res = await archiveOnce(tool, { measureMemory: false });
            times.push(res.seconds);
            failed += res.failed;
            bytes = storedBytes(repoOf[tool.key]);
            // Measured: nothing later reads this copy (see disposeRepos), unless its last run is recovered from.
            if (!(tool.keep && r === Math.max(1, CODEC_REPEATS) - 1)) delete repoOf[tool.key];
            disposeRepos();
          }
          const secs = median(times);
          const row = { key: tool.key, peer: tool.peer, tool: tool.tool, mode: tool.mode, seconds: secs, runs: times, segPerSec: N / secs, bytesPerSegment: bytes / N, ratio: originalBytes / bytes, failed, rssKiB };
          results.codecs.push(row);
          log(`  ${tool.key}: ${row.segPerSec.toFixed(1)} seg/s (runs ${times.map((t) => t.toFixed(2)).join(', ')} s), ${Math.round(row.bytesPerSegment)} bytes/segment stored, failures ${failed}`);
        } catch (error) {
          await abandonRow(tool.key, error);
        }
      }
    }

    // ---- recovery -------------------------------------------------------------------------------
    asPg(`${PGBIN}/pg_ctl`, ['-D', data, '-m', 'fast', 'stop']);
    postmasterUp = [];
    let proxy = null;
    if (s3) proxy = await startLatencyProxy(s3Port, LATENCY_MS);
    const rdata = path.join(tmp, 'rdata');
    const rport = await freePort();
    const restoreTools = [
      repoOf.cp && { key: 'restore-cp', tool: 'cp', mode: 'local', command: () => `cp ${repoOf.cp}/%f %p` },
      hasPgbr && repoOf.pgbackrest && { key: 'restore-pgbackrest', tool: 'pgBackRest 2.45', mode: 'archive-get, sync', command: () => `pgbackrest --config=${pgbrConf('pgbr-get', repoOf.pgbackrest, { async: false, pgPath: rdata, pgPort: rport })} --stanza=bench archive-get %f "%p"` },
      hasPgbr && repoOf.pgbackrest && { key: 'restore-pgbackrest-async', tool: 'pgBackRest 2.45', mode: 'archive-get, async (prefetch)', command: () => {
        fs.rmSync(path.join(tmp, 'pgbr-spool'), { recursive: true, force: true });
        return `pgbackrest --config=${pgbrConf('pgbr-get-async', repoOf.pgbackrest, { async: true, pgPath: rdata, pgPort: rport })} --stanza=bench archive-get %f "%p"`;
      } },
      walvault && repoOf.walvault && { key: 'restore-walvault', tool: 'walvault', mode: 'local, defaults (prefetch)', command: () => `${walvault.restore} --repo=${repoOf.walvault} %f %p` },
      walvault && repoOf.walvault && { key: 'restore-walvault-noprefetch', tool: 'walvault', mode: 'local, --prefetch=0', command: () => `${walvault.restore} --repo=${repoOf.walvault} --prefetch=0 %f %p` },
      walvault && proxy && repoOf['walvault-s3'] && { key: 'restore-walvault-s3', tool: 'walvault', mode: `S3 +${LATENCY_MS} ms/request, defaults (prefetch)`, command: () => `${walvault.restore} --repo=s3://bench/${repoOf['walvault-s3']} --s3-endpoint=http://127.0.0.1:${proxy.port} --s3-force-path-style %f %p` },
      walvault && proxy && repoOf['walvault-s3'] && { key: 'restore-walvault-s3-noprefetch', tool: 'walvault', mode: `S3 +${LATENCY_MS} ms/request, --prefetch=0`, command: () => `${walvault.restore} --repo=s3://bench/${repoOf['walvault-s3']} --s3-endpoint=http://127.0.0.1:${proxy.port} --s3-force-path-style --prefetch=0 %f %p` },
      ...(repoOf.walvault || repoOf['walvault-s3'] ? args['restore-command'] ?? [] : []).map((spec) => {
        const eq = spec.indexOf('=');
        if (eq < 1) throw new Error(`--restore-command "${spec}": expected KEY=COMMAND`);
        const template = spec.slice(eq + 1);
        if (template.includes('{repo}') && !repoOf.walvault) throw new Error(`--restore-command "${spec}": {repo} needs the walvault row`);
        if (template.includes('{s3}') && !(proxy && repoOf['walvault-s3'])) throw new Error(`--restore-command "${spec}": {s3} needs the walvault-s3 row`);
        const s3Options = () => `--repo=s3://bench/${repoOf['walvault-s3']} --s3-endpoint=http://127.0.0.1:${proxy.port} --s3-force-path-style`;
        const command = () => template.replaceAll('{repo}', repoOf.walvault).replaceAll('{s3}', template.includes('{s3}') ? s3Options() : '').replaceAll('{walvault}', walvault ? walvault.restore : 'walvault-restore');
        return { key: spec.slice(0, eq), tool: spec.slice(0, eq), mode: template, command };
      }),
    ].filter(Boolean).filter((t) => wanted(t.key) || wanted(t.key.replace(/^restore-/, '')));
    // Recovery from the codec phase's repositories (see the usage): each compared with cp from the
    // uncompressed copy and, for walvault, with pgBackRest async with the same codec.
    restoreTools.push(
      ...[
        repoOf['codec-cp'] && { key: 'codec-restore-cp', tool: 'cp', mode: 'local, uncompressed (compressible backlog)', command: () => `cp ${repoOf['codec-cp']}/%f %p` },
        ...[['lz4', 'lz4'], ['zstd', 'zst']].flatMap(([wv, pgbr]) => [
          walvault && repoOf[`codec-walvault-${wv}`] && { key: `codec-restore-walvault-${wv}`, tool: 'walvault', mode: `local, --compress=${wv} archive, defaults (prefetch)`, vs: 'codec-restore-cp', peer: `codec-restore-pgbackrest-${pgbr}`, command: () => `${walvault.restore} --repo=${repoOf[`codec-walvault-${wv}`]} %f %p` },
          hasPgbr && repoOf[`codec-pgbackrest-${pgbr}`] && { key: `codec-restore-pgbackrest-${pgbr}`, tool: 'pgBackRest 2.45', mode: `archive-get, async (prefetch), compress-type=${pgbr} archive`, vs: 'codec-restore-cp', command: () => {
            fs.rmSync(path.join(tmp, 'pgbr-spool'), { recursive: true, force: true });
            return `pgbackrest --config=${pgbrConf(`pgbr-get-${pgbr}`, repoOf[`codec-pgbackrest-${pgbr}`], { async: true, pgPath: rdata, pgPort: rport, compress: pgbr })} --stanza=bench archive-get %f "%p"`;
          } },
        ]),
      ].filter((t) => t && wantedCodec(t.key)).map((t) => ({ ...t, vs: t.key === 'codec-restore-cp' ? undefined : 'codec-restore-cp', sameAs: 'codec-restore-cp' })),
    );

    // --trace-restore: a wrapper that logs each call (start and end in ns since the epoch, exit code, %f, %p).
    const traceScript = path.join(tmp, 'trace-restore.sh');
    const traceLog = path.join(tmp, 'trace-restore.log');
    fs.writeFileSync(traceScript, ['#!/bin/sh', 'log=$1 f=$2 p=$3', 'shift 3', 't0=$(date +%s%N)', '"$@"', 'rc=$?', 'echo "$t0 $(date +%s%N) $rc $f $p" >> "$log"', 'exit $rc', ''].join('\n'), { mode: 0o755 });
    const traced = (command) => `${traceScript} ${traceLog} %f %p ${command}`;
    const printTrace = (key, startedNs) => {
      const lines = fs.readFileSync(traceLog, 'utf8').split('\n').filter(Boolean);
      log(`  trace of ${key} (${lines.length} calls; ms after the server start: start-end, duration, exit, %f %p):`);
      let waited = 0;
      for (const line of lines) {
        const [t0, t1, rc, f, p] = line.split(' ');
        const at = (ns) => Number((BigInt(ns) - startedNs) / 1_000_000n);
        waited += at(t1) - at(t0);
        log(`    ${String(at(t0)).padStart(6)}-${String(at(t1)).padEnd(6)} ${String(at(t1) - at(t0)).padStart(5)} ms  exit ${rc}  ${f} ${p}`);
      }
      log(`  ${key}: PostgreSQL waited ${waited} ms in restore_command (${lines.length} calls)`);
    };
    // CPU seconds used since `since` (or absolute counters without it): the machine's busy time from
    // /proc/stat, the S3 server's process, and this process (the latency proxy lives here; so does the
    // 5 ms log polling, a few ms). Shows whether a recovery from S3 is bound by the server it talks to.
    const recoveryCpu = (since) => {
      const ticks = 100;
      const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
      const machine = (fields.reduce((a, b) => a + b, 0) - (fields[3] ?? 0) - (fields[4] ?? 0)) / ticks;
      let s3server = 0;
      if (s3) {
        try {
          const stat = fs.readFileSync(`/proc/${s3.pid}/stat`, 'utf8').split(') ')[1].split(' ');
          s3server = (Number(stat[11]) + Number(stat[12])) / ticks;
        } catch {}
      }
      const usage = process.cpuUsage();
      const proxyCpu = (usage.user + usage.system) / 1e6;
      const now = { machine, s3server, proxy: proxyCpu };
      return since ? Object.fromEntries(Object.keys(now).map((k) => [k, now[k] - since[k]])) : now;
    };
    const restoreOnce = async (tool, { trace = false } = {}) => {
      fs.rmSync(rdata, { recursive: true, force: true });
      run('cp', ['-a', base, rdata]);
      fs.appendFileSync(
        path.join(rdata, 'postgresql.conf'),
        [`port = ${rport}`, 'archive_mode = off', 'hot_standby = off', `restore_command = ${sq(trace ? traced(tool.command()) : tool.command())}`, "recovery_target_timeline = 'latest'", `include_if_exists = 'none.conf'`, ''].join('\n'),
      );
      fs.rmSync(path.join(rdata, 'bench.conf'), { force: true });
      fs.writeFileSync(path.join(rdata, 'recovery.signal'), '');
      chownPg(rdata);
      const rlog = path.join(tmp, `recovery-${tool.key}.log`);
      fs.writeFileSync(rlog, '');
      chownPg(rlog);
      // pg_ctl -w would return early: with hot_standby = off the postmaster reports "standby" as soon
      // as recovery starts. The end of recovery is the server's own "ready to accept connections".
      if (trace) {
        fs.writeFileSync(traceLog, '');
        chownPg(traceLog);
      }
      const startedNs = BigInt(Date.now()) * 1_000_000n;
      const cpu0 = recoveryCpu();
      const t0 = performance.now();
      const res = asPg(`${PGBIN}/pg_ctl`, ['-D', rdata, '-l', rlog, '-W', 'start'], { allowFail: true, env: pgEnv });
      postmasterUp = [rdata];
      let logText = '';
      const deadline = t0 + 900_000;
      while (res.status === 0 && performance.now() < deadline) {
        logText = fs.readFileSync(rlog, 'utf8');
        if (/database system is ready to accept connections|database system is shut down|FATAL|PANIC/.test(logText)) break;
        await sleep(5);
      }
      const seconds = (performance.now() - t0) / 1000;
      const cpu = recoveryCpu(cpu0);
      if (!/database system is ready to accept connections/.test(logText)) res.status = 1;
      asPg(`${PGBIN}/pg_ctl`, ['-D', rdata, '-m', 'immediate', 'stop'], { allowFail: true });
      postmasterUp = [];
      // Background helpers (prefetchers) of this run must not outlive it.
      for (const pid of helperPids(tmp, excludePids)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      await sleep(50);
      if (res.status !== 0) throw new Error(`recovery failed to start: ${logText.slice(-2000)}`);
      const restored = (logText.match(/restored log file "[0-9A-F]{24}" from archive/g) ?? []).length;
      if (trace) printTrace(tool.key, startedNs);
      return { seconds, restored, cpu };
    };
    for (const tool of restoreTools) {
      log(`recovery: ${tool.key}`);
      try {
        const warm = await restoreOnce(tool, { trace: Boolean(args['trace-restore']) });
        // A gap in a repository ends recovery early, as a success: a short replay is a failed row, not a fast one.
        const expected = results.restore.find((r) => r.key === tool.sameAs)?.restored;
        if (tool.sameAs !== undefined && tool.key !== tool.sameAs && expected !== undefined && warm.restored !== expected) {
          throw new Error(`${warm.restored} segments restored, ${expected} from the uncompressed copy`);
        }
        const times = [];
        const cpus = [];
        for (let r = 0; r < Math.max(1, REPEATS); r++) {
          const once = await restoreOnce(tool);
          times.push(once.seconds);
          cpus.push(once.cpu);
        }
        const secs = median(times);
        // CPU seconds during the timed runs (medians): the whole machine (/proc/stat), the S3 server, and this process (the latency proxy).
        const cpu = Object.fromEntries(['machine', 's3server', 'proxy'].map((k) => [k, median(cpus.map((c) => c[k]))]));
        results.restore.push({ key: tool.key, tool: tool.tool, mode: tool.mode, seconds: secs, runs: times, restored: warm.restored, vs: tool.vs, peer: tool.peer, cpu });
        log(`  ${tool.key}: ${secs.toFixed(2)} s (runs ${times.map((t) => t.toFixed(2)).join(', ')}), ${warm.restored} segments restored; CPU s (median): machine ${cpu.machine.toFixed(2)} of ${(secs * os.cpus().length).toFixed(2)} available, S3 server ${cpu.s3server.toFixed(2)}, latency proxy ${cpu.proxy.toFixed(2)}`);
      } catch (error) {
        log(`  ${tool.key} FAILED: ${error.message}`);
      }
    }
    if (proxy) proxy.server.close();
  } finally {
    cleanup();
  }

  const report = renderReport(results);
  process.stdout.write(report);
  if (args.json) fs.writeFileSync(String(args.json), JSON.stringify(results, null, 2));
  if (args.markdown) fs.writeFileSync(String(args.markdown), report);
}

function shq(text) {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function describeMachine(dir) {
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const fsType = spawnSync('df', ['-T', dir], { encoding: 'utf8' }).stdout.split('\n')[1]?.split(/\s+/)[1] ?? '?';
  const pgbr = spawnSync('pgbackrest', ['version'], { encoding: 'utf8' }).stdout?.trim() ?? 'absent';
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Linux ${os.release()}, temp dir on ${fsType}; ${describeNode()}, PostgreSQL 15, ${pgbr || 'pgBackRest absent'}`;
}

/**
 * The Node walvault's launchers run (WALVAULT_NODE, else the first node on PATH, as the launchers pick
 * it), and the peak RSS of that Node doing nothing: the floor under every peak RSS in the tables. It is
 * not constant: the binary's pages count in RSS as the kernel maps them, and with large folios in the
 * page cache one and the same binary measured 43 or 57-64 MiB here depending on how its file was last
 * read (dropping the page cache brought it back to 43).
 */
function describeNode() {
  const node = process.env.WALVAULT_NODE ?? 'node';
  const version = spawnSync(node, ['-v'], { encoding: 'utf8' }).stdout?.trim() || `${node} (not found)`;
  const bare = spawnSync('/usr/bin/time', ['-f', '%M', node, '-e', '0'], { encoding: 'utf8' });
  const kib = Number(bare.stderr?.trim().split('\n').pop());
  return `Node ${version}${Number.isFinite(kib) && kib > 0 ? ` (\`node -e 0\`: ${Math.round(kib / 1024)} MiB peak RSS)` : ''}`;
}

function renderReport(results) {
  const by = (key) => results.archive.find((r) => r.key === key);
  const pgbrAsync = by('pgbackrest-async')?.segPerSec;
  const basic = by('basic_archive')?.segPerSec;
  const loop = by('s3-loop')?.segPerSec;
  const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}×` : '–');
  const mib = (kib) => (kib ? `${(kib / 1024).toFixed(0)} MiB` : kib === null ? 'in server' : '–');
  const lines = [];
  lines.push(`Machine: ${results.machine}`);
  if (results.archive.length) {
    lines.push(`Backlog: ${results.segments} WAL files of incompressible data; medians of ${results.repeats} runs after a warm-up run (slow tools: one run).`);
    lines.push('');
    lines.push('Archiving (PostgreSQL\'s archiver draining the backlog):');
    lines.push('');
    lines.push('| tool | mode | segments/s | vs pgBackRest async | vs basic_archive | vs S3 upload loop | peak memory | failures |');
    lines.push('|---|---|---:|---:|---:|---:|---:|---:|');
    for (const r of results.archive) {
      const s3row = r.mode.startsWith('S3');
      lines.push(`| ${r.tool} | ${r.mode} | ${r.segPerSec.toFixed(1)} | ${ratio(r.segPerSec, pgbrAsync)} | ${ratio(r.segPerSec, basic)} | ${s3row ? ratio(r.segPerSec, loop) : '–'} | ${mib(r.rssKiB)} | ${r.failed} |`);
    }
  }
  if (results.codecs.length) {
    const codecBy = (key) => results.codecs.find((r) => r.key === key);
    const runs = results.codecRepeats > 1 ? `medians of ${results.codecRepeats} runs` : 'one run per row, no warm-up';
    lines.push('');
    lines.push(`Compression (PostgreSQL's archiver draining a backlog of ${results.codecSegments} WAL files of compressible data: \`pgbench -i -s 4\` and 3 s of pgbench transactions, repeated; local repo; ${runs}; stored bytes = the archived files, without sidecars and repository documents):`);
    lines.push('');
    const memory = results.codecs.some((r) => r.rssKiB !== undefined);
    lines.push(`| tool | mode | segments/s | vs pgBackRest, same codec | stored bytes/segment | original/stored |${memory ? ' peak memory |' : ''} failures |`);
    lines.push(`|---|---|---:|---:|---:|---:|${memory ? '---:|' : ''}---:|`);
    for (const r of results.codecs) {
      lines.push(`| ${r.tool} | ${r.mode} | ${r.segPerSec.toFixed(1)} | ${r.peer ? ratio(r.segPerSec, codecBy(r.peer)?.segPerSec) : '–'} | ${Math.round(r.bytesPerSegment).toLocaleString('en-US')} | ${r.ratio.toFixed(2)}× |${memory ? ` ${mib(r.rssKiB)} |` : ''} ${r.failed} |`);
    }
  }
  const cp = results.restore.find((r) => r.key === 'restore-cp')?.seconds;
  if (results.restore.length) {
    lines.push('');
    lines.push('Recovery (server start until it logs "ready to accept connections": replay of the whole archive, end of recovery):');
    lines.push('');
    const restoreBy = (key) => results.restore.find((r) => r.key === key)?.seconds;
    lines.push('| tool | mode | seconds | segments/s | vs cp (time) | vs pgBackRest async, same codec (time) | CPU s: machine / S3 server / proxy |');
    lines.push('|---|---|---:|---:|---:|---:|---:|');
    const cpuCell = (c) => (c ? `${c.machine.toFixed(2)} / ${c.s3server.toFixed(2)} / ${c.proxy.toFixed(2)}` : '–');
    for (const r of results.restore) lines.push(`| ${r.tool} | ${r.mode} | ${r.seconds.toFixed(2)} | ${(r.restored / r.seconds).toFixed(1)} | ${ratio(r.seconds, r.vs ? restoreBy(r.vs) : cp)} | ${r.peer ? ratio(r.seconds, restoreBy(r.peer)) : '–'} | ${cpuCell(r.cpu)} |`);
  }
  const o = results.overhead;
  if (o.nodeMs) {
    lines.push('');
    lines.push('Process cost (median wall time of one invocation, as the postgres user):');
    lines.push('');
    const clean = o.nodeCleanMs !== undefined;
    if (clean) {
      lines.push('NODE_EXTRA_CA_CERTS is set in this environment: `node -e 0` parses that bundle at every start; walvault\'s archive and restore launchers never start Node with it (S3 reads it itself), so the last column compares with a start without it.');
      lines.push('');
    }
    lines.push(clean ? '| what | ms | vs `node -e 0` | vs `node -e 0` without NODE_EXTRA_CA_CERTS |' : '| what | ms | vs `node -e 0` |');
    lines.push(clean ? '|---|---:|---:|---:|' : '|---|---:|---:|');
    const row = (label, ms) =>
      ms !== undefined && lines.push(`| ${label} | ${ms.toFixed(1)} | ${(ms / o.nodeMs).toFixed(2)}× |${clean ? ` ${(ms / o.nodeCleanMs).toFixed(2)}× |` : ''}`);
    row('`sh -c "exit 0"`', o.shMs);
    row('`node -e 0`', o.nodeMs);
    row('`node -e 0` without NODE_EXTRA_CA_CERTS (removed from its environment)', o.nodeCleanMs);
    row(`minimal Node script, one 16 MiB segment (copy, fsync, link)${clean ? ', without NODE_EXTRA_CA_CERTS' : ''}`, o.minimalMs);
    row('walvault-archive --push-ahead=0, one 16 MiB segment', o.walvaultOneMs);
    row('the same, process cost: wall time minus the archive\'s own time from its log line', o.walvaultOneProcessMs);
    row(`minimal Node script, one small file (copy, fsync, link)${clean ? ', without NODE_EXTRA_CA_CERTS' : ''}`, o.minimalSmallMs);
    row('walvault-archive --push-ahead=0, one small file (history file into a fresh repository)', o.walvaultSmallMs);
    row('the same, process cost: wall time minus the archive\'s own time from its log line', o.walvaultSmallProcessMs);
    row('walvault-archive, bad name (start-up, parse, refuse)', o.walvaultUsageMs);
    row('walvault-restore, history file not in the archive (exit 1)', o.walvaultProbeMs);
    row('walvault-archive, segment already pushed ahead (answered from the spool)', o.walvaultSpoolMs);
  }
  lines.push('');
  return lines.join('\n');
}

/**
 * The base-backup rows (see the opening comment): one cluster, each tool once, timed by wall clock.
 * pgBackRest's backup checks that its WAL reached its own repository, walvault's waits for it in its
 * own: archive_command pushes every segment to both, so both pay for that wait alike.
 */
async function benchBackups() {
  const codec = String(args['backup-codec'] ?? 'lz4');
  const scale = Number(args['backup-scale'] ?? 200);
  const want = (key) => only.has('backups') || only.has(key);
  ensureTools();
  if (!args['no-build']) run('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  const walvault = path.join(ROOT, 'dist', 'cli', 'walvault');
  const walvaultArchive = path.join(ROOT, 'dist', 'cli', 'walvault-archive');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'walvault-bench-backup-'));
  fs.chmodSync(tmp, 0o755);
  const data = path.join(tmp, 'data');
  const port = await freePort();
  const walRepo = path.join(tmp, 'wal-repo');
  const pgbrRepo = path.join(tmp, 'pgbackrest');
  const pgbrConf = path.join(tmp, 'pgbackrest.conf');
  const hasPgbr = have('pgbackrest');
  const rows = [];
  let up = false;
  try {
    chownPg(tmp);
    asPg(`${PGBIN}/initdb`, ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-instructions', '-N']);
    fs.mkdirSync(walRepo);
    fs.mkdirSync(pgbrRepo);
    fs.writeFileSync(pgbrConf, [
      '[global]', `repo1-path=${pgbrRepo}`, `log-path=${tmp}`, `lock-path=${tmp}`, 'log-level-console=warn', 'log-level-file=off', `compress-type=${codec === 'zstd' ? 'zst' : codec === 'gzip' ? 'gz' : codec}`, 'start-fast=y',
      '[bench]', `pg1-path=${data}`, `pg1-port=${port}`, `pg1-socket-path=${tmp}`, '',
    ].join('\n'));
    chownPg(tmp);
    const archiveCommand = `${walvaultArchive} --repo=${walRepo} %p %f${hasPgbr ? ` && pgbackrest --config=${pgbrConf} --stanza=bench archive-push %p` : ''}`;
    fs.appendFileSync(path.join(data, 'postgresql.conf'), [
      `port = ${port}`, `listen_addresses = ''`, `unix_socket_directories = ${sq(tmp)}`, 'archive_mode = on', `archive_command = ${sq(archiveCommand)}`,
      "max_wal_size = '8GB'", "shared_buffers = '128MB'", 'logging_collector = off', '',
    ].join('\n'));
    asPg(`${PGBIN}/pg_ctl`, ['-D', data, '-l', path.join(tmp, 'postgres.log'), '-w', 'start']);
    up = true;
    log(`pgbench -i -s ${scale}`);
    asPg(`${PGBIN}/pgbench`, ['-i', '-s', String(scale), '-q', '-h', tmp, '-p', String(port), 'postgres'], { maxBuffer: 1 << 30 });
    asPg(`${PGBIN}/psql`, ['-h', tmp, '-p', String(port), '-d', 'postgres', '-XAtq', '-c', 'checkpoint']);
    if (hasPgbr) asPg('pgbackrest', [`--config=${pgbrConf}`, '--stanza=bench', 'stanza-create']);
    const size = Number(asPg(`${PGBIN}/psql`, ['-h', tmp, '-p', String(port), '-d', 'postgres', '-XAtq', '-c', 'select sum(pg_database_size(oid)) from pg_database']).stdout.trim());
    const du = (dir) => Number(run('du', ['-sb', dir]).stdout.split(/\s/)[0]);
    const timed = (key, tool, mode, argv, dir) => {
      if (!want(key)) return;
      if (dir !== undefined) {
        fs.rmSync(dir, { recursive: true, force: true });
        fs.mkdirSync(dir);
        chownPg(dir);
      }
      run('sync', []);
      log(`backup: ${key}`);
      const started = process.hrtime.bigint();
      const res = asPg(argv[0], argv.slice(1), { allowFail: true, cwd: tmp });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (res.status !== 0) {
        log(`  ${key} FAILED: ${res.stderr.trim().split('\n').at(-1)}`);
        return;
      }
      const stored = dir === undefined ? null : du(dir);
      rows.push({ key, tool, mode, seconds, stored });
      log(`  ${key}: ${seconds.toFixed(1)} s${stored === null ? '' : `, ${(stored / 2 ** 20).toFixed(0)} MiB stored`}`);
    };
    const connection = `--db=host=${tmp} port=${port} dbname=postgres`;
    const wvRepo = (name) => path.join(tmp, name);
    // Each walvault run goes to a fresh repository that shares the WAL: a symlink to the archive.
    const walvaultRow = (key, mode, extra, executable = walvault, tool = 'walvault backup') => {
      if (!want(key)) return;
      const dir = wvRepo(key);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir);
      fs.symlinkSync(path.join(walRepo, 'wal'), path.join(dir, 'wal'));
      for (const file of fs.readdirSync(walRepo).filter((name) => name !== 'wal')) fs.copyFileSync(path.join(walRepo, file), path.join(dir, file));
      chownPg(dir);
      log(`backup: ${key}`);
      // Before the clock starts, as for the other rows (the first row used to pay for syncing pgbench's data).
      run('sync', []);
      const started = process.hrtime.bigint();
      // GNU time's max RSS of the walvault process (the launcher execs nothing else that lives as long).
      const rssFile = path.join(tmp, `${key}.rss`);
      const timed = have('/usr/bin/time');
      const res = timed
        ? asPg('/usr/bin/time', ['-f', '%M', '-o', rssFile, executable, 'backup', `--repo=${dir}`, connection, ...extra], { allowFail: true, cwd: tmp })
        : asPg(executable, ['backup', `--repo=${dir}`, connection, ...extra], { allowFail: true, cwd: tmp });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (res.status !== 0) {
        log(`  ${key} FAILED: ${res.stderr.trim().split('\n').at(-1)}`);
        return;
      }
      const stored = du(path.join(dir, 'backups'));
      const rssMiB = timed ? Number(fs.readFileSync(rssFile, 'utf8').trim().split('\n').at(-1)) / 1024 : null;
      rows.push({ key, tool, mode, seconds, stored, rssMiB });
      log(`  ${key}: ${seconds.toFixed(1)} s, ${(stored / 2 ** 20).toFixed(0)} MiB stored${rssMiB === null ? '' : `, peak RSS ${rssMiB.toFixed(0)} MiB`}; ${res.stdout.trim()}`);
    };
    const other = args['backup-other'] === undefined ? undefined : path.resolve(String(args['backup-other']));
    // WAL must be in the walvault repository before its first backup can complete: one switch first.
    asPg(`${PGBIN}/psql`, ['-h', tmp, '-p', String(port), '-d', 'postgres', '-XAtq', '-c', 'select pg_switch_wal()']);
    // pgbench -i leaves a backlog of WAL for the archiver (walvault and pgBackRest per segment): the first
    // row would otherwise compete with it and wait behind it for its own stop segment (7 s instead of ~3).
    const statusDir = path.join(data, 'pg_wal', 'archive_status');
    const drainUntil = Date.now() + 600_000;
    while (fs.readdirSync(statusDir).some((name) => name.endsWith('.ready')) && Date.now() < drainUntil) await new Promise((resolve) => setTimeout(resolve, 200));
    // The first base backup after pgbench -i takes about twice as long as the next ones, whichever tool
    // takes it (measured: the same walvault build 5.5 s first, 2.4 s second; reading the data directory
    // with cat beforehand did not change it): an untimed pg_basebackup first, so no row pays for it.
    log('untimed warm-up: pg_basebackup -Ft -X none');
    const warmup = path.join(tmp, 'warmup');
    fs.mkdirSync(warmup);
    chownPg(warmup);
    asPg(`${PGBIN}/pg_basebackup`, ['-h', tmp, '-p', String(port), '-D', warmup, '-Ft', '-X', 'none', '-c', 'fast']);
    fs.rmSync(warmup, { recursive: true, force: true });
    if (other !== undefined) walvaultRow('backup-other', 'local, no compression', [], other, 'walvault backup (--backup-other)');
    walvaultRow('backup-walvault', 'local, no compression', []);
    if (other !== undefined) walvaultRow(`backup-other-${codec}`, `local, ${codec}`, [`--compress=${codec}`], other, 'walvault backup (--backup-other)');
    walvaultRow(`backup-walvault-${codec}`, `local, ${codec}`, [`--compress=${codec}`]);
    const bbCodec = codec === 'gzip' ? 'client-gzip' : `client-${codec}`;
    timed('backup-pg_basebackup', 'pg_basebackup -Ft -X none', 'local directory, no compression', [`${PGBIN}/pg_basebackup`, '-h', tmp, '-p', String(port), '-D', path.join(tmp, 'bb'), '-Ft', '-X', 'none', '-c', 'fast'], path.join(tmp, 'bb'));
    timed(`backup-pg_basebackup-${codec}`, 'pg_basebackup -Ft -X none', `local directory, ${codec}`, [`${PGBIN}/pg_basebackup`, '-h', tmp, '-p', String(port), '-D', path.join(tmp, 'bbc'), '-Ft', '-X', 'none', '-c', 'fast', `--compress=${bbCodec}`], path.join(tmp, 'bbc'));
    if (hasPgbr) {
      const key = `backup-pgbackrest-${codec}`;
      if (want(key)) {
        const before = du(pgbrRepo);
        log(`backup: ${key}`);
        run('sync', []);
        const started = process.hrtime.bigint();
        const res = asPg('pgbackrest', [`--config=${pgbrConf}`, '--stanza=bench', '--type=full', '--process-max=2', 'backup'], { allowFail: true, cwd: tmp });
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        if (res.status !== 0) log(`  ${key} FAILED: ${res.stderr.trim().split('\n').at(-1)}`);
        else {
          rows.push({ key, tool: 'pgBackRest full backup', mode: `local repo, process-max=2, ${codec}`, seconds, stored: du(pgbrRepo) - before });
          log(`  ${key}: ${seconds.toFixed(1)} s`);
        }
      }
    }
    const lines = ['', `Base backups: a cluster of ${(size / 2 ** 30).toFixed(2)} GiB (pgbench -i -s ${scale}), idle; one run each, wall time; ${describeMachine(tmp)}`, ''];
    const peer = (key) => rows.find((row) => row.key === key)?.seconds;
    lines.push('| tool | mode | seconds | MiB/s | stored MiB | peak RSS MiB | vs pg_basebackup, same compression (time) | vs pgBackRest (time) |');
    lines.push('|---|---|---:|---:|---:|---:|---:|---:|');
    for (const row of rows) {
      const bb = row.key.endsWith(`-${codec}`) ? peer(`backup-pg_basebackup-${codec}`) : peer('backup-pg_basebackup');
      const pgbr = row.key.endsWith(`-${codec}`) ? peer(`backup-pgbackrest-${codec}`) : undefined;
      const ratio = (other) => (other === undefined ? '–' : `${(row.seconds / other).toFixed(2)}×`);
      lines.push(`| ${row.tool} | ${row.mode} | ${row.seconds.toFixed(1)} | ${(size / 2 ** 20 / row.seconds).toFixed(0)} | ${row.stored === null ? '–' : (row.stored / 2 ** 20).toFixed(0)} | ${row.rssMiB == null ? '–' : row.rssMiB.toFixed(0)} | ${ratio(bb)} | ${ratio(pgbr)} |`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    if (args.json) fs.writeFileSync(String(args.json), JSON.stringify({ backups: rows, size, scale, codec }, null, 2));
  } finally {
    if (up) asPg(`${PGBIN}/pg_ctl`, ['-D', data, '-m', 'immediate', 'stop'], { allowFail: true });
    if (!args.keep) fs.rmSync(tmp, { recursive: true, force: true });
    else log(`kept "${tmp}"`);
  }
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error.stack ?? error}\n`);
  process.exit(1);
});
