import { describe, expect, it } from 'vitest';
import { Cluster, drainReady, nodeWith, outgoing, terms, tickUntilCampaign, ticks } from './helpers.ts';
import { RaftNode, seededRng } from '../../src/raft/index.ts';

describe('PreVote', () => {
  it('a pre-candidate asks for term+1 without changing its own term or vote', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 4, entries: terms(1, 4) });
    tickUntilCampaign(node);
    expect(node.status()).toMatchObject({ role: 'preCandidate', term: 4, vote: null });
    const rd = drainReady(node);
    expect(rd.hardState).toBeNull();
    expect(rd.messages.map((m) => [m.type, m.term])).toEqual([
      ['preVote', 5],
      ['preVote', 5],
    ]);
  });

  it('a partitioned node does not inflate its term, so rejoining does not depose the leader', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const term = leader.status().term;
    cluster.filter = (m) => m.to !== 'c' && m.from !== 'c';
    cluster.tickAll(200);
    expect(cluster.node('c').status().term).toBe(term);
    cluster.filter = () => true;
    cluster.tickAll(30);
    expect(leader.status()).toMatchObject({ role: 'leader', term });
  });

  it('a quorum of granted pre-votes starts a real election', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 });
    tickUntilCampaign(node);
    drainReady(node);
    node.step({ type: 'preVoteResp', from: 'b', to: 'a', term: 2, reject: false });
    expect(node.status()).toMatchObject({ role: 'candidate', term: 2, vote: 'a' });
  });

  it('a stale pre-vote grant from an earlier pre-campaign does not count', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 3 });
    tickUntilCampaign(node);
    node.step({ type: 'preVoteResp', from: 'b', to: 'a', term: 3, reject: false });
    expect(node.status().role).toBe('preCandidate');
    expect(node.stats.droppedMessages.stale_response).toBe(1);
  });
});

describe('CheckQuorum and the leader lease', () => {
  it('a leader that hears from no quorum for an election timeout steps down', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    cluster.filter = (m) => m.from !== 'a' && m.to !== 'a';
    for (let k = 0; k < 25; k++) {
      leader.tick();
      cluster.settle();
    }
    expect(leader.status().role).toBe('follower');
    expect(leader.stats.checkQuorumStepDowns).toBe(1);
  });

  it('a follower that heard from its leader within the election timeout ignores vote requests', () => {
    const node = nodeWith('b', ['a', 'b', 'c'], { term: 2 });
    node.step({ type: 'heartbeat', from: 'a', to: 'b', term: 2, commit: 0, context: null });
    node.step({ type: 'vote', from: 'c', to: 'b', term: 3, lastLogIndex: 9, lastLogTerm: 2, transfer: false });
    expect(node.status().term).toBe(2);
    expect(node.stats.droppedMessages.in_lease).toBe(1);
    drainReady(node);
    // ...unless the campaign comes from a leadership transfer.
    node.step({ type: 'vote', from: 'c', to: 'b', term: 3, lastLogIndex: 9, lastLogTerm: 2, transfer: true });
    expect(node.status()).toMatchObject({ term: 3, vote: 'c' });
  });
});

describe('randomized election timeouts', () => {
  it('the timeout falls in [electionTicks, 2 * electionTicks) and depends on the injected rng only', () => {
    const firstCampaign = (seed: number): number => {
      const node = RaftNode.restart(
        { id: 'a', electionTicks: 10, heartbeatTicks: 1, rng: seededRng(seed) },
        { hardState: { term: 1, vote: null, commit: 0 }, snapshot: { metadata: { index: 0, term: 0, config: { voters: ['a', 'b', 'c'], learners: [] } }, data: new Uint8Array() }, entries: [] },
      );
      for (let k = 1; k <= 40; k++) {
        node.tick();
        if (node.status().role !== 'follower') return k;
      }
      throw new Error('no campaign');
    };
    const seen = new Set<number>();
    for (let seed = 0; seed < 200; seed++) {
      const at = firstCampaign(seed);
      expect(at).toBeGreaterThanOrEqual(10);
      expect(at).toBeLessThan(20);
      expect(firstCampaign(seed)).toBe(at); // deterministic
      seen.add(at);
    }
    expect(seen.size).toBeGreaterThan(5); // and actually random
  });
});

describe('single-voter cluster', () => {
  it('elects itself and commits proposals alone', () => {
    const node = RaftNode.bootstrap({ id: 'solo', electionTicks: 5, heartbeatTicks: 1, rng: seededRng(1) }, { voters: ['solo'], learners: [] });
    drainReady(node);
    ticks(node, 10);
    expect(node.status().role).toBe('leader');
    const result = node.propose(new Uint8Array([1]));
    expect(result.ok).toBe(true);
    const rd = drainReady(node);
    expect(rd.committedEntries.at(-1)?.data).toEqual(new Uint8Array([1]));
    expect(outgoing(node)).toEqual([]);
  });
});
