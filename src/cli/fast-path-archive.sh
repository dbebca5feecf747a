# Fast path of walvault-archive, inserted into its launcher by scripts/build-launchers.mjs.
# PostgreSQL runs archive_command once per WAL file; starting Node costs ~70-110 ms, a POSIX shell
# ~1 ms. When a background pusher has already stored %f durably, it left a marker: a hard link to
# the very file %p names (same device and inode, so a recycled or replaced file never matches) in
# the spool, together with the exact options it was started with (the owner line). Those files are
# answered with exit 0 here without starting Node; everything else goes on to the Node program.
@FAST_PATH_OPTIONS@
if [ -n "$wv_fast" ] && [ $# -ge 2 ]; then
  eval "wv_p=\${$(($# - 1))} wv_f=\${$#}"
  case $wv_f in
    '' | . | .. | *[!0-9A-Za-z.]*) ;;
    *)
      if [ -z "$wv_spool" ]; then
        case $wv_p in */*) wv_spool=${wv_p%/*}/walvault ;; *) wv_spool=walvault ;; esac
      fi
      wv_id="$wv_id|${WALVAULT_REPO-}|${WALVAULT_CONFIG-}|${WALVAULT_SPOOL-}|${WALVAULT_PUSH_AHEAD-}"
      if read -r wv_o 2>/dev/null < "$wv_spool/archive.owner" && [ "$wv_o" = "$wv_id" ] \
        && { [ -z "$wv_cfg" ] || ! [ "$wv_cfg" -nt "$wv_spool/archive.owner" ]; }; then
        # While the background pusher runs (its pid file names a live process), wait for it rather
        # than start Node: for a file it is pushing (a claim file names a live process) up to
        # --timeout-ish 60 s, for a segment or .backup file it has not picked up yet about 0.2 s, or about 1 s while the
        # pusher is still loading (its pid file says "starting"; Node competing for the CPU would slow both).
        wv_i=0 wv_s=0 wv_seg=
        case $wv_f in *.backup) wv_seg=1 ;; *) [ ${#wv_f} -eq 24 ] && wv_seg=1 ;; esac
        while :; do
          if [ "$wv_p" -ef "$wv_spool/archive/$wv_f" ]; then
            [ "$wv_quiet" = true ] || echo "walvault-archive: info: \"$wv_f\" was pushed ahead and is durable in the repository (answered from \"$wv_spool/archive\")" >&2
            exit 0
          fi
          wv_w=
          if read -r wv_pid wv_state 2>/dev/null < "$wv_spool/archive.pid" && kill -0 "$wv_pid" 2>/dev/null; then
            if read -r wv_c 2>/dev/null < "$wv_spool/archive.work/$wv_f" && kill -0 "$wv_c" 2>/dev/null; then
              [ "$wv_i" -lt 6000 ] && wv_w=1
            elif [ "$wv_state" = starting ] && [ "$wv_i" -lt 100 ] && [ -n "$wv_seg" ]; then
              wv_w=1 wv_s=$wv_i
            elif [ $((wv_i - wv_s)) -lt 20 ] && [ -n "$wv_seg" ]; then
              wv_w=1
            fi
          fi
          [ -n "$wv_w" ] || break
          wv_i=$((wv_i + 1))
          sleep 0.01
        done
      fi
      ;;
  esac
fi
