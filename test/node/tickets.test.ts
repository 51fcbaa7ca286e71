import { generateKeyPair } from '@libp2p/crypto/keys';
import { describe, expect, it } from 'vitest';
import { MAX_TICKET_CHARS, MAX_TICKET_IDS } from '../../src/auth/tickets.ts';
import { FrameReader, FrameWriter } from '../../src/net/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { ClusterKey } from '../../src/node/cluster-key.ts';
import * as chunkClient from '../../src/protocol/chunk-client.ts';
import { CHUNK_FRAME_MAX_BYTES, CHUNK_PROTOCOL } from '../../src/protocol/chunk-protocol.ts';
import { startPeer } from '../net/peers.ts';
import { rejection } from '../support/errors.ts';
import { clusterKeyText, ticket } from '../support/tickets.ts';
import { ManualClock } from './manual-clock.ts';
import { FENCE, known, makeChunk, startKeyedPeer, startNode, utf8 } from './node-fixture.ts';
import type { TestNode } from './node-fixture.ts';

/**
 * Chunk tickets on a real ChunkService over real libp2p peers: the node checks every put, get
 * and delete against the ticket with the cluster's public key alone (signature, expiry on its own
 * clock, operation, chunk id, bearer = the Noise-authenticated remote, fence), and accepts a put
 * forwarded down a pipeline with the first hop's ticket only from a storage node it knows.
 */

const otherKey = await generateKeyPair('Ed25519');
const T0 = 1_000_000;

/** A node on a manual clock at T0 (tickets below are issued at T0 unless a test says otherwise), deletes allowed to `master`. */
async function ticketNode(master?: DfsPeer, options: Parameters<typeof startNode>[0] = {}): Promise<TestNode & { clock: ManualClock }> {
  const clock = new ManualClock(T0);
  const node = await startNode({ clock, ...(master ? { canDelete: (peerId: string) => peerId === master.peerId } : {}), ...options });
  node.store.fences.raiseFloor(0); // as the first heartbeat answer does
  return { ...node, clock };
}

/** Sends one raw request header (and payload) from `from`; the decoded answer header. */
async function raw(from: DfsPeer, addr: string, header: object, payload?: Uint8Array): Promise<{ ok: boolean; code?: string; message?: string }> {
  const stream = await from.dialProtocol(addr, CHUNK_PROTOCOL, { timeoutMs: 5000 });
  const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  try {
    await writer.write(utf8(header));
    if (payload && payload.byteLength > 0) await writer.write(payload);
    await writer.close();
  } catch {
    // the answer says why
  }
  try {
    const frame = await reader.read({ signal: AbortSignal.timeout(5000) });
    return JSON.parse(new TextDecoder().decode(frame!.subarray())) as { ok: boolean; code?: string; message?: string };
  } finally {
    reader.release();
    if (stream.status === 'open') stream.abort(new Error('test done'));
  }
}

const put = (peer: DfsPeer, node: TestNode, c: { id: string; data: Uint8Array }, t: string, fence = FENCE) => chunkClient.putChunk(peer, [node.addr], c.id, c.data, fence, t);
const get = (peer: DfsPeer, node: TestNode, id: string, t: string) => chunkClient.getChunk(peer, node.addr, id, t);
const del = (peer: DfsPeer, node: TestNode, ids: string[], t: string, fence = FENCE) => chunkClient.deleteChunks(peer, node.addr, ids, fence, async () => t);

describe('chunk tickets: a node refuses', () => {
  it('a put, get or delete with no ticket (ERR_UNAUTHENTICATED), and stores or removes nothing', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const x = makeChunk(1000);
    const noPut = await rejection(put(client, node, x, ''));
    expect(noPut.code).toBe('ERR_UNAUTHENTICATED');
    expect(noPut.message).toMatch(/no chunk ticket/);
    // A header without the field at all is the same refusal, not a malformed message.
    expect(await raw(client, node.addr, { op: 'put', id: x.id, size: x.data.byteLength, fence: FENCE, pipeline: [] }, x.data)).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
    expect(await node.store.has(x.id)).toBe(false);
    await node.store.put(x.id, x.data);
    expect((await rejection(get(client, node, x.id, ''))).code).toBe('ERR_UNAUTHENTICATED');
    expect(await raw(client, node.addr, { op: 'get', id: x.id })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
    expect((await rejection(del(master, node, [x.id], ''))).code).toBe('ERR_UNAUTHENTICATED');
    expect(await raw(master, node.addr, { op: 'delete', ids: [x.id], fence: FENCE })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
    expect(await node.store.has(x.id)).toBe(true);
    expect(node.service.stats).toMatchObject({ puts: 0, gets: 0, bytesIn: 0, bytesOut: 0, chunksDeleted: 0, refusals: { ERR_UNAUTHENTICATED: 6 } });
    // `has` needs none.
    expect(await chunkClient.hasChunks(client, node.addr, [x.id])).toEqual([true]);
  });

  it('an expired ticket (ERR_TOKEN_EXPIRED), judged by the node clock', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const x = makeChunk(1000);
    const putTicket = await ticket('put', x.id, client, { fence: FENCE, now: T0, ttlMs: 60_000 });
    const getTicket = await ticket('get', x.id, client, { now: T0, ttlMs: 60_000 });
    const deleteTicket = await ticket('delete', x.id, master, { fence: FENCE + 1, now: T0, ttlMs: 60_000 });
    node.clock.advance(60_000); // exactly at exp: expired
    expect((await rejection(put(client, node, x, putTicket))).code).toBe('ERR_TOKEN_EXPIRED');
    expect(await node.store.has(x.id)).toBe(false);
    await node.store.put(x.id, x.data);
    expect((await rejection(get(client, node, x.id, getTicket))).code).toBe('ERR_TOKEN_EXPIRED');
    expect((await rejection(del(master, node, [x.id], deleteTicket, FENCE + 1))).code).toBe('ERR_TOKEN_EXPIRED');
    expect(await node.store.has(x.id)).toBe(true);
    // One millisecond earlier on the node's clock, the same tickets are good.
    const early = await ticketNode(master);
    early.clock.advance(59_999);
    expect((await put(client, early, x, putTicket)).stored).toEqual([early.peer.peerId]);
    expect(Buffer.from(await get(client, early, x.id, getTicket)).equals(Buffer.from(x.data))).toBe(true);
    expect(await del(master, early, [x.id], deleteTicket, FENCE + 1)).toEqual({ deleted: 1, kept: [] });
  });

  it('a ticket for another chunk (ERR_FORBIDDEN)', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const [x, y] = [makeChunk(1000), makeChunk(2000)];
    const err = await rejection(put(client, node, x, await ticket('put', y.id, client, { fence: FENCE, now: T0 })));
    expect(err.code).toBe('ERR_FORBIDDEN');
    expect(err.message).toMatch(/does not cover chunk/);
    await node.store.put(x.id, x.data);
    await node.store.put(y.id, y.data);
    expect((await rejection(get(client, node, x.id, await ticket('get', y.id, client, { now: T0 })))).code).toBe('ERR_FORBIDDEN');
    // A delete: every id must be the ticket's; none is removed otherwise.
    expect((await rejection(del(master, node, [y.id, x.id], await ticket('delete', y.id, master, { fence: FENCE, now: T0 })))).code).toBe('ERR_FORBIDDEN');
    expect(await chunkClient.hasChunks(client, node.addr, [x.id, y.id])).toEqual([true, true]);
  });

  it('a ticket for another operation (ERR_FORBIDDEN)', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const x = makeChunk(1000);
    for (const op of ['get', 'delete'] as const) {
      const err = await rejection(put(client, node, x, await ticket(op, x.id, client, { fence: FENCE, now: T0 })));
      expect(err.code).toBe('ERR_FORBIDDEN');
      expect(err.message).toMatch(new RegExp(`for ${op}, not put or replicate`));
    }
    expect(await node.store.has(x.id)).toBe(false);
    await node.store.put(x.id, x.data);
    for (const op of ['put', 'replicate', 'delete'] as const) {
      expect((await rejection(get(client, node, x.id, await ticket(op, x.id, client, { now: T0 })))).code).toBe('ERR_FORBIDDEN');
    }
    for (const op of ['put', 'replicate', 'get'] as const) {
      expect((await rejection(del(master, node, [x.id], await ticket(op, x.id, master, { fence: FENCE, now: T0 })))).code).toBe('ERR_FORBIDDEN');
    }
    expect(await node.store.has(x.id)).toBe(true);
  });

  it('a ticket issued to peer A presented by peer B (ERR_FORBIDDEN): a stolen ticket is useless', async () => {
    const master = await startPeer({ listen: [] });
    const alice = await startPeer({ listen: [] });
    const bob = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const x = makeChunk(1000);
    const err = await rejection(put(bob, node, x, await ticket('put', x.id, alice, { fence: FENCE, now: T0 })));
    expect(err.code).toBe('ERR_FORBIDDEN');
    expect(err.message).toMatch(new RegExp(`issued to peer ${alice.peerId}, not to ${bob.peerId}.*not one this node knows`));
    expect(await node.store.has(x.id)).toBe(false);
    await node.store.put(x.id, x.data);
    expect((await rejection(get(bob, node, x.id, await ticket('get', x.id, alice, { now: T0 })))).code).toBe('ERR_FORBIDDEN');
    // Even a master may not use the leader's delete ticket issued to another master.
    const otherMaster = await startPeer({ listen: [] });
    const both = await ticketNode(undefined, { canDelete: (id) => id === master.peerId || id === otherMaster.peerId });
    await both.store.put(x.id, x.data);
    expect((await rejection(del(otherMaster, both, [x.id], await ticket('delete', x.id, master, { fence: FENCE, now: T0 })))).code).toBe('ERR_FORBIDDEN');
    expect(await both.store.has(x.id)).toBe(true);
  });

  it('a ticket for another fence (ERR_FORBIDDEN)', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const x = makeChunk(1000);
    const err = await rejection(put(client, node, x, await ticket('put', x.id, client, { fence: 5, now: T0 }), 6));
    expect(err.code).toBe('ERR_FORBIDDEN');
    expect(err.message).toMatch(/fence 5, the request has 6/);
    await node.store.put(x.id, x.data);
    // A delete decided at fence 7 may not pass as one decided later (which could remove newer puts).
    expect((await rejection(del(master, node, [x.id], await ticket('delete', x.id, master, { fence: 7, now: T0 }), 100))).code).toBe('ERR_FORBIDDEN');
    expect(await node.store.has(x.id)).toBe(true);
  });

  it('a ticket signed by another key, a tampered one, garbage (ERR_UNAUTHENTICATED); an oversized or non-string one is malformed (ERR_PROTOCOL)', async () => {
    const client = await startPeer({ listen: [] });
    const node = await ticketNode();
    const [x, y] = [makeChunk(1000), makeChunk(1000)];
    const foreign = await ticket('put', x.id, client, { fence: FENCE, now: T0, key: otherKey });
    const foreignErr = await rejection(put(client, node, x, foreign));
    expect(foreignErr.code).toBe('ERR_UNAUTHENTICATED');
    expect(foreignErr.message).toMatch(/not signed by this cluster's key/);
    // Claims swapped for another chunk's under the original signature.
    const good = await ticket('put', y.id, client, { fence: FENCE, now: T0 });
    const [, sig] = good.split('.');
    const claims = JSON.parse(Buffer.from(good.split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;
    const tampered = `${Buffer.from(JSON.stringify({ ...claims, ids: [x.id] })).toString('base64url')}.${sig}`;
    expect((await rejection(put(client, node, x, tampered))).code).toBe('ERR_UNAUTHENTICATED');
    const longer = `${Buffer.from(JSON.stringify({ ...claims, exp: (claims.exp as number) + 3_600_000 })).toString('base64url')}.${sig}`;
    expect((await rejection(put(client, node, y, longer))).code).toBe('ERR_UNAUTHENTICATED');
    for (const junk of ['x', 'a.b', `${'A'.repeat(40)}.${'B'.repeat(86)}`]) {
      expect((await rejection(put(client, node, x, junk))).code).toBe('ERR_UNAUTHENTICATED');
    }
    const header = { op: 'put', id: x.id, size: x.data.byteLength, fence: FENCE, pipeline: [] };
    expect(await raw(client, node.addr, { ...header, ticket: 'A'.repeat(MAX_TICKET_CHARS + 1) }, x.data)).toMatchObject({ ok: false, code: 'ERR_PROTOCOL', message: expect.stringMatching(/^field ticket/) });
    expect(await raw(client, node.addr, { ...header, ticket: 42 }, x.data)).toMatchObject({ ok: false, code: 'ERR_PROTOCOL' });
    expect(await raw(client, node.addr, { op: 'get', id: x.id, ticket: ['t'] })).toMatchObject({ ok: false, code: 'ERR_PROTOCOL' });
    expect(await node.store.has(x.id)).toBe(false);
    expect(node.service.cachedTickets).toBe(0); // refused tickets are not cached
  });

  it('everything but has, before it has heard the cluster key from a master (ERR_UNAVAILABLE); then serves', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const clusterKey = new ClusterKey();
    const node = await ticketNode(master, { clusterKey });
    const x = makeChunk(1000);
    const putTicket = await ticket('put', x.id, client, { fence: FENCE, now: T0 });
    const err = await rejection(put(client, node, x, putTicket));
    expect(err.code).toBe('ERR_UNAVAILABLE');
    expect(err.message).toMatch(/not heard the cluster key/);
    expect((await rejection(get(client, node, x.id, await ticket('get', x.id, client, { now: T0 })))).code).toBe('ERR_UNAVAILABLE');
    expect((await rejection(del(master, node, [x.id], await ticket('delete', x.id, master, { fence: FENCE, now: T0 })))).code).toBe('ERR_UNAVAILABLE');
    expect(await chunkClient.hasChunks(client, node.addr, [x.id])).toEqual([false]);
    // A master's answer brings the key (ControlLoop → ClusterKey): the same tickets are good now.
    expect(clusterKey.learn(clusterKeyText)).toBe('learnt');
    expect((await put(client, node, x, putTicket)).stored).toEqual([node.peer.peerId]);
    expect(await del(master, node, [x.id], await ticket('delete', x.id, master, { fence: FENCE + 1, now: T0 }), FENCE + 1)).toEqual({ deleted: 1, kept: [] });
  });

  it('a delete from a peer that is not a master, even with a ticket of its own (ERR_FORBIDDEN)', async () => {
    const master = await startPeer({ listen: [] });
    const stranger = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const x = makeChunk(1000);
    await node.store.put(x.id, x.data);
    const err = await rejection(del(stranger, node, [x.id], await ticket('delete', x.id, stranger, { fence: FENCE, now: T0 })));
    expect(err.code).toBe('ERR_FORBIDDEN');
    expect(err.message).toMatch(/may not delete/);
    expect(await node.store.has(x.id)).toBe(true);
  });
});

describe('chunk tickets: a node accepts', () => {
  it('a good ticket for put, get and delete, and checks a ticket seen again from its cache', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const x = makeChunk(300 * 1024);
    expect((await put(client, node, x, await ticket('put', x.id, client, { fence: FENCE, now: T0 }))).stored).toEqual([node.peer.peerId]);
    const getTicket = await ticket('get', x.id, client, { now: T0 });
    for (let i = 0; i < 3; i++) expect(Buffer.from(await get(client, node, x.id, getTicket)).equals(Buffer.from(x.data))).toBe(true);
    expect(node.service.cachedTickets).toBe(2); // the put's and the get's: the get's verified once
    // A delete ticket for several ids covers a request for any of them.
    const y = makeChunk(10);
    await node.store.put(y.id, y.data);
    expect(await del(master, node, [y.id, x.id], await ticket('delete', [x.id, y.id], master, { fence: FENCE + 1, now: T0 }), FENCE + 1)).toEqual({ deleted: 2, kept: [] });
  });

  it('a replicate push from the node the leader told to copy, and not from anyone else', async () => {
    const { peer: copier } = await startKeyedPeer();
    const other = await startPeer({ listen: [] });
    const node = await ticketNode();
    const x = makeChunk(1000);
    const replicate = await ticket('replicate', x.id, copier, { fence: 9, now: T0 });
    expect((await rejection(put(other, node, x, replicate, 9))).code).toBe('ERR_FORBIDDEN');
    expect((await put(copier, node, x, replicate, 9)).stored).toEqual([node.peer.peerId]);
  });

  it('a put forwarded down a pipeline: the first hop checks the bearer, the next node takes the ticket from a node it knows', async () => {
    const client = await startPeer({ listen: [] });
    const first = await ticketNode();
    const second = await ticketNode();
    const x = makeChunk(500 * 1024);
    const t = await ticket('put', x.id, client, { fence: FENCE, now: T0 });
    const { stored } = await chunkClient.putChunk(client, [first.addr, second.addr], x.id, x.data, FENCE, t);
    expect(stored).toEqual([first.peer.peerId, second.peer.peerId]);
    expect(await second.store.has(x.id)).toBe(true);
    // A replicating node's ticket forwarded likewise.
    const y = makeChunk(1000);
    const { peer: copier } = await startKeyedPeer();
    const r = await ticket('replicate', y.id, copier, { fence: 4, now: T0 });
    expect((await chunkClient.putChunk(copier, [first.addr, second.addr], y.id, y.data, 4, r)).stored).toHaveLength(2);
  });

  it('a forwarded put from an unknown peer is refused, and from a known node every other claim still counts', async () => {
    const client = await startPeer({ listen: [] });
    const node = await ticketNode();
    const { peer: listed } = await startKeyedPeer(); // a storage node of the masters' list
    known.set(listed.peerId, '/ip4/127.0.0.1/tcp/9/p2p/' + listed.peerId);
    const stranger = await startPeer({ listen: [] });
    const x = makeChunk(1000);
    const header = (t: string, extra: object = {}) => ({ op: 'put', id: x.id, size: x.data.byteLength, fence: FENCE, pipeline: [], ticket: t, ...extra });
    const clientTicket = await ticket('put', x.id, client, { fence: FENCE, now: T0 });
    const fromStranger = await raw(stranger, node.addr, header(clientTicket), x.data);
    expect(fromStranger).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN', message: expect.stringMatching(/not one this node knows/) });
    expect(await node.store.has(x.id)).toBe(false);
    // From a listed node: another chunk, fence, operation, an expired or forged ticket are refused.
    const y = makeChunk(1000);
    expect(await raw(listed, node.addr, header(await ticket('put', y.id, client, { fence: FENCE, now: T0 })), x.data)).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
    expect(await raw(listed, node.addr, header(clientTicket, { fence: FENCE + 1 }), x.data)).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
    expect(await raw(listed, node.addr, header(await ticket('get', x.id, client, { now: T0 })), x.data)).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
    expect(await raw(listed, node.addr, header(await ticket('put', x.id, client, { fence: FENCE, now: T0 - 60_000 })), x.data)).toMatchObject({ ok: false, code: 'ERR_TOKEN_EXPIRED' });
    expect(await raw(listed, node.addr, header(await ticket('put', x.id, client, { fence: FENCE, now: T0, key: otherKey })), x.data)).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
    expect(await node.store.has(x.id)).toBe(false);
    // A get ticket is never forwarded: a listed node may not read with a client's.
    await node.store.put(y.id, y.data);
    expect(await raw(listed, node.addr, { op: 'get', id: y.id, ticket: await ticket('get', y.id, client, { now: T0 }) })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
    // The good forward.
    expect(await raw(listed, node.addr, header(clientTicket), x.data)).toMatchObject({ ok: true, stored: [node.peer.peerId] });
  });

  it('a forward from a node that registered since the last heartbeat: the node list is asked for once', async () => {
    const client = await startPeer({ listen: [] });
    const { peer: late } = await startKeyedPeer();
    let refreshed = 0;
    const node = await ticketNode(undefined, {
      refreshNodes: async () => {
        refreshed++;
        known.set(late.peerId, '/ip4/127.0.0.1/tcp/9/p2p/' + late.peerId);
      },
    });
    const x = makeChunk(1000);
    const t = await ticket('put', x.id, client, { fence: FENCE, now: T0 });
    expect(await raw(late, node.addr, { op: 'put', id: x.id, size: x.data.byteLength, fence: FENCE, pipeline: [], ticket: t }, x.data)).toMatchObject({ ok: true });
    expect(refreshed).toBe(1);
  });
});

describe('deleteChunks: one ticket per batch of at most MAX_TICKET_IDS ids', () => {
  it('splits a long delete into batches, each with the ticket ticketFor gives', async () => {
    const master = await startPeer({ listen: [] });
    const node = await ticketNode(master);
    const stored = [makeChunk(10), makeChunk(20)];
    for (const c of stored) await node.store.put(c.id, c.data);
    const ids = [...Array.from({ length: 600 }, (_, i) => makeChunk(30 + i).id), ...stored.map((c) => c.id)];
    const batches: string[][] = [];
    const answer = await chunkClient.deleteChunks(master, node.addr, ids, FENCE, (batch) => {
      batches.push(batch);
      return ticket('delete', batch, master, { fence: FENCE, now: T0 });
    });
    expect(batches.map((b) => b.length)).toEqual([MAX_TICKET_IDS, MAX_TICKET_IDS, ids.length - 2 * MAX_TICKET_IDS]);
    expect(batches.flat()).toEqual(ids);
    expect(answer).toEqual({ deleted: 2, kept: [] });
    // No ids: nothing sent, no ticket asked for.
    expect(await chunkClient.deleteChunks(master, node.addr, [], FENCE, () => Promise.reject(new Error('not asked')))).toEqual({ deleted: 0, kept: [] });
  });
});
