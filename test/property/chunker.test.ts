import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ChunkerParams, chunkBoundaries, chunkStream, CutScanner, loadBlake3 } from '../../src/chunker/index.ts';
import { referenceChunks } from '../support/fastcdc-reference.ts';
import { SeededBytes } from '../support/prng.ts';
import { propertyRuns, testSeed } from '../support/seed.ts';

/**
 * Chunker properties over pseudo-random data (content-defined chunking only resynchronises on
 * data with entropy; on constant data every cut is a max-size cut by design). fast-check picks
 * the parameters, the data seed and length, the read splits and the edits.
 */
const paramsArb: fc.Arbitrary<ChunkerParams> = fc
  .record({ minExp: fc.integer({ min: 6, max: 10 }), avgGap: fc.integer({ min: 1, max: 3 }), maxGap: fc.integer({ min: 1, max: 3 }) })
  .map(({ minExp, avgGap, maxGap }) => {
    const avgExp = Math.max(8, minExp + avgGap); // avg has a floor of 256 bytes
    return { minSize: 2 ** minExp, avgSize: 2 ** avgExp, maxSize: 2 ** (avgExp + maxGap) };
  });

const dataArb = fc.record({ seed: fc.integer({ min: 0, max: 2 ** 32 - 1 }), length: fc.integer({ min: 0, max: 150_000 }) });

function makeData(d: { seed: number; length: number }): Uint8Array {
  return new SeededBytes(d.seed).bytes(d.length);
}

function splitAt(data: Uint8Array, cutsAt: number[]): Uint8Array[] {
  const points = [...new Set(cutsAt.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const reads: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, data.length]) {
    reads.push(data.subarray(prev, p)); // empty reads included on purpose
    prev = p;
  }
  return reads;
}

function options(name: string, runs: number): fc.Parameters<unknown> {
  return { seed: testSeed(name), numRuns: propertyRuns(runs), endOnFailure: false };
}

describe('chunker properties', () => {
  it('chunks concatenate to the input and every chunk but the last is within [min, max]', () => {
    fc.assert(
      fc.property(paramsArb, dataArb, (params, d) => {
        const data = makeData(d);
        const chunks = chunkBoundaries(data, params);
        let at = 0;
        chunks.forEach(([offset, length], i) => {
          expect(offset).toBe(at);
          expect(length).toBeGreaterThan(0);
          expect(length).toBeLessThanOrEqual(params.maxSize);
          if (i < chunks.length - 1) expect(length).toBeGreaterThanOrEqual(params.minSize);
          at += length;
        });
        expect(at).toBe(data.length);
      }),
      options('chunker bounds', 300),
    );
  });

  it('the optimised scanner cuts exactly where the plain reference FastCDC does', () => {
    fc.assert(
      fc.property(paramsArb, dataArb, (params, d) => {
        const data = makeData(d);
        expect(chunkBoundaries(data, params)).toEqual(referenceChunks(data, params));
      }),
      options('chunker vs reference', 300),
    );
  });

  it('any split of the input into reads gives the same chunks and ids', async () => {
    const blake3 = await loadBlake3();
    await fc.assert(
      fc.asyncProperty(paramsArb, dataArb, fc.array(fc.nat(), { maxLength: 40 }), async (params, d, cutsAt) => {
        const data = makeData(d);
        const whole: string[] = [];
        for await (const c of chunkStream([data], { blake3, params })) whole.push(`${c.offset}:${c.length}:${c.id}`);
        const split: string[] = [];
        for await (const c of chunkStream(splitAt(data, cutsAt), { blake3, params })) {
          expect(blake3.hashHex(c.pieces)).toBe(c.id);
          expect(blake3.hashHex(c.bytes)).toBe(c.id);
          split.push(`${c.offset}:${c.length}:${c.id}`);
        }
        expect(split).toEqual(whole);
        expect(whole.length).toBe(chunkBoundaries(data, params).length);
      }),
      options('chunker read splits', 200),
    );
  });

  it('the scanner refuses nothing and never holds more than max bytes of a chunk', () => {
    fc.assert(
      fc.property(paramsArb, dataArb, fc.array(fc.nat(), { maxLength: 20 }), (params, d, cutsAt) => {
        const scanner = new CutScanner(params);
        for (const read of splitAt(makeData(d), cutsAt)) {
          for (let from = 0; from < read.length; ) {
            const found = scanner.scan(read, from, read.length);
            expect(scanner.pending).toBeLessThan(params.maxSize);
            from = found === -1 ? read.length : found;
          }
        }
      }),
      options('chunker scanner bound', 100),
    );
  });

  it('after an insertion or deletion the chunks resynchronise, and every chunk from there on is unchanged (dedup)', () => {
    fc.assert(
      fc.property(
        paramsArb,
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        // Edits in the first 40%: the 24 max-sizes allowed for resynchronising always fit after.
        fc.double({ min: 0, max: 0.4, noNaN: true }),
        fc.oneof(
          fc.record({ kind: fc.constant('insert' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 5000 }) }),
          fc.record({ kind: fc.constant('delete' as const), count: fc.integer({ min: 1, max: 5000 }) }),
        ),
        (params, seed, where, edit) => {
          const data = new SeededBytes(seed).bytes(40 * params.maxSize);
          const at = Math.floor(where * data.length);
          const edited =
            edit.kind === 'insert'
              ? concatBytes(data.subarray(0, at), edit.bytes, data.subarray(at))
              : concatBytes(data.subarray(0, at), data.subarray(Math.min(data.length, at + edit.count)));
          const editEnd = edit.kind === 'insert' ? at + edit.bytes.length : at; // in `edited`
          const before = chunkBoundaries(data, params);
          const after = chunkBoundaries(edited, params);
          const shift = edited.length - data.length;
          const beforeSet = new Set(before.map(([o, l]) => `${o + shift}:${l}`));
          // Resynchronisation: some chunk after the edit is a chunk of the original (how soon is
          // probabilistic: measured up to ~10 max-sizes with tiny parameters), and from that
          // first shared boundary on, every chunk is shared — cut points depend on content only.
          const resyncAt = after.findIndex(([o, l]) => o >= editEnd && beforeSet.has(`${o}:${l}`));
          expect(resyncAt, 'no chunk after the edit is shared with the original').toBeGreaterThanOrEqual(0);
          for (const [o, l] of after.slice(resyncAt)) expect(beforeSet.has(`${o}:${l}`)).toBe(true);
          expect(after[resyncAt]![0] - editEnd).toBeLessThanOrEqual(24 * params.maxSize);
          // And the chunks before the edit are untouched too (up to the one that contains it).
          const afterSet = new Set(after.map(([o, l]) => `${o}:${l}`));
          for (const [o, l] of before) if (o + l <= at - params.maxSize) expect(afterSet.has(`${o}:${l}`)).toBe(true);
        },
      ),
      options('chunker edit resync', 150),
    );
  });
});

function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
