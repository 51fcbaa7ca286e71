/**
 * The seed of a randomised test: DFS_SEED when set (to replay a failure), else fresh. It is
 * printed first so that any failing run can be replayed exactly.
 */
export function testSeed(name: string): number {
  const fromEnv = process.env.DFS_SEED;
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  console.log(`[seed] ${name}: ${seed} (replay with DFS_SEED=${seed})`);
  return seed;
}

/** How many runs a property test makes: DFS_PROP_RUNS overrides the default. */
export function propertyRuns(defaultRuns: number): number {
  const fromEnv = Number(process.env.DFS_PROP_RUNS);
  return Number.isSafeInteger(fromEnv) && fromEnv > 0 ? fromEnv : defaultRuns;
}
