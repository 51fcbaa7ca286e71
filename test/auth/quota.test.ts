import { describe, expect, it } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';
import { applyUsage, formatBytes, isAuthError, putDelta, quotaError, quotaSchema, usageSchema, wouldExceed, ZERO_USAGE } from '../../src/auth/index.ts';

const GiB = 1024 ** 3;

describe('quota: refusals first', () => {
  it('a put that would go over the byte quota is refused before any chunk is sent', () => {
    const usage = { bytes: 9 * GiB, files: 10 };
    const excess = wouldExceed(usage, { maxBytes: 10 * GiB }, GiB + 1, 1);
    expect(excess).toMatchObject({ code: 'ERR_QUOTA', resource: 'bytes', limit: 10 * GiB, used: 9 * GiB, adding: GiB + 1 });
    expect(excess?.message).toBe('byte quota exceeded: 9 GiB used + 1 GiB > 10 GiB allowed; remove files or ask an admin to raise the quota');
    expect(wouldExceed(usage, { maxBytes: 10 * GiB }, GiB, 1)).toBeNull(); // exactly at the limit is fine
  });

  it('a put that would go over the file quota is refused', () => {
    const excess = wouldExceed({ bytes: 0, files: 5 }, { maxFiles: 5 }, 0, 1);
    expect(excess).toMatchObject({ resource: 'files', limit: 5, used: 5, adding: 1 });
    expect(excess?.message).toContain('file quota exceeded: 5 files used + 1 > 5 allowed');
  });

  it('becomes ERR_QUOTA (to be added to src/errors)', () => {
    const excess = wouldExceed(ZERO_USAGE, { maxFiles: 0 }, 0, 1);
    expect(excess).not.toBeNull();
    if (excess) expect(isAuthError(quotaError(excess), 'ERR_QUOTA')).toBe(true);
  });

  it('bad numbers are refused', () => {
    expect(() => wouldExceed(ZERO_USAGE, {}, 1.5, 0)).toThrow(DfsError);
    expect(() => applyUsage({ bytes: 1, files: 1 }, -2, 0)).toThrow(DfsError);
    expect(() => usageSchema.parse({ bytes: -1, files: 0 })).toThrow(DfsError);
    expect(() => quotaSchema.parse({ maxBytes: 'lots' })).toThrow(DfsError);
  });
});

describe('quota', () => {
  it('no quota, or an absent limit, is unlimited', () => {
    expect(wouldExceed({ bytes: 2 ** 52, files: 1e9 }, undefined, GiB, 1)).toBeNull();
    expect(wouldExceed({ bytes: 2 ** 52, files: 1e9 }, { maxFiles: 2e9 }, GiB, 1)).toBeNull();
  });

  it('a user over quota (after it was lowered) may still shrink and delete', () => {
    const usage = { bytes: 20 * GiB, files: 100 };
    const quota = { maxBytes: 10 * GiB, maxFiles: 50 };
    const smaller = putDelta(GiB, 2 * GiB);
    expect(wouldExceed(usage, quota, smaller.addBytes, smaller.addFiles)).toBeNull();
    expect(wouldExceed(usage, quota, -GiB, -1)).toBeNull();
    expect(wouldExceed(usage, quota, 1, 0)).not.toBeNull();
  });

  it('put deltas and usage accounting', () => {
    expect(putDelta(100)).toEqual({ addBytes: 100, addFiles: 1 });
    expect(putDelta(100, 300)).toEqual({ addBytes: -200, addFiles: 0 });
    let u = ZERO_USAGE;
    u = applyUsage(u, 100, 1);
    u = applyUsage(u, -40, 0);
    expect(u).toEqual({ bytes: 60, files: 1 });
    expect(applyUsage(u, -60, -1)).toEqual({ bytes: 0, files: 0 });
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(12)).toBe('12 B');
  });
});
