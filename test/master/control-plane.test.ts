import { describe, expect, it } from 'vitest';
import { DataPlane } from '../../src/master/data-plane.ts';
import { FailureDetector } from '../../src/master/health.ts';
import type { LeaderContext } from '../../src/master/leader-tasks.ts';
import { RepairTask } from '../../src/master/repair.ts';
import type { NodeRecord, NodeState } from '../../src/meta/index.ts';
import { cid } from '../support/meta-fixtures.ts';

/** A replicated node table, a clock and a data plane, all in memory: no processes. */
function world(nodeIds: string[], options: { rf?: number } = {}) {
  let nowMs = 1_000_000;
  const records = new Map<string, NodeRecord>(
    nodeIds.map((id, k) => [id, { id, addrs: [`/ip4/127.0.0.1/tcp/${7000 + k}`], capacityBytes: 1e12, state: 'alive', registeredAtMs: 0, stateSinceMs: 0 }]),
  );
  const refs = new Map<string, number>();
  const plane = new DataPlane({
    now: () => nowMs,
    rng: () => 0.5,
    nodes: () => [...records.values()],
    node: (id) => records.get(id),
    replicationFactor: () => options.rf ?? 3,
    refCount: (id) => refs.get(id) ?? 0,
    term: 1,
  });
  const load = (free: number) => ({ freeBytes: free, capacityBytes: 1e12, usedBytes: 0, chunkCount: 0, inflight: 0 });
  const beat = (id: string, free = 1e11, added: string[] = []) => plane.heartbeat(id, load(free), added, []);
  const setState = (id: string, state: NodeState) => records.set(id, { ...records.get(id)!, state });
  const ctx: LeaderContext = { term: 1, signal: new AbortController().signal, confirm: async () => {}, sleep: async () => {}, leading: () => true };
  return {
    plane,
    records,
    refs,
    ctx,
    beat,
    setState,
    advance: (ms: number) => (nowMs += ms),
    now: () => nowMs,
    report: (id: string, ids: string[]) => {
      beat(id);
      plane.report(id, ids, true, true);
    },
  };
}

describe('failure detector (one health model, injected clock)', () => {
  function detector(w: ReturnType<typeof world>) {
    const committed: Array<[string, NodeState]> = [];
    const d = new FailureDetector({
      plane: () => w.plane,
      nodes: () => [...w.records.values()],
      commit: async (id, state) => {
        committed.push([id, state]);
        w.setState(id, state);
      },
      now: w.now,
      suspectAfterMs: 3_000,
      deadAfterMs: 10_000,
      reviveAfterMs: 1_000,
    });
    return { d, committed };
  }

  it('alive → suspect after 3 s of silence → dead after 10 s; heard again: suspect is alive at once', async () => {
    const w = world(['a', 'b']);
    const { d, committed } = detector(w);
    w.beat('a');
    w.beat('b');
    w.advance(2_900);
    w.beat('b');
    await d.check();
    expect(committed).toEqual([]);
    w.advance(200);
    w.beat('b');
    await d.check();
    expect(committed).toEqual([['a', 'suspect']]);
    w.beat('a');
    await d.check();
    expect(committed.at(-1)).toEqual(['a', 'alive']);
    w.advance(10_000);
    w.beat('b');
    await d.check();
    expect(w.records.get('a')!.state).toBe('dead');
    expect(w.records.get('b')!.state).toBe('alive');
  });

  it('a new leader measures silence from its own start, and gives nodes time to find it, so nobody is suspect at once', async () => {
    const w = world(['a', 'b']);
    const { d, committed } = detector(w);
    await d.check();
    expect(committed).toEqual([]);
    w.advance(3_000);
    w.beat('b');
    await d.check();
    expect(committed).toEqual([]); // still looking for the new leader
    w.advance(5_000);
    w.beat('b');
    await d.check();
    expect(committed).toEqual([['a', 'suspect']]);
  });

  it('damps a flapping node: each recent death doubles how long it must be heard before it is alive', async () => {
    const w = world(['a']);
    const { d } = detector(w);
    const dieAndReturn = async () => {
      w.advance(10_000);
      await d.check();
      expect(w.records.get('a')!.state).toBe('dead');
      let heardMs = 0;
      while (w.records.get('a')!.state === 'dead') {
        w.beat('a');
        await d.check();
        if (w.records.get('a')!.state === 'dead') {
          w.advance(250);
          heardMs += 250;
        }
      }
      return heardMs;
    };
    w.beat('a');
    expect(await dieAndReturn()).toBe(1_000);
    expect(await dieAndReturn()).toBe(2_000);
    expect(await dieAndReturn()).toBe(4_000);
  });

  it('asks a node that comes back from the dead for a full report', async () => {
    const w = world(['a']);
    const { d } = detector(w);
    w.report('a', [cid(1)]);
    expect(w.plane.nodes.reported('a')).toBe(true);
    w.advance(10_000);
    await d.check();
    w.beat('a');
    await d.check();
    w.advance(1_000);
    w.beat('a');
    await d.check();
    expect(w.records.get('a')!.state).toBe('alive');
    expect(w.plane.nodes.reported('a')).toBe(false);
  });
});

/** A repair task over the world's plane; deletes it sends are recorded in `deletes`. */
function repairOf(w: ReturnType<typeof world>, deletes: Array<[string, string[]]> = [], copiesPerNode?: number, overrides: Partial<ConstructorParameters<typeof RepairTask>[0]> = {}): RepairTask {
  return new RepairTask({
    plane: () => w.plane,
    nodes: () => [...w.records.values()],
    refCount: (id) => w.refs.get(id) ?? 0,
    referencedChunks: () => w.refs.keys(),
    replicationFactor: () => 3,
    deleteOnNode: async (node, ids) => {
      deletes.push([node.id, [...ids]]);
      return { kept: [] };
    },
    now: w.now,
    ...(copiesPerNode !== undefined ? { copiesPerNode } : {}),
    ...overrides,
  });
}

describe('repair planning (injected clock, no processes)', () => {
  /** The rests `task.run` asks for, until it has asked `count` of them. */
  async function restsOf(task: RepairTask, w: ReturnType<typeof world>, count: number): Promise<number[]> {
    const sleeps: number[] = [];
    const ctx: LeaderContext = {
      ...w.ctx,
      sleep: async (ms) => {
        sleeps.push(ms);
        if (sleeps.length === count) throw new Error('stop');
      },
    };
    await expect(task.run(ctx)).rejects.toThrow('stop');
    return sleeps;
  }

  it('rests nine times as long as its last survey took: a large namespace cannot keep the leader busy', async () => {
    const w = world(['a', 'b', 'c']);
    for (let i = 0; i < 100; i++) w.refs.set(cid(1000 + i), 1);
    for (const id of ['a', 'b', 'c']) w.report(id, [...w.refs.keys()]);
    // Every chunk the survey looks at costs 5 ms of the injected clock: 500 ms a survey.
    const task = repairOf(w, [], undefined, {
      *referencedChunks() {
        for (const id of w.refs.keys()) {
          w.advance(5);
          yield id;
        }
      },
    });
    // The first round rests the interval (no survey yet); later ones 9 x 500 ms.
    expect(await restsOf(task, w, 3)).toEqual([200, 4_500, 4_500]);
    expect(task.lastSurveyMs).toBe(500);
  });

  it('rests at most 5 s (1 s while copies are wanted), however long a survey seemed: a clock jump cannot stall repair', async () => {
    const w = world(['a', 'b', 'c', 'd']);
    const id = cid(7);
    w.refs.set(id, 1);
    w.report('a', [id]); // one copy of three: copies are wanted
    for (const n of ['b', 'c', 'd']) w.report(n, []);
    let jump = 3_600_000; // the first survey sees the clock leap an hour
    const task = repairOf(w, [], undefined, {
      reportWaitMs: 0,
      *referencedChunks() {
        w.advance(jump);
        jump = 0;
        yield* w.refs.keys();
      },
    });
    expect(await restsOf(task, w, 2)).toEqual([200, 1_000]);
    expect(task.lastSurveyMs).toBe(3_600_000);
  });

  it('copies the most endangered chunks first, from a live holder to a node without a copy', async () => {
    const w = world(['a', 'b', 'c', 'd', 'e']);
    const one = cid(1); // will have 1 live copy
    const two = cid(2); // will have 2
    for (const id of [one, two]) w.refs.set(id, 1);
    w.report('a', [one, two]);
    w.report('b', [two]);
    w.report('c', [one]);
    w.report('d', []);
    w.report('e', []);
    w.setState('c', 'dead');
    const repair = repairOf(w, [], 2);
    await repair.runOnce(w.ctx);
    expect(repair.health).toMatchObject({ total: 2, underReplicated: 2, missing: 0, ready: true });
    const fromA = w.plane.nodes.takeReplicate('a', 100);
    const fromB = w.plane.nodes.takeReplicate('b', 100);
    // a is the only source of `one` (2 copies needed) and a source of `two`: per-node budget 2.
    expect(fromA.map((c) => c.id)).toEqual([one, one]);
    expect(fromB.map((c) => c.id)).toEqual([two]);
    for (const c of fromA) expect(['b', 'd', 'e']).toContain(c.to); // a node without `one` (c is dead)
    expect(['d', 'e']).toContain(fromB[0]!.to); // a node without `two`, and not the dead c
    expect(new Set(fromA.map((c) => c.to)).size).toBe(2);
    expect(repair.health.repairing).toBe(3);
  });

  it('counts a copy only when the target reports it; a failed copy is tried again', async () => {
    const w = world(['a', 'b', 'c', 'd']);
    const x = cid(3);
    w.refs.set(x, 1);
    w.report('a', [x]);
    w.report('b', [x]);
    w.report('c', []);
    w.report('d', []);
    const repair = repairOf(w, [], 2);
    await repair.runOnce(w.ctx);
    const fromA = w.plane.nodes.takeReplicate('a', 10);
    const [copy] = [...fromA, ...w.plane.nodes.takeReplicate('b', 10)];
    expect(copy).toBeDefined();
    const source = fromA.length > 0 ? 'a' : 'b';
    // Only the copy's source may report on it.
    repair.noteResults(copy!.to, [{ id: x, to: copy!.to, ok: false, code: 'ERR_TIMEOUT' }]);
    expect(repair.health.repairing).toBe(1);
    repair.noteResults(source, [{ id: x, to: copy!.to, ok: false, code: 'ERR_TIMEOUT' }]);
    await repair.runOnce(w.ctx);
    const [again] = [...w.plane.nodes.takeReplicate('a', 10), ...w.plane.nodes.takeReplicate('b', 10)];
    expect(again).toBeDefined();
    w.beat(again!.to, 1e11, [x]); // the target vouches
    await repair.runOnce(w.ctx);
    expect(repair.health).toMatchObject({ underReplicated: 0, repairing: 0, repaired: 1 });
  });

  it('a new leader decides nothing until live nodes have reported (bounded wait)', async () => {
    const w = world(['a', 'b', 'c', 'd']);
    const x = cid(4);
    w.refs.set(x, 1);
    w.report('a', [x]);
    w.beat('b'); // b, c, d heard but have not reported yet
    w.beat('c');
    w.beat('d');
    const repair = repairOf(w, [], 2);
    await repair.runOnce(w.ctx);
    expect(repair.health.ready).toBe(false);
    expect(w.plane.nodes.takeReplicate('a', 10)).toEqual([]);
    w.advance(15_000);
    await repair.runOnce(w.ctx);
    expect(repair.health.ready).toBe(true);
    expect(w.plane.nodes.takeReplicate('a', 10).length).toBe(2);
  });

  /** Four nodes holding chunk `x`, one more than RF, and `b` draining: a trim is due. */
  function oneCopyTooMany(x: string): ReturnType<typeof world> {
    const w = world(['a', 'b', 'c', 'd']);
    w.refs.set(x, 1);
    for (const n of ['a', 'b', 'c', 'd']) w.report(n, [x]);
    w.setState('b', 'draining');
    return w;
  }

  it('trims extra copies, draining holders first, only while the kept copies are confirmed', async () => {
    const x = cid(5);
    const w = oneCopyTooMany(x);
    const deletes: Array<[string, string[]]> = [];
    await repairOf(w, deletes, 2).runOnce(w.ctx);
    expect(deletes).toEqual([['b', [x]]]);
    expect([...w.plane.locations.holders(x)].sort()).toEqual(['a', 'c', 'd']);
  });

  it('a trim that failed on a node: its copy no longer counts until the node reports again (it may be gone)', async () => {
    const x = cid(8);
    const w = oneCopyTooMany(x);
    const failing = repairOf(w, [], undefined, {
      deleteOnNode: async () => {
        throw new Error('connection reset after the request was sent');
      },
    });
    await failing.runOnce(w.ctx);
    expect([...w.plane.locations.holders(x)].sort()).toEqual(['a', 'c', 'd']);
    expect(w.plane.nodes.reported('b')).toBe(false);
  });

  it('never trims while a kept copy is unconfirmed (its node has not reported to this leader)', async () => {
    const w = world(['a', 'b', 'c', 'd']);
    const x = cid(6);
    w.refs.set(x, 1);
    for (const n of ['a', 'b', 'c', 'd']) w.report(n, [x]);
    w.plane.nodes.forgetReport('c');
    const deletes: Array<[string, string[]]> = [];
    await repairOf(w, deletes, 2).runOnce(w.ctx);
    expect(deletes).toEqual([]);
  });

  it('a drained node: its copies are made elsewhere before any is trimmed', async () => {
    const w = world(['a', 'b', 'c', 'd']);
    const x = cid(7);
    w.refs.set(x, 1);
    for (const n of ['a', 'b', 'c']) w.report(n, [x]);
    w.report('d', []);
    w.setState('a', 'draining');
    const deletes: Array<[string, string[]]> = [];
    const repair = repairOf(w, deletes, 2);
    await repair.runOnce(w.ctx);
    expect(deletes).toEqual([]); // 2 counted copies: nothing may go yet
    const copies = ['a', 'b', 'c'].flatMap((n) => w.plane.nodes.takeReplicate(n, 10));
    expect(copies.map((c) => c.to)).toEqual(['d']);
    w.beat('d', 1e11, [x]);
    await repair.runOnce(w.ctx);
    await repair.runOnce(w.ctx);
    expect(deletes).toEqual([['a', [x]]]);
  });
});

describe('rebalance (injected clock, no processes)', () => {
  it('moves copies from the fullest node to the emptiest: a copy there, then the fuller one trimmed', async () => {
    const w = world(['a', 'b', 'c', 'd']);
    const x = cid(9);
    w.refs.set(x, 1);
    const used = (id: string, usedBytes: number, added: string[] = []) =>
      w.plane.heartbeat(id, { freeBytes: 1e12 - usedBytes, capacityBytes: 1e12, usedBytes, chunkCount: 0, inflight: 0 }, added, []);
    for (const [n, u] of [['a', 9e11], ['b', 5e11], ['c', 5e11], ['d', 1e10]] as const) {
      used(n, u);
      w.plane.report(n, n === 'd' ? [] : [x], true, true);
    }
    const deletes: Array<[string, string[]]> = [];
    const repair = repairOf(w, deletes);
    await repair.runOnce(w.ctx);
    expect(w.plane.nodes.takeReplicate('a', 10)).toEqual([]); // balanced enough to do nothing unasked
    repair.requestRebalance(10);
    await repair.runOnce(w.ctx);
    const [copy] = w.plane.nodes.takeReplicate('a', 10);
    expect(copy).toMatchObject({ id: x, to: 'd' });
    used('d', 1e10, [x]); // d vouches for its copy
    await repair.runOnce(w.ctx);
    await repair.runOnce(w.ctx);
    expect(deletes).toEqual([['a', [x]]]);
  });
});
