import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CHUNKER_ID, chunkBoundaries, chunkStream, loadBlake3 } from '../../src/chunker/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';

interface VectorSet {
  name: string;
  seed: number;
  length: number;
  params: { minSize: number; avgSize: number; maxSize: number };
  inputSha256: string;
  chunks: Array<[number, number, string]>;
}

const vectors = JSON.parse(readFileSync(new URL('./vectors/fastcdc2020-v1.json', import.meta.url), 'utf8')) as {
  chunker: string;
  sets: VectorSet[];
};

/** Splits `data` into reads of random sizes (1 byte to 3 max-sizes), as a slow network would. */
function* randomReads(data: Uint8Array, seed: number, maxRead: number): Generator<Uint8Array> {
  const rng = new SeededBytes(seed);
  for (let at = 0; at < data.length; ) {
    const size = 1 + (rng.nextU32() % maxRead);
    yield data.subarray(at, at + size);
    at += size;
  }
}

describe('known-answer vectors of fastcdc2020-v1', () => {
  it('are for this chunker id', () => {
    expect(vectors.chunker).toBe(CHUNKER_ID);
  });

  for (const set of vectors.sets) {
    describe(`set "${set.name}" (${set.length} bytes, ${set.chunks.length} chunks)`, () => {
      const data = new SeededBytes(set.seed).bytes(set.length);

      it('regenerates the same input', () => {
        expect(createHash('sha256').update(data).digest('hex')).toBe(set.inputSha256);
      });

      it('the buffer API reproduces every (offset, length)', () => {
        expect(chunkBoundaries(data, set.params)).toEqual(set.chunks.map(([o, l]) => [o, l]));
      });

      for (const backend of ['wasm', 'native'] as const) {
        it(`the streaming API fed random read sizes reproduces every (offset, length, BLAKE3) with ${backend} BLAKE3`, async () => {
          const blake3 = await loadBlake3(backend);
          const seed = testSeed(`vectors ${set.name} ${backend}`);
          const got: Array<[number, number, string]> = [];
          for await (const c of chunkStream(randomReads(data, seed, 3 * set.params.maxSize), { blake3, params: set.params })) {
            got.push([c.offset, c.length, c.id]);
          }
          expect(got).toEqual(set.chunks);
        });
      }
    });
  }
});
