import { describe, expect, it } from 'vitest';
import type { Entry, HardState, Snapshot } from '../../src/raft/index.ts';
import { RaftNode } from '../../src/raft/index.ts';
import { Cluster, bytes, drainReady, options } from './helpers.ts';

describe('snapshots and log compaction', () => {
  it('compact() drops the log up to the index and records the configuration there', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    for (let k = 0; k < 5; k++) leader.propose(bytes(`e${k}`));
    cluster.settle();
    const applied = leader.status().applied;
    const result = leader.compact(applied, bytes('state'));
    expect(result).toMatchObject({ ok: true, snapshot: { metadata: { index: applied, config: { voters: ['a', 'b', 'c'], learners: [] } } } });
    expect(leader.status().snapshotIndex).toBe(applied);
    expect(leader.logEntry(applied)).toBeNull();
    expect(leader.compact(applied, bytes('again'))).toMatchObject({ ok: false, reason: 'invalid_argument' });
    expect(leader.compact(applied + 100, bytes('future'))).toMatchObject({ ok: false, reason: 'invalid_argument' });
  });

  it('a follower too far behind receives InstallSnapshot, restores, and then replicates normally', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    cluster.filter = (m) => m.to !== 'c' && m.from !== 'c';
    for (let k = 0; k < 10; k++) leader.propose(bytes(`e${k}`));
    cluster.settle();
    leader.compact(leader.status().applied, bytes('state-at-compaction'));
    cluster.filter = () => true;
    const c = cluster.node('c');
    const restored: Snapshot[] = [];
    for (let k = 0; k < 5 && restored.length === 0; k++) {
      leader.tick();
      // Deliver by hand to watch c's Ready.
      for (let round = 0; round < 20; round++) {
        for (const node of cluster.nodes.values()) {
          if (!node.hasReady()) continue;
          const rd = node.ready();
          if (node === c && rd.snapshot !== null) restored.push(rd.snapshot);
          node.advance();
          for (const m of rd.messages) cluster.nodes.get(m.to)?.step(m);
        }
      }
    }
    expect(restored).toHaveLength(1);
    expect(restored[0]!.data).toEqual(bytes('state-at-compaction'));
    expect(leader.stats.snapshotsSent).toBeGreaterThanOrEqual(1);
    leader.propose(bytes('after'));
    cluster.settle();
    expect(cluster.appliedData('c')).toEqual(['after']);
    expect(leader.progressOf('c')).toMatchObject({ state: 'replicate', match: leader.status().lastIndex });
  });

  it('restarts from a persisted snapshot plus the entries after it', () => {
    const snapshot: Snapshot = { metadata: { index: 10, term: 2, config: { voters: ['a', 'b'], learners: [] } }, data: bytes('s') };
    const entries: Entry[] = [11, 12].map((index) => ({ index, term: 3, type: 'normal', data: bytes(`e${index}`) }));
    const hardState: HardState = { term: 3, vote: 'a', commit: 12 };
    const node = RaftNode.restart(options('a'), { hardState, snapshot, entries });
    expect(node.status()).toMatchObject({ term: 3, vote: 'a', commit: 12, applied: 10, snapshotIndex: 10, lastIndex: 12 });
    const rd = drainReady(node);
    expect(rd.snapshot).toBeNull(); // already persisted
    expect(rd.committedEntries.map((e) => e.index)).toEqual([11, 12]);
  });

  it('refuses to restart from a persisted state that cannot be (fail loudly on corruption)', () => {
    const snapshot: Snapshot = { metadata: { index: 10, term: 2, config: { voters: ['a'], learners: [] } }, data: bytes('s') };
    const gap: Entry[] = [{ index: 12, term: 2, type: 'normal', data: bytes('x') }];
    expect(() => RaftNode.restart(options('a'), { hardState: { term: 2, vote: null, commit: 10 }, snapshot, entries: gap })).toThrow(/contiguous/);
    expect(() => RaftNode.restart(options('a'), { hardState: { term: 2, vote: null, commit: 30 }, snapshot, entries: [] })).toThrow(/commit/);
  });
});
