import { generateKeyPair } from '@libp2p/crypto/keys';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { DfsError, isDfsError } from '../../src/errors/index.ts';
import { ReceiveBudget } from '../../src/net/framing.ts';
import { encodeWire, FrameReader, FrameWriter, RpcChannel, schema, serveMuxRpc, waitForDrain } from '../../src/net/index.ts';
import type { DfsPeer, ServeMuxRpcOptions, Stream } from '../../src/net/index.ts';
import { addrOf, startPeer } from './peers.ts';

/**
 * The bounds that keep one peer from exhausting another: unfinished frames time out, what a
 * peer's streams buffer counts against a receive budget, the multiplexed RPC server bounds calls,
 * bytes and unread answers per stream and per peer, and the peer bounds connections and streams.
 */
const RAW = '/dfs/test-bounds/1.0.0';
const MUX = '/dfs/test-bounds-mux/1.0.0';
const KiB = 1024;
const MiB = 1024 * 1024;

async function streamPair(options: { dialler?: DfsPeer } = {}): Promise<{ client: Stream; server: Stream; listener: DfsPeer; dialler: DfsPeer }> {
  const listener = await startPeer();
  const dialler = options.dialler ?? (await startPeer({ listen: [] }));
  const inbound = Promise.withResolvers<Stream>();
  await listener.handle(RAW, (stream) => inbound.resolve(stream));
  const client = await dialler.dialProtocol(addrOf(listener), RAW, { timeoutMs: 5000 });
  return { client, server: await inbound.promise, listener, dialler };
}

function header(length: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, length, false);
  return bytes;
}

/** Sends a frame header announcing `declared` bytes and `send` of them. */
async function sendPartial(stream: Stream, declared: number, send: number): Promise<void> {
  if (!stream.send(header(declared))) await waitForDrain(stream);
  for (let sent = 0; sent < send; ) {
    const n = Math.min(64 * KiB, send - sent);
    sent += n;
    if (!stream.send(new Uint8Array(n))) await waitForDrain(stream);
  }
}

function closedWith(stream: Stream): Promise<string> {
  if (stream.status !== 'open') return Promise.resolve(stream.status);
  return new Promise((resolve) => stream.addEventListener('close', (evt) => resolve(evt.error ? evt.error.name : 'clean'), { once: true }));
}

describe('FrameReader: unfinished frames', () => {
  it('resets a stream whose frame stops arriving with ERR_TIMEOUT, after the idle timeout, and frees what it held', async () => {
    const { client, server } = await streamPair();
    const budget = new ReceiveBudget({ perPeerBytes: 8 * MiB, totalBytes: 16 * MiB });
    const aborted: DfsError[] = [];
    const reader = new FrameReader(server, { frameIdleTimeoutMs: 300, budget, onAbort: (err) => aborted.push(err) });
    const started = performance.now();
    await sendPartial(client, 1 * MiB, 200 * KiB);
    const remoteSaw = closedWith(client);
    const err = await reader.read().catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    expect(isDfsError(err, 'ERR_TIMEOUT')).toBe(true);
    expect((err as Error).message).toMatch(/bytes of a 1048576-byte frame arrived, then nothing for \d+ ms/);
    expect(elapsed).toBeGreaterThanOrEqual(280);
    expect(elapsed).toBeLessThan(1_500);
    expect(aborted.map((e) => e.code)).toEqual(['ERR_TIMEOUT']);
    expect(await remoteSaw).toBe('StreamResetError'); // the peer's stream is reset
    expect(budget.totalBytes).toBe(0);
  });

  it('resets a stream that trickles a frame (never idle, far too slow) with ERR_TIMEOUT', async () => {
    const { client, server } = await streamPair();
    const reader = new FrameReader(server, { frameIdleTimeoutMs: 300, minFrameBytesPerSecond: 10 * KiB });
    await sendPartial(client, 1 * MiB, 10);
    const trickle = setInterval(() => client.status === 'open' && client.send(Uint8Array.of(1)), 50);
    try {
      const started = performance.now();
      const err = await reader.read().catch((e: unknown) => e);
      expect(isDfsError(err, 'ERR_TIMEOUT')).toBe(true);
      expect((err as Error).message).toMatch(/at \d+ bytes\/s over \d+ ms, under the 10240 bytes\/s a frame must keep up/);
      expect(performance.now() - started).toBeLessThan(1_500);
    } finally {
      clearInterval(trickle);
    }
  });

  it('lets a slow but steady frame finish, and never times out frames that wait for a slow consumer', async () => {
    const { client, server } = await streamPair();
    const reader = new FrameReader(server, { frameIdleTimeoutMs: 200, minFrameBytesPerSecond: 1 * KiB, highWaterBytes: 64 * KiB });
    // 96 KiB at ~40 KiB/s: 2.4 s, 12x the idle timeout, never idle for long.
    const slow = (async () => {
      client.send(header(96 * KiB));
      for (let i = 0; i < 48; i++) {
        client.send(new Uint8Array(2 * KiB));
        await delay(50);
      }
    })();
    expect((await reader.read())?.byteLength).toBe(96 * KiB);
    await slow;
    // Frames written while nobody reads: the reader pauses the stream, the next frame stalls
    // half-sent behind it. That is our doing, not the peer's: nothing times out.
    const writer = new FrameWriter(client);
    const writes = Array.from({ length: 8 }, () => writer.write(new Uint8Array(48 * KiB)));
    await delay(800);
    for (let i = 0; i < 8; i++) expect((await reader.read())?.byteLength).toBe(48 * KiB);
    await Promise.all(writes);
  });

  it('counts what a peer has buffered against its budget: the stream that passes it is reset with ERR_OVERLOADED, others are untouched', async () => {
    const listener = await startPeer();
    const one = await startPeer({ listen: [] });
    const other = await startPeer({ listen: [] });
    const budget = new ReceiveBudget({ perPeerBytes: 1 * MiB, totalBytes: 1536 * KiB });
    const readers: Array<{ reader: FrameReader; stream: Stream }> = [];
    const arrived = new Map<Stream, () => void>();
    await listener.handle(
      RAW,
      (stream) => {
        readers.push({ reader: new FrameReader(stream, { budget, maxFrameBytes: 4 * MiB }), stream });
        arrived.get(stream)?.();
      },
      { maxInboundStreams: 16 },
    );
    const open = async (from: DfsPeer): Promise<{ stream: Stream; reader: FrameReader }> => {
      const before = readers.length;
      const stream = await from.dialProtocol(addrOf(listener), RAW, { timeoutMs: 5000 });
      while (readers.length === before) await delay(5);
      return { stream, reader: readers[readers.length - 1]!.reader };
    };
    // `one` holds 768 KiB of an unfinished frame; a second stream of its passes its 1 MiB.
    const a = await open(one);
    await sendPartial(a.stream, 2 * MiB, 768 * KiB);
    while (budget.peerBytes(one.peerId) < 768 * KiB) await delay(5);
    const b = await open(one);
    const bReset = closedWith(b.stream);
    await sendPartial(b.stream, 2 * MiB, 512 * KiB).catch(() => {});
    const refused = await b.reader.read().catch((e: unknown) => e);
    expect(isDfsError(refused, 'ERR_OVERLOADED')).toBe(true);
    expect((refused as Error).message).toMatch(new RegExp(`peer ${one.peerId} would have \\d+ bytes .* over its 1048576-byte budget`));
    expect(await bReset).toBe('StreamResetError');
    // `other` may still use what is left of the total (1.5 MiB), not more.
    const c = await open(other);
    await sendPartial(c.stream, 2 * MiB, 512 * KiB);
    while (budget.peerBytes(other.peerId) < 512 * KiB) await delay(5);
    const d = await open(other);
    await sendPartial(d.stream, 2 * MiB, 512 * KiB).catch(() => {});
    const full = await d.reader.read().catch((e: unknown) => e);
    expect(isDfsError(full, 'ERR_OVERLOADED')).toBe(true);
    expect((full as Error).message).toMatch(/the most this process takes/);
    // The streams that were first were never disturbed.
    expect(a.stream.status).toBe('open');
    expect(c.stream.status).toBe('open');
    expect(budget.stats.refusedPeer).toBe(1);
    expect(budget.stats.refusedTotal).toBe(1);
    for (const r of readers) r.reader.release();
    expect(budget.totalBytes).toBe(0);
  });
});

describe('serveMuxRpc bounds', () => {
  const request = schema.object({ n: schema.integer(), delayMs: schema.optional(schema.integer({ min: 0 })), pad: schema.optional(schema.string()), answerBytes: schema.optional(schema.integer({ min: 0 })) });
  const response = schema.object({ n: schema.integer(), pad: schema.optional(schema.string()) });

  async function muxServer(options: ServeMuxRpcOptions) {
    const peer = await startPeer();
    const stats = await serveMuxRpc(
      peer,
      MUX,
      request,
      async (r, { signal }) => {
        if (r.delayMs) await delay(r.delayMs, undefined, { signal }).catch(() => {});
        return { n: r.n, ...(r.answerBytes ? { pad: 'a'.repeat(r.answerBytes) } : {}) };
      },
      options,
    );
    return { peer, stats };
  }

  function rawRequest(id: number, req: unknown): Uint8Array {
    const payload = new TextEncoder().encode(encodeWire({ id, req }));
    const frame = new Uint8Array(4 + payload.byteLength);
    frame.set(header(payload.byteLength));
    frame.set(payload, 4);
    return frame;
  }

  it('resets a caller that sends requests and never reads the answers; others keep being served', async () => {
    const s = await muxServer({ maxQueuedAnswerBytes: 256 * KiB, answerTimeoutMs: 1_000 });
    const attacker = await startPeer({ listen: [] });
    const stream = await attacker.dialProtocol(addrOf(s.peer), MUX);
    stream.pause(); // reads nothing: the server's answers back up
    const reset = closedWith(stream);
    let written = 0;
    const started = performance.now();
    try {
      for (let id = 1; id <= 20_000 && stream.status === 'open'; id++) {
        written++;
        if (!stream.send(rawRequest(id, { n: id, answerBytes: 2_000, pad: 'r'.repeat(1_000) }))) await waitForDrain(stream, { signal: AbortSignal.timeout(10_000) });
      }
    } catch {
      // reset while we waited to write
    }
    expect(await reset).toBe('StreamResetError');
    // The server reset the stream once its answers passed the bound: it never held 20,000
    // answers of 2 KB.
    expect(written).toBeLessThan(20_000);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(s.stats.resetSlowReaders).toBe(1);
    expect(s.stats.peakBytes).toBeLessThan(8 * MiB);
    // Someone else, meanwhile and after, is served as usual.
    const client = await startPeer({ listen: [] });
    const channel = new RpcChannel(client, addrOf(s.peer), MUX);
    expect((await channel.call({ n: 7 }, response)).n).toBe(7);
    await delay(100);
    expect(s.stats.bytes).toBe(0);
  });

  it('a caller that stops reading for a moment, within the bounds, gets every answer', async () => {
    const s = await muxServer({ answerTimeoutMs: 3_000 });
    const client = await startPeer({ listen: [] });
    const stream = await client.dialProtocol(addrOf(s.peer), MUX);
    const reader = new FrameReader(stream);
    const writer = new FrameWriter(stream);
    stream.pause();
    const count = 800; // under the 1,024 answers a stream may have waiting
    await Promise.all(Array.from({ length: count }, (_, i) => writer.write(rawRequest(i + 1, { n: i + 1, answerBytes: 1_000 }).subarray(4))));
    await delay(500); // not reading for a while (under the answer timeout)
    stream.resume();
    const ids = new Set<number>();
    while (ids.size < count) {
      const frame = await reader.read();
      if (!frame) break;
      ids.add((JSON.parse(new TextDecoder().decode(frame.subarray())) as { id: number }).id);
    }
    expect(ids.size).toBe(count);
    expect(s.stats.resetSlowReaders).toBe(0);
  });

  it('bounds calls in flight per peer across its streams, and bytes held per peer and in all, with ERR_OVERLOADED', async () => {
    const s = await muxServer({ maxInflightPerPeer: 4, maxBytesPerPeer: 1 * MiB, maxBytesTotal: 1536 * KiB });
    const one = await startPeer({ listen: [] });
    const target = addrOf(s.peer);
    // Two streams (channels) of one peer: 4 calls in flight between them, no more.
    const channels = [new RpcChannel(one, target, MUX), new RpcChannel(one, target, MUX)];
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, n) => channels[n % 2]!.call({ n, delayMs: 300 }, response)));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(4);
    expect(outcomes.filter((o) => o.status === 'rejected' && isDfsError(o.reason, 'ERR_OVERLOADED'))).toHaveLength(6);

    // Bytes: requests of ~300 KB being handled; one peer gets 3 in (1 MiB), the 4th is refused.
    const pad = 'p'.repeat(300_000);
    const big = await Promise.allSettled(Array.from({ length: 4 }, (_, n) => channels[0]!.call({ n, delayMs: 400, pad }, response)));
    expect(big.filter((o) => o.status === 'fulfilled')).toHaveLength(3);
    const refused = big.find((o) => o.status === 'rejected');
    expect(isDfsError((refused as PromiseRejectedResult).reason, 'ERR_OVERLOADED')).toBe(true);
    expect(((refused as PromiseRejectedResult).reason as Error).message).toMatch(/would pass its 1048576-byte bound/);

    // In all: two peers with 3 each would be 1.8 MB, over the 1.5 MiB total.
    const two = await startPeer({ listen: [] });
    const theirs = new RpcChannel(two, target, MUX);
    const both = await Promise.allSettled([
      // Held long enough that the other peer's calls arrive while they are, even on a loaded machine.
      ...Array.from({ length: 3 }, (_, n) => channels[1]!.call({ n, delayMs: 3_000, pad }, response, { timeoutMs: 10_000 })),
      ...Array.from({ length: 3 }, (_, n) => delay(300).then(() => theirs.call({ n, delayMs: 400, pad }, response, { timeoutMs: 10_000 }))),
    ]);
    expect(both.filter((o) => o.status === 'fulfilled')).toHaveLength(5);
    expect(both.filter((o) => o.status === 'rejected' && /the server holds \d+ bytes/.test((o.reason as Error).message))).toHaveLength(1);
    await delay(50);
    expect(s.stats.bytes).toBe(0);
  });

  it('refuses an oversized request with ERR_PROTOCOL that says why, and every call on that stream fails with it', async () => {
    const s = await muxServer({ maxFrameBytes: 64 * KiB });
    const client = await startPeer({ listen: [] });
    const channel = new RpcChannel(client, addrOf(s.peer), MUX, { maxFrameBytes: 1 * MiB });
    const slow = channel.call({ n: 1, delayMs: 2_000 }, response, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    await delay(50);
    const err = await channel.call({ n: 2, pad: 'x'.repeat(100_000) }, response).catch((e: unknown) => e);
    expect(isDfsError(err, 'ERR_PROTOCOL')).toBe(true);
    expect((err as Error).message).toMatch(/frame of \d+ bytes exceeds the 65536-byte limit/);
    const inFlight = await slow;
    expect(isDfsError(inFlight, 'ERR_PROTOCOL')).toBe(true);
    // The channel opens a fresh stream for the next call.
    expect((await channel.call({ n: 3 }, response)).n).toBe(3);
  });

  it('answers a call whose answer exceeds the frame limit with ERR_PROTOCOL, and the stream keeps working', async () => {
    const s = await muxServer({ maxFrameBytes: 64 * KiB });
    const client = await startPeer({ listen: [] });
    const channel = new RpcChannel(client, addrOf(s.peer), MUX, { maxFrameBytes: 64 * KiB });
    const err = await channel.call({ n: 1, answerBytes: 100_000 }, response).catch((e: unknown) => e);
    expect(isDfsError(err, 'ERR_PROTOCOL')).toBe(true);
    expect((err as Error).message).toMatch(/answer of \d+ bytes exceeds the 65536-byte frame limit/);
    expect((await channel.call({ n: 2 }, response)).n).toBe(2);
  });

  it('resets a stream whose request frame stops arriving, telling the caller ERR_TIMEOUT', async () => {
    const s = await muxServer({ frameIdleTimeoutMs: 300 });
    const client = await startPeer({ listen: [] });
    const stream = await client.dialProtocol(addrOf(s.peer), MUX);
    const reader = new FrameReader(stream);
    const reset = closedWith(stream);
    await sendPartial(stream, 10_000, 100);
    const frame = await reader.read().catch(() => undefined);
    expect(frame).toBeDefined();
    const said = JSON.parse(new TextDecoder().decode(frame!.subarray())) as { error: { code: string; message: string } };
    expect(said.error.code).toBe('ERR_TIMEOUT');
    expect(said.error.message).toMatch(/bytes of a 10000-byte frame arrived, (then nothing for|the last \d+ at)/);
    expect(await reset).toBe('StreamResetError');
  });
});

describe('DfsPeer connection and stream bounds', () => {
  it('refuses connections past the per-peer bound', async () => {
    const listener = await startPeer({ maxConnectionsPerPeer: 2 });
    const key = await generateKeyPair('Ed25519');
    // Three processes with one identity: the third connection from that peer is refused.
    const twins = [await startPeer({ listen: [], privateKey: key }), await startPeer({ listen: [], privateKey: key }), await startPeer({ listen: [], privateKey: key })];
    await listener.handle(RAW, () => {});
    const outcomes: string[] = [];
    for (const twin of twins) {
      outcomes.push(
        await twin.dialProtocol(addrOf(listener), RAW, { timeoutMs: 3_000 }).then(
          () => 'ok',
          (err: unknown) => (err as DfsError).code,
        ),
      );
    }
    expect(outcomes.slice(0, 2)).toEqual(['ok', 'ok']);
    expect(outcomes[2]).not.toBe('ok');
    // Other peers are not affected.
    const stranger = await startPeer({ listen: [] });
    await expect(stranger.dialProtocol(addrOf(listener), RAW, { timeoutMs: 3_000 })).resolves.toBeDefined();
  });

  it('bounds the streams one connection may have open, all protocols together', async () => {
    const listener = await startPeer({ maxStreamsPerConnection: 8 });
    const held: Stream[] = [];
    await listener.handle(RAW, (stream) => void held.push(stream), { maxInboundStreams: 100 });
    const dialler = await startPeer({ listen: [] });
    await dialler.dialProtocol(addrOf(listener), RAW, { timeoutMs: 3_000 }); // connect first
    const opened = await Promise.allSettled(Array.from({ length: 19 }, () => dialler.dialProtocol(addrOf(listener), RAW, { timeoutMs: 3_000, maxOutboundStreams: 100 })));
    await delay(200);
    const open = opened.filter((o) => o.status === 'fulfilled' && o.value.status === 'open');
    expect(open.length).toBeLessThanOrEqual(7);
    expect(held.filter((s) => s.status === 'open').length).toBeLessThanOrEqual(8);
  });
});
