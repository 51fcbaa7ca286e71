import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cut, DEFAULT_CHUNKER_PARAMS, validateChunkerParams } from '../../src/chunker/index.ts';
import { GEAR_V1 } from '../../src/chunker/gear.ts';
import { isDfsError } from '../../src/errors/index.ts';

describe('chunker parameters', () => {
  it('defaults to 256 KiB / 1 MiB / 4 MiB', () => {
    expect(DEFAULT_CHUNKER_PARAMS).toEqual({ minSize: 524288, avgSize: 2097152, maxSize: 4194304 });
  });

  const bad: Array<[string, { minSize: number; avgSize: number; maxSize: number }, RegExp]> = [
    ['avg not a power of two', { minSize: 1024, avgSize: 3000, maxSize: 8192 }, /power of two/],
    ['min >= avg', { minSize: 8192, avgSize: 8192, maxSize: 65536 }, /min < avg < max/],
    ['avg >= max', { minSize: 1024, avgSize: 8192, maxSize: 8192 }, /min < avg < max/],
    ['min below the floor', { minSize: 8, avgSize: 256, maxSize: 1024 }, /at least 64/],
    ['max above the ceiling', { minSize: 1024, avgSize: 8192, maxSize: 2 ** 30 }, /at most/],
    ['not integers', { minSize: 1024.5, avgSize: 8192, maxSize: 65536 }, /positive integer/],
    ['negative', { minSize: -1, avgSize: 8192, maxSize: 65536 }, /positive integer/],
  ];
  for (const [what, params, message] of bad) {
    it(`rejects ${what} with ERR_INVALID_ARGUMENT`, () => {
      let caught: unknown;
      try {
        validateChunkerParams(params);
      } catch (err) {
        caught = err;
      }
      expect(isDfsError(caught, 'ERR_INVALID_ARGUMENT')).toBe(true);
      expect((caught as Error).message).toMatch(message);
    });
  }

  it('cut() validates its range', () => {
    expect(() => cut(new Uint8Array(10), 5, 11, DEFAULT_CHUNKER_PARAMS)).toThrow(RangeError);
  });

  it('data no longer than min is one chunk', () => {
    const p = { minSize: 64, avgSize: 256, maxSize: 1024 };
    expect(cut(new Uint8Array(64), 0, 64, p)).toBe(64);
    expect(cut(new Uint8Array(0), 0, 0, p)).toBe(0);
  });
});

describe('the gear table', () => {
  it('is SHA-256("dfs/fastcdc2020-v1/gear/<i>")[0..4], as documented', () => {
    const derived = Array.from({ length: 256 }, (_, i) =>
      createHash('sha256').update(`dfs/fastcdc2020-v1/gear/${i}`).digest().readUInt32BE(0),
    );
    expect(GEAR_V1).toEqual(derived);
  });
});
