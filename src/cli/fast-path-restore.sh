# Fast path of walvault-restore, inserted into its launcher by scripts/build-launchers.mjs.
# PostgreSQL runs restore_command once per WAL file, serially with replay; starting Node costs
# ~70-110 ms, a POSIX shell ~1 ms. A background prefetcher fetches the next segments into the folder
# of its options' fingerprint (on the data directory's filesystem), verifies their recorded hashes,
# fsyncs them and only then gives them their final name there. When Node's record for this call
# matches (wv_record, src/policy/SPOOL.md), %f is handed over from that folder with a rename (mv within
# one filesystem) without starting Node, or asked of the running prefetcher; everything else goes on
# to the Node program.
@FAST_PATH_RECORD@
if [ $# -ge 2 ]; then
  eval "wv_f=\${$(($# - 1))} wv_p=\${$#}"
  case $wv_f in
    '' | . | .. | *[!0-9A-Za-z.]*) ;;
    *)
      case $wv_p in */*) wv_rd=${wv_p%/*}/@RECORD_DIR@ ;; *) wv_rd=@RECORD_DIR@ ;; esac
      if wv_record "$wv_rd/restore.record.sh" "$@"; then
        # A live prefetcher of these options (its pid file: "PID STATE ID", SPOOL.md).
        wv_live() {
          read -r wv_pid wv_state wv_wid 2>/dev/null < "$wv_v_pidfile" && [ "$wv_wid" = "$wv_v_id" ] && kill -0 "$wv_pid" 2>/dev/null
        }
        # PostgreSQL's first request of a recovery is a timeline history file (%p = .../RECOVERYHISTORY,
        # with recovery.signal or standby.signal in the data directory, the working directory). With no
        # worker (no pid file at all: a dead one's is Node's to take over), start the prefetcher here and
        # ask it for this file too: its one Node start then serves the whole recovery.
        wv_start=
        case $wv_p in
          RECOVERYHISTORY | */RECOVERYHISTORY)
            if { [ -f recovery.signal ] || [ -f standby.signal ]; } && ! [ -e "$wv_v_pidfile" ] && [ -d "$wv_v_spool" ]; then
              wv_start_worker - prefetch "$@"
              set -C
              { echo "$! starting $wv_v_id" > "$wv_v_pidfile"; } 2>/dev/null && wv_start=1
              set +C
            fi
            ;;
        esac
        # While the prefetcher runs, ask it rather than start Node: ASKS/%f.$$ (created here, never
        # reused: noclobber). It answers by putting the verified file in its folder, or with a line in
        # that file: "fetching" (wait up to 60 s), "missing ..." (the repository said so when asked after
        # the request was posted: exit 1), "error" (Node reports it). Not picked up within ~3 s (a worker
        # still starting, or stuck): Node.
        wv_i=0
        wv_ask=
        while :; do
          if [ -f "$wv_v_entries/$wv_f" ] && mv -f -- "$wv_v_entries/$wv_f" "$wv_p" 2>/dev/null; then
            [ "$wv_v_quiet" = 1 ] || echo "walvault-restore: info: restored \"$wv_f\" to \"$wv_p\" (prefetched and verified in \"$wv_v_entries\")" >&2
            exit 0
          fi
          wv_w=
          if wv_live || { [ -n "$wv_start" ] && [ "$wv_i" -lt 300 ]; }; then
            if [ -z "$wv_ask" ] && [ -d "$wv_v_asks" ]; then
              set -C
              { : > "$wv_v_asks/$wv_f.$$"; } 2>/dev/null && wv_ask=$wv_v_asks/$wv_f.$$
              set +C
            fi
            if [ -n "$wv_ask" ]; then
              wv_a=
              read -r wv_a 2>/dev/null < "$wv_ask"
              case $wv_a in
                'missing '*)
                  [ "$wv_v_quiet" = 1 ] || printf '%s\n' "walvault-restore: info: ${wv_a#missing }" >&2
                  exit 1
                  ;;
                fetching) [ "$wv_i" -lt 6000 ] && wv_w=1 ;;
                '') [ "$wv_i" -lt 300 ] && wv_w=1 ;;
              esac
            else
              # The worker is still starting: its request folder comes first.
              [ "$wv_i" -lt 300 ] && wv_w=1
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
