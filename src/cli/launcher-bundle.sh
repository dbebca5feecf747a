# Start from the start-up bundle when it fits (inserted by scripts/build-launchers.mjs; see wv_entry).
status=
wv_entry
wv_run "$wv_js" "$@"
