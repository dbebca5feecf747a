# Shared by the archive and restore fast paths (inserted by scripts/build-launchers.mjs). The launcher is
# a cache in front of Node (src/policy/SPOOL.md, "Records"): `wv_record FILE "$@"` succeeds only when the
# record FILE, written by Node after a call it served, was made for a call like this one: the same
# arguments before the last two (verbatim), the same working directory, every variable Node looked up
# set to the same value (or unset as it was), the same config file content. The record is sh
# assignments (wv_v_KEY: paths and switches Node decided; wv_r_*: what to compare), sourced with `.`:
# dash reads a sourced file in blocks, its `read` builtin one byte per system call. It interprets no
# option; anything else starts Node.
wv_record() {
  wv_rf=$1
  shift
  wv_r_format= wv_r_end= wv_r_n= wv_r_set= wv_r_unset= wv_r_config= wv_r_lines=
  # Its first line first (a few bytes): a file of another format is never sourced. `command`: a file
  # gone in between fails the `.` instead of ending the shell.
  IFS= read -r wv_c 2>/dev/null < "$wv_rf" && [ "$wv_c" = wv_r_format=3 ] || return 1
  command . "$wv_rf" 2>/dev/null || return 1
  [ "$wv_r_format" = 3 ] && [ "$wv_r_end" = 3 ] || return 1
  [ "$PWD" = "$wv_r_cwd" ] && [ "$wv_r_n" -eq $(($# - 2)) ] 2>/dev/null || return 1
  wv_i=0
  while [ "$wv_i" -lt "$wv_r_n" ]; do
    wv_i=$((wv_i + 1))
    eval "[ \"\${$wv_i}\" = \"\$wv_r_a$wv_i\" ]" || return 1
  done
  wv_i=0
  for wv_k in $wv_r_set; do
    wv_i=$((wv_i + 1))
    case $wv_k in [0-9]* | *[!A-Za-z0-9_]*) return 1 ;; esac
    eval "[ -n \"\${$wv_k+s}\" ] && [ \"\$$wv_k\" = \"\$wv_r_e$wv_i\" ]" || return 1
  done
  for wv_k in $wv_r_unset; do
    case $wv_k in [0-9]* | *[!A-Za-z0-9_]*) return 1 ;; esac
    eval "[ -z \"\${$wv_k+s}\" ]" || return 1
  done
  wv_cf=$wv_r_config
  [ -n "$wv_cf" ] || return 1
  [ "$wv_cf" = - ] && wv_cf=/dev/null
  # The config file, line by line against the record's copy (a few hundred bytes: builtins only).
  {
    wv_i=0
    while [ "$wv_i" -lt "$wv_r_lines" ]; do
      wv_i=$((wv_i + 1))
      wv_c=
      IFS= read -r wv_c || [ -n "$wv_c" ] || return 1
      eval "[ \"\$wv_c\" = \"\$wv_r_l$wv_i\" ]" || return 1
    done
    wv_c=
    IFS= read -r wv_c && return 1
    [ -z "$wv_c" ]
  } 2>/dev/null < "$wv_cf"
}
