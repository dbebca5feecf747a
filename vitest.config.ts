import { defineConfig } from 'vitest/config';

// Two cores are shared by everything on the test machines: at most two test files at a time, and
// generous timeouts for the e2e files that drive real PostgreSQL servers through recovery.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
  },
});
