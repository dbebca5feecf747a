# Fast path of walvault-archive, inserted into its launcher by scripts/build-launchers.mjs.
# PostgreSQL runs archive_command once per WAL file; starting Node costs ~70-110 ms, a POSIX shell
# ~1 ms. When a background pusher has already stored %f durably, it left a marker: a hard link to the
# very file %p names (same device and inode, so a recycled or replaced file never matches) in the
# marker folder of its options' fingerprint. The launcher answers exit 0 from such a marker only when
# Node's record for this call (wv_record, src/policy/SPOOL.md) matches and names that folder; every
# other call goes on to the Node program.
@FAST_PATH_RECORD@
if [ $# -ge 2 ]; then
  eval "wv_p=\${$(($# - 1))} wv_f=\${$#}"
  unset WALVAULT_STARTED_PUSHER
  case $wv_f in
    '' | . | .. | *[!0-9A-Za-z.]*) ;;
    *)
      case $wv_p in */*) wv_rd=${wv_p%/*}/@RECORD_DIR@ ;; *) wv_rd=@RECORD_DIR@ ;; esac
      if wv_record "$wv_rd/archive.record.sh" "$@"; then
        wv_pushed() {
          [ "$wv_p" -ef "$wv_v_markers/$wv_f" ] || return 1
          [ "$wv_v_quiet" = 1 ] || echo "walvault-archive: info: \"$wv_f\" was pushed ahead and is durable in the repository (answered from \"$wv_v_markers\")" >&2
          exit 0
        }
        # A live pusher of these options (its pid file: "PID STATE ID", SPOOL.md).
        wv_live() {
          read -r wv_pid wv_state wv_wid 2>/dev/null < "$wv_v_pidfile" && [ "$wv_wid" = "$wv_v_id" ] && kill -0 "$wv_pid" 2>/dev/null
        }
        wv_pushed
        # No pusher (no pid file at all: a dead one's is Node's to take over), %f is a segment and more
        # segments (or a backup label) wait after it, no timeline history file waits: start the
        # background pusher here, in its own session (as Node's startWorker does), with %f first in its
        # queue, instead of a Node start for this request. This request then waits for %f's marker like
        # any other pushed file. A pusher that cannot start or cannot store %f leaves no marker: the
        # request goes on to Node below, which archives %f itself and reports what failed.
        wv_own=
        if [ ${#wv_f} -eq 24 ] && ! [ -e "$wv_v_pidfile" ] && [ -d "$wv_v_spool" ] && command -v setsid >/dev/null 2>&1; then
          case $wv_p in */*) wv_st=${wv_p%/*}/archive_status ;; *) wv_st=archive_status ;; esac
          wv_more=
          for wv_r in "$wv_st"/*.ready; do
            wv_r=${wv_r##*/}
            wv_r=${wv_r%.ready}
            case $wv_r in
              *.history) wv_more= && break ;;
              *.backup) [ "$wv_r" \> "$wv_f" ] && wv_more=1 ;;
              *) [ ${#wv_r} -eq 24 ] && [ "$wv_r" \> "$wv_f" ] && wv_more=1 ;;
            esac
          done
          if [ -n "$wv_more" ]; then
            wv_start_worker setsid push-own "$@"
            WALVAULT_STARTED_PUSHER=$!
            export WALVAULT_STARTED_PUSHER
            # Its pid, as "starting", created exclusively (noclobber): requests meanwhile wait for it. Held by
            # someone else meanwhile: the worker finds the lock taken and ends.
            set -C
            { echo "$WALVAULT_STARTED_PUSHER starting $wv_v_id" > "$wv_v_pidfile"; } 2>/dev/null && wv_own=1
            set +C
          fi
        fi
        if [ -n "$wv_own" ] || wv_live; then
          # While the background pusher runs, wait for it rather than start Node: for a file it is
          # pushing (a claim file names a live process) up to 60 s; for a segment or .backup file it has
          # not picked up yet about 0.2 s, or about 1 s while the pusher is still loading (its pid file
          # says "starting"; Node competing for the CPU would slow both), 5 s for the pusher started here.
          # Each wait lasts 50 ms, or less: the pusher sends SIGWINCH to the process named in the waiter
          # file as soon as that process's file has its marker (trapped here: wait returns, or, when the
          # signal came before the wait began, wv_woke says so and there is no wait). Every wait is a
          # `sleep` process (~1 ms of CPU; dash has no sleep of its own).
          # A signal ignored when the shell started cannot be trapped (POSIX); PostgreSQL 15's archiver
          # runs archive_command with SIGURG (its latch signal), SIGPIPE, SIGALRM and others ignored, not
          # SIGWINCH. Where SIGWINCH is ignored too (or /proc/$$/status cannot tell), each wait lasts 10 ms.
          wv_ign=
          while read -r wv_k wv_v; do
            case $wv_k in SigIgn:) wv_ign=$(((0x$wv_v >> 27) & 1)) && break ;; esac
          done 2>/dev/null < /proc/$$/status
          if [ "$wv_ign" = 0 ]; then
            trap 'wv_woke=1' WINCH
            wv_nap=0.05 wv_hz=20
          else
            wv_nap=0.01 wv_hz=100
          fi
          wv_i=0 wv_s=0 wv_seg= wv_load=$wv_hz wv_waiter=
          [ -n "$wv_own" ] && wv_load=$((5 * wv_hz))
          case $wv_f in *.backup) wv_seg=1 ;; *) [ ${#wv_f} -eq 24 ] && wv_seg=1 ;; esac
          while :; do
            wv_woke=
            wv_pushed
            wv_w=
            if wv_live; then
              if read -r wv_c wv_cid 2>/dev/null < "$wv_v_work/$wv_f" && [ "$wv_cid" = "$wv_v_id" ] && kill -0 "$wv_c" 2>/dev/null; then
                [ "$wv_i" -lt $((60 * wv_hz)) ] && wv_w=1
              elif [ "$wv_state" = starting ] && [ "$wv_i" -lt "$wv_load" ] && [ -n "$wv_seg" ]; then
                wv_w=1 wv_s=$wv_i
              elif [ $((wv_i - wv_s)) -lt $((wv_hz / 5)) ] && [ -n "$wv_seg" ]; then
                wv_w=1
              fi
            fi
            [ -n "$wv_w" ] || break
            wv_i=$((wv_i + 1))
            if [ -z "$wv_waiter" ]; then
              # Registered, then checked again at the top: a marker placed before the pusher read this
              # line is seen by that check, one placed after it comes with the signal.
              { echo "$$ $wv_f" > "$wv_v_waiter"; } 2>/dev/null
              wv_waiter=1
              continue
            fi
            [ -z "$wv_woke" ] || continue
            sleep $wv_nap &
            wv_sl=$!
            # Interrupted by the signal: the sleep is still running (or not yet reaped), so its pid is still its own.
            if [ -z "$wv_woke" ]; then wait "$wv_sl" || kill "$wv_sl" 2>/dev/null; else kill "$wv_sl" 2>/dev/null; fi
          done
          [ "$wv_ign" = 0 ] && trap - WINCH
        fi
      fi
      ;;
  esac
fi
