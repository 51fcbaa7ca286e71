import { writeFileSync, mkdirSync } from 'node:fs';
import { formatTable } from '../src/cli/format.ts';

/** One measured figure. `vs` names the yardstick row measured in the same run. */
export interface BenchRow {
  readonly name: string;
  readonly mbPerS: number;
  readonly vs?: string;
  readonly target?: string;
  readonly note?: string;
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

function recordResults(title: string, rows: readonly BenchRow[]): void {
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
