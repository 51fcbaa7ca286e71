import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { RaftDriver } from '../../src/master/raft-driver.ts';
import { RaftStore } from '../../src/master/raft-store.ts';
import type { Entry, HardState, Ready, Snapshot } from '../../src/raft/index.ts';
import {
  type DriverStarter,
  MASTER_PROFILES,
  type MasterSimOp,
  type MasterSimProfile,
  type MasterSimStats,
  masterScheduleArbitrary,
  runMasterSchedule,
} from '../support/master-sim.ts';
import { testSeed } from '../support/seed.ts';
import { type BatchOp, SimDisk, SimRaftStore } from '../support/sim-disk.ts';
import { SimClock, SimRandom } from '../support/sim-env.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * The real masters (RaftDriver + MetaMachine + LeaderTaskHost) of 3 and 5 node clusters under
 * random fault schedules: crashes (the leader often, and in the middle of a persist), failed
 * persists (EIO/ENOSPC), lost un-synced writes, partitions, one-way cuts, drops, duplicates,
 * reordering, leadership transfers and client bursts. See test/support/master-sim.ts.
 *
 * DFS_MASTER_SIM_RUNS: schedules in all (default below, sized for ~60 s on 2 cores).
 * DFS_SEED: replay the fast-check run; DFS_MASTER_SIM_REPLAY='{"profile","seed","ops"}' (printed
 * with every failure) runs one schedule exactly. DFS_MASTER_SIM_DRIVER: a module exporting a
 * RaftDriver class to run instead of the real one (mutation testing).
 */

const DEFAULT_RUNS = 1_000;
const SHARES: ReadonlyArray<{ profile: MasterSimProfile; share: number }> = [
  { profile: MASTER_PROFILES.three, share: 5 },
  { profile: MASTER_PROFILES.five, share: 3 },
  // One master commits on its own fsync: what it applies before that must be durable.
  { profile: MASTER_PROFILES.one, share: 1 },
];

function totalRuns(): number {
  const env = process.env.DFS_MASTER_SIM_RUNS;
  if (env === undefined || env === '') return DEFAULT_RUNS;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`DFS_MASTER_SIM_RUNS must be a positive integer, got ${env}`);
  return n;
}

async function driverStarter(): Promise<DriverStarter | undefined> {
  const path = process.env.DFS_MASTER_SIM_DRIVER;
  if (!path) return undefined;
  const mod = (await import(path)) as { RaftDriver: typeof RaftDriver };
  console.log(`[sim] master: running the driver from ${path}`);
  return (o) => mod.RaftDriver.start(o);
}

const startDriver = await driverStarter();

/**
 * What the property runs use. Two known bugs (reproduced by the skipped tests below) are kept
 * out of the way so that the properties check everything else: the simulated store leaves a
 * failed snapshot batch's file alone instead of unlinking it, and a destructive step taken after
 * the master learned of a higher term is counted (printed in the stats line) instead of failing.
 */
const simOptions = { ...(startDriver ? { startDriver } : {}), unlinkFileOnFailedBatch: false, tolerateStaleTermSteps: false };

interface Totals {
  schedules: number;
  wallMs: number;
  stats: MasterSimStats[];
}
const totals: Totals = { schedules: 0, wallMs: 0, stats: [] };

function summary(t: Totals): string {
  const n = Math.max(1, t.stats.length);
  const sum = (f: (s: MasterSimStats) => number) => t.stats.reduce((a, s) => a + f(s), 0);
  const mean = (f: (s: MasterSimStats) => number) => (sum(f) / n).toFixed(1);
  return (
    `[sim] master: ${t.schedules} schedules, ${((t.schedules / t.wallMs) * 1000).toFixed(2)} schedules/s, ` +
    `mean steps ${mean((s) => s.ops)} (${mean((s) => s.events)} events), ` +
    `mean simulated seconds ${(sum((s) => s.simulatedMs) / n / 1000).toFixed(1)}, ` +
    `mean leader changes ${mean((s) => s.leaderChanges)}, crashes ${sum((s) => s.crashes)}, restarts ${sum((s) => s.restarts)}, ` +
    `persist failures ${sum((s) => s.persistFailures)} (+${sum((s) => s.hungWrites)} hung), ` +
    `snapshots ${sum((s) => s.snapshotsTaken)} taken / ${sum((s) => s.restores)} restored, destructive steps ${sum((s) => s.destructiveSteps)} ` +
    `(${sum((s) => s.staleTermSteps)} after a higher term was known), ` +
    `client ops ${sum((s) => s.clientOk)} ok / ${sum((s) => s.clientIndeterminate)} indeterminate, ` +
    `linearizable ${t.stats.filter((s) => s.linearizability === 'ok').length}/${t.stats.length}`
  );
}

afterAll(() => {
  if (totals.schedules > 0) console.log(summary(totals));
});

const replay = process.env.DFS_MASTER_SIM_REPLAY;

describe('master simulation: real RaftDriver, MetaMachine and LeaderTaskHost under faults', () => {
  if (replay) {
    it('replays one schedule', async () => {
      const { profile, seed, ops } = JSON.parse(replay) as { profile: keyof typeof MASTER_PROFILES; seed: number; ops: MasterSimOp[] };
      const started = performance.now();
      const sim = await runMasterSchedule(MASTER_PROFILES[profile], seed, ops, simOptions);
      totals.schedules++;
      totals.wallMs += performance.now() - started;
      totals.stats.push(sim.stats);
    });
    return;
  }

  const total = totalRuns();
  const shareSum = SHARES.reduce((a, s) => a + s.share, 0);
  for (const { profile, share } of SHARES) {
    it(`${profile.masters} master${profile.masters > 1 ? 's' : ''}`, async () => {
      const numRuns = Math.max(1, Math.round((total * share) / shareSum));
      const seed = testSeed(`master-sim ${profile.name}`);
      const started = performance.now();
      let ran = 0;
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 31 - 1 }), masterScheduleArbitrary(), async (simSeed, ops) => {
          const t0 = performance.now();
          const sim = await runMasterSchedule(profile, simSeed, ops, simOptions);
          ran++;
          totals.schedules++;
          totals.wallMs += performance.now() - t0;
          totals.stats.push(sim.stats);
        }),
        {
          seed,
          numRuns,
          // A failing schedule is reported as it is (its replay line is in the message);
          // DFS_MASTER_SIM_SHRINK=1 shrinks it first (slow: every try is a whole simulation).
          endOnFailure: process.env.DFS_MASTER_SIM_SHRINK !== '1',
          ...(process.env.DFS_MASTER_SIM_PATH ? { path: process.env.DFS_MASTER_SIM_PATH } : {}),
        },
      );
      expect(ran).toBe(numRuns);
      console.log(`[sim] master ${profile.name}: ${ran} schedules in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }, 600_000);
  }
});

describe('master simulation: determinism', () => {
  it('a (seed, schedule) pair replays exactly: same events, same outcome, same final state', async () => {
    const [simSeed, ops] = fc.sample(fc.tuple(fc.integer({ min: 0, max: 2 ** 31 - 1 }), masterScheduleArbitrary()), { numRuns: 1, seed: testSeed('master-sim determinism') })[0]!;
    const a = await runMasterSchedule(MASTER_PROFILES.three, simSeed, ops, simOptions);
    const b = await runMasterSchedule(MASTER_PROFILES.three, simSeed, ops, simOptions);
    expect(b.stats).toEqual(a.stats);
    expect(b.finalState).toEqual(a.finalState);
    expect(a.finalState.length).toBe(3);
  });
});

// ---- known bugs the simulator found (skipped until fixed; each names the bug) ----

describe('master simulation: bugs it found (each fails without its fix)', () => {
  /**
   * FOUND AND FIXED (src/master/leader-tasks.ts with src/master/raft-driver.ts): a leader-only task
   * acts after its master already learned of a higher term. The Ready that serves a ReadIndex
   * resolves readBarrier() in #serveReads; confirm()'s continuation checks role and term and
   * returns — but before the task's own continuation runs, the driver's #drain continuation runs
   * advance() and the inputs queued during that Ready's fsync, among them a vote request of term
   * T+1 from the transferee of a leadership transfer: the core moves to T+1 (driver.term is T+1,
   * driver.role still says leader until the next Ready) and only then does the task take its
   * destructive step for term T. Needs a Ready with a disk write that carries the read state and
   * a higher-term message arriving during that write: slow fsyncs, client load, transfers.
   * Fix: LeaderContext.leading(), checked synchronously right before each destructive step.
   */
  it('leader-tasks: no destructive step after the master learned of a higher term', async () => {
    const ops: MasterSimOp[] = [{ op: 'run', ms: 500 }];
    for (let k = 0; k < 3; k++) ops.push({ op: 'slowDisk', target: k, syncMaxMs: 80 });
    for (let i = 0; i < 60; i++) ops.push({ op: 'burst', count: 10 }, { op: 'run', ms: 30 }, { op: 'transfer', master: i % 3 }, { op: 'run', ms: 200 });
    // Seed 6: "destructive step on m2 (term 11) at 6631 ms: the master already knew of term 12".
    await runMasterSchedule(MASTER_PROFILES.three, 6, ops);
  });

  /**
   * FOUND AND FIXED (src/master/raft-store.ts, #persistReady and #saveSnapshot): when the batch that
   * points the snapshot metadata at a new file fails, the store unlinks the file. But a LevelDB
   * write whose fsync failed (EIO) already put its record in the log file, and the next open
   * replays it: the metadata names a file that is gone, load() throws ERR_IO ("cannot read the
   * snapshot file ... that the raft log points at") and the master never starts again. The
   * simulated disk keeps such a batch or not at a crash; with the production behaviour the
   * restart fails about half the time. Fix: leave the file (load() removes it if unreferenced).
   */
  it('raft-store: a master restarts after an EIO on a snapshot batch', async () => {
    const ops: MasterSimOp[] = [
      { op: 'run', ms: 500 },
      { op: 'failPersist', target: 'leader', fault: 'eio', which: 'snapshotBatch' },
      { op: 'burst', count: 10 },
      { op: 'run', ms: 500 },
      { op: 'burst', count: 10 },
      { op: 'run', ms: 500 },
      { op: 'burst', count: 10 },
      { op: 'run', ms: 500 },
      { op: 'restart', master: 0 },
      { op: 'run', ms: 500 },
    ];
    // Seeds 2, 6, 10, 11, ...: "m1#2 did not start: DfsError: cannot read the snapshot file ...".
    for (const seed of [2, 6, 10, 11]) await runMasterSchedule(MASTER_PROFILES.one, seed, ops);
  });
});

// ---- the simulated disk and store the simulation stands on ----

const put = (key: string, value: string): BatchOp => ({ type: 'put', key, value: new TextEncoder().encode(value) });
const text = (v: Uint8Array | undefined) => (v === undefined ? undefined : new TextDecoder().decode(v));

function diskOn(clock: SimClock, seed = 1): SimDisk {
  const disk = new SimDisk('d', new SimRandom(seed));
  disk.attach(clock.scope('p#1'));
  return disk;
}

describe('SimDisk: LevelDB write-ahead-log durability', () => {
  it('a synced write is durable once it resolves; an un-synced one is volatile until a later sync', async () => {
    const clock = new SimClock();
    const disk = diskOn(clock);
    let done = false;
    void disk.write([put('a', '1')], true).then(() => (done = true));
    expect(disk.durable().has('a')).toBe(false);
    await clock.advance(10);
    expect(done).toBe(true);
    expect(text(disk.durable().get('a'))).toBe('1');
    await Promise.all([disk.write([put('b', '2')], false), clock.advance(10)]);
    expect(disk.durable().has('b')).toBe(false);
    expect(text(disk.view().get('b'))).toBe('2'); // the process reads its own write
    await Promise.all([disk.write([put('c', '3')], true), clock.advance(10)]);
    expect([text(disk.durable().get('b')), text(disk.durable().get('c'))]).toEqual(['2', '3']); // the fsync covered b
  });

  it('a crash keeps a prefix of the volatile tail: all, nothing, or part, never a later batch without an earlier one', async () => {
    for (const fate of ['loseAll', 'keepAll', 'prefix'] as const) {
      for (let seed = 1; seed <= 20; seed++) {
        const clock = new SimClock();
        const disk = diskOn(clock, seed);
        for (let k = 0; k < 5; k++) void disk.write([put(`k${k}`, String(k)), put('last', String(k))], false);
        await clock.advance(10);
        const { kept } = disk.crash(fate);
        const image = disk.durable();
        if (fate === 'loseAll') expect(kept).toBe(0);
        if (fate === 'keepAll') expect(kept).toBe(5);
        for (let k = 0; k < 5; k++) expect(image.has(`k${k}`)).toBe(k < kept);
        expect(text(image.get('last'))).toBe(kept === 0 ? undefined : String(kept - 1));
      }
    }
  });

  it('faults: eio fails and may have written, enospc fails and wrote nothing, hang never completes', async () => {
    const clock = new SimClock();
    const disk = diskOn(clock);
    disk.arm('enospc');
    const a = disk.write([put('a', '1')], true);
    disk.arm('eio');
    const b = disk.write([put('b', '1')], true);
    disk.arm('hang');
    let settled = false;
    void disk.write([put('c', '1')], true).finally(() => (settled = true));
    await Promise.all([expect(a).rejects.toThrow(/ENOSPC/), expect(b).rejects.toThrow(/EIO/), clock.advance(1_000)]);
    expect(settled).toBe(false);
    expect(disk.volatileWrites).toBe(2); // b and c may or may not be on disk
    disk.crash('keepAll');
    expect([...disk.durable().keys()].sort()).toEqual(['b', 'c']);
  });

  it('a dead process gets no completions: its latency events die with its clock', async () => {
    const clock = new SimClock();
    const disk = diskOn(clock);
    let done = false;
    void disk.write([put('a', '1')], true).then(() => (done = true));
    disk.crash('loseAll');
    await clock.advance(100);
    expect(done).toBe(false);
    expect(disk.durable().size).toBe(0);
  });
});

describe('SimRaftStore matches the production RaftStore', () => {
  const tempDir = useTempDirs();

  it('the same Readies and compactions load back the same state from both', async () => {
    const seed = testSeed('sim-raft-store vs raft-store');
    const rng = new SimRandom(seed);
    const clock = new SimClock();
    const disk = diskOn(clock, seed);
    const dir = await tempDir();
    const sim = new SimRaftStore(disk);
    const real = await RaftStore.open(dir);
    // Simulated time runs until the simulated store is done (its writes start in later microtasks).
    const drive = async <T>(p: Promise<T>): Promise<T> => {
      let done = false;
      const settled = p.finally(() => (done = true));
      while (!done) await clock.advance(1);
      return settled;
    };
    const both = async (call: (store: SimRaftStore | RaftStore) => Promise<void>) => {
      await Promise.all([drive(call(sim)), call(real)]);
    };
    await both(async (store) => void (await store.load()));
    // A model of the log the calls describe: entries (snap, last], the hard state.
    let snap = 0;
    let last = 0;
    let term = 1;
    let hs: HardState = { term, vote: null, commit: 0 };
    const termAt = new Map<number, number>();
    const encoder = new TextEncoder();
    const kinds = { append: 0, commit: 0, vote: 0, compaction: 0, leaderSnapshot: 0 };
    for (let k = 0; k < 250; k++) {
      const roll = rng.int(0, 9);
      if (roll < 5) {
        kinds.append++;
        // Append, sometimes over a suffix that was not committed (a follower's conflict).
        const from = rng.int(Math.max(snap, hs.commit, last - 3) + 1, last + 1);
        if (rng.chance(0.2)) term++;
        const entries: Entry[] = Array.from({ length: rng.int(1, 4) }, (_, i) => ({
          index: from + i,
          term,
          type: rng.chance(0.1) ? 'config' : 'normal',
          data: encoder.encode(`d${from + i}.${term}.${rng.int(0, 99)}`),
        }));
        for (let i = from; i <= last; i++) termAt.delete(i);
        for (const e of entries) termAt.set(e.index, e.term);
        last = entries[entries.length - 1]!.index;
        hs = { ...hs, term };
        const rd = { snapshot: null, entries, hardState: rng.chance(0.5) ? hs : null };
        await both((store) => store.persistReady(rd));
      } else if (roll < 7 && hs.commit < last) {
        kinds.commit++;
        hs = { ...hs, commit: rng.int(hs.commit + 1, last) }; // commit only: written without sync
        await both((store) => store.persistReady({ snapshot: null, entries: [], hardState: hs }));
      } else if (roll < 8) {
        kinds.vote++;
        term++;
        hs = { term, vote: rng.chance(0.5) ? 'm2' : null, commit: hs.commit };
        await both((store) => store.persistReady({ snapshot: null, entries: [], hardState: hs }));
      } else if (roll < 9 && hs.commit > snap) {
        // A compaction of the application's snapshot.
        kinds.compaction++;
        const index = rng.int(snap + 1, hs.commit);
        const s: Snapshot = { metadata: { index, term: termAt.get(index) ?? term, config: { voters: ['m1', 'm2'], learners: [] } }, data: encoder.encode(`state@${index}`) };
        await both((store) => store.saveSnapshot(s));
        snap = index;
      } else {
        // A snapshot from the leader replaces the whole log.
        kinds.leaderSnapshot++;
        const index = last + rng.int(1, 5);
        const s: Snapshot = { metadata: { index, term, config: { voters: ['m1', 'm2'], learners: [] } }, data: encoder.encode(`leader-state@${index}`) };
        termAt.clear();
        snap = index;
        last = index;
        hs = { ...hs, commit: index };
        await both((store) => store.persistReady({ snapshot: s, entries: [], hardState: hs }));
      }
      expect(sim.persistedRange).toEqual(real.persistedRange);
    }
    await real.close();
    const fromReal = await (await RaftStore.open(dir)).load();
    const fromSim = await drive(new SimRaftStore(disk).load());
    // LevelDB hands back Buffers: compare the bytes.
    const plain = (state: typeof fromSim) =>
      state && { ...state, entries: state.entries.map((e) => ({ ...e, data: [...e.data] })), snapshot: state.snapshot && { ...state.snapshot, data: [...state.snapshot.data] } };
    expect(plain(fromSim)).toEqual(plain(fromReal));
    expect(fromSim).toBeDefined();
    for (const [kind, n] of Object.entries(kinds)) expect(n, kind).toBeGreaterThan(0);
  });
});
