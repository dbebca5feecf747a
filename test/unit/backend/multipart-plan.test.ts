// The default multipart plan of putLarge (src/backend/s3.ts) against S3's limits: 10,000 parts, parts
// of 5 MiB to 5 GiB, objects up to 5 TiB.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MULTIPART, MAX_LARGE_OBJECT_BYTES } from '../../../src/backend/s3.js';

const MiB = 1024 * 1024;
const partSize = (n: number): number => DEFAULT_MULTIPART.partBytes * 2 ** Math.floor((n - 1) / DEFAULT_MULTIPART.partsPerDoubling);

describe('the default multipart plan', () => {
  it("reaches S3's 5 TiB object limit within 10,000 parts, every part between 5 MiB and 5 GiB", () => {
    let total = 0;
    for (let n = 1; n <= 10_000; n += 1) {
      const size = partSize(n);
      expect(size).toBeGreaterThanOrEqual(5 * MiB);
      expect(size).toBeLessThanOrEqual(5 * 1024 * MiB);
      total += size;
    }
    expect(total).toBeGreaterThanOrEqual(MAX_LARGE_OBJECT_BYTES);
  });

  it('holds two first-size parts in memory at once (one sent while the next fills), never more than the budget', () => {
    expect(2 * DEFAULT_MULTIPART.partBytes).toBeLessThanOrEqual(DEFAULT_MULTIPART.memoryBudgetBytes);
    expect(3 * DEFAULT_MULTIPART.partBytes).toBeGreaterThan(DEFAULT_MULTIPART.memoryBudgetBytes);
    expect(DEFAULT_MULTIPART.memoryPartBytes).toBeLessThanOrEqual(DEFAULT_MULTIPART.memoryBudgetBytes);
  });
});
