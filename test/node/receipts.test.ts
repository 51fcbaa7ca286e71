import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { putChunk } from '../support/tickets.ts';
import { ReceiptError } from '../../src/protocol/chunk-client.ts';
import { FrameReader, FrameWriter } from '../../src/net/index.ts';
import type { DfsPeer, Stream } from '../../src/net/index.ts';
import { CHUNK_FRAME_MAX_BYTES, CHUNK_PROTOCOL, ChunkTargetError } from '../../src/protocol/chunk-protocol.ts';
import { checkReceipts, receiptBytes, signReceipt, verifyReceipt } from '../../src/net/receipt.ts';
import type { Receipt } from '../../src/net/receipt.ts';
import { addrOf, startPeer } from '../net/peers.ts';
import { rejection } from '../support/errors.ts';
import { FENCE, known, makeChunk, MiB, startKeyedPeer, startNode, utf8 } from './node-fixture.ts';

/**
 * Issue: "three node ids registered from one process ... the rogue answered each put with ok and
 * stored nothing; dfs put exited 0 and the file was lost": the client (and the leader) believed the
 * `stored` list of an answer. Now each node that stores a chunk signs a receipt with its own key,
 * and an ack counts only with every node's receipt: each forwarding node checks that the answer
 * has one from every later node, the client (and the leader) check every signature.
 */

const ID = 'ab'.repeat(32);

async function keyed(): Promise<{ key: PrivateKey; id: string }> {
  const key = await generateKeyPair('Ed25519');
  return { key, id: peerIdFromPrivateKey(key).toString() };
}

describe('receipts (sign and verify)', () => {
  it('signs exactly "dfs/receipt/v1\\n<id>\\n<fence>\\n<peer id>" with the node key, and verifies only that', async () => {
    const { key, id: node } = await keyed();
    const fence = 7 * 2 ** 32 + 3;
    expect(new TextDecoder().decode(receiptBytes(ID, fence, node))).toBe(`dfs/receipt/v1\n${ID}\n${fence}\n${node}`);
    const receipt = await signReceipt(key, ID, fence);
    expect(receipt.node).toBe(node);
    expect(Buffer.from(receipt.sig, 'base64')).toHaveLength(64);
    // The signature is over those bytes, by that key.
    expect(await key.publicKey.verify(receiptBytes(ID, fence, node), Buffer.from(receipt.sig, 'base64'))).toBe(true);
    expect(await verifyReceipt(ID, fence, receipt)).toBe(true);
    // Anything else is refused, never thrown.
    const other = await keyed();
    expect(await verifyReceipt('cd'.repeat(32), fence, receipt)).toBe(false);
    expect(await verifyReceipt(ID, fence + 1, receipt)).toBe(false);
    expect(await verifyReceipt(ID, fence, { node: other.id, sig: receipt.sig })).toBe(false);
    expect(await verifyReceipt(ID, fence, { node, sig: 'AAAA' })).toBe(false);
    expect(await verifyReceipt(ID, fence, { node, sig: 'not base64!' })).toBe(false);
    expect(await verifyReceipt(ID, fence, { node: 'QmNotAPeerId', sig: receipt.sig })).toBe(false);
    expect(await verifyReceipt(ID, -1, receipt)).toBe(false);
  });

  it('checkReceipts wants the stored list to be the pipeline and a valid receipt from each node', async () => {
    const [a, b] = [await keyed(), await keyed()];
    const [ra, rb] = [await signReceipt(a.key, ID, 5), await signReceipt(b.key, ID, 5)];
    expect(await checkReceipts(ID, 5, [a.id, b.id], { stored: [a.id, b.id], receipts: [rb, ra] })).toEqual([ra, rb]);
    await expect(checkReceipts(ID, 5, [a.id, b.id], { stored: [a.id], receipts: [ra] })).rejects.toMatchObject({ code: 'ERR_PROTOCOL' });
    await expect(checkReceipts(ID, 5, [a.id, b.id], { stored: [a.id, b.id], receipts: [ra] })).rejects.toMatchObject({
      code: 'ERR_PROTOCOL',
      message: expect.stringContaining(`no receipt from node ${b.id}`),
    });
    // A receipt "for" b signed by a: a cannot speak for b.
    const forged: Receipt = { node: b.id, sig: ra.sig };
    await expect(checkReceipts(ID, 5, [a.id, b.id], { stored: [a.id, b.id], receipts: [ra, forged] })).rejects.toMatchObject({
      message: expect.stringContaining(`no valid receipt from node ${b.id}`),
    });
    // A receipt of another fence (an old put replayed) does not count.
    const old = await signReceipt(b.key, ID, 4);
    await expect(checkReceipts(ID, 5, [a.id, b.id], { stored: [a.id, b.id], receipts: [ra, old] })).rejects.toMatchObject({ code: 'ERR_PROTOCOL' });
  });
});

/**
 * A peer speaking the chunk protocol that reads a put's header and payload, stores nothing, and
 * answers whatever `answer(header)` returns.
 */
async function startRogue(answer: (header: { id: string; fence: number; pipeline: string[] }) => Promise<object>): Promise<{ peer: DfsPeer; key: PrivateKey; addr: string }> {
  const { peer, privateKey } = await startKeyedPeer();
  await peer.handle(CHUNK_PROTOCOL, async (stream: Stream) => {
    const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
    const first = await reader.read();
    const header = JSON.parse(new TextDecoder().decode(first!.subarray())) as { id: string; size: number; fence: number; pipeline: string[] };
    for (let got = 0; got < header.size; ) got += (await reader.read())!.byteLength;
    await reader.read(); // the end of the payload
    reader.release();
    const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
    await writer.write(utf8(await answer(header)));
    await writer.close();
  });
  return { peer, key: privateKey, addr: addrOf(peer) };
}

describe("a put counts only with each node's own receipt", () => {
  it('returns one checked receipt per node of a 3-node pipeline', async () => {
    const nodes = [await startNode(), await startNode(), await startNode()];
    const client = await startPeer({ listen: [] });
    const x = makeChunk(MiB + 3);
    const fence = 3 * 2 ** 32 + 9;
    const { stored, receipts } = await putChunk(client, nodes.map((n) => n.addr), x.id, x.data, fence);
    expect(stored).toEqual(nodes.map((n) => n.peer.peerId));
    expect(receipts.map((r) => r.node)).toEqual(stored);
    for (const r of receipts) expect(await verifyReceipt(x.id, fence, r)).toBe(true);
    // A chunk that was already there gets a receipt too (its fence recorded first).
    const again = await putChunk(client, [nodes[1]!.addr], x.id, x.data, fence + 1);
    expect(await verifyReceipt(x.id, fence + 1, again.receipts[0]!)).toBe(true);
  });

  it('refuses an ack from a rogue first node that vouches for nodes that never got the bytes', async () => {
    const honest = await startNode();
    // It names the honest node as having stored the chunk, with a receipt it signed itself.
    const rogue = await startRogue(async ({ id, fence, pipeline }) => ({
      ok: true,
      stored: [rogue.peer.peerId, ...pipeline],
      receipts: [await signReceipt(rogue.key, id, fence), ...pipeline.map((node) => ({ node, sig: 'A'.repeat(86) + '==' }))],
    }));
    const client = await startPeer({ listen: [] });
    const x = makeChunk(100 * 1024);
    const err = await rejection(putChunk(client, [rogue.addr, honest.addr], x.id, x.data, FENCE));
    expect(err).toBeInstanceOf(ChunkTargetError);
    expect(err).toMatchObject({ code: 'ERR_PROTOCOL', failedTarget: rogue.addr });
    expect(err.message).toContain(`no valid receipt from node ${honest.peer.peerId}`);
    expect(await honest.store.has(x.id)).toBe(false);
  });

  it('refuses an ack whose stored list is not the pipeline, or that carries no receipt', async () => {
    const honest = await startNode();
    const client = await startPeer({ listen: [] });
    const x = makeChunk(1000);
    const short = await startRogue(async ({ id, fence }) => ({ ok: true, stored: [short.peer.peerId], receipts: [await signReceipt(short.key, id, fence)] }));
    expect(await rejection(putChunk(client, [short.addr, honest.addr], x.id, x.data, FENCE))).toMatchObject({ code: 'ERR_PROTOCOL', failedTarget: short.addr });
    const bare = await startRogue(async () => ({ ok: true, stored: [bare.peer.peerId], receipts: [] }));
    expect(await rejection(putChunk(client, [bare.addr], x.id, x.data, FENCE))).toMatchObject({ code: 'ERR_PROTOCOL', failedTarget: bare.addr });
    const old = await startRogue(async ({ id }) => ({ ok: true, stored: [old.peer.peerId], receipts: [await signReceipt(old.key, id, 0)] }));
    expect(await rejection(putChunk(client, [old.addr], x.id, x.data, FENCE))).toMatchObject({ code: 'ERR_PROTOCOL', failedTarget: old.addr });
  });

  it('a forwarding node passes a later node\'s receipt on unchecked; the client refuses a bad signature and suspects every node up to it', async () => {
    const first = await startNode();
    // A later node that stores nothing and answers with a receipt-shaped signature of nobody.
    const rogue = await startRogue(async () => ({ ok: true, stored: [rogue.peer.peerId], receipts: [{ node: rogue.peer.peerId, sig: 'A'.repeat(86) + '==' }] }));
    known.set(rogue.peer.peerId, rogue.addr);
    const client = await startPeer({ listen: [] });
    const x = makeChunk(200 * 1024);
    const err = await rejection(putChunk(client, [first.addr, rogue.addr], x.id, x.data, FENCE));
    expect(err).toBeInstanceOf(ReceiptError);
    // The first node vouched for the answer; the bad receipt may be the rogue's or the first node's
    // doing: a retry avoids both.
    expect(err).toMatchObject({ code: 'ERR_PROTOCOL', failedTarget: first.addr, suspects: [first.addr, rogue.addr] });
    expect(err.message).toContain(`no valid receipt from node ${rogue.peer.peerId}`);
    // A bad receipt of the first node itself suspects it alone.
    const liar = await startRogue(async () => ({ ok: true, stored: [liar.peer.peerId], receipts: [{ node: liar.peer.peerId, sig: 'A'.repeat(86) + '==' }] }));
    expect(await rejection(putChunk(client, [liar.addr], x.id, x.data, FENCE))).toMatchObject({ code: 'ERR_PROTOCOL', suspects: [liar.addr] });
  });

  it('a forwarding node checks its downstream receipts: a rogue later node is the failed target', async () => {
    const first = await startNode();
    const rogue = await startRogue(async () => ({ ok: true, stored: [rogue.peer.peerId], receipts: [] }));
    known.set(rogue.peer.peerId, rogue.addr); // registered like any node
    const client = await startPeer({ listen: [] });
    const x = makeChunk(300 * 1024);
    const err = await rejection(putChunk(client, [first.addr, rogue.addr], x.id, x.data, FENCE));
    expect(err).toMatchObject({ code: 'ERR_PIPELINE', failedTarget: rogue.addr, failedCode: 'ERR_PROTOCOL' });
    expect(await first.store.has(x.id)).toBe(true); // the first node's copy is real, and stays
  });
});
