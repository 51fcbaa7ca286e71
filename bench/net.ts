// Network layer throughput: one stream between two peers in this process (TCP over loopback,
// Noise, Yamux), 1 MiB writes. "raw" is a bare libp2p v3 stream (send() + 'drain', receiver
// counting 'message' bytes); "framed" is FrameWriter/FrameReader on the same kind of stream, so
// the ratio is the cost of framing, reassembly and read backpressure.
import { createPeer, FrameReader, FrameWriter, waitForDrain } from '../src/net/index.ts';
import type { DfsPeer, Stream } from '../src/net/index.ts';
import { benchBytes, bestOf, mbPerS, printRows } from './harness.ts';

const MiB = 1024 * 1024;
const RAW = '/dfs/bench-raw/1.0.0';
const FRAMED = '/dfs/bench-framed/1.0.0';

export async function runNetBench(): Promise<void> {
  const bytes = Math.min(benchBytes(), 256 * MiB);
  const writes = Math.max(1, Math.floor(bytes / MiB));
  const payload = new Uint8Array(MiB).fill(0x5a);
  const receiver = await createPeer({ listen: ['/ip4/127.0.0.1/tcp/0'] });
  const sender = await createPeer({ listen: [] });
  try {
    const target = receiver.listenAddrs[0] ?? '';
    await receiver.handle(RAW, (stream) => countRaw(stream));
    await receiver.handle(FRAMED, (stream) => countFramed(stream));
    const rawMs = await bestOf(3, () => sendRaw(sender, target, payload, writes));
    const framedMs = await bestOf(3, () => sendFramed(sender, target, payload, writes));
    const moved = writes * MiB;
    printRows(`net: one stream, ${writes} x 1 MiB writes, TCP loopback + Noise + Yamux`, [
      { name: 'raw libp2p stream', mbPerS: mbPerS(moved, rawMs), note: 'send() + drain' },
      { name: 'framed stream', mbPerS: mbPerS(moved, framedMs), vs: 'raw libp2p stream', note: 'FrameWriter -> FrameReader' },
    ]);
  } finally {
    await sender.stop();
    await receiver.stop();
  }
}

/** Receiver of the raw run: counts bytes, then answers with one byte so the sender can time it. */
export function countRaw(stream: Stream): void {
  let received = 0;
  stream.addEventListener('message', (evt) => {
    received += evt.data.byteLength;
  });
  stream.addEventListener('end', () => {
    stream.send(Uint8Array.of(received % 251));
    void stream.close();
  });
}

async function countFramed(stream: Stream): Promise<void> {
  let received = 0;
  for await (const frame of new FrameReader(stream, { maxFrameBytes: MiB })) received += frame.byteLength;
  const writer = new FrameWriter(stream);
  await writer.write(Uint8Array.of(received % 251));
  await writer.close();
}

async function sendRaw(peer: DfsPeer, target: string, payload: Uint8Array, writes: number): Promise<void> {
  const stream = await peer.dialProtocol(target, RAW);
  const done = acknowledgement(stream);
  for (let i = 0; i < writes; i++) {
    if (!stream.send(payload)) await waitForDrain(stream);
  }
  await stream.close();
  await done;
}

async function sendFramed(peer: DfsPeer, target: string, payload: Uint8Array, writes: number): Promise<void> {
  const stream = await peer.dialProtocol(target, FRAMED);
  const reader = new FrameReader(stream);
  const writer = new FrameWriter(stream, { maxFrameBytes: MiB });
  for (let i = 0; i < writes; i++) await writer.write(payload);
  await writer.close();
  await reader.read();
  reader.release();
}

/** Resolves when the receiver's one-byte answer arrives (everything was received). */
function acknowledgement(stream: Stream): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.addEventListener('message', () => resolve(), { once: true });
    stream.addEventListener('close', (evt) => (evt.error ? reject(evt.error) : resolve()), { once: true });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) await runNetBench();
