import fc from 'fast-check';
import { fileURLToPath } from 'node:url';
import { ALL_SUITES, DEFAULT_TOTAL_RUNS, scheduleArbitrary } from '../support/raft-sim-schedules.ts';
import { runSchedule } from '../support/raft-sim.ts';

/**
 * Runs the simulator's property suites in the copy it sits in (see mutants.ts) and prints one
 * JSON line: whether a schedule failed, after how many schedules, and how to replay it.
 *
 *   node driver.ts [--runs N] [--seed S]
 *
 * The suites take turns in chunks, each with its CI share of N, so that "schedules to the
 * first failure" means the same as in CI, where all suites run. No shrinking: only the first
 * failure counts.
 */

export interface DriverResult {
  readonly caught: boolean;
  /** Schedules run, the failing one included. */
  readonly schedules: number;
  readonly suite?: string;
  /** fast-check seed and path of the failing chunk: replay with DFS_SIM_SEED / DFS_SIM_PATH. */
  readonly seed?: number;
  readonly path?: string;
  readonly error?: string;
}

const CHUNK = 25;

function parseArgs(argv: readonly string[]): { runs: number; seed: number } {
  let runs = DEFAULT_TOTAL_RUNS;
  let seed = 1;
  for (let k = 0; k < argv.length; k += 2) {
    const value = Number(argv[k + 1]);
    if (!Number.isSafeInteger(value)) throw new Error(`${argv[k]} needs an integer, got ${argv[k + 1]}`);
    if (argv[k] === '--runs') runs = value;
    else if (argv[k] === '--seed') seed = value;
    else throw new Error(`unknown argument ${argv[k]}`);
  }
  return { runs, seed };
}

/** The seed of one chunk: distinct per suite and chunk, all derived from the run's seed. */
function chunkSeed(seed: number, suite: number, chunk: number): number {
  return (seed + 1_000_003 * suite + 7_919 * chunk) | 0;
}

export function drive(runs: number, seed: number): DriverResult {
  const weight = ALL_SUITES.reduce((sum, s) => sum + s.weight, 0);
  const left = ALL_SUITES.map((s) => Math.max(1, Math.round((runs * s.weight) / weight)));
  const properties = ALL_SUITES.map((s) =>
    fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), scheduleArbitrary(s.weights), (simSeed, ops) => {
      runSchedule(s.profile, simSeed, ops);
    }),
  );
  let schedules = 0;
  for (let chunk = 0; left.some((n) => n > 0); chunk++) {
    for (let k = 0; k < ALL_SUITES.length; k++) {
      const numRuns = Math.min(CHUNK, left[k]!);
      if (numRuns === 0) continue;
      left[k]! -= numRuns;
      const s = chunkSeed(seed, k, chunk);
      const details = fc.check(properties[k]!, { seed: s, numRuns, endOnFailure: true });
      if (!details.failed) {
        schedules += numRuns;
        continue;
      }
      const error = details.errorInstance instanceof Error ? `${details.errorInstance.name}: ${details.errorInstance.message}` : String(details.errorInstance);
      return { caught: true, schedules: schedules + details.numRuns, suite: ALL_SUITES[k]!.name, seed: s, path: details.counterexamplePath ?? '', error };
    }
  }
  return { caught: false, schedules };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { runs, seed } = parseArgs(process.argv.slice(2));
  console.log(JSON.stringify(drive(runs, seed)));
}
