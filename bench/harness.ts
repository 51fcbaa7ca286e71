import { once } from 'node:events';
import { createWriteStream, writeFileSync, mkdirSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { formatTable } from '../src/cli/format.ts';

/** One measured figure. `vs` names the yardstick row measured in the same run. */
export interface BenchRow {
  readonly name: string;
  readonly mbPerS: number;
  readonly vs?: string;
  readonly target?: string;
  readonly note?: string;
  /** User + system CPU seconds per GiB moved, summed over every process involved. */
  readonly cpuSPerGiB?: number;
  /** The client process's peak resident memory, bytes. */
  readonly peakRssBytes?: number;
}

export function mbPerS(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

/** Runs `fn` `runs` times and returns the fastest time in ms (the least disturbed run). */
export async function bestOf(runs: number, fn: () => unknown): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    best = Math.min(best, performance.now() - start);
  }
  return best;
}

export function printRows(title: string, rows: readonly BenchRow[]): void {
  const byName = new Map(rows.map((r) => [r.name, r]));
  const table = rows.map((r) => {
    const base = r.vs ? byName.get(r.vs) : undefined;
    return [
      r.name,
      r.mbPerS.toFixed(0),
      base ? `${(r.mbPerS / base.mbPerS).toFixed(2)}x ${base.name}` : '',
      r.target ?? '',
      r.note ?? '',
    ];
  });
  console.log(`\n## ${title}\n`);
  process.stdout.write(formatTable(['benchmark', 'MB/s', 'vs (same run)', 'target', 'note'], table, new Set([1])));
  recordResults(title, rows);
}

const results: Record<string, readonly BenchRow[]> = {};

/** Adds (or replaces) one table's rows in bench/out/results.json, which holds every table of the run. */
export function recordResults(title: string, rows: readonly BenchRow[]): void {
  results[title] = rows;
  mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./out/results.json', import.meta.url), JSON.stringify(results, null, 2));
}

/** Total bytes a data benchmark uses: 1 GiB, or DFS_BENCH_MIB for a quick run. */
export function benchBytes(): number {
  const mib = Number(process.env.DFS_BENCH_MIB);
  return (Number.isSafeInteger(mib) && mib > 0 ? mib : 1024) * 1024 * 1024;
}

/** Runs `work(i)` for i in [0, n) with at most `concurrency` under way. */
export async function pool(n: number, concurrency: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await work(next++);
    }),
  );
}

export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** Writes `bytes` of random data to `path`, 4 MiB at a time. */
export async function randomFile(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path);
  const block = new Uint8Array(4 * 1024 * 1024);
  for (let written = 0; written < bytes; written += block.length) {
    randomFillSync(block);
    if (!out.write(block.subarray(0, Math.min(block.length, bytes - written)))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
}
