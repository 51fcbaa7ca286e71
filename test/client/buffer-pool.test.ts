import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../src/client/buffer-pool.ts';

const KiB = 1024;

describe('BufferPool', () => {
  it('hands back the smallest idle buffer that fits, and allocates only when none does', () => {
    const pool = new BufferPool(16 * 1024 * KiB);
    const small = pool.take(100 * KiB);
    const large = pool.take(900 * KiB);
    expect(small.byteLength).toBe(256 * KiB); // rounded up to the 256 KiB grain
    expect(large.byteLength).toBe(1024 * KiB);
    pool.give(large);
    pool.give(small);
    expect(pool.idleBytes).toBe(1280 * KiB);
    expect(pool.take(200 * KiB)).toBe(small); // both fit: the smaller is taken
    expect(pool.take(200 * KiB)).toBe(large); // only the larger is left
    expect(pool.idleBytes).toBe(0);
    const fresh = pool.take(200 * KiB);
    expect(fresh).not.toBe(small);
    expect(fresh).not.toBe(large);
  });

  it('never keeps more idle bytes than its bound, and ignores empty buffers', () => {
    const pool = new BufferPool(512 * KiB);
    const a = pool.take(256 * KiB);
    const b = pool.take(256 * KiB);
    const c = pool.take(256 * KiB);
    pool.give(a);
    pool.give(b);
    pool.give(c); // over the bound: dropped
    pool.give(new Uint8Array(0));
    expect(pool.idleBytes).toBe(512 * KiB);
    expect([pool.take(1), pool.take(1)]).toEqual(expect.arrayContaining([a, b]));
    expect(pool.take(1)).not.toBe(c);
  });

  it('refuses a bound that is not a non-negative integer', () => {
    expect(() => new BufferPool(-1)).toThrow(/maxIdleBytes/);
    expect(() => new BufferPool(1.5)).toThrow(/maxIdleBytes/);
  });
});
