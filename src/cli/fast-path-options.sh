# Shared by the archive and restore fast paths (inserted by scripts/build-launchers.mjs): reads the
# options before the last two arguments into the owner line (wv_id), the spool and config locations,
# and whether the fast path is off (@DISABLE_FLAG@ or a background worker's own invocation); wv_owner
# tells whether the spool belongs to these options; and drops NODE_EXTRA_CA_CERTS for a repository on
# a filesystem (below).
wv_n=0
wv_id=v1
wv_spool=${WALVAULT_SPOOL-}
wv_cfg=${WALVAULT_CONFIG-}
wv_repo=${WALVAULT_REPO-}
wv_fast=1
wv_quiet=${WALVAULT_QUIET-}
wv_next=
for wv_a in "$@"; do
  wv_n=$((wv_n + 1))
  [ "$wv_n" -le $(($# - 2)) ] || break
  wv_id="$wv_id $wv_a"
  case $wv_next in
    spool) wv_spool=$wv_a ;;
    config) wv_cfg=$wv_a ;;
    repo) wv_repo=$wv_a ;;
  esac
  wv_next=
  case $wv_a in
    --spool=*) wv_spool=${wv_a#--spool=} ;;
    --spool) wv_next=spool ;;
    --config=*) wv_cfg=${wv_a#--config=} ;;
    --config) wv_next=config ;;
    --repo=*) wv_repo=${wv_a#--repo=} ;;
    --repo) wv_next=repo ;;
    @DISABLE_FLAG@ | --internal-worker*) wv_fast= ;;
    --quiet | --quiet=true) wv_quiet=true ;;
  esac
done
# Node reads and parses every certificate in NODE_EXTRA_CA_CERTS at start-up, before any code runs
# (Debian's whole bundle, as some hosts set it for every process: ~35 ms of a 60 ms start). Only an
# S3 repository makes TLS connections; for one on a filesystem (the flag, else WALVAULT_REPO: flags
# win; a repository named only in the config file keeps the variable) Node starts without it.
case $wv_repo in
  /* | file:///* | nfs:///*) unset NODE_EXTRA_CA_CERTS ;;
esac
# Whether the spool's owner line for side $1 (archive, restore) is ours: same options, same
# repository, config file not newer. Once it was, it stays so for this call (wv_mine).
wv_mine=
wv_owner() {
  [ -z "$wv_mine" ] && read -r wv_o 2>/dev/null < "$wv_spool/$1.owner" && [ "$wv_o" = "$wv_id" ] \
    && { [ -z "$wv_cfg" ] || ! [ "$wv_cfg" -nt "$wv_spool/$1.owner" ]; } && wv_mine=1
  [ -n "$wv_mine" ]
}
