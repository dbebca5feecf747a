// Drives core/hash.ts's forced collections (collectGarbageAfter, one tick per 4 MiB) in two phases and
// marks them on stdout, where node --trace-gc prints each collection: buffers that die young, then
// buffers that live across two ticks (promoted) before they die.
// Usage: node --trace-gc gc-pace-child.mjs DIST_HASH_JS [MARGIN_MIB] (a margin: paceMajorCollections first)
import { pathToFileURL } from 'node:url';

const { collectGarbageAfter, paceMajorCollections } = await import(pathToFileURL(process.argv[2] ?? '').href);
if (process.argv[3] !== undefined) paceMajorCollections(Number(process.argv[3]) * 1024 * 1024);
const MiB = 1024 * 1024;
let bytes = 0;
const tick = () => {
  collectGarbageAfter(bytes, bytes + 4 * MiB);
  bytes += 4 * MiB;
};
const fresh = () => Array.from({ length: 4 }, () => Buffer.allocUnsafeSlow(MiB).fill(1));

let kept = fresh();
for (let i = 0; i < 40; i += 1) {
  kept = fresh();
  tick();
}
console.log('PHASE promoted');
const alive = [];
for (let i = 0; i < 40; i += 1) {
  alive.push(fresh());
  if (alive.length > 2) alive.shift();
  tick();
}
console.log('PHASE end', kept.length);
