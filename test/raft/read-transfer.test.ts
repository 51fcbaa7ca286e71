import { describe, expect, it } from 'vitest';
import type { ReadState } from '../../src/raft/index.ts';
import { Cluster, bytes, drainReady, nodeWith, tickUntilCampaign } from './helpers.ts';

describe('ReadIndex (thesis 6.4)', () => {
  it('confirms leadership with a heartbeat quorum, then releases the read at the commit index', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    leader.propose(bytes('w1'));
    cluster.settle();
    const commit = leader.status().commit;
    expect(leader.readIndex('read-1')).toEqual({ ok: true });
    const rd = drainReady(leader);
    expect(rd.readStates).toEqual([]); // not before the quorum answers
    const beats = rd.messages.filter((m) => m.type === 'heartbeat');
    expect(beats.map((m) => (m as { context: string | null }).context)).toEqual(['read-1', 'read-1']);
    // One follower's ack plus the leader itself is a quorum of three.
    leader.step({ type: 'heartbeatResp', from: 'b', to: 'a', term: leader.status().term, context: 'read-1' });
    expect(drainReady(leader).readStates).toEqual([{ index: commit, context: 'read-1' }]);
  });

  it('a deposed leader cannot confirm a read: no quorum answers it', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    cluster.filter = (m) => m.from !== 'a' && m.to !== 'a';
    expect(leader.readIndex('stale')).toEqual({ ok: true });
    const served: ReadState[] = [];
    for (let k = 0; k < 30; k++) {
      leader.tick();
      if (leader.hasReady()) served.push(...drainReady(leader).readStates);
    }
    expect(served).toEqual([]);
    expect(leader.status().role).toBe('follower');
  });

  it('a new leader refuses reads until an entry of its term is committed', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 }, { preVote: false });
    tickUntilCampaign(node);
    node.step({ type: 'voteResp', from: 'b', to: 'a', term: 2, reject: false });
    expect(node.readIndex('r')).toEqual({ ok: false, reason: 'no_commit_in_term' });
  });

  it('followers answer not_leader with the hint; duplicate contexts are refused', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    expect(cluster.node('c').readIndex('r')).toEqual({ ok: false, reason: 'not_leader', leaderHint: 'a' });
    expect(leader.readIndex('r')).toEqual({ ok: true });
    expect(leader.readIndex('r')).toEqual({ ok: false, reason: 'duplicate_read_context' });
  });
});

describe('leadership transfer (thesis 3.10)', () => {
  it('brings the target up to date, sends TimeoutNow, and the target wins at once', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const term = leader.status().term;
    cluster.filter = (m) => m.to !== 'c'; // c lags behind
    leader.propose(bytes('x'));
    cluster.settle();
    cluster.filter = () => true;
    expect(leader.transferLeadership('c')).toEqual({ ok: true });
    expect(leader.propose(bytes('y'))).toEqual({ ok: false, reason: 'transfer_in_progress' });
    cluster.settle();
    expect(cluster.node('c').status()).toMatchObject({ role: 'leader', term: term + 1 });
    expect(leader.status()).toMatchObject({ role: 'follower', leaderId: 'c' });
    expect(cluster.node('c').logEntry(leader.status().lastIndex - 1)?.data).toEqual(bytes('x'));
  });

  it('is aborted after an election timeout if the target does not take over', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    cluster.filter = (m) => m.to !== 'c' && m.from !== 'c';
    expect(leader.transferLeadership('c')).toEqual({ ok: true });
    for (let k = 0; k < 10; k++) {
      leader.tick();
      cluster.settle();
    }
    expect(leader.status()).toMatchObject({ role: 'leader', transferee: null });
    expect(leader.stats.transfersAborted).toBe(1);
    expect(leader.propose(bytes('ok again')).ok).toBe(true);
  });

  it('refuses transfers to non-voters and to itself', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    expect(leader.transferLeadership('a')).toEqual({ ok: false, reason: 'already_leader' });
    expect(leader.transferLeadership('zz')).toEqual({ ok: false, reason: 'not_a_voter' });
    expect(cluster.node('b').transferLeadership('c')).toEqual({ ok: false, reason: 'not_leader', leaderHint: 'a' });
  });
});
