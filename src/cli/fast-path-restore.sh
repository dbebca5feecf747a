# Fast path of walvault-restore, inserted into its launcher by scripts/build-launchers.mjs.
# PostgreSQL runs restore_command once per WAL file, serially with replay; starting Node costs
# ~70-110 ms, a POSIX shell ~1 ms. A background prefetcher fetches the next segments into the spool
# (on the data directory's filesystem), verifies their recorded hashes, fsyncs them and only then
# gives them their final name there. When %f is such a file and the spool was filled with the very
# same options (the owner line), it is handed over here with a rename (mv within one filesystem)
# without starting Node; any other file is asked of the running prefetcher (see below); everything
# else goes on to the Node program.
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
      # PostgreSQL's first request of a recovery is a timeline history file (%p = .../RECOVERYHISTORY, with
      # recovery.signal or standby.signal in the data directory, the working directory). With no worker
      # running, start the prefetcher here, in the background, and ask it for this file too: its one Node
      # start then serves the whole recovery instead of a Node start per request until it runs.
      wv_start=
      case $wv_p in
        RECOVERYHISTORY | */RECOVERYHISTORY)
          if { [ -f recovery.signal ] || [ -f standby.signal ]; } \
            && ! { read -r wv_pid 2>/dev/null < "$wv_spool/restore.pid" && kill -0 "$wv_pid" 2>/dev/null; } \
            && { [ -d "$wv_spool" ] || mkdir -m 700 "$wv_spool" 2>/dev/null; }; then
            # A worker that cannot start leaves no live pid, and the requests below then go to Node as before.
            wv_start_worker - prefetch "$@"
            { echo "$!" > "$wv_spool/restore.pid"; } 2>/dev/null && wv_start=1
          fi
          ;;
      esac
      # The spool answers only when its owner line is ours (wv_owner, see the option scan).
      # While the prefetcher runs (its pid file names a live process), ask it rather than start Node:
      # restore.ask/%f.$$ (created here, never reused: noclobber). It answers by putting the verified
      # file in the spool, or with a line in that file: "fetching" (wait up to 60 s), "missing ..."
      # (the repository said so when asked after the request was posted: exit 1), "error" (Node
      # reports it). Not picked up within ~3 s (a worker still starting, or stuck): Node.
      wv_i=0
      wv_ask=
      while :; do
        wv_owner restore || [ -n "$wv_start" ] || break
        if [ -n "$wv_mine" ] && [ -f "$wv_spool/restore/$wv_f" ] && mv -f -- "$wv_spool/restore/$wv_f" "$wv_p" 2>/dev/null; then
          [ "$wv_quiet" = true ] || echo "walvault-restore: info: restored \"$wv_f\" to \"$wv_p\" (prefetched and verified in \"$wv_spool/restore\")" >&2
          exit 0
        fi
        wv_w=
        if read -r wv_pid 2>/dev/null < "$wv_spool/restore.pid" && kill -0 "$wv_pid" 2>/dev/null; then
          if [ -n "$wv_mine" ] && [ -z "$wv_ask" ] && [ -d "$wv_spool/restore.ask" ]; then
            set -C
            { : > "$wv_spool/restore.ask/$wv_f.$$"; } 2>/dev/null && wv_ask=$wv_spool/restore.ask/$wv_f.$$
            set +C
          fi
          if [ -n "$wv_ask" ]; then
            wv_a=
            read -r wv_a 2>/dev/null < "$wv_ask"
            case $wv_a in
              'missing '*)
                [ "$wv_quiet" = true ] || printf '%s\n' "walvault-restore: info: ${wv_a#missing }" >&2
                exit 1
                ;;
              fetching) [ "$wv_i" -lt 6000 ] && wv_w=1 ;;
              '') [ "$wv_i" -lt 300 ] && wv_w=1 ;;
            esac
          elif [ -n "$wv_mine" ] && [ -z "$wv_start" ]; then
            # A worker without requests (an older version): wait for a download in flight.
            for wv_t in "$wv_spool/restore.work/$wv_f".*; do
              [ -e "$wv_t" ] && [ "$wv_i" -lt 6000 ] && wv_w=1
            done
            [ "$wv_i" -lt 20 ] && wv_w=1
          else
            # The worker is still starting: its owner line and request folder come first.
            [ "$wv_i" -lt 300 ] && wv_w=1
          fi
        fi
        [ -n "$wv_w" ] || break
        wv_i=$((wv_i + 1))
        sleep 0.01
      done
      ;;
  esac
fi
