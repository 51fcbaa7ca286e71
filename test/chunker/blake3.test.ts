import { describe, expect, it } from 'vitest';
import { assertChunkId, isChunkId, loadBlake3 } from '../../src/chunker/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';

// Official BLAKE3 test vectors (input: the first n bytes of the repeating 0..250 pattern).
const OFFICIAL: Array<[number, string]> = [
  [0, 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'],
  [1, '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213'],
  [1024, '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7'],
  [1025, 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444'],
];

function pattern(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => i % 251);
}

describe('BLAKE3', () => {
  for (const backend of ['wasm', 'native'] as const) {
    it(`${backend} matches the official test vectors`, async () => {
      const b3 = await loadBlake3(backend);
      expect(b3.backend).toBe(backend);
      for (const [n, hex] of OFFICIAL) expect(b3.hashHex(pattern(n))).toBe(hex);
    });
  }

  it('native and wasm agree on random inputs, one-shot and incremental', async () => {
    const [wasm, native] = await Promise.all([loadBlake3('wasm'), loadBlake3('native')]);
    const rng = new SeededBytes(testSeed('blake3 agreement'));
    const hw = await wasm.createHasher();
    const hn = await native.createHasher();
    for (let i = 0; i < 50; i++) {
      const data = rng.bytes(rng.nextU32() % 300_000);
      const split = data.length === 0 ? 0 : rng.nextU32() % data.length;
      const parts = [data.subarray(0, split), data.subarray(split)];
      const expected = wasm.hashHex(data);
      expect(native.hashHex(data)).toBe(expected);
      expect(native.hashHex(parts)).toBe(expected);
      expect(hw.reset().update(parts[0]!).update(parts[1]!).digestHex()).toBe(expected);
      expect(hn.reset().update(parts[0]!).update(parts[1]!).digestHex()).toBe(expected);
    }
  });

  it('auto prefers native and DFS_BLAKE3 rejects unknown values', async () => {
    expect((await loadBlake3('auto')).backend).toBe('native');
    const saved = process.env.DFS_BLAKE3;
    process.env.DFS_BLAKE3 = 'md5';
    try {
      expect(() => loadBlake3()).toThrow(/DFS_BLAKE3/);
    } finally {
      if (saved === undefined) delete process.env.DFS_BLAKE3;
      else process.env.DFS_BLAKE3 = saved;
    }
  });
});

describe('chunk ids', () => {
  it('are 64 lowercase hex characters', () => {
    expect(isChunkId('a'.repeat(64))).toBe(true);
    expect(isChunkId('A'.repeat(64))).toBe(false);
    expect(isChunkId('a'.repeat(63))).toBe(false);
    expect(isChunkId('../../etc/passwd')).toBe(false);
    expect(isChunkId(42)).toBe(false);
  });

  it('assertChunkId throws ERR_INVALID_CHUNK_ID', () => {
    let caught: unknown;
    try {
      assertChunkId('zz');
    } catch (err) {
      caught = err;
    }
    expect(isDfsError(caught, 'ERR_INVALID_CHUNK_ID')).toBe(true);
  });
});
