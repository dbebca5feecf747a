#!/bin/sh
# walvault launcher for @ENTRY@ (generated into dist/cli by scripts/build-launchers.mjs).
# Node cannot exit while a filesystem call hangs in its thread pool (a hung NFS server): after its
# deadline it writes the exit code it means on fd 3 and kills itself; this script exits with that code.
wv_node=${WALVAULT_NODE:-node}
# This script's folder, where the code is. npm links the bin entries: follow the link (readlink is a
# process of its own, ~1 ms, so only for a link).
wv_self=$0
if [ -L "$0" ]; then wv_self=$(readlink -f "$0" 2>/dev/null) || wv_self=$0; fi
case $wv_self in */*) ;; *) wv_self=./$wv_self ;; esac
wv_dir=${wv_self%/*}
@ENTRY_CHECK@
@CA@
@FAST_PATH@
exec 4>&1 5>&2
# The group's stderr goes to /dev/null only to silence the shell's own "Killed" notice (it would land
# in PostgreSQL's log); node writes its one-line messages to the original stderr (fd 5).
# MALLOC_ARENA_MAX=2 unless set, as for the workers (WORKER_MALLOC_ARENAS in src/policy/spool.ts): the
# first call archives while its pusher starts, with Node's zstd in libuv's threads.
wv_run() {
  { status=$(MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} WALVAULT_LAUNCHER_STATUS_FD=3 "$wv_node" "$@" 3>&1 1>&4 2>&5 4>&- 5>&-); rc=$?; } 2>/dev/null
}
@START@
exec 4>&- 5>&-
case $status in
  '' | *[!0-9]*) ;;
  *) exit "$status" ;;
esac
@CRASH_MAP@
exit $rc
