import { defineConfig } from 'vitest/config';

// Tests spawn real PostgreSQL servers and S3 servers; 2 cores take two test files at a time.
// globalSetup gives each run one scratch dir (e.g. for the single packed-and-installed walvault).
// Every test must be able to fail: each-test.ts makes a test that reaches no assertion fail, and the
// no-skip reporter fails the run when any test is skipped or todo.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts', 'test/support/ceph-global.ts'],
    setupFiles: ['test/support/each-test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    maxWorkers: 2,
    pool: 'forks',
    reporters: ['default', './test/support/no-skip-reporter.ts'],
  },
});
