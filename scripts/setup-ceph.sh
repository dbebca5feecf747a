#!/usr/bin/env bash
# Installs what the Ceph RGW test tier needs (test/support/ceph.ts starts a throwaway cluster from it):
# ceph-mon, ceph-osd, radosgw and ceph-common from the distribution's packages, when missing and root.
# Self-contained: setup.sh calls it; it can also run alone. Without root or apt-get it only says what
# is missing (the RGW tier then fails, saying which binary it could not find).
set -euo pipefail

say() { printf 'setup-ceph: %s\n' "$*"; }

# The daemons and tools the tier runs; each comes from the package named next to it.
declare -A CEPH_BINARIES=(
  [ceph-mon]=ceph-mon
  [ceph-osd]=ceph-osd
  [radosgw]=radosgw
  [ceph-authtool]=ceph-common
  [radosgw-admin]=radosgw
  [ceph]=ceph-common
)

missing_packages=""
for binary in "${!CEPH_BINARIES[@]}"; do
  if ! command -v "$binary" >/dev/null 2>&1; then
    package=${CEPH_BINARIES[$binary]}
    case " $missing_packages " in *" $package "*) ;; *) missing_packages="$missing_packages $package" ;; esac
  fi
done

if [ -z "$missing_packages" ]; then
  say "Ceph found ($(ceph-mon --version 2>/dev/null | awk '{print $3}'))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "the Ceph RGW test tier needs:$missing_packages; run this script as root on Debian/Ubuntu, or install them yourself" >&2
  exit 1
fi
# The packages start no daemon without a cluster configured in /etc/ceph (none is written here): the
# tests start their own cluster on loopback, in a temp dir, and stop it.
export DEBIAN_FRONTEND=noninteractive
say "installing$missing_packages with apt-get (about 45 s)"
if ! apt-get install -y --no-install-recommends $missing_packages; then
  apt-get update
  apt-get install -y --no-install-recommends $missing_packages
fi
