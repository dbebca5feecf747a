# What node runs (inserted by scripts/build-launchers.mjs; used for the call below and by
# wv_start_worker): the start-up bundle's loader (src/cli/bundle-loader.cjs: all of archive and restore
# in one script, compiled from its V8 code cache, ~as fast as `node -e 0`) when the build made one;
# else the ES module entry point. No check of mtimes against the compiled code: npm's install gives
# the files the times of their extraction, in no useful order (`npm run build` makes all of them
# together; a `tsc` alone leaves the bundle as it was). Sets wv_js.
wv_entry() {
  if [ -z "${WALVAULT_NO_BUNDLE-}" ] && [ -f "$wv_dir/walvault-bundle.cjs" ]; then
    wv_js=$wv_dir/@ENTRY@.cjs
  else
    wv_js=$wv_dir/@ENTRY@.js
  fi
}

# Starts this program's background worker in the background (the fast paths: the archive pusher, the
# restore prefetcher) with the call's arguments: `wv_start_worker setsid|- KIND "$@"`; setsid puts it in
# its own session (as Node's startWorker does). A worker that cannot start leaves a dead pid. No stdin
# or stdout, and none of the descriptors 3-9 the caller (the archiver, the startup process) may have
# left open (Node's startWorker closes them too). Its pid is $!. MALLOC_ARENA_MAX=2 unless set: see
# WORKER_MALLOC_ARENAS in src/policy/spool.ts.
wv_start_worker() {
  wv_detach=$1 wv_kind=$2
  shift 2
  wv_entry
  set -- "$wv_js" --internal-worker="$wv_kind" "$@"
  if [ "$wv_detach" = setsid ]; then
    MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} setsid "$wv_node" "$@" </dev/null >/dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
  else
    MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} "$wv_node" "$@" </dev/null >/dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
  fi
}
