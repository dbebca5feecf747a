// Module resolution hook of module-trace.mjs (runs on Node's loader thread).
import { appendFileSync } from 'node:fs';

/** Records each resolved module URL, one per line. */
export async function resolve(specifier, context, nextResolve) {
  const result = await nextResolve(specifier, context);
  appendFileSync(process.env.WALVAULT_TEST_MODULE_TRACE, `${result.url}\n`);
  return result;
}
