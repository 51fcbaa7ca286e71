import { describe, expect, it } from 'vitest';
import { putChunk, ticket } from '../support/tickets.ts';
import * as chunkClient from '../../src/protocol/chunk-client.ts';
import { FrameReader, FrameWriter } from '../../src/net/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { CHUNK_FRAME_MAX_BYTES, CHUNK_PROTOCOL } from '../../src/protocol/chunk-protocol.ts';
import { startPeer } from '../net/peers.ts';
import { until } from './manual-clock.ts';
import { FENCE, makeChunk, MiB, startNode, utf8 } from './node-fixture.ts';

/**
 * Issue: "twenty streams trickling a byte every 20 s into the in-flight budget made every put and
 * get fail for over 75 s, with errors that blame the cluster". Now one peer holds at most a share
 * of a node's budget, and a transfer holds its reservation for a bounded time in all.
 */

interface SlowPut {
  /** The first frame the node answers, or undefined while it answers nothing. */
  answer(): unknown;
  /** Sends one more payload byte. */
  trickle(): Promise<void>;
  close(): void;
}

/** A put that announces `size` bytes, sends one, and then only what `trickle` sends. */
async function slowPut(client: DfsPeer, addr: string, size: number, user?: string): Promise<SlowPut> {
  const { id } = makeChunk(size);
  const stream = await client.dialProtocol(addr, CHUNK_PROTOCOL, { timeoutMs: 5000 });
  const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  let answer: unknown;
  void reader.read().then(
    (frame) => (answer = frame && JSON.parse(new TextDecoder().decode(frame.subarray()))),
    (err: unknown) => (answer = err),
  );
  await writer.write(utf8({ op: 'put', id, size, fence: FENCE, pipeline: [], ticket: await ticket('put', id, client, { fence: FENCE, ...(user ? { user } : {}) }) }));
  await writer.write(Uint8Array.of(1));
  return {
    answer: () => answer,
    trickle: async () => {
      await writer.write(Uint8Array.of(1), { signal: AbortSignal.timeout(5000) }).catch(() => {});
    },
    close: () => {
      reader.release();
      if (stream.status === 'open') stream.abort(new Error('test done'));
    },
  };
}

describe('in-flight budget: one peer gets a share, a transfer a bounded time', () => {
  it('a peer holding its share with slow puts does not stop another peer\'s put', async () => {
    // 8 MiB in all; a peer may hold a quarter (2 MiB) once it holds anything.
    const node = await startNode({ maxInflightBytes: 8 * MiB });
    const hog = await startPeer({ listen: [] });
    const slow: SlowPut[] = [];
    for (let i = 0; i < 4; i++) slow.push(await slowPut(hog, node.addr, 2 * MiB));
    await until(() => slow.filter((s) => s.answer() !== undefined).length === 3, 5000, 'three refusals');
    // The first holds its 2 MiB; the next three were refused, naming the peer's own load.
    expect(slow[0]!.answer()).toBeUndefined();
    for (const s of slow.slice(1)) {
      expect(s.answer()).toMatchObject({ ok: false, code: 'ERR_OVERLOADED', message: expect.stringMatching(new RegExp(`this peer \\(${hog.peerId}\\) has ${2 * MiB} bytes in flight`)) });
    }
    expect(node.service.inflightBytesOf(hog.peerId)).toBe(2 * MiB);
    expect(node.service.stats).toMatchObject({ inflightBytes: 2 * MiB, inflightPeers: 1 });

    // Another peer's puts go through meanwhile (even two at once, up to its own share).
    const other = await startPeer({ listen: [] });
    const [a, b] = [makeChunk(MiB), makeChunk(MiB)];
    const acks = await Promise.all([putChunk(other, [node.addr], a.id, a.data, FENCE), putChunk(other, [node.addr], b.id, b.data, FENCE)]);
    expect(acks.map((r) => r.stored)).toEqual([[node.peer.peerId], [node.peer.peerId]]);
    for (const s of slow) s.close();
    await until(() => node.service.stats.inflightBytes === 0, 5000, 'the budget to be free');
    expect(node.service.stats.inflightPeers).toBe(0);
  });

  it('a put trickling a byte now and then loses its reservation at the transfer deadline', async () => {
    // Idle timeout 400 ms per read: a byte every 150 ms is never idle. The whole put has 1.2 s.
    const node = await startNode({ transferTimeoutMs: 400, transferDeadlineMs: 1200 });
    const client = await startPeer({ listen: [] });
    const put = await slowPut(client, node.addr, MiB);
    await until(() => node.service.stats.inflightBytes === MiB, 2000, 'the reservation');
    const startedAt = performance.now();
    let trickling = true;
    const trickler = (async () => {
      while (trickling) {
        await put.trickle();
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
    })();
    try {
      await until(() => node.service.stats.inflightBytes === 0, 5000, 'the reservation to be released');
      const heldMs = performance.now() - startedAt;
      expect(heldMs).toBeLessThan(2500);
      await until(() => put.answer() !== undefined, 2000, 'the answer');
      expect(put.answer()).toMatchObject({ ok: false, code: 'ERR_TIMEOUT', message: expect.stringMatching(/took longer than 1200 ms/) });
      expect(node.service.stats.refusals.ERR_TIMEOUT).toBe(1);
    } finally {
      trickling = false;
      await trickler;
      put.close();
    }
    // The node serves on.
    const x = makeChunk(1000);
    await putChunk(client, [node.addr], x.id, x.data, FENCE);
    expect(await node.store.has(x.id)).toBe(true);
  });

  it('one user\'s many peers hold one share (their tickets name the user); another user\'s put goes through', async () => {
    const node = await startNode({ maxInflightBytes: 8 * MiB });
    // Mallory's first peer takes her 2 MiB share; her second and third peers get no more.
    const peers = [await startPeer({ listen: [] }), await startPeer({ listen: [] }), await startPeer({ listen: [] })];
    const slow: SlowPut[] = [];
    for (const p of peers) slow.push(await slowPut(p, node.addr, 2 * MiB, 'mallory'));
    await until(() => slow.filter((s) => s.answer() !== undefined).length === 2, 5000, 'two refusals');
    expect(slow[0]!.answer()).toBeUndefined();
    for (const s of slow.slice(1)) expect(s.answer()).toMatchObject({ ok: false, code: 'ERR_OVERLOADED', message: expect.stringMatching(/this user mallory has 2097152 bytes in flight/) });
    expect(node.service.stats).toMatchObject({ inflightBytes: 2 * MiB, inflightPeers: 1 });
    // Alice (another user, on a peer of her own) is not held up by Mallory's peers.
    const alice = await startPeer({ listen: [] });
    const a = makeChunk(MiB);
    const put = await chunkClient.putChunk(alice, [node.addr], a.id, a.data, FENCE, await ticket('put', a.id, alice, { fence: FENCE, user: 'alice' }));
    expect(put.stored).toEqual([node.peer.peerId]);
    for (const s of slow) s.close();
    await until(() => node.service.stats.inflightBytes === 0, 5000, 'the budget to be free');
  });

  it('a peer with nothing in flight may start one transfer larger than its share', async () => {
    const node = await startNode({ maxInflightBytes: 8 * MiB });
    const client = await startPeer({ listen: [] });
    const big = makeChunk(5 * MiB);
    expect((await putChunk(client, [node.addr], big.id, big.data, FENCE)).stored).toEqual([node.peer.peerId]);
  });
});
