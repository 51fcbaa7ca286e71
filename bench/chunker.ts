import { createHash, randomFillSync } from 'node:crypto';
import blake3wasm from 'blake3-wasm';
import { chunkBoundaries, chunkStream, DEFAULT_CHUNKER_PARAMS, loadBlake3 } from '../src/chunker/index.ts';
import { benchBytes, bestOf, type BenchRow, mbPerS, printRows } from './harness.ts';

const READ_BYTES = 1024 * 1024;

function reads(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += READ_BYTES) out.push(data.subarray(o, o + READ_BYTES));
  return out;
}

/**
 * FastCDC scan, chunk+BLAKE3 and BLAKE3 alone over random data (the worst case: no dedup, cut
 * points as costly as they get), beside node's native sha256 over the same bytes.
 */
export async function runChunkerBench(): Promise<void> {
  const bytes = benchBytes();
  const data = new Uint8Array(bytes);
  for (let o = 0; o < bytes; o += 64 * 1024 * 1024) randomFillSync(data, o, Math.min(64 * 1024 * 1024, bytes - o));
  const pieces = reads(data);
  const runs = 3;
  const rows: BenchRow[] = [];
  const time = async (name: string, fn: () => unknown, extra: Omit<BenchRow, 'name' | 'mbPerS'> = {}) => {
    rows.push({ name, mbPerS: mbPerS(bytes, await bestOf(runs, fn)), ...extra });
  };

  await time('sha256 (node native, 1 MiB pieces)', () => {
    for (const p of pieces) createHash('sha256').update(p).digest();
  }, { note: 'yardstick' });
  let chunks = 0;
  await time('fastcdc scan', () => {
    chunks = chunkBoundaries(data, DEFAULT_CHUNKER_PARAMS).length;
  }, { vs: 'sha256 (node native, 1 MiB pieces)', target: '>= 1500', note: `${chunks} chunks` });
  const native = await loadBlake3('native');
  const wasm = await loadBlake3('wasm');
  for (const b3 of [native, wasm]) {
    await time(`chunk+blake3 (${b3.backend})`, async () => {
      for await (const _ of chunkStream(pieces, { blake3: b3 })) void _;
    }, { vs: 'sha256 (node native, 1 MiB pieces)', target: b3.backend === 'native' ? '>= 1000' : '>= 400' });
  }
  for (const b3 of [native, wasm]) {
    await time(`blake3 alone (${b3.backend === 'native' ? '@napi-rs/blake-hash' : 'hash-wasm'})`, () => {
      for (const p of pieces) b3.hashHex(p);
    }, { vs: 'sha256 (node native, 1 MiB pieces)' });
  }
  await time('blake3 alone (blake3-wasm 2.1.5)', () => {
    for (const p of pieces) blake3wasm.hash(p);
  }, { vs: 'blake3 alone (hash-wasm)', note: 'the other wasm build' });
  printRows(`chunker and hashing, ${bytes / 2 ** 20} MiB random, best of ${runs}`, rows.map((r) => (r.name === 'fastcdc scan' ? { ...r, note: `${chunks} chunks, avg ${(bytes / chunks / 1024).toFixed(0)} KiB` } : r)));
}
