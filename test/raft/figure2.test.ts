import { describe, expect, it } from 'vitest';
import type { AppendRequest, AppendResponse, Message, VoteRequest } from '../../src/raft/index.ts';
import { Cluster, bytes, drainReady, entry, nodeWith, outgoing, terms, tickUntilCampaign, ticks } from './helpers.ts';

/**
 * One test per rule of Figure 2 of the Raft paper ("In Search of an Understandable Consensus
 * Algorithm", extended version), in the order the figure lists them. PreVote is switched off
 * where a rule is about plain elections, since PreVote is an extension the figure predates.
 */

const NO_PREVOTE = { preVote: false, checkQuorum: false };

function append(from: string, to: string, term: number, prevLogIndex: number, prevLogTerm: number, entries = terms(), commit = 0): AppendRequest {
  return { type: 'append', from, to, term, prevLogIndex, prevLogTerm, entries, commit };
}

function vote(from: string, to: string, term: number, lastLogIndex: number, lastLogTerm: number): VoteRequest {
  return { type: 'vote', from, to, term, lastLogIndex, lastLogTerm, transfer: false };
}

function only<T extends Message['type']>(messages: Message[], type: T): (Message & { type: T })[] {
  return messages.filter((m): m is Message & { type: T } => m.type === type);
}

describe('Figure 2, Rules for Servers: all servers', () => {
  it('if commitIndex > lastApplied, apply log[lastApplied+1] (handed out as committedEntries, in order)', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1, entries: terms(1, 1, 1) });
    node.step(append('b', 'a', 1, 3, 1, [], 2));
    const rd = drainReady(node);
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1, 2]);
    node.step(append('b', 'a', 1, 3, 1, [], 3));
    expect(drainReady(node).committedEntries.map((e) => e.index)).toEqual([3]);
    expect(node.status().applied).toBe(3);
  });

  it('if a message carries term T > currentTerm: set currentTerm = T and convert to follower', () => {
    for (const role of ['candidate', 'leader'] as const) {
      const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 }, NO_PREVOTE);
      tickUntilCampaign(node);
      if (role === 'leader') {
        node.step({ type: 'voteResp', from: 'b', to: 'a', term: 2, reject: false });
        expect(node.status().role).toBe('leader');
      }
      drainReady(node);
      node.step(append('c', 'a', 5, 0, 0));
      expect(node.status()).toMatchObject({ role: 'follower', term: 5, leaderId: 'c' });
    }
  });
});

describe('Figure 2, Rules for Servers: followers', () => {
  it('respond to RPCs from candidates and leaders', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 });
    node.step(vote('b', 'a', 2, 0, 0));
    node.step(append('b', 'a', 2, 0, 0, [entry(1, 2)]));
    const replies = outgoing(node);
    expect(replies.map((m) => [m.type, m.to])).toEqual([
      ['voteResp', 'b'],
      ['appendResp', 'b'],
    ]);
  });

  it('if the election timeout elapses without hearing from a leader or granting a vote: convert to candidate', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 }, NO_PREVOTE);
    ticks(node, 9); // below the minimum timeout of electionTicks = 10
    expect(node.status().role).toBe('follower');
    tickUntilCampaign(node);
    expect(node.status()).toMatchObject({ role: 'candidate', term: 2 });

    // Hearing from the leader resets the timer: a follower fed heartbeats never campaigns.
    const fed = nodeWith('b', ['a', 'b', 'c'], { term: 1 }, NO_PREVOTE);
    for (let k = 0; k < 100; k++) {
      fed.tick();
      fed.step({ type: 'heartbeat', from: 'a', to: 'b', term: 1, commit: 0, context: null });
    }
    expect(fed.status().role).toBe('follower');
  });
});

describe('Figure 2, Rules for Servers: candidates', () => {
  it('on conversion: increment currentTerm, vote for self, reset the election timer, send RequestVote to all others', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 3, entries: terms(1, 3) }, NO_PREVOTE);
    tickUntilCampaign(node);
    const rd = drainReady(node);
    expect(rd.hardState).toMatchObject({ term: 4, vote: 'a' });
    const votes = only([...rd.messages], 'vote');
    expect(votes.map((m) => m.to).sort()).toEqual(['b', 'c']);
    expect(votes[0]).toMatchObject({ term: 4, lastLogIndex: 2, lastLogTerm: 3 });
    // The timer was reset: no new election before another full timeout.
    ticks(node, 9);
    expect(node.status().term).toBe(4);
  });

  it('if votes are received from a majority of servers: become leader', () => {
    const node = nodeWith('a', ['a', 'b', 'c', 'd', 'e'], { term: 1 }, NO_PREVOTE);
    tickUntilCampaign(node);
    node.step({ type: 'voteResp', from: 'b', to: 'a', term: 2, reject: false });
    expect(node.status().role).toBe('candidate'); // 2 of 5 is not a majority
    node.step({ type: 'voteResp', from: 'b', to: 'a', term: 2, reject: false }); // a duplicate counts once
    expect(node.status().role).toBe('candidate');
    node.step({ type: 'voteResp', from: 'c', to: 'a', term: 2, reject: false });
    expect(node.status()).toMatchObject({ role: 'leader', term: 2 });
  });

  it('if AppendEntries is received from the new leader: convert to follower', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 }, NO_PREVOTE);
    tickUntilCampaign(node);
    expect(node.status().role).toBe('candidate');
    node.step(append('b', 'a', 2, 0, 0));
    expect(node.status()).toMatchObject({ role: 'follower', term: 2, leaderId: 'b' });
  });

  it('if the election timeout elapses: start a new election', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 }, NO_PREVOTE);
    tickUntilCampaign(node);
    expect(node.status().term).toBe(2);
    ticks(node, 20); // at most 2 * electionTicks - 1 until the next timeout
    expect(node.status()).toMatchObject({ role: 'candidate', term: 3 });
  });
});

describe('Figure 2, Rules for Servers: leaders', () => {
  it('upon election: send initial AppendEntries to each server; repeat during idle periods to prevent election timeouts', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    // Idle: only heartbeats flow, and no follower ever starts an election.
    cluster.tickAll(100);
    expect(leader.status()).toMatchObject({ role: 'leader', term: leader.status().term });
    for (const id of ['b', 'c']) expect(cluster.node(id).status()).toMatchObject({ role: 'follower', leaderId: 'a' });
    leader.tick();
    const beats = only(outgoing(leader), 'heartbeat');
    expect(beats.map((m) => m.to).sort()).toEqual(['b', 'c']);
  });

  it('if a command is received from a client: append it to the local log, respond after it is applied', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const result = leader.propose(bytes('x=1'));
    expect(result).toMatchObject({ ok: true, term: leader.status().term });
    if (!result.ok) throw new Error('unreachable');
    expect(leader.logEntry(result.index)?.data).toEqual(bytes('x=1'));
    expect(cluster.appliedData('a')).toEqual([]); // not applied before replication
    cluster.settle();
    expect(cluster.appliedData('a')).toEqual(['x=1']);
  });

  it('if last log index >= nextIndex: send entries from nextIndex; on success update nextIndex and matchIndex; on inconsistency decrement nextIndex and retry', () => {
    // The follower b has a divergent tail (term 2) the leader (term 3) does not have.
    const leader = nodeWith('a', ['a', 'b', 'c'], { term: 3, entries: terms(1, 1, 3) }, NO_PREVOTE);
    const follower = nodeWith('b', ['a', 'b', 'c'], { term: 2, entries: terms(1, 2, 2, 2) }, NO_PREVOTE);
    tickUntilCampaign(leader);
    leader.step({ type: 'voteResp', from: 'c', to: 'a', term: 4, reject: false });
    expect(leader.status().role).toBe('leader');
    const deliver = (from: typeof leader, to: typeof leader) => {
      for (const m of outgoing(from)) if (m.to === to.id) to.step(m);
    };
    for (let round = 0; round < 10; round++) {
      deliver(leader, follower);
      deliver(follower, leader);
    }
    expect(leader.progressOf('b')).toMatchObject({ match: 4, next: 5, state: 'replicate' });
    for (let i = 1; i <= 4; i++) expect(follower.logTerm(i)).toBe(leader.logTerm(i));
  });

  it('commit N only if a majority has matchIndex >= N and log[N].term == currentTerm (§5.4.2: never by counting an older term)', () => {
    // Figure 8 (c): leader a of term 4 holds an entry of term 2 at index 2, replicated to b now.
    const leader = nodeWith('a', ['a', 'b', 'c', 'd', 'e'], { term: 3, entries: terms(1, 2) }, NO_PREVOTE);
    tickUntilCampaign(leader);
    for (const id of ['b', 'c']) leader.step({ type: 'voteResp', from: id, to: 'a', term: 4, reject: false });
    expect(leader.status().role).toBe('leader');
    drainReady(leader);
    // a, b, c all hold index 2 (term 2): a majority, but of an older term -> not committed.
    for (const id of ['b', 'c']) leader.step({ type: 'appendResp', from: id, to: 'a', term: 4, reject: false, index: 2, rejectHint: 0, logTerm: 0 });
    expect(leader.status().commit).toBe(0);
    // Once the leader's own-term entry (index 3) is on a majority, both commit.
    for (const id of ['b', 'c']) leader.step({ type: 'appendResp', from: id, to: 'a', term: 4, reject: false, index: 3, rejectHint: 0, logTerm: 0 });
    expect(leader.status().commit).toBe(3);
  });
});

describe('Figure 2, AppendEntries RPC receiver', () => {
  it('1. reply false if term < currentTerm', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 3, entries: terms(1) });
    node.step(append('b', 'a', 2, 1, 1, [entry(2, 2)]));
    const [reply] = outgoing(node) as AppendResponse[];
    expect(reply).toMatchObject({ type: 'appendResp', term: 3, reject: true }); // the stale leader learns term 3
    expect(node.status().lastIndex).toBe(1);
    expect(node.stats.droppedMessages.stale_term).toBe(1);
  });

  it('2. reply false if the log has no entry at prevLogIndex whose term matches prevLogTerm', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 2, entries: terms(1, 1) });
    node.step(append('b', 'a', 2, 2, 2, [entry(3, 2)])); // term mismatch at 2
    node.step(append('b', 'a', 2, 5, 2, [entry(6, 2)])); // no entry at 5
    const replies = outgoing(node) as AppendResponse[];
    expect(replies.map((r) => [r.reject, r.index])).toEqual([
      [true, 2],
      [true, 5],
    ]);
    // The conflict hint points at the last index that may match (findConflictByTerm).
    expect(replies[1]).toMatchObject({ rejectHint: 2, logTerm: 1 });
    expect(node.status().lastIndex).toBe(2);
  });

  it('3. if an existing entry conflicts with a new one (same index, different term): delete it and all that follow', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 2, entries: terms(1, 1, 1, 1) });
    node.step(append('b', 'a', 3, 1, 1, [entry(2, 3, 'new')]));
    expect(node.status().lastIndex).toBe(2);
    expect(node.logTerm(2)).toBe(3);
    expect(node.logTerm(3)).toBeNull();
    // The Ready re-persists from the conflict point, so storage drops the stale tail.
    expect(drainReady(node).entries.map((e) => [e.index, e.term])).toEqual([[2, 3]]);
  });

  it('4. append any new entries not already in the log (a duplicate or stale append changes nothing)', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 2, entries: terms(1, 2) });
    node.step(append('b', 'a', 2, 1, 1, [entry(2, 2), entry(3, 2)]));
    expect(node.status().lastIndex).toBe(3);
    // A delayed copy of an older, shorter append must not truncate entry 3.
    node.step(append('b', 'a', 2, 1, 1, [entry(2, 2)]));
    expect(node.status().lastIndex).toBe(3);
    expect(drainReady(node).entries.map((e) => e.index)).toEqual([3]);
  });

  it('5. if leaderCommit > commitIndex: set commitIndex = min(leaderCommit, index of last new entry)', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 9, entries: terms(1, 1, 1, 9) });
    node.step(append('b', 'a', 9, 1, 1, [entry(2, 1)], 10));
    // Index 4 (term 9) was not part of this append: the leader's commit does not vouch for it.
    expect(node.status().commit).toBe(2);
  });
});

describe('Figure 2, RequestVote RPC receiver', () => {
  it('1. reply false if term < currentTerm', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 5 }, NO_PREVOTE);
    node.step(vote('b', 'a', 4, 10, 4));
    expect(outgoing(node)).toEqual([]);
    expect(node.status().vote).toBeNull();
    expect(node.stats.droppedMessages.stale_term).toBe(1);
  });

  it('2. grant if votedFor is null or candidateId and the candidate log is at least as up-to-date; at most one vote per term', () => {
    const node = nodeWith('a', ['a', 'b', 'c', 'd'], { term: 2, entries: terms(1, 2) }, NO_PREVOTE);
    node.step(vote('b', 'a', 3, 5, 1)); // longer log but older last term: not up-to-date
    node.step(vote('c', 'a', 3, 2, 2)); // same last term, same length: up-to-date -> granted
    node.step(vote('d', 'a', 3, 9, 3)); // up-to-date, but a already voted for c in term 3
    node.step(vote('c', 'a', 3, 2, 2)); // a retry from c is granted again
    const rd = drainReady(node);
    expect(rd.messages.map((m) => [m.to, (m as { reject: boolean }).reject])).toEqual([
      ['b', true],
      ['c', false],
      ['d', true],
      ['c', false],
    ]);
    expect(rd.hardState).toMatchObject({ term: 3, vote: 'c' });
  });
});

describe('Figure 2, State: persistent state is on stable storage before responding to RPCs', () => {
  it('a vote and new entries are in the same Ready as the replies that depend on them', () => {
    const node = nodeWith('a', ['a', 'b', 'c'], { term: 1 }, NO_PREVOTE);
    node.step(vote('b', 'a', 2, 0, 0));
    let rd = drainReady(node);
    expect(rd.hardState).toMatchObject({ term: 2, vote: 'b' });
    expect(rd.messages).toHaveLength(1);
    node.step(append('b', 'a', 2, 0, 0, [entry(1, 2)]));
    rd = drainReady(node);
    expect(rd.entries.map((e) => e.index)).toEqual([1]);
    expect(rd.messages).toMatchObject([{ type: 'appendResp', index: 1, reject: false }]);
    // After a crash, the node restarts from exactly that state and keeps its vote.
    expect(() => node.step(vote('c', 'a', 2, 1, 2))).not.toThrow();
    expect(outgoing(node)).toMatchObject([{ type: 'voteResp', to: 'c', reject: true }]);
  });
});
