# Shared by the archive and restore fast paths (inserted by scripts/build-launchers.mjs). The launcher is
# a cache in front of Node (src/policy/SPOOL.md, "Records"): `wv_record FILE "$@"` succeeds only when the
# record FILE, written by Node after a call it served, was made for a call like this one: the same
# arguments before the last two (verbatim), the same working directory, every variable Node looked up
# set to the same value (or unset as it was), the same config file content. It then sets wv_v_KEY for
# each value line (paths and switches Node decided). It interprets no option; anything else starts Node.
wv_record() {
  wv_rf=$1
  shift
  wv_n=$(($# - 2)) wv_i=0 wv_cf=
  {
    IFS= read -r wv_l && [ "$wv_l" = 'walvault-record 2' ] || return 1
    while IFS= read -r wv_l; do
      wv_x=${wv_l#* }
      case ${wv_l%% *} in
        arg)
          wv_i=$((wv_i + 1))
          [ "$wv_i" -le "$wv_n" ] && eval "[ \"\${$wv_i}\" = \"\$wv_x\" ]" || return 1
          ;;
        env)
          wv_k=${wv_x%%=*}
          case $wv_k in '' | [0-9]* | *[!A-Za-z0-9_]*) return 1 ;; esac
          eval "[ -n \"\${$wv_k+s}\" ] && [ \"\$$wv_k\" = \"\${wv_x#*=}\" ]" || return 1
          ;;
        unset)
          case $wv_x in '' | [0-9]* | *[!A-Za-z0-9_]*) return 1 ;; esac
          eval "[ -z \"\${$wv_x+s}\" ]" || return 1
          ;;
        cwd) [ "$PWD" = "$wv_x" ] || return 1 ;;
        id | markers | pidfile | work | waiter | spool | quiet | entries | asks) eval "wv_v_${wv_l%% *}=\$wv_x" ;;
        config)
          wv_cf=$wv_x
          break
          ;;
        *) return 1 ;;
      esac
    done
    [ "$wv_i" -eq "$wv_n" ] && [ -n "$wv_cf" ] || return 1
    [ "$wv_cf" = - ] && wv_cf=/dev/null
    # The config file, line by line against the record's copy (a few hundred bytes: builtins only).
    while IFS= read -r wv_l; do
      case $wv_l in
        'line '*)
          wv_c=
          IFS= read -r wv_c <&7 || [ -n "$wv_c" ] || return 1
          [ "$wv_c" = "${wv_l#line }" ] || return 1
          ;;
        end)
          wv_c=
          IFS= read -r wv_c <&7 && return 1
          [ -z "$wv_c" ]
          return
          ;;
        *) return 1 ;;
      esac
    done 7< "$wv_cf"
    return 1
  } 2>/dev/null < "$wv_rf"
}
