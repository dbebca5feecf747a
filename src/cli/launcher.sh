#!/bin/sh
# walvault launcher for @ENTRY@ (generated into dist/cli by scripts/build-launchers.mjs).
# Node cannot exit while a filesystem call hangs in its thread pool (a hung NFS server): after its
# deadline it writes the exit code it means on fd 3 and kills itself; this script exits with that code.
wv_node=${WALVAULT_NODE:-node}
@SNAPSHOT_CHECK@
@FAST_PATH@
# --expose-gc lets long transfers collect freed chunk buffers early (see src/core/hash.ts).
self=$(readlink -f "$0" 2>/dev/null) || self=$0
exec 4>&1 5>&2
# The group's stderr goes to /dev/null only to silence the shell's own "Killed" notice (it would land
# in PostgreSQL's log); node writes its one-line messages to the original stderr (fd 5).
wv_run() {
  { status=$(WALVAULT_LAUNCHER_STATUS_FD=3 "$wv_node" --expose-gc "$@" 3>&1 1>&4 2>&5 4>&- 5>&-); rc=$?; } 2>/dev/null
}
@START@
exec 4>&- 5>&-
case $status in
  '' | *[!0-9]*) ;;
  *) exit "$status" ;;
esac
@CRASH_MAP@
exit $rc
