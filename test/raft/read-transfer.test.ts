import { describe, expect, it } from 'vitest';
import type { Message, RaftNode, ReadState } from '../../src/raft/index.ts';
import { MAX_READ_CONTEXT_LENGTH, decodeMessage, encodeMessage, validateMessage } from '../../src/raft/index.ts';
import { Cluster, bytes, drainReady, nodeWith, tickUntilCampaign } from './helpers.ts';

/** The messages `node` sends now, and the reads it releases (one Ready round). */
function flush(node: RaftNode): { messages: Message[]; reads: ReadState[] } {
  if (!node.hasReady()) return { messages: [], reads: [] };
  const rd = drainReady(node);
  return { messages: [...rd.messages], reads: [...rd.readStates] };
}

/** Steps `m` into its recipient and returns what that node sends in reply. */
function deliver(cluster: Cluster, m: Message): Message[] {
  const to = cluster.node(m.to);
  to.step(m);
  return flush(to).messages;
}

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
    // The heartbeats carry the leader's read round, not the caller's context.
    expect(beats.map((m) => (m as { context: string | null }).context)).toEqual(['1', '1']);
    // One follower's ack plus the leader itself is a quorum of three.
    leader.step({ type: 'heartbeatResp', from: 'b', to: 'a', term: leader.status().term, context: '1' });
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

describe('ReadIndex confirmation rounds', () => {
  it('a leader confirms a read only with acknowledgements of heartbeats sent after it arrived', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const term = leader.status().term;
    expect(leader.readIndex('first')).toEqual({ ok: true });
    expect(flush(leader).messages.filter((m) => m.type === 'heartbeat').map((m) => m.to)).toEqual(['b', 'c']);
    expect(leader.readIndex('second')).toEqual({ ok: true });
    const beats = flush(leader).messages.filter((m) => m.type === 'heartbeat');
    expect(beats.map((m) => (m as { context: string | null }).context)).toEqual(['2', '2']);
    // b acknowledges round 1 only: that proves leadership after 'first' arrived, not after 'second'.
    leader.step({ type: 'heartbeatResp', from: 'b', to: 'a', term, context: '1' });
    expect(flush(leader).reads.map((r) => r.context)).toEqual(['first']);
    leader.step({ type: 'heartbeatResp', from: 'c', to: 'a', term, context: '2' });
    expect(flush(leader).reads.map((r) => r.context)).toEqual(['second']);
    // An acknowledgement of a round that was never sent is impossible from an honest peer.
    leader.step({ type: 'heartbeatResp', from: 'b', to: 'a', term, context: '3' });
    expect(leader.stats.droppedMessages.impossible_index).toBe(1);
  });

  it('a reused context is not confirmed by a delayed acknowledgement of the earlier read', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const a = cluster.elect('a');
    expect(a.readIndex('x')).toEqual({ ok: true });
    const replies = flush(a).messages.flatMap((m) => deliver(cluster, m));
    const [bAck, cAck] = [replies.find((m) => m.from === 'b')!, replies.find((m) => m.from === 'c')!];
    a.step(bAck);
    expect(flush(a).reads.map((r) => r.context)).toEqual(['x']);
    // The client reuses 'x' for its next read; c's acknowledgement of the first read arrives late.
    expect(a.readIndex('x')).toEqual({ ok: true });
    flush(a); // these heartbeats are lost
    a.step(cAck);
    expect(flush(a).reads).toEqual([]);
  });

  it('a deposed leader does not serve a stale read when a reused context meets a delayed acknowledgement', () => {
    // Found by review: acks were matched by the caller's context, so this read was served at
    // a's old commit index although the new leader had since committed a write.
    const cluster = new Cluster(['a', 'b', 'c']);
    const a = cluster.elect('a');
    const term = a.status().term;
    a.readIndex('x');
    const replies = flush(a).messages.flatMap((m) => deliver(cluster, m));
    a.step(replies.find((m) => m.from === 'b')!);
    expect(flush(a).reads).toEqual([{ index: a.status().commit, context: 'x' }]);
    const delayedAck = replies.find((m) => m.from === 'c')!;
    // a is cut off (and does not tick); b and c elect a new leader and commit a write.
    cluster.filter = (m) => m.from !== 'a' && m.to !== 'a';
    const others = [cluster.node('b'), cluster.node('c')];
    const newLeader = (): RaftNode | undefined => others.find((n) => n.status().role === 'leader');
    for (let k = 0; k < 60 && newLeader() === undefined; k++) {
      for (const n of others) n.tick();
      cluster.settle();
    }
    expect(newLeader()?.status().term).toBe(term + 1);
    const write = newLeader()!.propose(bytes('w'));
    cluster.settle();
    expect(write.ok && others.every((n) => n.status().commit >= write.index)).toBe(true);
    expect(a.status().commit).toBeLessThan(write.ok ? write.index : 0);
    // A client still reads at a, reusing 'x'; a's heartbeats are lost, c's old ack arrives.
    expect(a.status()).toMatchObject({ role: 'leader', term });
    expect(a.readIndex('x')).toEqual({ ok: true });
    flush(a);
    a.step(delayedAck);
    expect(flush(a).reads).toEqual([]);
  });

  it('refuses contexts longer than MAX_READ_CONTEXT_LENGTH and keeps caller contexts off the wire', () => {
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    expect(leader.readIndex('x'.repeat(MAX_READ_CONTEXT_LENGTH + 1))).toMatchObject({ ok: false, reason: 'invalid_argument' });
    expect(cluster.node('b').readIndex('x'.repeat(MAX_READ_CONTEXT_LENGTH + 1))).toMatchObject({ ok: false, reason: 'invalid_argument' });
    expect(leader.readIndex('y'.repeat(MAX_READ_CONTEXT_LENGTH))).toEqual({ ok: true });
    for (const m of flush(leader).messages) expect(JSON.stringify(m)).not.toContain('yyyy');
  });

  it('a leader with reads pending keeps its followers when every message goes through the wire codec', () => {
    // Found by review: a 1025-character context rode on every heartbeat, decodeMessage refused
    // them all, and the followers elected a new leader.
    const cluster = new Cluster(['a', 'b', 'c']);
    const leader = cluster.elect('a');
    const term = leader.status().term;
    const ids = ['a', 'b', 'c'];
    const served: string[] = [];
    const oversized: string[] = [];
    let undecodable = 0;
    for (let t = 0; t < 60; t++) {
      if (t % 3 === 0) {
        leader.readIndex(`${t}:`.padEnd(MAX_READ_CONTEXT_LENGTH, 'z'));
        const refused = leader.readIndex(`${t}:`.padEnd(MAX_READ_CONTEXT_LENGTH + 1, 'z'));
        oversized.push(refused.ok ? 'accepted' : refused.reason);
      }
      for (const id of ids) cluster.node(id).tick();
      const queue = ids.flatMap((id) => flush(cluster.node(id)).messages);
      for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
        expect(validateMessage(m)).not.toBeNull();
        const decoded = decodeMessage(encodeMessage(m));
        if (decoded === null) {
          undecodable++;
          continue;
        }
        const to = cluster.node(decoded.to);
        to.step(decoded);
        const out = flush(to);
        queue.push(...out.messages);
        served.push(...out.reads.map((r) => r.context));
      }
    }
    expect(undecodable).toBe(0);
    expect(leader.status()).toMatchObject({ role: 'leader', term });
    expect(served).toHaveLength(20);
    expect(oversized).toEqual(Array(20).fill('invalid_argument'));
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
