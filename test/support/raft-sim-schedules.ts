import fc from 'fast-check';
import { afterAll, expect, it } from 'vitest';
import type { CrashPoint, CrashTrigger, SimOp, SimProfile, Simulator } from './raft-sim.ts';
import { CRASH_POINTS, CRASH_TRIGGERS, runSchedule } from './raft-sim.ts';

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
    // Three 4-byte commands per append: catching up takes several appends, with resends and
    // reordering in between, as when a real cluster's follower lags by more than one message.
    maxSizePerMsgBytes: 12,
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
  /** Crashes and restarts of arbitrary servers, at any point of their Ready loop. */
  readonly crash: number;
  /** Crashing or isolating the leader: each forces an election, where most bugs hide. */
  readonly leaderFault: number;
  readonly partition: number;
  readonly network: number;
  readonly membership: number;
  readonly transfer: number;
  readonly read: number;
  readonly compact: number;
}

// Runs and leader faults dominate: a schedule alternates "hit the leader" with "let the cluster
// elect another", which is what gives several leader changes per schedule.
export const FAULT_HEAVY: OpWeights = { run: 18, propose: 6, crash: 3, leaderFault: 8, partition: 3, network: 2, membership: 1, transfer: 1, read: 2, compact: 1 };
export const MEMBERSHIP_HEAVY: OpWeights = { run: 18, propose: 5, crash: 2, leaderFault: 5, partition: 2, network: 1, membership: 5, transfer: 2, read: 1, compact: 2 };
export const CRASH_HEAVY: OpWeights = { run: 18, propose: 6, crash: 6, leaderFault: 8, partition: 1, network: 1, membership: 1, transfer: 1, read: 1, compact: 3 };

const crashPoint = fc.constantFrom(...CRASH_POINTS) as fc.Arbitrary<CrashPoint>;
const crashTrigger = fc.constantFrom(...CRASH_TRIGGERS) as fc.Arbitrary<CrashTrigger>;

/**
 * How long to let the cluster run: mostly short (messages in flight when the next fault hits),
 * often long enough for an election (a few election timeouts), sometimes long enough to settle.
 */
const runMs = fc.oneof(
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 60 }) },
  { weight: 5, arbitrary: fc.integer({ min: 60, max: 600 }) },
  { weight: 1, arbitrary: fc.integer({ min: 600, max: 2000 }) },
);

export function opArbitrary(w: OpWeights): fc.Arbitrary<SimOp> {
  return fc.oneof(
    { weight: w.run, arbitrary: fc.record({ op: fc.constant('run'), ms: runMs }) },
    { weight: w.propose, arbitrary: fc.record({ op: fc.constant('propose'), count: fc.integer({ min: 1, max: 8 }) }) },
    { weight: Math.ceil(w.propose / 4), arbitrary: fc.record({ op: fc.constant('proposeTo'), server }) },
    { weight: Math.ceil(w.propose / 4), arbitrary: fc.record({ op: fc.constant('proposeStale'), count: fc.integer({ min: 1, max: 4 }) }) },
    { weight: w.crash, arbitrary: fc.record({ op: fc.constant('crash'), server }) },
    { weight: w.crash, arbitrary: fc.record({ op: fc.constant('crashDuringReady'), server, point: crashPoint }) },
    { weight: w.crash, arbitrary: fc.record({ op: fc.constant('crashWhenSending'), server, message: crashTrigger, point: crashPoint }) },
    { weight: w.crash, arbitrary: fc.record({ op: fc.constant('restart'), server }) },
    // Restarts keep pace with the crashes, so that the cluster keeps electing leaders.
    { weight: w.crash + w.leaderFault, arbitrary: fc.record({ op: fc.constant('restartCrashed'), k: server }) },
    { weight: w.leaderFault, arbitrary: fc.constant({ op: 'crashLeader' as const }) },
    { weight: w.leaderFault, arbitrary: fc.record({ op: fc.constant('crashLeaderDuringReady'), point: crashPoint }) },
    { weight: w.leaderFault, arbitrary: fc.constant({ op: 'isolateLeader' as const }) },
    { weight: w.partition, arbitrary: fc.record({ op: fc.constant('partition'), side: fc.uniqueArray(server, { minLength: 1, maxLength: 3 }) }) },
    { weight: w.partition, arbitrary: fc.record({ op: fc.constant('oneWay'), from: server, to: server }) },
    { weight: w.partition + w.leaderFault, arbitrary: fc.constant({ op: 'heal' as const }) },
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

/** 50 to 250 steps, about 10 s of simulated time: room for a chain of elections between faults. */
export function scheduleArbitrary(w: OpWeights, minLength = 50, maxLength = 250): fc.Arbitrary<SimOp[]> {
  return fc.array(opArbitrary(w), { minLength, maxLength, size: 'max' });
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

/** Every suite CI runs, across the property test files. */
export const ALL_SUITES: readonly SimSuite[] = [...FAULT_SUITES, ...MEMBERSHIP_SUITES];

const TOTAL_WEIGHT = ALL_SUITES.reduce((sum, s) => sum + s.weight, 0);

/**
 * How deep a batch of schedules went. A review found schedules too shallow to reach the
 * interleavings that classic bugs need, so every property run prints these.
 */
export class SimStats {
  schedules = 0;
  steps = 0;
  simulatedMs = 0;
  leaderChanges = 0;
  elections = 0;
  crashes = 0;
  restarts = 0;
  tornWrites = 0;
  proposals = 0;
  wallMs = 0;

  add(steps: number, sim: Simulator): void {
    this.schedules++;
    this.steps += steps;
    this.simulatedMs += sim.time();
    this.leaderChanges += sim.counters.leaderChanges;
    this.elections += sim.checker.electionsWon();
    this.crashes += sim.counters.crashes;
    this.restarts += sim.counters.restarts;
    this.tornWrites += sim.counters.tornWrites;
    this.proposals += sim.counters.proposalsAccepted;
  }

  merge(other: SimStats): void {
    for (const key of Object.keys(this) as (keyof SimStats)[]) {
      if (typeof this[key] === 'number') (this[key] as number) += other[key] as number;
    }
  }

  line(label: string): string {
    const n = Math.max(1, this.schedules);
    const per = (x: number, digits = 1): string => (x / n).toFixed(digits);
    const rate = this.wallMs > 0 ? ((this.schedules * 1000) / this.wallMs).toFixed(0) : '?';
    return (
      `[sim] ${label}: ${this.schedules} schedules, ${rate} schedules/s; per schedule: ${per(this.steps)} steps, ` +
      `${per(this.simulatedMs / 1000, 2)} s simulated, ${per(this.leaderChanges, 2)} leader changes ` +
      `(${per(this.elections, 2)} elections), ${per(this.crashes)} crashes, ${per(this.restarts)} restarts, ${per(this.tornWrites)} torn writes`
    );
  }
}

/**
 * The same figures for the simulator before it was deepened, printed next to the current ones
 * for comparison: all suites, 2,000 schedules in one plain node process on the 2-core CI
 * machine, lightly loaded. Back to back under the same load, the old simulator ran 6 to 10
 * times as many schedules per second as this one, for 8 times less simulated time each.
 */
export const SHALLOW_BASELINE =
  '[sim] baseline, simulator before deepening: 1405 schedules/s; per schedule: 37.6 steps, 1.23 s simulated, ' +
  '1.53 leader changes, 2.8 crashes, 2.8 restarts, no torn writes';

/** A suite's time limit grows with DFS_SIM_RUNS: a loaded 2-core machine runs ~100 schedules/s. */
function timeoutFor(numRuns: number): number {
  return Math.max(60_000, numRuns * 30);
}

/**
 * One vitest case per suite: random schedules through the simulator, which checks the safety
 * properties after every event and liveness after healing. A failure prints fast-check's seed,
 * path and shrunk schedule; replay with DFS_SIM_SEED (and DFS_SIM_PATH for the shrunk case).
 */
export function defineSimProperties(suites: readonly SimSuite[]): void {
  const total = new SimStats();
  for (const suite of suites) {
    const numRuns = runsFor(suite.weight, TOTAL_WEIGHT);
    it(suite.name, () => {
      const seed = simSeed(suite.name, numRuns);
      const stats = new SimStats();
      const started = performance.now();
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), scheduleArbitrary(suite.weights), (simSeedValue, ops) => {
          stats.add(ops.length, runSchedule(suite.profile, simSeedValue, ops));
        }),
        checkParameters(seed, numRuns),
      );
      stats.wallMs = performance.now() - started;
      total.merge(stats);
      console.log(stats.line(suite.name));
      expect(stats.schedules).toBe(numRuns);
      // The schedules must exercise the cluster, not just idle.
      expect(stats.proposals).toBeGreaterThan(0);
    }, timeoutFor(numRuns));
  }
  afterAll(() => {
    if (total.schedules > 0) console.log(`${total.line('all suites of this file')}\n${SHALLOW_BASELINE}`);
  });
}
