// Shared set-up of every test file (vitest setupFiles): a test that reaches no assertion fails, so an
// early `return`, an `expect` left in a `catch` that never runs, or a guard that bails out cannot pass.
import { beforeEach, expect } from 'vitest';

beforeEach(() => {
  expect.hasAssertions();
});
