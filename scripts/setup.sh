#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine for `npm run demo` and `npm test`; safe to run again.
#  - PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin), installed with apt when missing.
#    walvault's tests and demo initdb their own throwaway clusters; the package's auto-created
#    "main" cluster is never used, so we ask postgresql-common not to create it.
#  - age, lz4, zstd (Debian packages) for the codec interoperability tests, when missing and root.
#  - the project's npm dependencies (npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"

say() { printf 'setup: %s\n' "$*"; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "node and npm are required (Node.js 20.19 or newer); install them first, e.g. from https://nodejs.org or your distribution" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  say "Node.js 20.19 or newer is required; found $(node -v)" >&2
  exit 1
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

# The standard tools the tests decode stored objects with (age, lz4, zstd, gzip) and GNU time
# (/usr/bin/time, package "time") for the large-segment memory test: the tests fail without them, so
# a missing tool that cannot be installed, or a failed install, stops the set-up here.
missing_tools=""
for tool in age lz4 zstd gzip; do command -v "$tool" >/dev/null 2>&1 || missing_tools="$missing_tools $tool"; done
[ -x /usr/bin/time ] || missing_tools="$missing_tools time"
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

say "installing npm dependencies (npm ci)"
npm ci --no-audit --no-fund
say "done: run \"npm run demo\" or \"npm test\""
