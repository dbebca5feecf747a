# Whether the start-up snapshot in folder $1 fits (inserted by scripts/build-launchers.mjs; used by
# launcher-snapshot.sh and by wv_start_worker below): the stamp names this very node binary
# (device:inode:size:mtime), the blob is newer than the compiled code, no NODE_OPTIONS.
wv_snapshot_fits() {
  [ -z "${WALVAULT_NO_SNAPSHOT-}" ] && [ -z "${NODE_OPTIONS-}" ] && [ "$1/walvault.blob" -nt "$1/main.js" ] \
    && read -r wv_stamp 2>/dev/null < "$1/walvault.blob.stamp" && wv_bin=$(command -v "$wv_node") \
    && [ "$wv_stamp" = "$(stat -Lc '%d:%i:%s:%Y' -- "$wv_bin" 2>/dev/null)" ]
}

# Starts this program's background worker in the background (the fast paths: the archive pusher, the
# restore prefetcher) with the call's arguments: `wv_start_worker setsid|- KIND "$@"`; setsid puts it in
# its own session (as Node's startWorker does). From the start-up snapshot when it fits; a worker that
# cannot start leaves a dead pid. No stdin or stdout, and none of the descriptors 3-9 the caller (the
# archiver, the startup process) may have left open (Node's startWorker closes them too). Its pid is $!.
wv_start_worker() {
  wv_detach=$1 wv_kind=$2
  shift 2
  wv_self=$(readlink -f "$0" 2>/dev/null) || wv_self=$0
  set -- "${wv_self%/*}/@ENTRY@.js" --internal-worker="$wv_kind" "$@"
  wv_snapshot_fits "${wv_self%/*}" && set -- --snapshot-blob "${wv_self%/*}/walvault.blob" "$@"
  if [ "$wv_detach" = setsid ]; then
    setsid "$wv_node" --expose-gc "$@" </dev/null >/dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
  else
    "$wv_node" --expose-gc "$@" </dev/null >/dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
  fi
}
