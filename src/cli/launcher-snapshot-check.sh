# Whether the start-up snapshot in folder $1 fits (inserted by scripts/build-launchers.mjs; used by
# launcher-snapshot.sh and by the restore fast path when it starts the prefetcher): the stamp names this
# very node binary (device:inode:size:mtime), the blob is newer than the compiled code, no NODE_OPTIONS.
wv_snapshot_fits() {
  [ -z "${WALVAULT_NO_SNAPSHOT-}" ] && [ -z "${NODE_OPTIONS-}" ] && [ "$1/walvault.blob" -nt "$1/main.js" ] \
    && read -r wv_stamp 2>/dev/null < "$1/walvault.blob.stamp" && wv_bin=$(command -v "$wv_node") \
    && [ "$wv_stamp" = "$(stat -Lc '%d:%i:%s:%Y' -- "$wv_bin" 2>/dev/null)" ]
}
