# The operator commands run with a 1 MiB young generation (V8's default grows it to 16 MiB a half).
# `walvault backup` also runs without V8's optimizing and baseline compilers and with its memory-saving
# heuristics: its bytes go through native code and WASM (file reads, zstd, lz4, xxhash, crypto) in 1 MiB
# blocks, so the compilers buy it no speed (backup times unchanged within noise), and without them its
# peak RSS is 3-8 MiB lower to a local repository, 10-13 MiB lower to S3 (Node 22, 1.5 GiB cluster).
# restore-backup and verify keep them: they decode lz4 in JavaScript (3x slower without).
# The command is the first argument that is not an option (an option given before it with its value
# as a separate word hides it: then only these memory flags are left out, nothing else changes).
wv_flags=
for wv_arg in "$@"; do
  case $wv_arg in
    -*) ;;
    backup) wv_flags='--no-turbofan --no-maglev --no-sparkplug --optimize-for-size'; break ;;
    *) break ;;
  esac
done
wv_run --max-semi-space-size=1 $wv_flags "$wv_dir/@ENTRY@.js" "$@"
