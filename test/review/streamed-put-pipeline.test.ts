import { readdir } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { FrameWriter } from '../../src/net/index.ts';
import { CHUNK_FRAME_MAX_BYTES, CHUNK_PROTOCOL } from '../../src/protocol/chunk-protocol.ts';
import { startPeer } from '../net/peers.ts';
import { ticket } from '../support/tickets.ts';
import { FENCE, makeChunk, MiB, startNode, utf8 } from '../node/node-fixture.ts';

/**
 * Review of 3e9f283: a sender that resets mid-chunk, or lies about the size, must leave no temp
 * file and no chunk on any node of the pipeline (each node writes the bytes to a temp file as
 * they come and forwards them before the chunk is verified).
 */
describe('review: streamed puts that never complete leave nothing on any node', () => {
  for (const how of ['reset', 'short', 'long'] as const) {
    it(`a client that ${how === 'reset' ? 'resets mid-chunk' : how === 'short' ? 'sends fewer bytes than announced' : 'sends more bytes than announced'}`, async () => {
      const ended = [0, 1].map(() => Promise.withResolvers<string>());
      const nodes = await Promise.all(ended.map((e) => startNode({ observe: (op, outcome) => op === 'put' && e.resolve(outcome) })));
      const client = await startPeer({ listen: [] });
      const { id, data } = makeChunk(3 * MiB + 17);
      const stream = await client.dialProtocol(nodes[0]!.addr, CHUNK_PROTOCOL, { timeoutMs: 5000 });
      const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
      const size = how === 'long' ? data.byteLength - 5 : data.byteLength;
      await writer.write(utf8({ op: 'put', id, size, fence: FENCE, pipeline: [nodes[1]!.peer.peerId], ticket: await ticket('put', id, client, { fence: FENCE }) }));
      const upTo = how === 'reset' ? 2 * MiB : how === 'short' ? data.byteLength - 1 : data.byteLength;
      for (let at = 0; at < upTo; at += MiB) await writer.write(data.subarray(at, Math.min(upTo, at + MiB)));
      if (how === 'reset') stream.abort(new Error('client gone'));
      else await writer.close().catch(() => {});
      for (const e of ended) expect(await e.promise).not.toBe('ok');
      await Promise.all(nodes.map((n) => n.service.idle()));
      for (const n of nodes) {
        expect(await n.store.has(id)).toBe(false);
        expect(await readdir(n.store.layout.tmpDir)).toEqual([]);
      }
      if (stream.status === 'open') stream.abort(new Error('test done'));
    });
  }
});
