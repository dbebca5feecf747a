// Deadline counts on a monotonic clock (issue 17, defect 8): a step of the wall clock (NTP, an operator) must not change the retry budget.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Deadline } from '../../src/core/deadline.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('Deadline', () => {
  it('keeps its budget when the wall clock jumps forward or back', () => {
    const deadline = new Deadline(60_000, 'test');
    try {
      const now = Date.now();
      const clock = vi.spyOn(Date, 'now').mockReturnValue(now + 3_600_000);
      expect(deadline.remaining()).toBeGreaterThan(50_000);
      clock.mockReturnValue(now - 3_600_000);
      expect(deadline.remaining()).toBeLessThanOrEqual(60_000);
    } finally {
      deadline.dispose();
    }
  });
});
