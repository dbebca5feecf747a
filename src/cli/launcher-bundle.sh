# Start from the start-up bundle when there is one (inserted by scripts/build-launchers.mjs; see wv_entry).
wv_entry
wv_run "$wv_js" "$@"
