import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import type { MetaRequest, MetaResponse } from '../../src/meta/index.ts';
import { signReceipt } from '../../src/net/receipt.ts';
import { startInProcessMasters, type InProcessMaster } from '../support/master-fixture.ts';
import { cid, manifestOf } from '../support/meta-fixtures.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
/** A client peer logged in as a user with the writer role (no admin rights). */
const CLIENT = { peerId: 'testClientPeer0001' };
/** A master (the in-process fixture's ids): node administration comes from masters or admins. */
const ADMIN = { peerId: 'm1' };
const keys = await Promise.all([1, 2, 3, 4].map(() => generateKeyPair('Ed25519')));
const ids = keys.map((k) => peerIdFromPrivateKey(k).toString());
const heartbeat = (nodeId: string, added: string[] = []): MetaRequest => ({ type: 'heartbeat', nodeId, freeBytes: 1e12, capacityBytes: 1e12, usedBytes: 0, chunkCount: 0, inflight: 0, added, removed: [] });

/** Sends requests as CLIENT with a writer's login token. */
async function writer(c: Awaited<ReturnType<typeof startInProcessMasters>>): Promise<(request: MetaRequest) => Promise<MetaResponse>> {
  const token = await c.login('writer1', ['writer'], CLIENT.peerId);
  const leader = await c.ready();
  return (request) => leader.service.handle({ ...request, token }, CLIENT);
}

async function register(m: InProcessMaster, nodeId: string): Promise<void> {
  const r = await m.service.handle({ type: 'write', clientId: nodeId, seq: 1, cmd: { op: 'registerNode', nodeId, addrs: ['/ip4/127.0.0.1/tcp/1'], capacityBytes: 1e12 } }, { peerId: nodeId });
  expect(r.ok).toBe(true);
  await m.service.handle(heartbeat(nodeId), { peerId: nodeId });
  await m.service.handle({ type: 'report', nodeId, ids: [], first: true, last: true }, { peerId: nodeId });
}

describe('storage node admission (issue 12)', () => {
  it('a new node is pending — no data, not in the dialable list — until admitted', async () => {
    const c = await startInProcessMasters(() => tempDir(), { autoAdmit: false });
    try {
      const leader = await c.ready();
      const send = await writer(c);
      for (const id of ids.slice(0, 3)) await register(leader, id);
      expect(leader.machine.state.nodes().map((n) => n.state)).toEqual(['pending', 'pending', 'pending']);
      const placed = await send({ type: 'place', chunks: [{ id: cid(1), size: 10 }] });
      expect(placed).toMatchObject({ ok: false, code: 'ERR_UNDER_REPLICATED' });
      const hb = await leader.service.handle(heartbeat(ids[0]!), { peerId: ids[0]! });
      expect((hb.value as { nodes?: unknown[] }).nodes).toEqual([]);
      let seq = 0;
      for (const id of ids.slice(0, 3)) {
        expect(await send({ type: 'write', clientId: 'admin', seq: ++seq, cmd: { op: 'admitNode', nodeId: id } })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
        expect(await leader.service.handle({ type: 'write', clientId: 'admin', seq: ++seq, cmd: { op: 'admitNode', nodeId: id } }, ADMIN)).toMatchObject({ ok: true });
      }
      expect(await leader.service.handle({ type: 'write', clientId: 'admin', seq: ++seq, cmd: { op: 'admitNode', nodeId: ids[0]! } }, ADMIN)).toMatchObject({ ok: false, code: 'ERR_INVALID_ARGUMENT' });
      expect((await send({ type: 'place', chunks: [{ id: cid(1), size: 10 }] })).ok).toBe(true);
    } finally {
      await c.stop();
    }
  });

  it('a node that registers again keeps its state (the failure detector owns liveness)', async () => {
    const c = await startInProcessMasters(() => tempDir());
    try {
      const leader = await c.ready();
      const send = await writer(c);
      await register(leader, ids[0]!);
      await leader.service.handle({ type: 'write', clientId: 'admin', seq: 1, cmd: { op: 'drainNode', nodeId: ids[0]! } }, ADMIN);
      await register(leader, ids[0]!);
      expect(leader.machine.state.node(ids[0]!)?.state).toBe('draining');
    } finally {
      await c.stop();
    }
  });
});

describe('replicas count only on proof from the node itself (issue 12)', () => {
  it('a commit whose receipts are forged, or signed for another fence, is refused', async () => {
    const c = await startInProcessMasters(() => tempDir());
    try {
      const leader = await c.ready();
      const send = await writer(c);
      for (const id of ids.slice(0, 3)) await register(leader, id);
      const x = cid(2);
      const placed = await send({ type: 'place', chunks: [{ id: x, size: 10 }], uploadId: 'u' });
      const fence = (placed.value as Array<{ fence: number }>)[0]!.fence;
      const rogue = keys[3]!;
      const commit = (receipts: Array<{ node: string; sig: string }>, seq: number): MetaRequest => ({
        type: 'write',
        clientId: 'c',
        seq,
        cmd: { op: 'commitFile', path: `/f${seq}`, manifest: manifestOf([[x, 10]]), parents: true, ifAbsent: false },
        stored: [{ id: x, fence, receipts }],
        uploadId: 'u',
      });
      // Signed by the rogue's key, each naming an honest node.
      const forged = await Promise.all(ids.slice(0, 3).map(async (node) => ({ node, sig: (await signReceipt(rogue, x, fence)).sig })));
      expect(await send(commit(forged, 1))).toMatchObject({ ok: false, code: 'ERR_UNDER_REPLICATED' });
      // The right keys, another fence.
      const otherFence = await Promise.all(ids.slice(0, 3).map((_, k) => signReceipt(keys[k]!, x, fence + 1)));
      expect(await send(commit(otherFence, 2))).toMatchObject({ ok: false, code: 'ERR_UNDER_REPLICATED' });
      expect(leader.service.dataPlane!.holderCount(x)).toBe(0);
      const honest = await Promise.all(ids.slice(0, 3).map((_, k) => signReceipt(keys[k]!, x, fence)));
      expect(await send(commit(honest, 3))).toMatchObject({ ok: true });
      expect(leader.service.dataPlane!.holderCount(x)).toBe(3);
    } finally {
      await c.stop();
    }
  });
});

describe('dfs node rm (issue 14)', () => {
  it('refuses to forget a node that holds copies others lack, unless forced', async () => {
    const c = await startInProcessMasters(() => tempDir());
    try {
      const leader = await c.ready();
      const send = await writer(c);
      for (const id of ids.slice(0, 3)) await register(leader, id);
      const x = cid(3);
      const placed = await send({ type: 'place', chunks: [{ id: x, size: 10 }], uploadId: 'u' });
      const fence = (placed.value as Array<{ fence: number }>)[0]!.fence;
      const receipts = await Promise.all(ids.slice(0, 3).map((_, k) => signReceipt(keys[k]!, x, fence)));
      await send({ type: 'write', clientId: 'c', seq: 1, cmd: { op: 'commitFile', path: '/f', manifest: manifestOf([[x, 10]]), parents: true, ifAbsent: false }, stored: [{ id: x, fence, receipts }], uploadId: 'u' });
      const rm = (force: boolean, seq: number): MetaRequest => ({ type: 'write', clientId: 'admin', seq, cmd: { op: 'removeNode', nodeId: ids[0]!, force } });
      const refused = await leader.service.handle(rm(false, 1), ADMIN);
      expect(refused).toMatchObject({ ok: false, code: 'ERR_NOT_EMPTY' });
      expect(refused.message).toMatch(/1 chunk\(s\).*dfs node drain/);
      expect(await leader.service.handle(rm(true, 2), ADMIN)).toMatchObject({ ok: true });
      expect(leader.machine.state.node(ids[0]!)).toBeUndefined();
    } finally {
      await c.stop();
    }
  });
});

describe('proof sent ahead of the commit (proveStored)', () => {
  it('records copies its receipts prove, ignores forged ones; the commit then needs no acks', async () => {
    const c = await startInProcessMasters(() => tempDir());
    try {
      const leader = await c.ready();
      const send = await writer(c);
      for (const id of ids.slice(0, 3)) await register(leader, id);
      const [x, y] = [cid(11), cid(12)];
      const placed = await send({ type: 'place', chunks: [{ id: x, size: 10 }, { id: y, size: 10 }], uploadId: 'u' });
      const fence = (placed.value as Array<{ fence: number }>)[0]!.fence;
      const good = await Promise.all(ids.slice(0, 3).map((_, k) => signReceipt(keys[k]!, x, fence)));
      const forged = await Promise.all(ids.slice(0, 3).map(async (node) => ({ node, sig: (await signReceipt(keys[3]!, y, fence)).sig })));
      const r = await send({ type: 'proveStored', acks: [{ id: x, fence, receipts: good }, { id: y, fence, receipts: forged }] });
      expect(r.ok).toBe(true);
      expect(leader.service.dataPlane!.holderCount(x)).toBe(3);
      expect(leader.service.dataPlane!.holderCount(y)).toBe(0);
      const commit = await send({ type: 'write', clientId: 'c', seq: 1, cmd: { op: 'commitFile', path: '/f', manifest: manifestOf([[x, 10]]), parents: true, ifAbsent: false }, stored: [], uploadId: 'u' });
      expect(commit.ok).toBe(true);
    } finally {
      await c.stop();
    }
  });
});
