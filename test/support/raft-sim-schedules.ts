import fc from 'fast-check';
import { expect, it } from 'vitest';
import type { SimOp, SimProfile } from './raft-sim.ts';
import { runSchedule } from './raft-sim.ts';

/** Cluster shapes the property tests run. */
export const PROFILES = {
  three: {
    name: 'three',
    voters: 3,
    spareServers: 2,
    electionTicks: 10,
    heartbeatTicks: 1,
    tickMs: 10,
    compactEvery: null,
    maxInflightMsgs: 4,
    maxSizePerMsgBytes: 64,
  },
  five: {
    name: 'five',
    voters: 5,
    spareServers: 2,
    electionTicks: 10,
    heartbeatTicks: 2,
    tickMs: 10,
    compactEvery: 40,
    maxInflightMsgs: 8,
    maxSizePerMsgBytes: 256,
  },
  /** Rare paths made common: elections every few ticks, snapshots every few entries, one-entry appends. */
  tiny: {
    name: 'tiny',
    voters: 3,
    spareServers: 3,
    electionTicks: 3,
    heartbeatTicks: 1,
    tickMs: 10,
    compactEvery: 3,
    maxInflightMsgs: 2,
    maxSizePerMsgBytes: 1,
  },
} as const satisfies Record<string, SimProfile>;

const server = fc.integer({ min: 0, max: 7 });

/** Weights of each kind of step; a profile of weights gives a kind of schedule. */
export interface OpWeights {
  readonly run: number;
  readonly propose: number;
  readonly crash: number;
  readonly partition: number;
  readonly network: number;
  readonly membership: number;
  readonly transfer: number;
  readonly read: number;
  readonly compact: number;
}

export const FAULT_HEAVY: OpWeights = { run: 8, propose: 6, crash: 4, partition: 4, network: 2, membership: 1, transfer: 1, read: 2, compact: 1 };
export const MEMBERSHIP_HEAVY: OpWeights = { run: 8, propose: 5, crash: 2, partition: 2, network: 1, membership: 5, transfer: 2, read: 1, compact: 2 };
export const CRASH_HEAVY: OpWeights = { run: 8, propose: 6, crash: 8, partition: 2, network: 1, membership: 1, transfer: 1, read: 1, compact: 3 };

export function opArbitrary(w: OpWeights): fc.Arbitrary<SimOp> {
  const crashPoint = fc.constantFrom('beforePersist', 'afterPersist', 'afterSend') as fc.Arbitrary<'beforePersist' | 'afterPersist' | 'afterSend'>;
  return fc.oneof(
    { weight: w.run, arbitrary: fc.record({ op: fc.constant('run'), ms: fc.integer({ min: 1, max: 400 }) }) },
    { weight: w.propose, arbitrary: fc.record({ op: fc.constant('propose'), count: fc.integer({ min: 1, max: 8 }) }) },
    { weight: Math.ceil(w.propose / 4), arbitrary: fc.record({ op: fc.constant('proposeTo'), server }) },
    { weight: w.crash, arbitrary: fc.record({ op: fc.constant('crash'), server }) },
    { weight: w.crash, arbitrary: fc.record({ op: fc.constant('restart'), server }) },
    { weight: w.crash, arbitrary: fc.record({ op: fc.constant('crashDuringReady'), server, point: crashPoint }) },
    { weight: w.partition, arbitrary: fc.record({ op: fc.constant('partition'), side: fc.uniqueArray(server, { minLength: 1, maxLength: 3 }) }) },
    { weight: w.partition, arbitrary: fc.constant({ op: 'isolateLeader' as const }) },
    { weight: w.partition, arbitrary: fc.record({ op: fc.constant('oneWay'), from: server, to: server }) },
    { weight: w.partition, arbitrary: fc.constant({ op: 'heal' as const }) },
    {
      weight: w.network,
      arbitrary: fc.record({
        op: fc.constant('network'),
        drop: fc.constantFrom(0, 0.05, 0.2, 0.4),
        duplicate: fc.constantFrom(0, 0.05, 0.2),
        maxDelayMs: fc.constantFrom(3, 20, 60, 150),
      }),
    },
    { weight: w.membership, arbitrary: fc.constant({ op: 'addLearner' as const }) },
    { weight: w.membership, arbitrary: fc.constant({ op: 'promoteLearner' as const }) },
    { weight: w.membership, arbitrary: fc.record({ op: fc.constant('removeServer'), server }) },
    { weight: w.transfer, arbitrary: fc.record({ op: fc.constant('transferLeadership'), server }) },
    { weight: w.read, arbitrary: fc.constant({ op: 'readIndex' as const }) },
    { weight: w.compact, arbitrary: fc.record({ op: fc.constant('compact'), server }) },
  ) as fc.Arbitrary<SimOp>;
}

export function scheduleArbitrary(w: OpWeights, maxLength = 80): fc.Arbitrary<SimOp[]> {
  return fc.array(opArbitrary(w), { minLength: 1, maxLength, size: 'max' });
}

/** Default number of schedules across all property tests when DFS_SIM_RUNS is not set. */
export const DEFAULT_TOTAL_RUNS = 10_000;

/**
 * How many schedules one property runs: its share (weight / totalWeight) of DFS_SIM_RUNS, or
 * of DEFAULT_TOTAL_RUNS, and at least one.
 */
export function runsFor(weight: number, totalWeight: number): number {
  const env = process.env.DFS_SIM_RUNS;
  const total = env === undefined ? DEFAULT_TOTAL_RUNS : Number(env);
  if (!Number.isSafeInteger(total) || total <= 0) throw new Error(`DFS_SIM_RUNS must be a positive integer, got ${env}`);
  return Math.max(1, Math.round((total * weight) / totalWeight));
}

/** The seed of a property run: DFS_SIM_SEED to replay, else a fresh one. Printed first. */
export function simSeed(name: string, runs: number): number {
  const env = process.env.DFS_SIM_SEED;
  const seed = env === undefined ? (Math.random() * 2 ** 31) | 0 : Number(env);
  if (!Number.isSafeInteger(seed)) throw new Error(`DFS_SIM_SEED must be an integer, got ${env}`);
  console.log(`[raft-sim] ${name}: seed=${seed} runs=${runs} (replay: DFS_SIM_SEED=${seed})`);
  return seed;
}

/** fast-check parameters: the seed, plus DFS_SIM_PATH to jump straight to a shrunk counterexample. */
export function checkParameters(seed: number, numRuns: number): fc.Parameters<unknown> {
  const path = process.env.DFS_SIM_PATH;
  return path === undefined ? { seed, numRuns } : { seed, numRuns, path };
}

export interface SimSuite {
  readonly name: string;
  readonly profile: SimProfile;
  readonly weights: OpWeights;
  /** Share of all schedules (across every property file). */
  readonly weight: number;
}

export const FAULT_SUITES: readonly SimSuite[] = [
  { name: '3 servers, network faults, partitions and crashes', profile: PROFILES.three, weights: FAULT_HEAVY, weight: 3 },
  { name: '5 servers, network faults, partitions and crashes', profile: PROFILES.five, weights: FAULT_HEAVY, weight: 2 },
  { name: 'tiny timeouts, compaction every 3 entries, crash-heavy', profile: PROFILES.tiny, weights: CRASH_HEAVY, weight: 2 },
];

export const MEMBERSHIP_SUITES: readonly SimSuite[] = [
  { name: '3 servers, membership changes and transfers', profile: PROFILES.three, weights: MEMBERSHIP_HEAVY, weight: 2 },
  { name: '5 servers, membership changes and transfers', profile: PROFILES.five, weights: MEMBERSHIP_HEAVY, weight: 1 },
  { name: 'tiny timeouts, compaction every 3 entries, membership', profile: PROFILES.tiny, weights: MEMBERSHIP_HEAVY, weight: 2 },
];

const TOTAL_WEIGHT = [...FAULT_SUITES, ...MEMBERSHIP_SUITES].reduce((sum, s) => sum + s.weight, 0);

/**
 * One vitest case per suite: random schedules through the simulator, which checks the safety
 * properties after every event and liveness after healing. A failure prints fast-check's seed,
 * path and shrunk schedule; replay with DFS_SIM_SEED (and DFS_SIM_PATH for the shrunk case).
 */
export function defineSimProperties(suites: readonly SimSuite[]): void {
  for (const suite of suites) {
    it(suite.name, () => {
      const numRuns = runsFor(suite.weight, TOTAL_WEIGHT);
      const seed = simSeed(suite.name, numRuns);
      let schedules = 0;
      let proposals = 0;
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), scheduleArbitrary(suite.weights), (simSeedValue, ops) => {
          const sim = runSchedule(suite.profile, simSeedValue, ops);
          schedules++;
          proposals += sim.counters.proposalsAccepted;
        }),
        checkParameters(seed, numRuns),
      );
      expect(schedules).toBe(numRuns);
      // The schedules must exercise the cluster, not just idle.
      expect(proposals).toBeGreaterThan(0);
    });
  }
}
