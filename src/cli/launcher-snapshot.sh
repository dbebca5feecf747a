# Start from the start-up snapshot (inserted by scripts/build-launchers.mjs; see src/cli/make-snapshot.ts):
# walvault's code already compiled and initialised, ~as fast as `node -e 0`. Only when the stamp says
# the blob was built by this very node binary (device:inode:size:mtime), the blob is newer than the
# compiled code (a `tsc` after the build would otherwise run stale code), and no NODE_OPTIONS could
# change V8's flags; otherwise, and whenever the snapshot does not get as far as running JavaScript
# (the first thing it does is write "started" on fd 3), the normal entry point runs: nothing was done yet.
status=
if wv_snapshot_fits "${self%/*}"; then
  wv_run --snapshot-blob "${self%/*}/walvault.blob" "${self%/*}/@ENTRY@.js" "$@"
  case $status in
    started) status= ;;
    started?*) status=${status#started?} ;;
    *) wv_run "${self%/*}/@ENTRY@.js" "$@" ;;
  esac
else
  wv_run "${self%/*}/@ENTRY@.js" "$@"
fi
