# Fast path of walvault-restore, inserted into its launcher by scripts/build-launchers.mjs.
# PostgreSQL runs restore_command once per WAL file, serially with replay; starting Node costs
# ~70-110 ms, a POSIX shell ~1 ms. A background prefetcher fetches the next segments into the spool
# (on the data directory's filesystem), verifies their recorded hashes, fsyncs them and only then
# gives them their final name there. When %f is such a file and the spool was filled with the very
# same options (the owner line), it is handed over here with a rename (mv within one filesystem)
# without starting Node; everything else goes on to the Node program.
@FAST_PATH_OPTIONS@
if [ -n "$wv_fast" ] && [ $# -ge 2 ]; then
  eval "wv_f=\${$(($# - 1))} wv_p=\${$#}"
  case $wv_f in
    '' | . | .. | *[!0-9A-Za-z.]*) ;;
    *)
      if [ -z "$wv_spool" ]; then
        case $wv_p in */*) wv_spool=${wv_p%/*}/walvault ;; *) wv_spool=walvault ;; esac
      fi
      wv_id="$wv_id|${WALVAULT_REPO-}|${WALVAULT_CONFIG-}|${WALVAULT_SPOOL-}|${WALVAULT_PREFETCH-}"
      if [ ${#wv_f} -eq 24 ] && read -r wv_o 2>/dev/null < "$wv_spool/restore.owner" && [ "$wv_o" = "$wv_id" ] \
        && { [ -z "$wv_cfg" ] || ! [ "$wv_cfg" -nt "$wv_spool/restore.owner" ]; }; then
        # While the prefetcher runs (its pid file names a live process), wait for it rather than start
        # Node: for a file it is downloading up to 60 s, for one it has not started yet about 0.2 s.
        wv_i=0
        while :; do
          if [ -f "$wv_spool/restore/$wv_f" ] && mv -f -- "$wv_spool/restore/$wv_f" "$wv_p" 2>/dev/null; then
            [ "$wv_quiet" = true ] || echo "walvault-restore: info: restored \"$wv_f\" to \"$wv_p\" (prefetched and verified in \"$wv_spool/restore\")" >&2
            exit 0
          fi
          wv_w=
          if read -r wv_pid 2>/dev/null < "$wv_spool/restore.pid" && kill -0 "$wv_pid" 2>/dev/null; then
            for wv_t in "$wv_spool/restore.work/$wv_f".*; do
              [ -e "$wv_t" ] && [ "$wv_i" -lt 6000 ] && wv_w=1
            done
            [ "$wv_i" -lt 20 ] && wv_w=1
          fi
          [ -n "$wv_w" ] || break
          wv_i=$((wv_i + 1))
          sleep 0.01
        done
      fi
      ;;
  esac
fi
