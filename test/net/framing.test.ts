import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';
import { FrameReader, FrameWriter } from '../../src/net/index.ts';
import type { DfsPeer, Stream } from '../../src/net/index.ts';
import { addrOf, startPeer } from './peers.ts';

const RAW = '/dfs/test-raw/1.0.0';
const MiB = 1024 * 1024;

/** Two connected peers and a fresh stream between them: [dialler's end, listener's end]. */
async function streamPair(): Promise<{ client: Stream; server: Stream; peers: DfsPeer[] }> {
  const listener = await startPeer();
  const dialler = await startPeer({ listen: [] });
  const inbound = Promise.withResolvers<Stream>();
  await listener.handle(RAW, (stream) => inbound.resolve(stream));
  const client = await dialler.dialProtocol(addrOf(listener), RAW, { timeoutMs: 5000 });
  return { client, server: await inbound.promise, peers: [listener, dialler] };
}

/** Deterministic, distinct bytes for frame `i` (so a lost, duplicated or reordered frame shows). */
function frameBytes(i: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  for (let off = 0; off + 4 <= size; off += 4) view.setUint32(off, (i * 2654435761 + off) >>> 0);
  return bytes;
}

/** Hex digests of each buffer: cheap to compare (deep equality of MiB arrays takes seconds). */
function digests(buffers: readonly Uint8Array[]): string[] {
  return buffers.map((b) => `${b.byteLength}:${createHash('sha256').update(b).digest('hex')}`);
}

/** Polls `condition` (a state with no event of its own) every 5 ms, failing after `timeoutMs`. */
async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

describe('framing over a real libp2p stream', () => {
  it('delivers frames in order, then a clean end; empty frames are frames', async () => {
    const { client, server } = await streamPair();
    const writer = new FrameWriter(client);
    const reader = new FrameReader(server);
    const sent = [Uint8Array.of(1, 2, 3), new Uint8Array(0), frameBytes(7, 300_000)];
    for (const payload of sent) await writer.write(payload);
    await writer.close();
    const received: Uint8Array[] = [];
    for await (const frame of reader) received.push(frame.subarray());
    expect(digests(received)).toEqual(digests(sent));
    expect(reader.stats.framesRead).toBe(3);
  });

  it('streams 64 MiB in 1 MiB frames with backpressure and bounded memory', async () => {
    const { client, server } = await streamPair();
    const frames = 64;
    const writer = new FrameWriter(client, { maxFrameBytes: MiB });
    const reader = new FrameReader(server, { maxFrameBytes: MiB, highWaterBytes: MiB });
    let peakSenderQueued = 0;
    let peakStreamReadBuffer = 0;
    const sentHash = createHash('sha256');
    const sending = (async () => {
      for (let i = 0; i < frames; i++) {
        const payload = frameBytes(i, MiB);
        sentHash.update(payload);
        await writer.write(payload);
        peakSenderQueued = Math.max(peakSenderQueued, client.writeBufferLength);
      }
      await writer.close();
    })();
    let sendingDone = false;
    void sending.then(() => (sendingDone = true), () => (sendingDone = true));

    // Phase 1: nobody reads. The reader must pause the stream, the sender must block in drain,
    // and it must stay blocked: without read backpressure yamux keeps granting window and the
    // sender would push all 64 MiB into the receiver's memory.
    await until(() => sendingDone || client.writableNeedsDrain, 10_000, 'the sender to block');
    await delay(300); // nothing to await: give a broken implementation the time to run ahead
    expect(sendingDone).toBe(false);
    expect(reader.stats.pauses).toBeGreaterThan(0);
    // Bound: reader high water (1 MiB) + one frame + the 4 MiB yamux window still in flight.
    expect(writer.stats.framesWritten).toBeLessThan(12);
    expect(reader.bufferedBytes + server.readBufferLength).toBeLessThan(6 * MiB + 8);

    // Phase 2: read everything; the bytes must arrive intact and in order.
    const receivedHash = createHash('sha256');
    let receivedBytes = 0;
    for await (const frame of reader) {
      for (const piece of frame) receivedHash.update(piece);
      receivedBytes += frame.byteLength;
      peakStreamReadBuffer = Math.max(peakStreamReadBuffer, server.readBufferLength);
    }
    await sending;
    expect(receivedBytes).toBe(frames * MiB);
    expect(receivedHash.digest('hex')).toBe(sentHash.digest('hex'));
    expect(writer.stats.drainWaits).toBeGreaterThan(0);
    // Memory: the reader held at most ~ high water + one frame + one delivery from the stream,
    // the sender's stream at most two frames; the stream buffer stayed under its window bound.
    expect(reader.stats.peakBufferedBytes).toBeLessThan(6 * MiB + 8);
    expect(peakSenderQueued).toBeLessThanOrEqual(2 * (MiB + 4));
    expect(peakStreamReadBuffer).toBeLessThanOrEqual(8 * MiB);
  });

  it('refuses an oversized frame with ERR_PROTOCOL and aborts that stream', async () => {
    const { client, server } = await streamPair();
    const writer = new FrameWriter(client, { maxFrameBytes: 2 * MiB });
    const reader = new FrameReader(server, { maxFrameBytes: 64 * 1024 });
    await writer.write(Uint8Array.of(42));
    // The reset may reach the writer while it writes or while it closes: either way a code.
    const writing = writer
      .write(new Uint8Array(MiB))
      .then(() => writer.close())
      .then(
        () => 'sent',
        (err: unknown) => (err as DfsError).code,
      );
    expect([...((await reader.read())?.subarray() ?? [])]).toEqual([42]);
    const refused = await reader.read().catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(DfsError);
    expect((refused as DfsError).code).toBe('ERR_PROTOCOL');
    expect((refused as DfsError).message).toMatch(/1048576 bytes exceeds the 65536-byte limit/);
    expect(server.status).toBe('aborted');
    // The reader refused the frame on its header: it held at most the one delivery carrying the
    // header (bounded by the yamux window), never the whole announced frame.
    expect(reader.stats.peakBufferedBytes).toBeLessThan(MiB);
    expect(reader.bufferedBytes).toBe(0);
    // The sender learns its stream was reset (or finished writing before the reset arrived).
    expect(['sent', 'ERR_STREAM_CLOSED']).toContain(await writing);
    // The writer refuses locally what exceeds its own limit.
    await expect(new FrameWriter(client, { maxFrameBytes: 10 }).write(new Uint8Array(11))).rejects.toMatchObject({ code: 'ERR_PROTOCOL' });
  });

  it('tells a truncated frame (ERR_PROTOCOL) from a clean end', async () => {
    const { client, server } = await streamPair();
    const reader = new FrameReader(server);
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, 100);
    client.send(header);
    client.send(new Uint8Array(10));
    await client.close();
    await expect(reader.read()).rejects.toMatchObject({ code: 'ERR_PROTOCOL', message: expect.stringMatching(/ended inside a frame/) });
  });

  it('reports a reset by the remote as ERR_STREAM_CLOSED', async () => {
    const { client, server } = await streamPair();
    const reader = new FrameReader(server);
    const pending = reader.read();
    client.abort(new Error('test reset'));
    await expect(pending).rejects.toMatchObject({ code: 'ERR_STREAM_CLOSED' });
  });
});

describe('FrameWriter queueing', () => {
  it('keeps overlapping writes whole and in call order, with backpressure', async () => {
    const { client, server } = await streamPair();
    const writer = new FrameWriter(client, { maxFrameBytes: MiB });
    const reader = new FrameReader(server, { maxFrameBytes: MiB });
    const frames = Array.from({ length: 24 }, (_, i) => frameBytes(i, (i % 3) * 200_000 + 17));
    const writes = frames.map((frame) => writer.write(frame)); // none awaited before the next
    const closing = Promise.all(writes).then(() => writer.close());
    const received: Uint8Array[] = [];
    for await (const frame of reader) received.push(frame.subarray());
    await closing;
    expect(digests(received)).toEqual(digests(frames));
    expect(writer.stats.drainWaits).toBeGreaterThan(0);
  });
});
