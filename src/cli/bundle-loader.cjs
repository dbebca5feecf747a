'use strict';
// Loader of @ENTRY@ (written into dist/cli by scripts/build-bundle.mjs from src/cli/bundle-loader.cjs;
// the launcher runs it). Compiles the start-up bundle, walvault-bundle.cjs, with the V8 code cache
// the build recorded next to it, so a call neither parses nor compiles walvault's code: it starts
// about as fast as `node -e 0` (see src/cli/README.md). A missing, stale or rejected
// cache (another node, other V8 flags) only costs the compilation: V8 then compiles the source.
const { closeSync, fstatSync, openSync, readFileSync, writeFileSync } = require('node:fs');
const { Script } = require('node:vm');

// The start-up tests ask what a call loaded: whether V8 took the code cache, Node's built-ins and the
// modules the bundle loaded on first use.
const trace = process.env.WALVAULT_TEST_MODULE_TRACE;
const builtinsBefore = trace ? new Set(process.moduleLoadList) : undefined;

const bundlePath = `${__dirname}/walvault-bundle.cjs`;
const fd = openSync(bundlePath, 'r');
const info = fstatSync(fd);
const source = readFileSync(fd, 'utf8');
closeSync(fd);
// The cache belongs to exactly this build: V8 itself checks only the source's length (and its own
// version and flags), so the cache starts with the build id that the bundle's first line gives (a
// hash of its content, written by the build) and the bundle's size.
const buildId = /^\/\/ walvault-bundle ([0-9a-f]{32})\n/.exec(source.slice(0, 64))?.[1];
const key = buildId === undefined ? undefined : `walvault-code-cache ${buildId} ${info.size}\n`;
let cachedData;
try {
  const cache = key === undefined ? undefined : readFileSync(`${bundlePath}.cache`);
  if (cache !== undefined && cache.toString('latin1', 0, key.length) === key) cachedData = cache.subarray(key.length);
} catch {
  // no cache: V8 compiles the source
}
const script = new Script(source, { filename: bundlePath, cachedData });
const bundle = { exports: {} };
script.runInThisContext()(bundle.exports, require, bundle, bundlePath, __dirname);

// The build records the cache by running calls with WALVAULT_CODE_CACHE_OUT (src/cli/make-code-cache.ts):
// at exit, the code of every function compiled so far, the cache it started with included.
const cacheOut = process.env.WALVAULT_CODE_CACHE_OUT;
if (cacheOut && key !== undefined) {
  delete process.env.WALVAULT_CODE_CACHE_OUT;
  process.on('exit', () => writeFileSync(cacheOut, Buffer.concat([Buffer.from(key, 'latin1'), script.createCachedData()])));
}
if (trace) {
  process.on('exit', () => {
    const builtins = process.moduleLoadList.filter((name) => !builtinsBefore.has(name) && name.startsWith('NativeModule ')).map((name) => `node:${name.slice('NativeModule '.length)}`);
    const cache = cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted';
    writeFileSync(trace, `${[`code-cache:${cache}`, ...builtins, ...bundle.exports.loadedOnDemand()].join('\n')}\n`, { flag: 'a' });
  });
}
bundle.exports.start('@ENTRY@');
