import { randomFillSync } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { chunkStream, DEFAULT_CHUNKER_PARAMS, loadBlake3 } from '../src/chunker/index.ts';
import { ChunkWorkerPool } from '../src/chunker/worker-pool.ts';
import { benchBytes, type BenchRow, mbPerS, printRows } from './harness.ts';

const READ_BYTES = 1024 * 1024;
const GiB = 1024 ** 3;

/**
 * Chunk + BLAKE3 (native) of random data in 1 MiB reads, as a put's client does it: on the main
 * thread (chunkStream), and on the prototype worker pool (src/chunker/worker-pool.ts) with 1 and
 * 2 threads (best of 3 each). Beside the rate, the main thread's own CPU per GiB
 * (process.threadCpuUsage): what the network no longer gets.
 */
export async function runChunkPoolBench(): Promise<void> {
  const bytes = Math.min(benchBytes(), 512 * 1024 * 1024);
  const data = new Uint8Array(bytes);
  for (let o = 0; o < bytes; o += 64 * 1024 * 1024) randomFillSync(data, o, Math.min(64 * 1024 * 1024, bytes - o));
  const reads = function* () {
    for (let o = 0; o < bytes; o += READ_BYTES) yield data.subarray(o, o + READ_BYTES);
  };
  const blake3 = await loadBlake3();
  const rows: BenchRow[] = [];
  const measure = async (name: string, run: () => AsyncIterable<{ length: number }>, vs?: string) => {
    let best = Infinity;
    let mainBusy = 0;
    for (let i = 0; i < 3; i++) {
      const cpu = process.threadCpuUsage();
      const start = performance.now();
      let n = 0;
      for await (const c of run()) n += c.length;
      const ms = performance.now() - start;
      if (n !== bytes) throw new Error(`${name}: ${n} of ${bytes} bytes`);
      if (ms < best) {
        best = ms;
        const used = process.threadCpuUsage(cpu);
        mainBusy = (used.user + used.system) / 1e6;
      }
    }
    rows.push({ name, mbPerS: mbPerS(bytes, best), ...(vs ? { vs } : {}), note: `main thread CPU ${(mainBusy / (bytes / GiB)).toFixed(2)} s/GiB` });
  };
  const inline = 'chunk+blake3 on the main thread (chunkStream)';
  await measure(inline, () => chunkStream(reads(), { blake3 }));
  for (const [threads, segmentMiB] of [[1, 8], [2, 8], [2, 32]] as const) {
    const pool = await ChunkWorkerPool.create({ threads, params: DEFAULT_CHUNKER_PARAMS, segmentBytes: segmentMiB * 2 ** 20 });
    try {
      await measure(`worker pool, ${threads} thread${threads > 1 ? 's' : ''} (${segmentMiB} MiB segments)`, () => pool.chunk(reads()), inline);
    } finally {
      await pool.close();
    }
  }
  printRows(
    `chunk + BLAKE3 (${blake3.backend}) off the main thread, ${bytes / 2 ** 20} MiB random, best of 3; ${availableParallelism()} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    rows,
  );
}
