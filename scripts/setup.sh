#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine; safe to run again.
#   bash scripts/setup.sh demo   what `npm run demo` needs
#   bash scripts/setup.sh test   what `npm test` needs (the default): the demo's set-up and the rest
# demo and test:
#  - PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin), installed with apt when missing.
#    walvault's tests and demo initdb their own throwaway clusters; the package's auto-created
#    "main" cluster is never used, so we ask postgresql-common not to create it.
#  - the project's npm dependencies (npm ci).
# test only:
#  - age, lz4, zstd, gzip and GNU time (Debian packages) for the codec and memory tests, when missing and root.
#  - strace, xfs_io (xfsprogs) and mkfs.ext4 (e2fsprogs) for the power-loss test (test/scenario/durability-crash.test.ts).
#  - Ceph's mon, OSD and RADOS Gateway for the RGW test tier (scripts/setup-ceph.sh), when missing and root.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-test}
case $target in
  demo | test) ;;
  *) printf 'usage: bash scripts/setup.sh [demo|test]\n' >&2; exit 2 ;;
esac

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"

say() { printf 'setup: %s\n' "$*"; }

# Supported: Node.js 22, 24 and 26 (what CI runs, see .ci/run). 20 reached end of life on 2026-04-30:
# still accepted with a warning, not tested.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "node and npm are required (Node.js 22, 24 or 26); install them first, e.g. from https://nodejs.org or your distribution" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  say "Node.js 22, 24 or 26 is required; found $(node -v)" >&2
  exit 1
elif [ "$node_major" -lt 22 ]; then
  say "warning: Node.js $(node -v) is past its end of life and not tested; walvault supports 22, 24 and 26"
fi

# The newest /usr/lib/postgresql/<major>/bin with major >= 15 (pg_backup_start/pg_backup_stop), if any.
find_pg_bin() {
  local dir major best="" best_major=0
  for dir in /usr/lib/postgresql/*/bin; do
    major=${dir#/usr/lib/postgresql/}; major=${major%/bin}
    case $major in '' | *[!0-9]*) continue ;; esac
    if [ "$major" -ge 15 ] && [ "$major" -gt "$best_major" ] && [ -x "$dir/postgres" ]; then best=$dir; best_major=$major; fi
  done
  printf '%s' "$best"
}

if [ -x "${PG_BIN}/postgres" ]; then
  say "PostgreSQL ${PG_MAJOR} found in ${PG_BIN}"
elif [ -n "${WALVAULT_PG_BIN:-}" ] && [ -x "${WALVAULT_PG_BIN}/postgres" ]; then
  say "using PostgreSQL from WALVAULT_PG_BIN=${WALVAULT_PG_BIN}"
elif [ -n "$(find_pg_bin)" ]; then
  say "PostgreSQL ${PG_MAJOR} is not installed; using $(find_pg_bin) (the tests take the newest /usr/lib/postgresql/*/bin)"
elif [ "$(id -u)" -eq 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "PostgreSQL ${PG_MAJOR} is missing and this machine has no apt-get; install the server binaries and set WALVAULT_PG_BIN to their directory" >&2
    exit 1
  fi
  # Do not let the package create (and start) a "main" cluster on port 5432: nothing here uses it.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/walvault-no-main-cluster.conf
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  if apt-cache show "postgresql-${PG_MAJOR}" >/dev/null 2>&1; then package="postgresql-${PG_MAJOR}"; else package=postgresql; fi
  say "installing ${package} with apt-get"
  apt-get install -y --no-install-recommends "$package"
  if [ ! -x "${PG_BIN}/postgres" ] && [ -z "$(find_pg_bin)" ]; then
    say "the installed PostgreSQL is older than ${PG_MAJOR}; add the PGDG apt repository (https://wiki.postgresql.org/wiki/Apt) and install postgresql-${PG_MAJOR}" >&2
    exit 1
  fi
else
  say "PostgreSQL ${PG_MAJOR} is missing (${PG_BIN}/postgres); run this script as root to install it with apt-get," >&2
  say "or install the server binaries yourself and set WALVAULT_PG_BIN to the directory holding initdb and postgres" >&2
  exit 1
fi

if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  say "the tests run PostgreSQL as the \"postgres\" OS user (it refuses to run as root), but that user does not exist;" >&2
  say "create it (useradd --system --home-dir /var/lib/postgresql postgres) or reinstall postgresql-${PG_MAJOR}" >&2
  exit 1
fi

# A "main" cluster created earlier is harmless (we use private sockets and random ports) but costs memory.
if command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters --no-header 2>/dev/null | grep -q ' online '; then
  say "note: a Debian-managed PostgreSQL cluster is running (pg_lsclusters); walvault's tests do not use or touch it"
fi

say "installing npm dependencies (npm ci)"
npm ci --no-audit --no-fund

if [ "$target" = demo ]; then
  say "done: run \"npm run demo\""
  exit 0
fi

# ---- test only from here on ----

# The standard tools the tests decode stored objects with (age, lz4, zstd, gzip) and GNU time
# (/usr/bin/time, package "time") for the large-segment memory test: the tests fail without them, so
# a missing tool that cannot be installed, or a failed install, stops the set-up here.
missing_tools=""
for tool in age lz4 zstd gzip; do command -v "$tool" >/dev/null 2>&1 || missing_tools="$missing_tools $tool"; done
[ -x /usr/bin/time ] || missing_tools="$missing_tools time"
# The power-loss test: system calls traced, an ext4 loop filesystem shut down without a journal flush.
command -v strace >/dev/null 2>&1 || missing_tools="$missing_tools strace"
command -v xfs_io >/dev/null 2>&1 || missing_tools="$missing_tools xfsprogs"
command -v mkfs.ext4 >/dev/null 2>&1 || missing_tools="$missing_tools e2fsprogs"
if [ -n "$missing_tools" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing tools the tests need:$missing_tools; install them (as root: apt-get install$missing_tools) and run this again" >&2
    exit 1
  fi
  say "installing the tools the tests need:$missing_tools"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing_tools || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing_tools; }; }; then
    say "could not install$missing_tools with apt-get; the tests that use them would fail" >&2
    exit 1
  fi
fi

# --- Ceph RGW for the S3 test tier: self-contained in scripts/setup-ceph.sh (installs ceph-mon, ceph-osd,
# radosgw, ceph-common when missing and root). The demo does not need it; the RGW tests cannot run without it.
if ! bash scripts/setup-ceph.sh; then
  say "Ceph RGW could not be installed; the RGW test tier (test/**/rgw*.test.ts) needs it: run scripts/setup-ceph.sh as root" >&2
  exit 1
fi
# --- end of the Ceph block ---

say "done: run \"npm test\""

