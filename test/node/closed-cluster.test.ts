import { describe, expect, it } from 'vitest';
import { getChunk, putChunk, ticket } from '../support/tickets.ts';
import { FrameReader, FrameWriter } from '../../src/net/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { CHUNK_FRAME_MAX_BYTES, CHUNK_PROTOCOL, ChunkTargetError } from '../../src/protocol/chunk-protocol.ts';
import { addrOf, startPeer } from '../net/peers.ts';
import { rejection } from '../support/errors.ts';
import { FENCE, known, makeChunk, MiB, spyDials, startNode, utf8 } from './node-fixture.ts';

/**
 * Issue "closed cluster": a put's pipeline made a node dial any address it named (/dns4/localhost,
 * closed ports, anything). Now a pipeline names peer ids, and a node forwards only to storage
 * nodes in the list the masters sent, at the address the list gives.
 */

/** A peer that is not a storage node of the cluster; counts the chunk streams it is sent. */
async function startStranger(): Promise<{ peer: DfsPeer; addr: string; streams: () => number }> {
  const peer = await startPeer();
  let streams = 0;
  await peer.handle(CHUNK_PROTOCOL, (stream) => {
    streams++;
    stream.abort(new Error('not a storage node'));
  });
  return { peer, addr: addrOf(peer), streams: () => streams };
}

async function rawPut(client: DfsPeer, addr: string, header: object, payload: Uint8Array): Promise<unknown> {
  const stream = await client.dialProtocol(addr, CHUNK_PROTOCOL, { timeoutMs: 5000 });
  const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  try {
    const id = (header as { id: string }).id;
    const fence = (header as { fence: number }).fence;
    await writer.write(utf8({ op: 'put', ticket: await ticket('put', id, client, { fence }), ...header }));
    if (payload.byteLength > 0) await writer.write(payload);
    await writer.close();
  } catch {
    // the answer says why
  }
  try {
    const frame = await reader.read({ signal: AbortSignal.timeout(5000) });
    return frame && JSON.parse(new TextDecoder().decode(frame.subarray()));
  } finally {
    reader.release();
    if (stream.status === 'open') stream.abort(new Error('test done'));
  }
}

describe('pipelines name peer ids; a node dials only storage nodes it knows', () => {
  it('refuses to forward to a peer id not in its node list, without any dial, and keeps its own copy', async () => {
    const node = await startNode();
    const stranger = await startStranger(); // running and reachable, but not a storage node
    const dials = spyDials(node.peer);
    const client = await startPeer({ listen: [] });
    const x = makeChunk(300 * 1024);
    const err = await rejection(putChunk(client, [node.addr, stranger.addr], x.id, x.data, FENCE));
    expect(err).toBeInstanceOf(ChunkTargetError);
    expect(err).toMatchObject({ code: 'ERR_PIPELINE', failedTarget: `/p2p/${stranger.peer.peerId}`, failedCode: 'ERR_FORBIDDEN' });
    expect(err.message).toMatch(/not a storage node this node knows/);
    expect(dials).toEqual([]);
    expect(stranger.streams()).toBe(0);
    expect(node.peer.connectedPeers()).not.toContain(stranger.peer.peerId);
    expect(await node.store.has(x.id)).toBe(true); // as with any failed downstream: its own copy stays
  });

  it('never dials an address from a request: a pipeline of addresses is malformed', async () => {
    const node = await startNode();
    const stranger = await startStranger();
    known.set(stranger.peer.peerId, stranger.addr); // even a listed peer is not reached through a request's address
    const dials = spyDials(node.peer);
    const client = await startPeer({ listen: [] });
    const x = makeChunk(10);
    for (const target of [stranger.addr, `/dns4/localhost/tcp/22/p2p/${stranger.peer.peerId}`, '/ip4/127.0.0.1/tcp/1']) {
      const answer = await rawPut(client, node.addr, { id: x.id, size: 10, fence: FENCE, pipeline: [target] }, x.data);
      expect(answer).toMatchObject({ ok: false, code: 'ERR_PROTOCOL', message: expect.stringMatching(/^field pipeline\[0\]/) });
    }
    expect(dials).toEqual([]);
    expect(stranger.streams()).toBe(0);
    expect(await node.store.has(x.id)).toBe(false);
  });

  it('forwards to a listed node at the listed address, whatever address the client had for it', async () => {
    const [first, second] = [await startNode(), await startNode()];
    const dials = spyDials(first.peer);
    const client = await startPeer({ listen: [] });
    const x = makeChunk(2 * MiB + 5);
    // The client's address for the second node is bogus: only its peer id travels.
    const bogus = `/ip4/10.255.255.1/tcp/1/p2p/${second.peer.peerId}`;
    const { stored } = await putChunk(client, [first.addr, bogus], x.id, x.data, FENCE);
    expect(stored).toEqual([first.peer.peerId, second.peer.peerId]);
    expect(dials).toEqual([second.addr]);
    expect(Buffer.from(await getChunk(client, second.addr, x.id)).equals(Buffer.from(x.data))).toBe(true);
  });

  it('does not dial a listed address that names another peer', async () => {
    const [first, second] = [await startNode(), await startNode()];
    const stranger = await startStranger();
    known.set(second.peer.peerId, stranger.addr); // a list entry whose address is someone else's
    const dials = spyDials(first.peer);
    const client = await startPeer({ listen: [] });
    const x = makeChunk(1000);
    const err = await rejection(putChunk(client, [first.addr, second.addr], x.id, x.data, FENCE));
    expect(err).toMatchObject({ code: 'ERR_PIPELINE', failedCode: 'ERR_FORBIDDEN', failedTarget: `/p2p/${second.peer.peerId}` });
    expect(dials).toEqual([]);
    expect(stranger.streams()).toBe(0);
  });

  it('refuses a pipeline that names a node twice or the receiving node itself', async () => {
    const [first, second] = [await startNode(), await startNode()];
    const dials = spyDials(first.peer);
    const client = await startPeer({ listen: [] });
    const x = makeChunk(10);
    for (const pipeline of [[first.peer.peerId], [second.peer.peerId, second.peer.peerId]]) {
      const answer = await rawPut(client, first.addr, { id: x.id, size: 10, fence: FENCE, pipeline }, x.data);
      expect(answer).toMatchObject({ ok: false, code: 'ERR_PROTOCOL', message: expect.stringMatching(/names a node twice/) });
    }
    expect(dials).toEqual([]);
    // The client refuses such a pipeline before any I/O.
    expect((await rejection(putChunk(client, [first.addr, second.addr, second.addr], x.id, x.data, FENCE))).code).toBe('ERR_INVALID_ARGUMENT');
    expect((await rejection(putChunk(client, [first.addr, '/ip4/127.0.0.1/tcp/1'], x.id, x.data, FENCE))).code).toBe('ERR_INVALID_ARGUMENT');
  });
});

describe('a pipeline naming a node that registered after our last heartbeat', () => {
  it('asks the masters for the node list once, then forwards (the first put after a cluster starts)', async () => {
    const late = await startNode({}, { listed: false });
    let refreshed = 0;
    const node = await startNode({
      refreshNodes: async () => {
        refreshed++;
        known.set(late.peer.peerId, late.addr); // what the heartbeat's fresh node list says
      },
    });
    const client = await startPeer({ listen: [] });
    const x = makeChunk(64 * 1024);
    const { stored } = await putChunk(client, [node.addr, late.addr], x.id, x.data, FENCE);
    expect(stored).toEqual([node.peer.peerId, late.peer.peerId]);
    expect(refreshed).toBe(1);
    expect(await late.store.has(x.id)).toBe(true);
  });
});
