# The operator commands run with a 1 MiB young generation (V8's default grows it to 16 MiB a half).
# `walvault backup` also runs without V8's optimizing and baseline compilers and with its memory-saving
# heuristics: its bytes go through native code and WASM (file reads, zstd, lz4, xxhash, crypto) in 1 MiB
# blocks, so the compilers buy it no speed (backup times unchanged within noise), and without them its
# peak RSS is 3-8 MiB lower to a local repository, 10-13 MiB lower to S3 (Node 22, 1.5 GiB cluster).
# restore-backup and verify keep them: they decode lz4 in JavaScript (3x slower without).
# `walvault backup` also fixes glibc's mmap threshold at 2 MiB (unless set): by default each large
# block freed raises it to that block's size, after which blocks that size (multipart parts of 6 MiB,
# zstd contexts of 2.6 MiB) come from the heap and their pages stay resident once freed; fixed, they
# are mapped and unmapped (src/backend/s3.ts frees each part once it is sent). Peak RSS of a zstd
# backup to S3 (s3rver, 1.5 GiB cluster) without it and with it: Node 22 97-99 and 91 MiB, Node 26 105
# and 94-96 MiB; to a local repository no change in time or CPU.
# The command is the first argument that is not an option (an option given before it with its value
# as a separate word hides it: then only these memory flags are left out, nothing else changes).
wv_flags=
for wv_arg in "$@"; do
  case $wv_arg in
    -*) ;;
    backup)
      wv_flags='--no-turbofan --no-maglev --no-sparkplug --optimize-for-size'
      MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-2097152}
      export MALLOC_MMAP_THRESHOLD_
      break ;;
    *) break ;;
  esac
done
wv_run --max-semi-space-size=1 $wv_flags "$wv_dir/@ENTRY@.js" "$@"
