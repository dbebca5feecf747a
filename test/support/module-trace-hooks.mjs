// Module resolution hook of module-trace.mjs (runs on Node's loader thread).
import { appendFileSync } from 'node:fs';

/**
 * Records each resolved module URL, one per line.
 * @param {string} specifier
 * @param {object} context
 * @param {(specifier: string, context: object) => Promise<{ url: string }>} nextResolve
 */
export async function resolve(specifier, context, nextResolve) {
  const result = await nextResolve(specifier, context);
  const file = process.env.WALVAULT_TEST_MODULE_TRACE;
  if (file !== undefined) appendFileSync(file, `${result.url}\n`);
  return result;
}
