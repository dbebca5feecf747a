// Loaded with `node --import` (NODE_OPTIONS): appends the URL of every module the process resolves to
// the file named by WALVAULT_TEST_MODULE_TRACE, so start-up tests can see what a command loaded.
import { register } from 'node:module';

if (process.env.WALVAULT_TEST_MODULE_TRACE) register('./module-trace-hooks.mjs', import.meta.url);
