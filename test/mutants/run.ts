import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DriverResult } from './driver.ts';
import type { Mutant } from './mutants.ts';
import { MUTANTS, plant } from './mutants.ts';
import { DEFAULT_TOTAL_RUNS } from '../support/raft-sim-schedules.ts';

/**
 * npm run mutants [-- --runs N] [--seed S] [--only TEXT] [--jobs J]
 *
 * Plants each mutant of mutants.ts in turn in a temporary copy, runs the simulator's suites
 * there (CI's default number of schedules unless --runs) and prints a table: caught or not,
 * schedules to the first failure, and the seed to replay it. First a control run of the copy
 * without any mutant must pass, or the table would prove nothing. Exits non-zero if the control
 * fails, a mutant cannot be planted, or any mutant survives.
 */

export interface MutantOutcome {
  readonly name: string;
  readonly result: DriverResult;
  readonly seconds: number;
}

/** Schedules of the control run: enough to notice a broken copy or driver, cheap next to the mutants. */
const CONTROL_RUNS = 300;
/** A mutant that makes the simulator hang is caught, as a test timeout would catch it. */
const TIMEOUT_MS = 15 * 60_000;

interface Options {
  runs: number;
  seed: number;
  only: string | null;
  jobs: number;
}

function parseArgs(argv: readonly string[]): Options {
  const options: Options = { runs: DEFAULT_TOTAL_RUNS, seed: (Math.random() * 2 ** 31) | 0, only: null, jobs: Math.min(2, availableParallelism()) };
  for (let k = 0; k < argv.length; k += 2) {
    const [flag, value] = [argv[k], argv[k + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--only') options.only = value;
    else if (flag === '--runs' || flag === '--seed' || flag === '--jobs') {
      const n = Number(value);
      if (!Number.isSafeInteger(n)) throw new Error(`${flag} needs an integer, got ${value}`);
      options[flag.slice(2) as 'runs' | 'seed' | 'jobs'] = n;
    } else throw new Error(`unknown argument ${flag}`);
  }
  return options;
}

/** Plants `mutant` (null: none) in a fresh temporary copy and runs the driver there. */
export async function runMutant(mutant: Mutant | null, runs: number, seed: number): Promise<MutantOutcome> {
  const dir = mkdtempSync(join(tmpdir(), 'dfs-mutant-'));
  const started = performance.now();
  try {
    const driver = plant(mutant, dir);
    const result = await spawnDriver(driver, runs, seed);
    return { name: mutant?.name ?? 'control (no mutant)', result, seconds: (performance.now() - started) / 1000 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function spawnDriver(driver: string, runs: number, seed: number): Promise<DriverResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [driver, '--runs', String(runs), '--seed', String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') return resolvePromise({ caught: true, schedules: NaN, error: `timed out after ${TIMEOUT_MS / 1000} s` });
      const last = stdout.trim().split('\n').pop() ?? '';
      // No result line: the driver itself broke (e.g. a planted file does not load), which must
      // not pass for a caught mutant.
      if (code !== 0 || !last.startsWith('{')) return reject(new Error(`driver ${driver} exited with ${code}:\n${stderr}${stdout}`));
      resolvePromise(JSON.parse(last) as DriverResult);
    });
  });
}

/** Runs `work` over `items` with at most `jobs` at once, keeping the order of `items`. */
async function pool<T, R>(items: readonly T[], jobs: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let k = next++; k < items.length; k = next++) results[k] = await work(items[k]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker));
  return results;
}

export function formatTable(outcomes: readonly MutantOutcome[]): string {
  const rows = outcomes.map((o) => [
    o.name,
    o.result.caught ? 'yes' : 'NO',
    Number.isNaN(o.result.schedules) ? 'timeout' : String(o.result.schedules),
    o.result.seed === undefined ? '-' : `${o.result.seed}${o.result.path ? ` path=${o.result.path}` : ''}`,
    o.result.suite ?? '-',
    o.seconds.toFixed(1),
  ]);
  const header = ['mutant', 'caught', 'schedules to first failure', 'seed', 'suite', 's'];
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, k) => c.padEnd(widths[k]!)).join(' | ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const mutants = MUTANTS.filter((m) => options.only === null || m.name.includes(options.only));
  if (mutants.length === 0) throw new Error(`no mutant matches ${options.only}`);
  console.log(`[mutants] ${mutants.length} mutants, ${options.runs} schedules each, seed ${options.seed}, ${options.jobs} at a time`);
  const control = await runMutant(null, Math.min(CONTROL_RUNS, options.runs), options.seed);
  if (control.result.caught) {
    console.log(formatTable([control]));
    console.log(`[mutants] the control run without a mutant failed: ${control.result.error}`);
    return 2;
  }
  const outcomes = await pool(mutants, options.jobs, (m) => runMutant(m, options.runs, options.seed));
  console.log(formatTable(outcomes));
  for (const o of outcomes) if (o.result.error !== undefined) console.log(`[mutants] ${o.name}: ${o.result.error.split('\n')[0]}`);
  const survivors = outcomes.filter((o) => !o.result.caught);
  console.log(`[mutants] ${outcomes.length - survivors.length}/${outcomes.length} caught within ${options.runs} schedules (replay one: npm run mutants -- --only '<name>' --seed ${options.seed})`);
  return survivors.length === 0 ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error);
      process.exit(2);
    },
  );
}
