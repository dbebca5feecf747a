// Writes the sh launchers (package.json "bin") next to the compiled entry points in dist/cli.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';

const template = readFileSync(new URL('../src/cli/launcher.sh', import.meta.url), 'utf8');
// A Node crash (abort 134, OOM kill 137) must not exceed 125 for archive_command: PostgreSQL would
// restart the archiver instead of counting a failure. restore keeps it: above 125 stops recovery,
// the safe outcome when we cannot tell what went wrong.
const crashToInternal = 'if [ "$rc" -gt 125 ]; then echo "@ENTRY@: error: node exited with status $rc (crash); HINT: this is a bug or the machine ran out of memory" >&2; exit 70; fi';
const entries = { 'walvault-archive': crashToInternal, walvault: crashToInternal, 'walvault-restore': '' };
// The fast paths answer pushed-ahead / prefetched files without starting Node (src/cli/fast-path-*.sh).
// Both share the option scan (src/cli/fast-path-options.sh); each names the flag that turns it off.
const readSource = (name) => readFileSync(new URL(`../src/cli/${name}`, import.meta.url), 'utf8');
const disableFlags = { archive: '--push-ahead=0', restore: '--prefetch=0' };
const fastPath = (entry) => {
  if (entry === 'walvault') return '';
  const kind = entry.slice('walvault-'.length);
  const options = readSource('fast-path-options.sh').replace(/^(# .*\n)+/, '').replace('@DISABLE_FLAG@', disableFlags[kind]).trimEnd();
  return readSource(`fast-path-${kind}.sh`).replace('@FAST_PATH_OPTIONS@', () => options).trimEnd();
};
// archive and restore start from the start-up bundle when it fits (src/cli/launcher-bundle.sh, launcher-worker.sh).
const start = (entry) => (entry === 'walvault' ? 'wv_run "$wv_dir/@ENTRY@.js" "$@"' : readSource('launcher-bundle.sh').trimEnd());
for (const [entry, crashMap] of Object.entries(entries)) {
  const target = new URL(`../dist/cli/${entry}`, import.meta.url);
  writeFileSync(target, template.replace('@CRASH_MAP@', crashMap).replace('@FAST_PATH@', () => fastPath(entry)).replace('@START@', () => start(entry)).replace('@ENTRY_CHECK@', () => (entry === 'walvault' ? '' : readSource('launcher-worker.sh').trimEnd())).replaceAll('@ENTRY@', entry));
  chmodSync(target, 0o755);
}
