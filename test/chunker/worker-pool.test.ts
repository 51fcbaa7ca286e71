import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkStream, type ChunkerParams } from '../../src/chunker/index.ts';
import { loadBlake3 } from '../../src/chunker/blake3.ts';
import { ChunkWorkerPool } from '../../src/chunker/worker-pool.ts';

const params: ChunkerParams = { minSize: 256, avgSize: 1024, maxSize: 4096 };

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** `data` as reads of the given sizes (cycled). */
function* reads(data: Uint8Array, sizes: readonly number[]): Generator<Uint8Array> {
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield data.subarray(at, at + n);
    at += n;
  }
}

/** xorshift32 bytes from `seed`. */
function pseudoRandom(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Pseudo-random bytes with runs of a single value (up to 3x maxSize) every so often. */
function pseudoRandomRuns(length: number, seed: number): Uint8Array {
  const out = pseudoRandom(length, seed);
  for (let at = seed & 0x3fff; at < length; at += 20_000) out.fill(at & 0xff, at, Math.min(length, at + ((at * 7) % (3 * params.maxSize))));
  return out;
}

describe('ChunkWorkerPool (prototype)', () => {
  let pool: ChunkWorkerPool;
  beforeAll(async () => {
    pool = await ChunkWorkerPool.create({ threads: 2, params, segmentBytes: 3 * params.maxSize, blake3: 'wasm' });
  });
  afterAll(async () => {
    await pool.close();
  });

  it('refuses a segment that cannot hold two of the largest chunks', async () => {
    await expect(ChunkWorkerPool.create({ params, segmentBytes: params.maxSize })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  it('yields nothing for empty input', async () => {
    expect(await collect(pool.chunk([]))).toEqual([]);
  });

  it('cuts and names exactly as chunkStream, whatever the reads and the segment seams', async () => {
    const blake3 = await loadBlake3('wasm');
    await fc.assert(
      fc.asyncProperty(
        // fast-check's arrays stay small; the bytes come from a seeded generator instead, so
        // every run crosses many segment seams (12 KiB segments here).
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer(),
        fc.array(fc.integer({ min: 1, max: 20_000 }), { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        async (length, seed, sizes, runs) => {
          // Runs of one byte too: they make max-size cuts, where the chains meet differently.
          const input = runs ? pseudoRandomRuns(length, seed) : pseudoRandom(length, seed);
          const want = (await collect(chunkStream(reads(input, sizes), { blake3, params }))).map((c) => [c.offset, c.length, c.id]);
          const got = (await collect(pool.chunk(reads(input, sizes)))).map((c) => [c.offset, c.length, c.id]);
          expect(got).toEqual(want);
        },
      ),
      { seed: 1616, numRuns: 40 },
    );
  });

  it('gives chunks whose pieces hold their bytes', async () => {
    const data = Uint8Array.from({ length: 50_000 }, (_, i) => (i * 2654435761) >>> 24);
    const chunks = await collect(pool.chunk([data]));
    expect(Buffer.concat(chunks.flatMap((c) => c.pieces))).toEqual(Buffer.from(data));
  });
});
