import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { afterEach, describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { ChunkGetSession, ChunkStreams, hasChunks } from '../../src/protocol/chunk-client.ts';
import type { ChunkStream } from '../../src/protocol/chunk-client.ts';
import { DfsError, isDfsError } from '../../src/errors/index.ts';
import { FrameReader, FrameWriter } from '../../src/net/index.ts';
import type { DfsPeer, Stream } from '../../src/net/index.ts';
import { CHUNK_FRAME_MAX_BYTES, CHUNK_PROTOCOL, ChunkTargetError } from '../../src/protocol/chunk-protocol.ts';
import { ChunkService } from '../../src/protocol/chunk-service.ts';
import type { ChunkServiceOptions } from '../../src/protocol/chunk-service.ts';
import { signReceipt } from '../../src/net/receipt.ts';
import { ChunkStore } from '../../src/storage/index.ts';
import { addrOf, startPeer } from '../net/peers.ts';
import { useTempDirs } from '../support/tmp.ts';
import { rejection } from '../support/errors.ts';
import { clusterKey, deleteChunks, getChunk, putChunk, sessionGet, ticket } from '../support/tickets.ts';

const blake3 = await loadBlake3();
const tempDir = useTempDirs();
const KiB = 1024;
const MiB = 1024 * 1024;
/** The fence of the tests' puts (and deletes) where fences are not what is tested. */
const FENCE = 1;

interface TestNode {
  readonly peer: DfsPeer;
  readonly privateKey: PrivateKey;
  readonly store: ChunkStore;
  readonly service: ChunkService;
  readonly addr: string;
}

const cleanups: Array<() => Promise<void>> = [];
// Registered after peers.ts and tmp.ts: vitest runs after-hooks in reverse, so services stop
// and stores close before their directories are removed and their peers stopped.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * The storage nodes the test's nodes know (peer id → address), as the masters' node list would
 * give them: every node started here is in it; a test adds others (holders) or leaves them out.
 */
const known = new Map<string, string>();
afterEach(() => known.clear());

async function startNode(options: Partial<ChunkServiceOptions> = {}): Promise<TestNode> {
  const privateKey = await generateKeyPair('Ed25519');
  const peer = await startPeer({ privateKey });
  const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0 });
  const service = new ChunkService({ peer, privateKey, store, blake3, resolveNode: (id) => known.get(id), clusterKey, ...options });
  known.set(peer.peerId, addrOf(peer));
  await service.start();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await service.stop();
    await store.close();
  };
  cleanups.push(stop);
  return { peer, privateKey, store, service, addr: addrOf(peer) };
}

/** Stops a node's service, store and peer: its address now refuses connections. */
async function killNode(node: TestNode): Promise<void> {
  await node.service.stop();
  await node.peer.stop();
}

function makeChunk(size: number): { id: string; data: Uint8Array } {
  const data = new Uint8Array(randomBytes(size));
  return { id: blake3.hashHex(data), data };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}


/**
 * Keeps one stream and hands it back even after the node reset it: the race in which a reset
 * arrives just after the stream was borrowed, made certain.
 */
class LateStreams extends ChunkStreams {
  kept: ChunkStream | undefined;
  override give(_addr: string, conn: ChunkStream): void {
    this.kept = conn;
  }
  override take(): ChunkStream | undefined {
    const conn = this.kept;
    this.kept = undefined;
    return conn;
  }
}

/** Waits until the node resets the quiet stream `pool` kept, and this side has seen it. */
async function keptStreamReset(pool: LateStreams, node: TestNode): Promise<void> {
  const kept = pool.kept!.stream;
  await node.service.idle(); // quiet for the node's transfer timeout: it reset the stream
  if (kept.status === 'open') await once(kept, 'close');
}

const utf8 = (value: unknown): Uint8Array => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));

/**
 * Sends raw frames on a fresh chunk stream (closing the write side unless `close: false`) and
 * returns the decoded answer header, or the error reading it.
 */
async function rawExchange(client: DfsPeer, addr: string, frames: readonly Uint8Array[], { close = true } = {}): Promise<unknown> {
  const stream = await client.dialProtocol(addr, CHUNK_PROTOCOL, { timeoutMs: 5000 });
  const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  const writer = new FrameWriter(stream, { maxFrameBytes: 4 * CHUNK_FRAME_MAX_BYTES });
  try {
    for (const frame of frames) await writer.write(frame, { signal: AbortSignal.timeout(5000) });
    if (close) await writer.close({ signal: AbortSignal.timeout(5000) });
  } catch {
    // The answer (read below) says why.
  }
  try {
    const frame = await reader.read({ signal: AbortSignal.timeout(5000) });
    return frame && JSON.parse(new TextDecoder().decode(frame.subarray()));
  } finally {
    reader.release();
    if (stream.status === 'open') stream.abort(new Error('test done'));
  }
}

/**
 * A downstream "node" under the test's control: it takes a put header, then reads payload only
 * when asked (in between, its reader pauses the stream, so the sender feels backpressure) and
 * answers when told.
 */
async function startHolder(): Promise<{
  peer: DfsPeer;
  privateKey: PrivateKey;
  addr: string;
  header: Promise<unknown>;
  readPayload(bytes: number): Promise<Uint8Array>;
  /** Resolves true when the payload ended: an end frame (the sender keeps the stream for more puts) or the sender closing its side. */
  readEnd(): Promise<boolean>;
  answer(header: object): void;
}> {
  const privateKey = await generateKeyPair('Ed25519');
  const peer = await startPeer({ privateKey });
  known.set(peer.peerId, addrOf(peer)); // a storage node the others may forward to
  const header = Promise.withResolvers<unknown>();
  const readerReady = Promise.withResolvers<FrameReader>();
  const answerNow = Promise.withResolvers<object>();
  await peer.handle(CHUNK_PROTOCOL, async (stream: Stream) => {
    const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
    const frame = await reader.read();
    header.resolve(frame && JSON.parse(new TextDecoder().decode(frame.subarray())));
    readerReady.resolve(reader);
    const writer = new FrameWriter(stream);
    await writer.write(utf8(await answerNow.promise));
    await writer.close();
  });
  return {
    peer,
    privateKey,
    addr: addrOf(peer),
    header: header.promise,
    async readPayload(bytes) {
      const reader = await readerReady.promise;
      const out = new Uint8Array(bytes);
      for (let got = 0; got < bytes; ) {
        const frame = await reader.read({ signal: AbortSignal.timeout(10_000) });
        if (!frame) throw new Error(`payload ended after ${got} of ${bytes} bytes`);
        out.set(frame.subarray(), got);
        got += frame.byteLength;
      }
      return out;
    },
    async readEnd() {
      const reader = await readerReady.promise;
      const frame = await reader.read({ signal: AbortSignal.timeout(10_000) });
      return frame === undefined || frame.byteLength === 0;
    },
    answer: (h) => answerNow.resolve(h),
  };
}

describe('chunk protocol: put and get', () => {
  it('puts to one node and gets the same bytes back', async () => {
    const node = await startNode();
    const client = await startPeer({ listen: [] });
    const big = makeChunk(3 * MiB + 12345); // several payload frames
    expect(await putChunk(client, [node.addr], big.id, big.data, FENCE)).toMatchObject({ stored: [node.peer.peerId] });
    expect(await node.store.has(big.id)).toBe(true);
    expect(sameBytes(await getChunk(client, node.addr, big.id), big.data)).toBe(true);

    // Pieces (as the chunker yields them) and the empty chunk.
    const pieced = makeChunk(200 * KiB);
    const pieces = [pieced.data.subarray(0, 1), pieced.data.subarray(1, 100_000), pieced.data.subarray(100_000)];
    await putChunk(client, [node.addr], pieced.id, pieces, FENCE);
    expect(sameBytes(await getChunk(client, node.addr, pieced.id), pieced.data)).toBe(true);
    const empty = makeChunk(0);
    await putChunk(client, [node.addr], empty.id, empty.data, FENCE);
    expect((await getChunk(client, node.addr, empty.id)).byteLength).toBe(0);

    // Putting a chunk again is fine (deduplicated by the store).
    expect(await putChunk(client, [node.addr], big.id, big.data, FENCE)).toMatchObject({ stored: [node.peer.peerId] });
    expect(node.service.stats).toMatchObject({
      puts: 4,
      bytesIn: 2 * big.data.byteLength + pieced.data.byteLength,
      bytesForwarded: 0,
      gets: 3,
      bytesOut: big.data.byteLength + pieced.data.byteLength,
      inflightBytes: 0,
    });
    const missing = await rejection(getChunk(client, node.addr, makeChunk(10).id));
    expect(missing.code).toBe('ERR_CHUNK_NOT_FOUND');
  });

  it('replicates through a 3-node pipeline with one put, acked with all three peer ids', async () => {
    const nodes = [await startNode(), await startNode(), await startNode()];
    const client = await startPeer({ listen: [] });
    const { id, data } = makeChunk(5 * MiB + 7);
    const { stored } = await putChunk(client, nodes.map((n) => n.addr), id, data, FENCE);
    expect(stored).toEqual(nodes.map((n) => n.peer.peerId));
    for (const node of nodes) {
      expect(await node.store.has(id)).toBe(true);
      expect(sameBytes(await getChunk(client, node.addr, id), data)).toBe(true);
    }
    expect(nodes.map((n) => n.service.stats.bytesIn)).toEqual([data.byteLength, data.byteLength, data.byteLength]);
    expect(nodes.map((n) => n.service.stats.bytesForwarded)).toEqual([data.byteLength, data.byteLength, 0]);
    expect(nodes.map((n) => n.service.stats.puts)).toEqual([1, 1, 1]);

    // A pipeline where some targets already hold the chunk still stores it everywhere.
    const fourth = await startNode();
    const again = await putChunk(client, [nodes[0]!.addr, fourth.addr, nodes[2]!.addr], id, data, FENCE);
    expect(again.stored).toEqual([nodes[0]!.peer.peerId, fourth.peer.peerId, nodes[2]!.peer.peerId]);
    expect(await fourth.store.has(id)).toBe(true);
  });

  it('refuses a corrupted payload with ERR_CHUNK_CORRUPT and no node of the pipeline stores it', async () => {
    // Each node's first put ends (refused: corrupt, or reset by the node before it) only after
    // its temp file is gone: told through the metrics hook, whenever the later nodes get there.
    // (Every node reads the header: 2 MiB is more than a stream's flow-control window, so the
    // payload reaches the first node only as fast as the later ones read.)
    const ended = [0, 1, 2].map(() => Promise.withResolvers<string>());
    const nodes = await Promise.all(ended.map((e) => startNode({ observe: (op, outcome) => op === 'put' && e.resolve(outcome) })));
    const client = await startPeer({ listen: [] });
    const { id, data } = makeChunk(2 * MiB + 3);
    const tampered = data.slice();
    tampered[MiB + 1] = (tampered[MiB + 1] ?? 0) ^ 0x01;
    const err = await rejection(putChunk(client, nodes.map((n) => n.addr), id, tampered, FENCE));
    expect(err.code).toBe('ERR_CHUNK_CORRUPT');
    expect(await ended[0]!.promise).toBe('ERR_CHUNK_CORRUPT');
    for (const e of ended.slice(1)) expect(await e.promise).not.toBe('ok');
    await Promise.all(nodes.map((n) => n.service.idle()));
    for (const node of nodes) expect(await node.store.has(id)).toBe(false);
    // Each node wrote the bytes to a temp file as they came (ChunkStore.beginPut): none is left.
    for (const node of nodes) expect(await readdir(node.store.layout.tmpDir)).toEqual([]);
    expect(nodes[0]!.service.stats.refusals.ERR_CHUNK_CORRUPT).toBe(1);
    // The last node of a pipeline (or a lone node) finds it too.
    expect((await rejection(putChunk(client, [nodes[2]!.addr], id, tampered, FENCE))).code).toBe('ERR_CHUNK_CORRUPT');
    await nodes[2]!.service.idle();
    expect(await nodes[2]!.store.has(id)).toBe(false);
    expect(await readdir(nodes[2]!.store.layout.tmpDir)).toEqual([]);
    // The pipeline is still usable.
    expect((await putChunk(client, nodes.map((n) => n.addr), id, data, FENCE)).stored).toHaveLength(3);
  });

  it('names a dead downstream target in ERR_PIPELINE, quickly, and keeps the copies before it', async () => {
    const first = await startNode();
    const second = await startNode();
    const dead = await startNode();
    await killNode(dead);
    const client = await startPeer({ listen: [] });
    const { id, data } = makeChunk(MiB + 100);

    const startedAt = performance.now();
    const err = await rejection(putChunk(client, [first.addr, dead.addr], id, data, FENCE));
    expect(performance.now() - startedAt).toBeLessThan(3000);
    expect(err).toBeInstanceOf(ChunkTargetError);
    expect(err.code).toBe('ERR_PIPELINE');
    expect((err as ChunkTargetError).failedTarget).toBe(dead.addr);
    expect((err as ChunkTargetError).failedCode).toBe('ERR_PEER_UNREACHABLE');
    expect(await first.store.has(id)).toBe(true);

    // Deeper in the pipeline: the failed target is carried back through the middle node.
    const other = makeChunk(300 * KiB);
    const deep = await rejection(putChunk(client, [first.addr, second.addr, dead.addr], other.id, other.data, FENCE));
    expect(deep.code).toBe('ERR_PIPELINE');
    expect((deep as ChunkTargetError).failedTarget).toBe(dead.addr);
    expect(await first.store.has(other.id)).toBe(true);
    expect(await second.store.has(other.id)).toBe(true);

    // The first target itself unreachable: blamed by the client.
    const direct = await rejection(putChunk(client, [dead.addr, first.addr], other.id, other.data, FENCE, { timeoutMs: 5000 }));
    expect(direct.code).toBe('ERR_PEER_UNREACHABLE');
    expect((direct as ChunkTargetError).failedTarget).toBe(dead.addr);
  });

  it('serves byte ranges cut from a verified whole chunk', async () => {
    const node = await startNode();
    const client = await startPeer({ listen: [] });
    const { id, data } = makeChunk(2 * MiB + 500);
    await putChunk(client, [node.addr], id, data, FENCE);
    const range = await getChunk(client, node.addr, id, { offset: MiB - 3, length: MiB + 10 });
    expect(sameBytes(range, data.subarray(MiB - 3, 2 * MiB + 7))).toBe(true);
    expect(sameBytes(await getChunk(client, node.addr, id, { offset: 2 * MiB }), data.subarray(2 * MiB))).toBe(true);
    expect(sameBytes(await getChunk(client, node.addr, id, { length: 10 }), data.subarray(0, 10))).toBe(true);
    expect((await getChunk(client, node.addr, id, { offset: data.byteLength, length: 0 })).byteLength).toBe(0);
    expect((await rejection(getChunk(client, node.addr, id, { offset: data.byteLength + 1 }))).code).toBe('ERR_INVALID_ARGUMENT');
    expect((await rejection(getChunk(client, node.addr, id, { offset: 10, length: data.byteLength }))).code).toBe('ERR_INVALID_ARGUMENT');
  });

  it('a chunk whose file was damaged on disk: a range is refused by the node, a whole chunk by the client (ERR_CHUNK_CORRUPT)', async () => {
    const node = await startNode();
    const client = await startPeer({ listen: [] });
    const { id, data } = makeChunk(700 * KiB);
    await putChunk(client, [node.addr], id, data, FENCE);
    const path = node.store.layout.chunkPath(id);
    const onDisk = await readFile(path);
    onDisk[1234] = (onDisk[1234] ?? 0) ^ 0xff;
    await writeFile(path, onDisk);
    // A range comes only from a copy the node verified: its reader cannot check it.
    expect((await rejection(getChunk(client, node.addr, id, { offset: 0, length: 10 }))).code).toBe('ERR_CHUNK_CORRUPT');
    expect(node.service.stats.refusals.ERR_CHUNK_CORRUPT).toBe(1);
    // A whole chunk is sent as stored (not hashed again there) and caught by the client, which
    // checks every byte against the id; the node's own check (scrub, verify request) still sees it.
    expect((await rejection(getChunk(client, node.addr, id))).code).toBe('ERR_CHUNK_CORRUPT');
    expect(node.service.stats.refusals.ERR_CHUNK_CORRUPT).toBe(1);
    expect(await node.store.verifyOrQuarantine(id)).toBe('quarantined');
  });

  it('verifies a whole chunk on the client too: a node sending wrong bytes gets ERR_CHUNK_CORRUPT', async () => {
    const liar = await startPeer();
    const { id, data } = makeChunk(100 * KiB);
    await liar.handle(CHUNK_PROTOCOL, async (stream: Stream) => {
      const reader = new FrameReader(stream);
      await reader.read();
      reader.release();
      const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
      await writer.write(utf8({ ok: true, size: data.byteLength }));
      const wrong = data.slice();
      wrong[0] = (wrong[0] ?? 0) ^ 1;
      await writer.write(wrong);
      await writer.close();
    });
    const client = await startPeer({ listen: [] });
    const err = await rejection(getChunk(client, addrOf(liar), id));
    expect(err.code).toBe('ERR_CHUNK_CORRUPT');
  });
});

/** A chunk stream driven frame by frame: `answer()` reads and decodes the next header frame. */
async function rawChunkStream(client: DfsPeer, addr: string): Promise<{ writer: FrameWriter; reader: FrameReader; answer(): Promise<unknown> }> {
  const stream = await client.dialProtocol(addr, CHUNK_PROTOCOL, { timeoutMs: 5000 });
  const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  const answer = async (): Promise<unknown> => JSON.parse(new TextDecoder().decode((await reader.read())!.subarray()));
  return { writer, reader, answer };
}

describe('chunk protocol: several gets on one stream (ChunkGetSession)', () => {
  it('carries many gets over one stream per get in flight, and ends the streams at close', async () => {
    const node = await startNode();
    const client = await startPeer();
    const chunks = [100 * KiB, 1, 2 * MiB, 300 * KiB, 5].map(makeChunk);
    for (const c of chunks) await node.store.put(c.id, c.data);
    const session = new ChunkGetSession(client);
    for (const c of chunks) {
      const pieces = await sessionGet(session, client, node.addr, c.id, { blake3 });
      expect(sameBytes(Buffer.concat(pieces), c.data)).toBe(true);
    }
    // Two at once: the idle stream and one more.
    const [a, b] = await Promise.all([sessionGet(session, client, node.addr, chunks[2]!.id, { blake3 }), sessionGet(session, client, node.addr, chunks[3]!.id, { blake3 })]);
    expect(sameBytes(Buffer.concat(a), chunks[2]!.data) && sameBytes(Buffer.concat(b), chunks[3]!.data)).toBe(true);
    expect(node.service.stats.gets).toBe(7);
    expect(node.service.stats.streamsServed).toBe(2);
    session.close();
    await node.service.idle(); // the node saw both streams end and finished them
    expect(node.service.stats.activeStreams).toBe(0);
    await expect(sessionGet(session, client, node.addr, chunks[0]!.id)).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });

  it('after a refusal, or once the node closed a quiet stream, the next get opens a fresh stream', async () => {
    const node = await startNode({ transferTimeoutMs: 300 });
    const client = await startPeer();
    const kept = makeChunk(64 * KiB);
    await node.store.put(kept.id, kept.data);
    const session = new ChunkGetSession(client);
    await sessionGet(session, client, node.addr, kept.id, { blake3 });
    await node.service.idle(); // quiet for the transfer timeout: the node closed the stream
    expect(node.service.stats.activeStreams).toBe(0);
    expect(Buffer.concat(await sessionGet(session, client, node.addr, kept.id, { blake3 })).equals(Buffer.from(kept.data))).toBe(true);
    expect(node.service.stats.streamsServed).toBe(2);
    const missing = makeChunk(10);
    await expect(sessionGet(session, client, node.addr, missing.id, { blake3 })).rejects.toMatchObject({ code: 'ERR_CHUNK_NOT_FOUND' });
    expect(Buffer.concat(await sessionGet(session, client, node.addr, kept.id, { blake3 })).equals(Buffer.from(kept.data))).toBe(true);
    expect(node.service.stats.gets).toBe(3);
    session.close();
  });

  it('refuses a request of another kind after a get or a put on the same stream, and ends the stream', async () => {
    const node = await startNode();
    const client = await startPeer();
    const c = makeChunk(1000);
    // get, then has: refused.
    const first = await rawChunkStream(client, node.addr);
    await node.store.put(c.id, c.data);
    await first.writer.write(utf8({ op: 'get', id: c.id, ticket: await ticket('get', c.id, client) }));
    expect(await first.answer()).toEqual({ ok: true, size: 1000 });
    expect((await first.reader.read())!.byteLength).toBe(1000);
    await first.writer.write(utf8({ op: 'has', ids: [c.id] }));
    // put (ended by an empty frame), then get: refused.
    const d = makeChunk(10);
    const second = await rawChunkStream(client, node.addr);
    const putHeader = utf8({ op: 'put', id: d.id, size: 10, fence: FENCE, pipeline: [], ticket: await ticket('put', d.id, client, { fence: FENCE }) });
    for (const frame of [putHeader, d.data, new Uint8Array(0)]) await second.writer.write(frame);
    expect(await second.answer()).toMatchObject({ ok: true, stored: [node.peer.peerId] });
    await second.writer.write(utf8({ op: 'get', id: d.id, ticket: await ticket('get', d.id, client) }));
    for (const { writer, reader, answer } of [first, second]) {
      expect(await answer()).toMatchObject({ ok: false, code: 'ERR_PROTOCOL' });
      expect(await reader.read()).toBeUndefined(); // and the node ended the stream
      await writer.close();
      reader.release();
    }
  });
});

describe('chunk protocol: several puts on one stream (ChunkStreams)', () => {
  it('puts many chunks through a 3-node pipeline over one stream per hop', async () => {
    const nodes = [await startNode(), await startNode(), await startNode()];
    const client = await startPeer();
    const pool = new ChunkStreams();
    const chunks = [300 * KiB, 1, 2 * MiB, 0, 64 * KiB].map(makeChunk);
    for (const c of chunks) {
      const { stored } = await putChunk(client, nodes.map((n) => n.addr), c.id, c.data, FENCE, { pool });
      expect(stored).toEqual(nodes.map((n) => n.peer.peerId));
    }
    for (const node of nodes) {
      for (const c of chunks) expect(sameBytes(await node.store.get(c.id), c.data)).toBe(true);
      expect(node.service.stats.puts).toBe(chunks.length);
      expect(node.service.stats.streamsServed).toBe(1);
    }
    // A put without a pool still ends its payload by closing its stream.
    const more = makeChunk(1000);
    await putChunk(client, [nodes[0]!.addr], more.id, more.data, FENCE);
    expect(await nodes[0]!.store.has(more.id)).toBe(true);
    pool.close();
  });

  it('after the node reset a quiet put stream, the next put opens a fresh one', async () => {
    const node = await startNode({ transferTimeoutMs: 300 });
    const client = await startPeer();
    const pool = new ChunkStreams();
    const [a, b] = [makeChunk(5000), makeChunk(7000)];
    await putChunk(client, [node.addr], a.id, a.data, FENCE, { pool });
    await node.service.idle(); // quiet for the transfer timeout: the node reset the stream
    await putChunk(client, [node.addr], b.id, b.data, FENCE, { pool });
    expect(await node.store.has(b.id)).toBe(true);
    expect(node.service.stats.streamsServed).toBe(2);
    pool.close();
  });
  it('forwards again on a fresh stream when the kept stream to the next node was reset meanwhile', async () => {
    const pool = new LateStreams();
    const last = await startNode({ transferTimeoutMs: 300 });
    const first = await startNode({ downstream: pool });
    const client = await startPeer();
    const [a, b] = [makeChunk(5000), makeChunk(3 * MiB)];
    await putChunk(client, [first.addr, last.addr], a.id, a.data, FENCE);
    await keptStreamReset(pool, last);
    const { stored } = await putChunk(client, [first.addr, last.addr], b.id, b.data, FENCE);
    expect(stored).toEqual([first.peer.peerId, last.peer.peerId]);
    expect(sameBytes(await last.store.get(b.id), b.data)).toBe(true);
    expect(last.service.stats.streamsServed).toBe(2);
  });

  it('sends again when the reset of the kept stream shows only at the end of the payload', async () => {
    // A zero-byte chunk has no payload frames: the reset surfaces when the end is sent.
    const pool = new LateStreams();
    const last = await startNode({ transferTimeoutMs: 300 });
    const first = await startNode({ downstream: pool });
    const client = await startPeer();
    const [a, empty] = [makeChunk(5000), makeChunk(0)];
    await putChunk(client, [first.addr, last.addr], a.id, a.data, FENCE);
    await keptStreamReset(pool, last);
    const { stored } = await putChunk(client, [first.addr, last.addr], empty.id, empty.data, FENCE);
    expect(stored).toEqual([first.peer.peerId, last.peer.peerId]);
    expect(await last.store.has(empty.id)).toBe(true);
  });

  it('when its own store fails, a forwarding node does not let the next node store the chunk', async () => {
    const pool = new LateStreams();
    const last = await startNode();
    const first = await startNode({ downstream: pool });
    const client = await startPeer();
    const [a, b] = [makeChunk(5000), makeChunk(300 * KiB)];
    await putChunk(client, [first.addr, last.addr], a.id, a.data, FENCE); // the stream to the last node is kept
    // The first node's disk fails for chunk b (a real store, one fault injected): it cannot
    // create the file the bytes would be written to as they come (ChunkStore.beginPut).
    const begin = first.store.beginPut.bind(first.store);
    first.store.beginPut = async (id, size, options) => {
      if (id === b.id) throw new DfsError('ERR_IO', 'injected: the disk failed');
      return begin(id, size, options);
    };
    const err = await rejection(putChunk(client, [first.addr, last.addr], b.id, b.data, FENCE));
    expect(isDfsError(err, 'ERR_IO')).toBe(true);
    // Then a put straight to the last node, over a connection still to be made: it arrives after
    // any stream the first node opened to the last one before it answered.
    const c = makeChunk(1000);
    await putChunk(client, [last.addr], c.id, c.data, FENCE);
    await last.service.idle();
    expect(last.service.stats.streamsServed).toBe(2); // a's, then c's: no second try of b
    expect(await last.store.has(b.id)).toBe(false);
    expect(await first.store.has(b.id)).toBe(false);
  });

  it('a client put on a kept stream the node reset meanwhile goes again on a fresh stream', async () => {
    const node = await startNode({ transferTimeoutMs: 300 });
    const client = await startPeer();
    const pool = new LateStreams();
    const [a, b] = [makeChunk(5000), makeChunk(2 * MiB)];
    await putChunk(client, [node.addr], a.id, a.data, FENCE, { pool });
    await keptStreamReset(pool, node);
    await putChunk(client, [node.addr], b.id, b.data, FENCE, { pool });
    expect(sameBytes(await node.store.get(b.id), b.data)).toBe(true);
    expect(node.service.stats.streamsServed).toBe(2);
  });
});

describe('chunk protocol: has and delete', () => {
  it('answers has for a batch, in order, and the client splits batches over 4096 ids', async () => {
    const node = await startNode();
    const client = await startPeer({ listen: [] });
    const chunks = [makeChunk(10), makeChunk(20), makeChunk(30)];
    for (const c of chunks) await putChunk(client, [node.addr], c.id, c.data, FENCE);
    const missing = makeChunk(40).id;
    expect(await hasChunks(client, node.addr, [chunks[0]!.id, missing, chunks[1]!.id, chunks[2]!.id])).toEqual([true, false, true, true]);
    expect(await hasChunks(client, node.addr, [])).toEqual([]);
    const many = Array.from({ length: 5000 }, (_, i) => (i === 4500 ? chunks[1]!.id : blake3.hashHex(Uint8Array.of(i & 0xff, i >> 8))));
    const present = await hasChunks(client, node.addr, many);
    expect(present).toHaveLength(5000);
    expect(present.filter(Boolean)).toHaveLength(1);
    expect(present[4500]).toBe(true);
    expect(node.service.stats.hasRequests).toBe(4);
  });

  it('deletes only for allowed peers (ERR_FORBIDDEN for others)', async () => {
    const master = await startPeer({ listen: [] });
    const stranger = await startPeer({ listen: [] });
    const node = await startNode({ canDelete: (peerId) => peerId === master.peerId });
    node.store.fences.raiseFloor(0); // as the first heartbeat answer does
    const a = makeChunk(1000);
    const b = makeChunk(2000);
    await putChunk(stranger, [node.addr], a.id, a.data, FENCE);
    await putChunk(stranger, [node.addr], b.id, b.data, FENCE);
    const forbidden = await rejection(deleteChunks(stranger, node.addr, [a.id], FENCE));
    expect(forbidden.code).toBe('ERR_FORBIDDEN');
    expect(await node.store.has(a.id)).toBe(true);
    expect(await deleteChunks(master, node.addr, [a.id, a.id, makeChunk(5).id], FENCE + 1)).toEqual({ deleted: 1, kept: [] });
    expect(await hasChunks(master, node.addr, [a.id, b.id])).toEqual([false, true]);
    expect(node.service.stats).toMatchObject({ chunksDeleted: 1, refusals: { ERR_FORBIDDEN: 1 } });

    // A node without an allow-list refuses everybody.
    const closed = await startNode();
    await putChunk(master, [closed.addr], b.id, b.data, FENCE);
    expect((await rejection(deleteChunks(master, closed.addr, [b.id], FENCE))).code).toBe('ERR_FORBIDDEN');
  });
});

describe('chunk protocol: delete fences', () => {
  /** A node whose deletes `master` may send, with its floor known (as after a heartbeat answer). */
  async function deletableNode(master: DfsPeer, options: Partial<ChunkServiceOptions> = {}): Promise<TestNode> {
    const node = await startNode({ canDelete: (peerId) => peerId === master.peerId, ...options });
    node.store.fences.raiseFloor(0);
    return node;
  }

  it('keeps a chunk that a put with a newer fence found already stored (GC racing a re-upload)', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const node = await deletableNode(master);
    const x = makeChunk(100 * KiB);
    await putChunk(client, [node.addr], x.id, x.data, 3);
    const writes: string[] = [];
    node.store.onChange((id, change) => writes.push(`${change} ${id}`));
    // The leader decided at fence 5 that X is garbage. Meanwhile a client puts X with fence 10,
    // and the node acks at once: it holds X, so nothing is written.
    expect(await putChunk(client, [node.addr], x.id, x.data, 10)).toMatchObject({ stored: [node.peer.peerId] });
    expect(writes).toEqual([]);
    // Then the delete decided at 5 arrives: X stays, and is reported as kept.
    const missing = makeChunk(10).id;
    expect(await deleteChunks(master, node.addr, [x.id, missing], 5)).toEqual({ deleted: 0, kept: [x.id] });
    expect(sameBytes(await getChunk(client, node.addr, x.id), x.data)).toBe(true);
    // A delete decided after that put goes through.
    expect(await deleteChunks(master, node.addr, [x.id, missing], 11)).toEqual({ deleted: 1, kept: [] });
    expect(await hasChunks(client, node.addr, [x.id])).toEqual([false]);
    expect(node.service.stats).toMatchObject({ chunksDeleted: 1, chunksKept: 1 });
  });

  it('forwards the fence down the pipeline: every node records it', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const nodes = [await deletableNode(master), await deletableNode(master)];
    const x = makeChunk(300 * KiB);
    await putChunk(client, nodes.map((n) => n.addr), x.id, x.data, 3);
    await putChunk(client, nodes.map((n) => n.addr), x.id, x.data, 10);
    for (const node of nodes) expect(await deleteChunks(master, node.addr, [x.id], 5)).toEqual({ deleted: 0, kept: [x.id] });
    for (const node of nodes) expect(await deleteChunks(master, node.addr, [x.id], 11)).toEqual({ deleted: 1, kept: [] });
  });

  it('a fresh node refuses every delete until it learns a floor', async () => {
    const master = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const node = await startNode({ canDelete: (peerId) => peerId === master.peerId });
    const x = makeChunk(1000);
    await putChunk(client, [node.addr], x.id, x.data, 1);
    expect(await deleteChunks(master, node.addr, [x.id], 2 ** 40)).toEqual({ deleted: 0, kept: [x.id] });
    node.store.fences.raiseFloor(50); // what the first heartbeat answer does (LeaderFence)
    expect(await deleteChunks(master, node.addr, [x.id], 50)).toEqual({ deleted: 0, kept: [x.id] });
    expect(await deleteChunks(master, node.addr, [x.id], 51)).toEqual({ deleted: 1, kept: [] });
  });

  it('refuses a bad fence on the client before sending anything', async () => {
    const client = await startPeer({ listen: [] });
    const node = await startNode();
    const x = makeChunk(1000);
    for (const bad of [-1, 0.5, 2 ** 53, Number.NaN]) {
      expect((await rejection(putChunk(client, [node.addr], x.id, x.data, bad))).code).toBe('ERR_INVALID_ARGUMENT');
      expect((await rejection(deleteChunks(client, node.addr, [x.id], bad))).code).toBe('ERR_INVALID_ARGUMENT');
    }
    expect(node.service.stats.streamsServed).toBe(0);
  });
});

describe('chunk protocol: a put repairs a missing file', () => {
  it('answers has() false for a chunk whose file is gone, and a put stores it again', async () => {
    const client = await startPeer({ listen: [] });
    const node = await startNode();
    const x = makeChunk(200 * KiB);
    await putChunk(client, [node.addr], x.id, x.data, FENCE);
    await unlink(node.store.layout.chunkPath(x.id));
    expect(await hasChunks(client, node.addr, [x.id])).toEqual([false]);
    expect(await putChunk(client, [node.addr], x.id, x.data, FENCE)).toMatchObject({ stored: [node.peer.peerId] });
    expect(sameBytes(await getChunk(client, node.addr, x.id), x.data)).toBe(true);
  });
});

describe('chunk protocol: limits and malformed input', () => {
  it('refuses an oversized put from its header, before any payload', async () => {
    const node = await startNode({ maxChunkBytes: MiB });
    const client = await startPeer({ listen: [] });
    const { id, data } = makeChunk(MiB + 1);
    // Only the header is sent, and the stream left open: the answer comes anyway.
    const putTicket = await ticket('put', id, client, { fence: FENCE });
    const answer = await rawExchange(client, node.addr, [utf8({ op: 'put', id, size: MiB + 1, fence: FENCE, pipeline: [], ticket: putTicket })], { close: false });
    expect(answer).toMatchObject({ ok: false, code: 'ERR_CHUNK_TOO_LARGE' });
    const viaClient = await rejection(putChunk(client, [node.addr], id, data, FENCE));
    expect(viaClient.code).toBe('ERR_CHUNK_TOO_LARGE');
    expect((viaClient as ChunkTargetError).failedTarget).toBe(node.addr);
    // Beyond the 64 MiB hard cap on a default node.
    const plain = await startNode();
    const huge = await rawExchange(client, plain.addr, [utf8({ op: 'put', id, size: 64 * MiB + 1, fence: FENCE, pipeline: [], ticket: putTicket })], { close: false });
    expect(huge).toMatchObject({ ok: false, code: 'ERR_CHUNK_TOO_LARGE' });
    expect(node.service.stats.bytesIn).toBe(0);
    expect(await node.store.has(id)).toBe(false);
  });

  it('refuses too many or too few payload bytes with ERR_PROTOCOL and stores nothing', async () => {
    const node = await startNode();
    const client = await startPeer({ listen: [] });
    const { id, data } = makeChunk(10);
    const header = utf8({ op: 'put', id, size: 10, fence: FENCE, pipeline: [], ticket: await ticket('put', id, client, { fence: FENCE }) });
    expect(await rawExchange(client, node.addr, [header, data, Uint8Array.of(1, 2, 3, 4, 5)])).toMatchObject({ ok: false, code: 'ERR_PROTOCOL', message: expect.stringMatching(/more than the 10 bytes/) });
    expect(await rawExchange(client, node.addr, [header, data.subarray(0, 5)])).toMatchObject({ ok: false, code: 'ERR_PROTOCOL', message: expect.stringMatching(/5 of the 10 bytes/) });
    // An empty frame ends a payload: here after none of the 10 bytes.
    expect(await rawExchange(client, node.addr, [header, new Uint8Array(0)])).toMatchObject({ ok: false, code: 'ERR_PROTOCOL', message: expect.stringMatching(/0 of the 10 bytes/) });
    expect(await node.store.has(id)).toBe(false);
    expect(node.service.stats.refusals.ERR_PROTOCOL).toBe(3);
    await putChunk(client, [node.addr], id, data, FENCE);
    expect(await node.store.has(id)).toBe(true);
  });

  it('refuses a put over the in-flight budget with ERR_OVERLOADED, and frees the budget after', async () => {
    // The whole budget here, not one peer's share of it (tested below).
    const node = await startNode({ maxInflightBytes: 20 * MiB, maxInflightBytesPerPeer: 20 * MiB });
    const client = await startPeer({ listen: [] });
    const holder = await startHolder();
    const big = makeChunk(8 * MiB);
    const held = putChunk(client, [node.addr, holder.addr], big.id, big.data, FENCE).catch((e: unknown) => e);
    // The node forwards the header only after reserving the chunk's bytes.
    expect(await holder.header).toMatchObject({ op: 'put', id: big.id, size: 8 * MiB, fence: FENCE, pipeline: [] });
    expect(node.service.stats.inflightBytes).toBe(8 * MiB);

    // Refused from the header while the client is still writing its 13 MiB: it stops and reports.
    const refused = makeChunk(13 * MiB);
    const err = await rejection(putChunk(client, [node.addr], refused.id, refused.data, FENCE));
    expect(err.code).toBe('ERR_OVERLOADED');
    expect((err as ChunkTargetError).failedTarget).toBe(node.addr);
    const fits = makeChunk(12 * MiB);
    await putChunk(client, [node.addr], fits.id, fits.data, FENCE);
    // Larger than the whole budget can never fit: too large, not overloaded.
    expect((await rejection(putChunk(client, [node.addr], makeChunk(21 * MiB).id, new Uint8Array(21 * MiB), FENCE))).code).toBe('ERR_CHUNK_TOO_LARGE');

    holder.answer({ ok: false, code: 'ERR_NO_SPACE', message: 'disk full' });
    const heldError = await held;
    expect(heldError).toBeInstanceOf(ChunkTargetError);
    expect(heldError).toMatchObject({ code: 'ERR_PIPELINE', failedTarget: holder.addr, failedCode: 'ERR_NO_SPACE' });
    expect(await node.store.has(big.id)).toBe(true); // its own copy stays
    expect(node.service.stats.inflightBytes).toBe(0);
    await putChunk(client, [node.addr], refused.id, refused.data, FENCE);
    expect(node.service.stats.refusals).toMatchObject({ ERR_OVERLOADED: 1, ERR_PIPELINE: 1, ERR_CHUNK_TOO_LARGE: 1 });
  });

  it('forwards payload frames as they arrive, with backpressure from the last node to the client', async () => {
    const node = await startNode();
    const client = await startPeer({ listen: [] });
    const holder = await startHolder();
    const { id, data } = makeChunk(32 * MiB);
    const stream = await client.dialProtocol(node.addr, CHUNK_PROTOCOL, { timeoutMs: 5000 });
    const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
    const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
    await writer.write(utf8({ op: 'put', id, size: data.byteLength, fence: FENCE, pipeline: [holder.peer.peerId], ticket: await ticket('put', id, client, { fence: FENCE }) }));
    await holder.header;
    // The holder reads nothing more yet: the client must stall well before its 32 MiB are out.
    let written = 0;
    const writing = (async () => {
      for (let at = 0; at < data.byteLength; at += MiB) {
        await writer.write(data.subarray(at, at + MiB), { signal: AbortSignal.timeout(20_000) });
        written += MiB;
      }
      await writer.close();
    })();
    const stalled = await Promise.race([writing.then(() => false), new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 1000))]);
    expect(stalled).toBe(true);
    expect(written).toBeLessThan(16 * MiB);
    expect(node.service.stats.bytesIn).toBeLessThan(12 * MiB);
    // Frames reach the downstream node before the client has sent the whole chunk (streamed).
    const firstFrames = await holder.readPayload(2 * MiB);
    expect(sameBytes(firstFrames, data.subarray(0, 2 * MiB))).toBe(true);
    expect(written).toBeLessThan(data.byteLength);

    const rest = await holder.readPayload(data.byteLength - 2 * MiB);
    expect(sameBytes(rest, data.subarray(2 * MiB))).toBe(true);
    await writing;
    expect(await holder.readEnd()).toBe(true);
    holder.answer({ ok: true, stored: [holder.peer.peerId], receipts: [await signReceipt(holder.privateKey, id, FENCE)] });
    const answer = await reader.read({ signal: AbortSignal.timeout(10_000) });
    reader.release();
    expect(JSON.parse(new TextDecoder().decode(answer?.subarray()))).toMatchObject({ ok: true, stored: [node.peer.peerId, holder.peer.peerId] });
    expect(node.service.stats.bytesForwarded).toBe(data.byteLength);
  });

  it('stops promptly, resetting transfers under way', async () => {
    const node = await startNode();
    const client = await startPeer({ listen: [] });
    const holder = await startHolder(); // never answers
    const { id, data } = makeChunk(3 * MiB);
    const put = putChunk(client, [node.addr, holder.addr], id, data, FENCE).catch((e: unknown) => e);
    await holder.header;
    const startedAt = performance.now();
    await node.service.stop();
    expect(performance.now() - startedAt).toBeLessThan(2000);
    expect(await put).toBeInstanceOf(DfsError);
    expect(node.service.stats.activeStreams).toBe(0);
    expect(node.service.stats.inflightBytes).toBe(0);
  });

  it('answers malformed headers and frames with ERR_PROTOCOL and keeps serving', async () => {
    const node = await startNode();
    const client = await startPeer({ listen: [] });
    const { id, data } = makeChunk(50 * KiB);
    const answers = [
      await rawExchange(client, node.addr, [utf8('{"op": "put", ')]),
      await rawExchange(client, node.addr, [Uint8Array.of(0xff, 0xfe, 0x00)]),
      await rawExchange(client, node.addr, [utf8({ op: 'format-disk' })]),
      await rawExchange(client, node.addr, [utf8({ op: 'put', id: 'ABC', size: 1, fence: FENCE, pipeline: [] })]),
      await rawExchange(client, node.addr, [utf8({ op: 'put', id, size: -1, fence: FENCE, pipeline: [] })]),
      await rawExchange(client, node.addr, [utf8({ op: 'put', id, size: 1, fence: FENCE, pipeline: ['not-a-peer-id'] })]),
      // A pipeline names peer ids, never addresses.
      await rawExchange(client, node.addr, [utf8({ op: 'put', id, size: 1, fence: FENCE, pipeline: ['/dns4/localhost/tcp/22/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'] })]),
      await rawExchange(client, node.addr, [utf8({ op: 'has', ids: Array.from({ length: 4097 }, () => id) })]),
      // Fences: required, and safe integers >= 0.
      await rawExchange(client, node.addr, [utf8({ op: 'put', id, size: 1, pipeline: [] })]),
      await rawExchange(client, node.addr, [utf8({ op: 'put', id, size: 1, fence: -1, pipeline: [] })]),
      await rawExchange(client, node.addr, [utf8({ op: 'put', id, size: 1, fence: 2 ** 53, pipeline: [] })]),
      await rawExchange(client, node.addr, [utf8({ op: 'delete', ids: [id] })]),
      await rawExchange(client, node.addr, [utf8({ op: 'delete', ids: [id], fence: 1.5 })]),
      await rawExchange(client, node.addr, []),
    ];
    for (const answer of answers) expect(answer).toMatchObject({ ok: false, code: 'ERR_PROTOCOL' });
    expect(answers[3]).toMatchObject({ message: expect.stringMatching(/^field id: expected string matching/) });

    // A frame announcing more than 1 MiB: answered if the stream takes it, and reset.
    const stream = await client.dialProtocol(node.addr, CHUNK_PROTOCOL, { timeoutMs: 5000 });
    const reader = new FrameReader(stream);
    const oversized = new Uint8Array(8);
    new DataView(oversized.buffer).setUint32(0, 2 * MiB);
    stream.send(oversized);
    const outcome = await reader.read({ signal: AbortSignal.timeout(5000) }).then(
      (frame) => frame && JSON.parse(new TextDecoder().decode(frame.subarray())),
      (err: unknown) => err,
    );
    reader.release();
    if (outcome instanceof DfsError) expect(outcome.code).toBe('ERR_STREAM_CLOSED');
    else expect(outcome).toMatchObject({ ok: false, code: 'ERR_PROTOCOL' });

    await putChunk(client, [node.addr], id, data, FENCE);
    expect(sameBytes(await getChunk(client, node.addr, id), data)).toBe(true);
    await node.service.idle();
    expect(node.service.stats.refusals.ERR_PROTOCOL).toBe(answers.length + 1);
    expect(node.service.stats.activeStreams).toBe(0);
  });

  it('serves 20 concurrent puts and gets of different chunks through pipelines', async () => {
    const nodes = [await startNode(), await startNode(), await startNode()];
    const client = await startPeer({ listen: [] });
    const chunks = Array.from({ length: 20 }, (_, i) => makeChunk(64 * KiB + i * 70 * KiB));
    const acks = await Promise.all(
      chunks.map((c, i) => {
        const order = [nodes[i % 3]!, nodes[(i + 1) % 3]!, nodes[(i + 2) % 3]!];
        return putChunk(client, order.map((n) => n.addr), c.id, c.data, FENCE);
      }),
    );
    for (const ack of acks) expect(ack.stored).toHaveLength(3);
    const got = await Promise.all(chunks.map((c, i) => getChunk(client, nodes[(i * 7) % 3]!.addr, c.id)));
    got.forEach((bytes, i) => expect(sameBytes(bytes, chunks[i]!.data)).toBe(true));
    for (const node of nodes) {
      expect(await hasChunks(client, node.addr, chunks.map((c) => c.id))).toEqual(chunks.map(() => true));
      expect(node.service.stats.inflightBytes).toBe(0);
    }
  });
});
