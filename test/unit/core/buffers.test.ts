// Reused and freed buffers (src/core/buffers.ts): a pool hands out what was given back, and freeNow
// frees only a buffer that owns its whole memory, never a slice of Node's shared pool.
import { describe, expect, it } from 'vitest';
import { BufferPool, freeNow } from '../../../src/core/buffers.js';

describe('BufferPool', () => {
  it('hands out the buffers given back, keeps at most its spare count, refuses other sizes and slices', () => {
    const pool = new BufferPool(1024, 2);
    const [a, b, c] = [pool.take(), pool.take(), pool.take()];
    pool.give(a);
    pool.give(b);
    pool.give(c);
    pool.give(Buffer.allocUnsafeSlow(512));
    pool.give(Buffer.allocUnsafeSlow(2048).subarray(0, 1024));
    expect([pool.take(), pool.take()].sort()).toEqual([a, b].sort());
    expect([a, b, c]).not.toContain(pool.take());
  });

  it('release frees the idle buffers now: their memory is gone, and the next take is a new buffer', () => {
    const pool = new BufferPool(4096, 4);
    const idle = pool.take();
    pool.give(idle);
    pool.release();
    expect(idle.length).toBe(0);
    const next = pool.take();
    expect(next === idle).toBe(false);
    expect(next.length).toBe(4096);
  });
});

describe('freeNow', () => {
  it("detaches a buffer that owns its memory, and leaves slices (of Node's shared pool, subarrays) alone", () => {
    const owned = Buffer.allocUnsafeSlow(1 << 20);
    freeNow(owned);
    expect(owned.length).toBe(0);
    expect(owned.buffer.byteLength).toBe(0);
    const pooled = Buffer.from('a few bytes from the shared pool');
    freeNow(pooled);
    expect(pooled.toString()).toBe('a few bytes from the shared pool');
    const whole = Buffer.allocUnsafeSlow(64).fill(7);
    const part = whole.subarray(0, 32);
    freeNow(part);
    expect(whole.length).toBe(64);
    expect(part[0]).toBe(7);
  });
});
