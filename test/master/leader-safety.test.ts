import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { isDfsError } from '../../src/errors/index.ts';
import { signReceipt } from '../../src/net/receipt.ts';
import { GarbageCollector, type NodeChunkDeleter } from '../../src/master/garbage-collector.ts';
import { encodeEnvelope } from '../../src/master/meta-machine.ts';
import type { MetaRequest, MetaResponse } from '../../src/meta/index.ts';
import { startInProcessMasters } from '../support/master-fixture.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();

// Storage nodes with real identities: their receipts are signed and checked.
const NODE_KEYS = await Promise.all([1, 2, 3].map(() => generateKeyPair('Ed25519')));
const [N1, N2, N3] = NODE_KEYS.map((k) => peerIdFromPrivateKey(k).toString()) as [string, string, string];
const keyOf = new Map(NODE_KEYS.map((k) => [peerIdFromPrivateKey(k).toString(), k]));
/** The receipts `nodes` sign for chunk `id` put under `fence`. */
const receiptsOf = (id: string, fence: number, nodes: readonly string[]) => Promise.all(nodes.map((n) => signReceipt(keyOf.get(n)!, id, fence)));

let seq = 0;
const mkdir = (path: string) => encodeEnvelope({ clientId: 'test', seq: ++seq, cmd: { op: 'mkdir', path, parents: true, owner: 'test', nowMs: 1 } });

/** The test's client holds the cluster's admin key (as `dfs cluster up`'s operator does). */
const CLIENT = { peerId: 'testClientPeer0001' };
const heartbeat = (nodeId: string, added: string[] = []): MetaRequest => ({ type: 'heartbeat', nodeId, freeBytes: 1e12, capacityBytes: 1e12, usedBytes: 0, chunkCount: 0, inflight: 0, added, removed: [] });

describe('a master whose disk write fails (issue 11, bug 2)', () => {
  it('stops acting as leader at once: no role, no leader-only tasks, no heartbeats, placement or locate', async () => {
    const c = await startInProcessMasters(() => tempDir(), { adminPeers: [CLIENT.peerId] });
    try {
      const old = await c.leader();
      await old.driver.propose(mkdir('/a'));
      await old.driver.until(() => old.host.confirmedTerm !== null, 5_000);
      expect(old.task.runs).toHaveLength(1);
      const before: MetaResponse = await old.service.handle(heartbeat(N1), { peerId: N1 });
      expect(before.ok).toBe(true);

      old.store.failWrites = true;
      const err = await old.driver.propose(mkdir('/b')).catch((e: unknown) => e);
      expect(isDfsError(err)).toBe(true);
      await old.driver.idle();

      expect(old.failures).toHaveLength(1);
      expect(old.driver.role).toBe('follower');
      expect(old.driver.leaderId).toBeNull();
      expect(old.host.confirmedTerm).toBeNull();
      expect(old.task.runs[0]!.signal.aborted).toBe(true);
      for (const request of [heartbeat(N1), { type: 'place', chunks: [{ id: 'a'.repeat(64), size: 1 }] }, { type: 'locate', ids: ['a'.repeat(64)] }] as MetaRequest[]) {
        const answer = await old.service.handle(request, { peerId: N1 });
        expect(answer).toMatchObject({ ok: false, code: 'ERR_NOT_LEADER' });
      }
      expect(c.logger.find(/persistence failed/)).toHaveLength(1);

      // The other two elect a leader between them and go on.
      const next = await c.leader();
      expect(next.id).not.toBe(old.id);
      expect(await next.driver.propose(mkdir('/c'))).toMatchObject({ ok: true });
      await next.driver.until(() => next.host.confirmedTerm !== null, 5_000);
      expect(old.driver.role).toBe('follower');
    } finally {
      await c.stop();
    }
  });
});

describe('leader-only tasks', () => {
  it('start only on confirmed leadership and stop when it moves', async () => {
    const c = await startInProcessMasters(() => tempDir(), { adminPeers: [CLIENT.peerId] });
    try {
      const first = await c.leader();
      await first.driver.until(() => first.host.confirmedTerm === first.driver.term, 5_000);
      const others = [...c.masters.values()].filter((m) => m !== first);
      expect(others.every((m) => m.host.confirmedTerm === null && m.task.runs.length === 0)).toBe(true);
      const to = others[0]!;
      first.driver.transferLeadership(to.id);
      await to.driver.until(() => to.host.confirmedTerm !== null, 5_000);
      expect(first.task.runs[0]!.signal.aborted).toBe(true);
      expect(first.host.confirmedTerm).toBeNull();
      expect(to.task.runs).toHaveLength(1);
      expect(to.task.runs[0]!.term).toBeGreaterThan(first.task.runs[0]!.term);
    } finally {
      await c.stop();
    }
  });

  it('a leader cut off from the others cannot confirm, so its tasks stop', async () => {
    const c = await startInProcessMasters(() => tempDir(), { adminPeers: [CLIENT.peerId] });
    try {
      const first = await c.leader();
      await first.driver.until(() => first.host.confirmedTerm !== null, 5_000);
      const ctx = first.task.runs[0]!;
      c.net.isolate(first.id);
      const confirmed = await ctx.confirm().then(
        () => 'confirmed',
        (e: unknown) => (isDfsError(e) ? e.code : String(e)),
      );
      expect(confirmed).not.toBe('confirmed');
      // CheckQuorum makes it step down; the task's signal fires.
      await first.driver.until(() => first.driver.role !== 'leader', 5_000);
      expect(ctx.signal.aborted).toBe(true);
    } finally {
      await c.stop();
    }
  });
});

import { manifestOf, cid } from '../support/meta-fixtures.ts';
import type { InProcessMaster } from '../support/master-fixture.ts';

/** Registers three storage nodes and makes them live on `m` (the leader). */
async function threeLiveNodes(m: InProcessMaster): Promise<string[]> {
  const nodes = [N1, N2, N3];
  for (const [k, nodeId] of nodes.entries()) {
    const r = await m.service.handle({ type: 'write', clientId: nodeId, seq: 1, cmd: { op: 'registerNode', nodeId, addrs: [`/ip4/127.0.0.1/tcp/${9000 + k}`], capacityBytes: 1e12 } }, { peerId: nodeId });
    expect(r.ok).toBe(true);
    expect((await m.service.handle(heartbeat(nodeId), { peerId: nodeId })).ok).toBe(true);
  }
  return nodes;
}

describe('a commit retried after a leader change (issue 11, bug 4)', () => {
  it('gets the first attempt\'s answer, not ERR_UNDER_REPLICATED from a leader that does not know the chunks yet', async () => {
    const c = await startInProcessMasters(() => tempDir(), { adminPeers: [CLIENT.peerId] });
    try {
      const first = await c.ready();
      const nodes = await threeLiveNodes(first);
      const chunk = cid(7);
      const placed = await first.service.handle({ type: 'place', chunks: [{ id: chunk, size: 10 }], uploadId: 'u1' }, CLIENT);
      expect(placed.ok, JSON.stringify(placed)).toBe(true);
      const fence = (placed.value as Array<{ fence: number }>)[0]!.fence;
      const commit: MetaRequest = {
        type: 'write',
        clientId: 'client-a',
        seq: 1,
        cmd: { op: 'commitFile', path: '/f', manifest: manifestOf([[chunk, 10]]), parents: true, ifAbsent: false },
        stored: [{ id: chunk, fence, receipts: await receiptsOf(chunk, fence, nodes) }],
        uploadId: 'u1',
      };
      const answer = await first.service.handle(commit, CLIENT);
      expect(answer.ok).toBe(true);
      // The answer is lost; leadership moves; the client retries at the new leader.
      const next = [...c.masters.values()].find((m) => m !== first)!;
      first.driver.transferLeadership(next.id);
      await next.driver.until(() => next.driver.role === 'leader', 5_000);
      const retry = await next.service.handle(commit, CLIENT);
      expect(retry).toEqual(answer);
    } finally {
      await c.stop();
    }
  });
});

/** The leader's GC, sending its deletes through `deleteOnNode` (the test's stand-in nodes). */
function gcFor(leader: InProcessMaster, deleteOnNode: NodeChunkDeleter): GarbageCollector {
  return new GarbageCollector({
    plane: () => leader.service.dataPlane,
    refCount: (id) => leader.machine.state.refCount(id),
    node: (id) => leader.machine.state.node(id),
    deleteOnNode,
    intervalMs: 1_000,
  });
}

describe('GC against a re-upload of the same bytes (issue 11, bug 1), on the leader', () => {
  /**
   * A node that keeps chunks and honours fences the way ChunkStore does: a delete under fence E
   * keeps a chunk it accepted a put of under a fence above E.
   */
  class FencedNode {
    readonly chunks = new Set<string>();
    readonly putFence = new Map<string, number>();
    put(id: string, fence: number): void {
      this.putFence.set(id, Math.max(this.putFence.get(id) ?? 0, fence));
      this.chunks.add(id);
    }
    delete(ids: readonly string[], fence: number): { kept: string[] } {
      const kept: string[] = [];
      for (const id of ids) {
        if ((this.putFence.get(id) ?? 0) > fence) kept.push(id);
        else this.chunks.delete(id);
      }
      return { kept };
    }
  }

  async function setUp() {
    const c = await startInProcessMasters(() => tempDir(), { gcGraceMs: 150, adminPeers: [CLIENT.peerId] });
    const leader = await c.ready();
    const nodeIds = await threeLiveNodes(leader);
    const nodes = new Map(nodeIds.map((id) => [id, new FencedNode()]));
    const x = cid(42);
    for (const [id, n] of nodes) {
      n.put(x, 0);
      await leader.service.handle(heartbeat(id, [x]), { peerId: id });
    }
    await leader.driver.until(() => leader.host.confirmedTerm !== null, 5_000);
    const plane = leader.service.dataPlane!;
    await new Promise((r) => setTimeout(r, 200)); // the grace period (and the plane's start) pass; an upload stays alive as long
    return { c, leader, nodes, x, plane, ctx: leader.task.runs[0]! };
  }

  it('a delete sent before the re-put reached a node does not land after it', async () => {
    const { c, leader, nodes, x, ctx } = await setUp();
    try {
      let releaseDeletes!: () => void;
      const deletesHeld = new Promise<void>((r) => (releaseDeletes = r));
      let deleteFence = -1;
      let deleteSent!: () => void;
      const deleteStarted = new Promise<void>((r) => (deleteSent = r));
      const gc = gcFor(leader, async (node, ids, fence) => {
        deleteFence = fence;
        deleteSent();
        await deletesHeld; // the batch is on its way (behind other ids)...
        return nodes.get(node.id)!.delete(ids, fence);
      });
      const round = gc.runOnce(ctx);
      await deleteStarted;
      expect(deleteFence).toBeGreaterThan(0);
      // ...a client puts the same bytes again: placed (not "existing": it is being deleted), the
      // put reaches every target, which still hold X and ack at once.
      const placed = await leader.service.handle({ type: 'place', chunks: [{ id: x, size: 10 }], uploadId: 'u2' }, CLIENT);
      const placement = (placed.value as Array<{ targets: string[]; fence: number }>)[0]!;
      expect(placement.fence).toBeGreaterThan(deleteFence);
      for (const n of nodes.values()) n.put(x, placement.fence);
      // The commit waits for the delete to settle; the deletes then arrive under the older fence.
      const commit = leader.service.handle({
        type: 'write',
        clientId: 'client-b',
        seq: 1,
        cmd: { op: 'commitFile', path: '/again', manifest: manifestOf([[x, 10]]), parents: true, ifAbsent: false },
        stored: [{ id: x, fence: placement.fence, receipts: await receiptsOf(x, placement.fence, [...nodes.keys()]) }],
        uploadId: 'u2',
      }, CLIENT);
      releaseDeletes();
      await round;
      expect(await commit).toMatchObject({ ok: true });
      for (const n of nodes.values()) expect(n.chunks.has(x)).toBe(true);
      expect(gc.stats.keptByFence).toBe(3);
      expect(leader.machine.state.refCount(x)).toBe(1);
    } finally {
      await c.stop();
    }
  });

  it('a chunk promised to an upload between the decision and the send is not deleted at all', async () => {
    const { c, leader, nodes, x, ctx } = await setUp();
    try {
      const sent: string[] = [];
      const gc = gcFor(leader, async (node, ids, fence) => {
        sent.push(...ids);
        return nodes.get(node.id)!.delete(ids, fence);
      });
      // The round decides X, then waits for its leadership barrier; meanwhile X is placed again.
      const round = gc.runOnce(ctx);
      const placed = await leader.service.handle({ type: 'place', chunks: [{ id: x, size: 10 }], uploadId: 'u3' }, CLIENT);
      expect(placed.ok).toBe(true);
      expect(await round).toBe(0);
      expect(sent).toEqual([]);
      expect(gc.stats.calledOff).toBe(1);
      for (const n of nodes.values()) expect(n.chunks.has(x)).toBe(true);
    } finally {
      await c.stop();
    }
  });

  it('a commit naming an unpromised chunk promises it before anything else: a GC round deciding meanwhile calls it off (review)', async () => {
    const { c, leader, nodes, x, ctx } = await setUp();
    try {
      const sent: string[] = [];
      const gc = gcFor(leader, async (node, ids, fence) => {
        sent.push(...ids);
        return nodes.get(node.id)!.delete(ids, fence);
      });
      // The commit (no upload this leader knows of: it began under another) and a GC round, at once.
      const commit = leader.service.handle(
        { type: 'write', clientId: 'client-c', seq: 1, cmd: { op: 'commitFile', path: '/late', manifest: manifestOf([[x, 10]]), parents: true, ifAbsent: false }, stored: [] },
        CLIENT,
      );
      const round = gc.runOnce(ctx);
      expect(await commit).toMatchObject({ ok: true });
      await round;
      expect(sent).toEqual([]);
      for (const n of nodes.values()) expect(n.chunks.has(x)).toBe(true);
    } finally {
      await c.stop();
    }
  });

  it('an unreferenced, unpromised chunk is deleted everywhere', async () => {
    const { c, leader, nodes, x, ctx } = await setUp();
    try {
      const gc = gcFor(leader, async (node, ids, fence) => nodes.get(node.id)!.delete(ids, fence));
      expect(await gc.runOnce(ctx)).toBe(1);
      for (const n of nodes.values()) expect(n.chunks.has(x)).toBe(false);
      expect(leader.service.dataPlane!.holderCount(x)).toBe(0);
    } finally {
      await c.stop();
    }
  });
});

describe('requests are checked against the authenticated peer (issue 12)', () => {
  it('a node speaks only for itself; state changes come only from masters; a bad-replica report only asks for a verify', async () => {
    const c = await startInProcessMasters(() => tempDir(), { adminPeers: [CLIENT.peerId] });
    try {
      const leader = await c.leader();
      const nodes = await threeLiveNodes(leader);
      const register = (nodeId: string, seq: number): MetaRequest => ({ type: 'write', clientId: 'rogue', seq, cmd: { op: 'registerNode', nodeId, addrs: ['/ip4/127.0.0.1/tcp/1'], capacityBytes: 1e15 } });
      expect(await leader.service.handle(register('fake-1', 1), { peerId: 'rogue' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await leader.service.handle(heartbeat(N1), { peerId: 'rogue' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await leader.service.handle({ type: 'report', nodeId: N2, ids: [], first: true, last: true }, { peerId: 'rogue' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      const kill: MetaRequest = { type: 'write', clientId: 'rogue', seq: 2, cmd: { op: 'setNodeState', nodeId: N1, state: 'dead' } };
      expect(await leader.service.handle(kill, { peerId: 'rogue' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await leader.service.handle(kill, { peerId: N2 })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(leader.machine.state.node(N1)?.state).toBe('alive');
      expect(leader.machine.state.node('fake-1')).toBeUndefined();
      // Nor may it register an address of another peer (deletes for it would go there).
      const other = `/ip4/127.0.0.1/tcp/9000/p2p/${N2}`;
      expect(await leader.service.handle({ type: 'write', clientId: 'r2', seq: 1, cmd: { op: 'registerNode', nodeId: 'rogue', addrs: [other], capacityBytes: 1 } }, { peerId: 'rogue' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });

      // Twelve bad-replica reports remove nothing; the node is asked to verify, once.
      const x = cid(9);
      for (const n of nodes) await leader.service.handle(heartbeat(n, [x]), { peerId: n });
      for (let k = 0; k < 12; k++) for (const n of nodes) await leader.service.handle({ type: 'badReplica', id: x, nodeId: n }, CLIENT);
      expect(leader.service.dataPlane!.holderCount(x)).toBe(3);
      const answer = await leader.service.handle(heartbeat(N1), { peerId: N1 });
      expect((answer.value as { verify: string[] }).verify).toEqual([x]);
      const again = await leader.service.handle(heartbeat(N1), { peerId: N1 });
      expect((again.value as { verify: string[] }).verify).toEqual([]);
    } finally {
      await c.stop();
    }
  });
});

describe('Raft from a non-member (issue 12)', () => {
  it('a heartbeat, vote or snapshot from a peer outside the configuration changes nothing', async () => {
    const c = await startInProcessMasters(() => tempDir(), { adminPeers: [CLIENT.peerId] });
    try {
      const leader = await c.leader();
      await leader.driver.propose(mkdir('/kept'));
      const term = leader.driver.term;
      const rogue = c.net.transport('rogue');
      for (const m of c.masters.values()) {
        rogue.send({ type: 'heartbeat', from: 'rogue', to: m.id, term: term + 100, commit: 0, context: null });
        rogue.send({ type: 'vote', from: 'rogue', to: m.id, term: term + 100, lastLogIndex: 1e9, lastLogTerm: 1e9, transfer: true });
        rogue.send({ type: 'snapshot', from: 'rogue', to: m.id, term: term + 100, snapshot: { metadata: { index: 1e6, term: term + 100, config: { voters: ['rogue'], learners: [] } }, data: new Uint8Array() } } as never);
      }
      await new Promise((r) => setTimeout(r, 100));
      for (const m of c.masters.values()) {
        expect(m.driver.term).toBe(term);
        expect(m.driver.droppedFromStrangers).toBeGreaterThanOrEqual(3);
        expect(m.machine.state.stat('/kept')).toBeDefined();
      }
      expect(leader.driver.role).toBe('leader');
      expect(await leader.driver.propose(mkdir('/after'))).toMatchObject({ ok: true });
    } finally {
      await c.stop();
    }
  });
});
