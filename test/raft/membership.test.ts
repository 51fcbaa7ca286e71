import { describe, expect, it } from 'vitest';
import type { ConfChange } from '../../src/raft/index.ts';
import { MAX_ID_LENGTH, RaftNode, applyConfChange, decodeConfigEntry } from '../../src/raft/index.ts';
import { Cluster, bytes, drainReady, nodeWith, options, tickUntilCampaign } from './helpers.ts';

function joined(cluster: Cluster, id: string): RaftNode {
  const node = RaftNode.join(options(id));
  cluster.add(node);
  return node;
}

describe('membership changes', () => {
  it('adds a learner that catches up without voting, then promotes it to voter', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    for (let k = 0; k < 5; k++) leader.propose(bytes(`v${k}`));
    cluster.settle();
    const d = joined(cluster, 'd');
    expect(leader.proposeConfChange({ type: 'addLearner', id: 'd' })).toMatchObject({ ok: true });
    cluster.settle();
    expect(leader.status().config).toEqual({ voters: ['a', 'b', 'c'], learners: ['d'] });
    expect(d.status().config).toEqual({ voters: ['a', 'b', 'c'], learners: ['d'] });
    expect(cluster.appliedData('d')).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
    // A learner never campaigns, however long it waits.
    for (let k = 0; k < 50; k++) d.tick();
    expect(d.status().role).toBe('follower');
    expect(leader.proposeConfChange({ type: 'addVoter', id: 'd' })).toMatchObject({ ok: true });
    cluster.settle();
    expect(leader.status().config).toEqual({ voters: ['a', 'b', 'c', 'd'], learners: [] });
  });

  it('promotes only learners, and only once they have caught up', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    expect(leader.proposeConfChange({ type: 'addVoter', id: 'x' })).toEqual({ ok: false, reason: 'not_a_learner' });
    joined(cluster, 'd');
    cluster.filter = (m) => m.to !== 'd'; // d is unreachable: it cannot catch up
    leader.proposeConfChange({ type: 'addLearner', id: 'd' });
    cluster.settle();
    leader.propose(bytes('more'));
    cluster.settle();
    expect(leader.proposeConfChange({ type: 'addVoter', id: 'd' })).toEqual({ ok: false, reason: 'learner_not_caught_up' });
  });

  it('allows one change at a time: the next waits until the previous one is committed', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    cluster.filter = () => false; // nothing commits
    expect(leader.proposeConfChange({ type: 'addLearner', id: 'd' })).toMatchObject({ ok: true });
    expect(leader.proposeConfChange({ type: 'addLearner', id: 'e' })).toEqual({ ok: false, reason: 'config_change_pending' });
    cluster.filter = () => true;
    leader.tick();
    cluster.settle();
    expect(leader.proposeConfChange({ type: 'addLearner', id: 'e' })).toMatchObject({ ok: true });
  });

  it('a new leader commits an entry of its own term before any change (thesis errata)', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 }, { preVote: false });
    tickUntilCampaign(node);
    node.step({ type: 'voteResp', from: 'b', to: 'a', term: 2, reject: false });
    expect(node.status().role).toBe('leader');
    expect(node.proposeConfChange({ type: 'removeNode', id: 'c' })).toEqual({ ok: false, reason: 'config_change_pending' });
    drainReady(node);
    node.step({ type: 'appendResp', from: 'b', to: 'a', term: 2, reject: false, index: 1, rejectHint: 0, logTerm: 0 });
    expect(node.status().commit).toBe(1);
    expect(node.proposeConfChange({ type: 'removeNode', id: 'c' })).toMatchObject({ ok: true });
  });

  it('removes a follower; the rest keep committing with the smaller quorum', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    leader.proposeConfChange({ type: 'removeNode', id: 'c' });
    cluster.settle();
    expect(leader.status().config.voters).toEqual(['a', 'b']);
    cluster.filter = (m) => m.to !== 'c' && m.from !== 'c';
    leader.propose(bytes('after'));
    cluster.settle();
    expect(cluster.appliedData('b')).toEqual(['after']);
  });

  it('a removed leader steps down once the change commits, and the others elect a new one', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const result = leader.proposeConfChange({ type: 'removeNode', id: 'a' });
    expect(result.ok).toBe(true);
    cluster.settle();
    expect(leader.status().role).toBe('follower');
    cluster.tickAll(40);
    const leaders = ['b', 'c'].filter((id) => cluster.node(id).status().role === 'leader');
    expect(leaders).toHaveLength(1);
    expect(cluster.node(leaders[0]!).status().config.voters.toSorted()).toEqual(['b', 'c']);
  });

  it('refuses to remove the last voter and changes about non-members', () => {
    const node = RaftNode.bootstrap(options('solo'), { voters: ['solo'], learners: [] });
    drainReady(node);
    for (let k = 0; k < 25; k++) node.tick();
    drainReady(node);
    expect(node.proposeConfChange({ type: 'removeNode', id: 'solo' })).toEqual({ ok: false, reason: 'would_remove_last_voter' });
    expect(node.proposeConfChange({ type: 'removeNode', id: 'ghost' })).toEqual({ ok: false, reason: 'not_a_member' });
    expect(node.proposeConfChange({ type: 'addLearner', id: 'solo' })).toEqual({ ok: false, reason: 'already_member' });
  });

  it('config entries carry the change and the full resulting configuration', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const result = leader.proposeConfChange({ type: 'addLearner', id: 'd' });
    if (!result.ok) throw new Error('refused');
    const e = leader.logEntry(result.index)!;
    expect(e.type).toBe('config');
    expect(decodeConfigEntry(e.data)).toEqual({ change: { type: 'addLearner', id: 'd' }, config: { voters: ['a', 'b', 'c'], learners: ['d'] } });
  });

  it('followers refuse proposals with a leader hint', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    cluster.elect('a');
    expect(cluster.node('b').propose(bytes('x'))).toEqual({ ok: false, reason: 'not_leader', leaderHint: 'a' });
    expect(cluster.node('b').proposeConfChange({ type: 'removeNode', id: 'c' })).toEqual({ ok: false, reason: 'not_leader', leaderHint: 'a' });
  });

  it('refuses malformed changes from untyped callers instead of throwing', () => {
    // Found by review: an unknown change type fell through applyConfChange's switch and
    // proposeConfChange threw a TypeError.
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const lastIndex = leader.status().lastIndex;
    const malformed: unknown[] = [
      { type: 'promote', id: 'd' },
      { type: 'addLearner', id: '' },
      { type: 'addLearner', id: 42 },
      { type: 'addLearner', id: 'd'.repeat(MAX_ID_LENGTH + 1) }, // would make every append undecodable
      { id: 'd' },
      null,
      'addLearner',
    ];
    for (const change of malformed) {
      expect(leader.proposeConfChange(change as ConfChange)).toMatchObject({ ok: false, reason: 'invalid_argument' });
      expect(cluster.node('b').proposeConfChange(change as ConfChange)).toMatchObject({ ok: false, reason: 'invalid_argument' });
    }
    expect(applyConfChange({ voters: ['a'], learners: [] }, { type: 'promote', id: 'd' } as unknown as ConfChange)).toMatchObject({
      ok: false,
      reason: 'invalid_argument',
    });
    expect(leader.status().lastIndex).toBe(lastIndex);
    expect(leader.proposeConfChange({ type: 'addLearner', id: 'd'.repeat(MAX_ID_LENGTH) })).toMatchObject({ ok: true });
  });
});
