// Writes the sh launchers (package.json "bin") next to the compiled entry points in dist/cli.
// Runs after tsc: the exit codes and the record folder's name come from the compiled TypeScript, the one place they are defined.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { EXIT_CODES } from '../dist/core/errors.js';
import { RECORD_DIR } from '../dist/policy/spool.js';

const template = readFileSync(new URL('../src/cli/launcher.sh', import.meta.url), 'utf8');
// Node not found (the shell's 126/127 with no executable $wv_node): say so. archive and walvault exit
// with the table's code; restore keeps 127 (above 125: PostgreSQL stops recovery rather than end it early).
const nodeMissing = (code) =>
  `if { [ "$rc" -eq 126 ] || [ "$rc" -eq 127 ]; } && ! command -v "$wv_node" >/dev/null 2>&1; then echo "@ENTRY@: error: node not found (\\"$wv_node\\" is not an executable in PATH=$PATH); HINT: install Node.js where the server's user finds it, or set WALVAULT_NODE to node's absolute path in the server's environment" >&2; exit ${code}; fi`;
// A Node crash (abort 134, OOM kill 137) must not exceed 125 for archive_command: PostgreSQL would
// restart the archiver instead of counting a failure. restore keeps it: above 125 stops recovery,
// the safe outcome when we cannot tell what went wrong.
const crashToInternal = `if [ "$rc" -gt 125 ]; then echo "@ENTRY@: error: node exited with status $rc (crash); HINT: this is a bug or the machine ran out of memory" >&2; exit ${EXIT_CODES.internal}; fi`;
const entries = {
  'walvault-archive': `${nodeMissing(EXIT_CODES['node-missing'])}\n${crashToInternal}`,
  walvault: `${nodeMissing(EXIT_CODES['node-missing'])}\n${crashToInternal}`,
  'walvault-restore': nodeMissing('$rc'),
};
// The fast paths answer pushed-ahead / prefetched files without starting Node (src/cli/fast-path-*.sh),
// from the records Node writes (src/cli/fast-path-record.sh; src/policy/SPOOL.md).
const readSource = (name) => readFileSync(new URL(`../src/cli/${name}`, import.meta.url), 'utf8');
const fastPath = (entry) => {
  if (entry === 'walvault') return '';
  const kind = entry.slice('walvault-'.length);
  const record = readSource('fast-path-record.sh').replace(/^(# .*\n)+/, '').trimEnd();
  return readSource(`fast-path-${kind}.sh`).replace('@FAST_PATH_RECORD@', () => record).replaceAll('@RECORD_DIR@', RECORD_DIR).trimEnd();
};
// archive and restore start from the start-up bundle when it fits (src/cli/launcher-bundle.sh, launcher-worker.sh),
// and start Node without NODE_EXTRA_CA_CERTS (src/cli/launcher-ca.sh; `walvault` keeps it: check and status connect to PostgreSQL).
// The operator commands (backup, restore-backup, verify stream whole files): src/cli/launcher-operator.sh.
// The 1 MiB young generation, measured on `walvault backup` of a 1.5 GiB cluster, two runs each, Node 20:
// peak RSS 88-89 -> 77-78 MiB (2.5-2.6 -> 2.0-2.1 s) uncompressed, 99-100 -> 86-87 MiB (4.9-5.9 ->
// 5.9-6.0 s) with zstd. The archive and restore path keeps Node's defaults.
const start = (entry) => readSource(entry === 'walvault' ? 'launcher-operator.sh' : 'launcher-bundle.sh').trimEnd();
for (const [entry, crashMap] of Object.entries(entries)) {
  const target = new URL(`../dist/cli/${entry}`, import.meta.url);
  writeFileSync(target, template.replace('@CRASH_MAP@', () => crashMap).replace('@FAST_PATH@', () => fastPath(entry)).replace('@START@', () => start(entry)).replace('@ENTRY_CHECK@', () => (entry === 'walvault' ? '' : readSource('launcher-worker.sh').trimEnd())).replace('@CA@', () => (entry === 'walvault' ? '' : readSource('launcher-ca.sh').trimEnd())).replaceAll('@ENTRY@', entry));
  chmodSync(target, 0o755);
}
