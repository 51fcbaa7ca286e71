import { generateKeyPair } from '@libp2p/crypto/keys';
// Chunk protocol throughput: 1 MiB chunks put to one node, put through a 3-node pipeline, and got
// back, beside a bare libp2p stream moving the same bytes and a ChunkStore written directly on the
// same disk, all in this run. Every peer (client and nodes) lives in this one process, so the
// nodes share its CPU and event loop: the pipeline row pays for three nodes' hashing, framing and
// fsyncs on the same cores a real cluster would spread over three machines.
import { randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBlake3 } from '../src/chunker/index.ts';
import { getChunk, putChunk } from '../src/protocol/chunk-client.ts';
import { createPeer, waitForDrain } from '../src/net/index.ts';
import type { DfsPeer, Stream } from '../src/net/index.ts';
import { ChunkService } from '../src/protocol/chunk-service.ts';
import { ChunkStore } from '../src/storage/index.ts';
import { benchBytes, bestOf, mbPerS, pool, printRows, timed } from './harness.ts';
import { countRaw } from './net.ts';

const MiB = 1024 * 1024;
const RAW = '/dfs/bench-chunk-raw/1.0.0';
const IN_FLIGHT = 8;

interface BenchNode {
  readonly peer: DfsPeer;
  readonly store: ChunkStore;
  readonly service: ChunkService;
  readonly addr: string;
}

export async function runChunkBench(): Promise<void> {
  const bytes = Math.min(benchBytes(), 256 * MiB);
  const n = Math.max(1, Math.floor(bytes / MiB));
  const moved = n * MiB;
  const blake3 = await loadBlake3();
  const chunks = Array.from({ length: n }, () => randomFillSync(new Uint8Array(MiB)));
  const ids = chunks.map((c) => blake3.hashHex(c));
  const root = await mkdtemp(join(tmpdir(), 'dfs-bench-chunk-'));
  const nodes: BenchNode[] = [];
  const client = await createPeer({ listen: [] });
  let direct: ChunkStore | undefined;
  try {
    // Node 0 takes the single-node puts; nodes 1-3 form the pipeline (fresh stores, so no put
    // is deduplicated into a no-op).
    for (let i = 0; i < 4; i++) nodes.push(await startNode(join(root, `node-${i}`), blake3));
    const [single, ...pipeline] = nodes as [BenchNode, BenchNode, BenchNode, BenchNode];
    direct = await ChunkStore.open({ dir: join(root, 'direct'), blake3 });
    const directStore = direct;

    await single.peer.handle(RAW, (stream) => countRaw(stream));
    const rawMs = await bestOf(3, () => sendRaw(client, single.addr, chunks));
    const rawPerChunkMs = await bestOf(3, () => pool(n, IN_FLIGHT, (i) => sendRaw(client, single.addr, [chunks[i]!])));
    const directMs = await timed(() => pool(n, IN_FLIGHT, (i) => directStore.put(ids[i]!, chunks[i]!)));
    const singleMs = await timed(() => pool(n, IN_FLIGHT, (i) => putChunk(client, [single.addr], ids[i]!, chunks[i]!, i + 1)));
    const pipelineMs = await timed(() =>
      pool(n, IN_FLIGHT, async (i) => {
        const { stored } = await putChunk(client, pipeline.map((p) => p.addr), ids[i]!, chunks[i]!, i + 1);
        if (stored.length !== 3) throw new Error(`chunk ${ids[i]} stored on ${stored.length} nodes`);
      }),
    );
    const getMs = await timed(() =>
      pool(n, IN_FLIGHT, async (i) => {
        const got = await getChunk(client, single.addr, ids[i]!, { blake3 });
        if (got.byteLength !== MiB) throw new Error(`chunk ${ids[i]} came back with ${got.byteLength} bytes`);
      }),
    );

    const raw = 'raw libp2p stream';
    printRows(`chunk: ${n} x 1 MiB chunks, ${IN_FLIGHT} in flight, TCP loopback + Noise + Yamux, all peers in one process`, [
      { name: raw, mbPerS: mbPerS(moved, rawMs), note: 'one stream, send() + drain, best of 3' },
      { name: 'raw, a stream per chunk', mbPerS: mbPerS(moved, rawPerChunkMs), vs: raw, note: `${IN_FLIGHT} streams at once, best of 3` },
      { name: 'ChunkStore.put, no network', mbPerS: mbPerS(moved, directMs), note: 'hash + fsync, same disk' },
      { name: 'put -> 1 node', mbPerS: mbPerS(moved, singleMs), vs: raw, note: 'acked after fsync' },
      { name: 'put -> 3-node pipeline', mbPerS: mbPerS(moved, pipelineMs), vs: raw, note: 'client bytes/s; 3 copies, acked after all fsynced' },
      { name: 'get <- 1 node', mbPerS: mbPerS(moved, getMs), vs: raw, note: 'verified by node and client' },
    ]);
  } finally {
    for (const node of nodes.reverse()) {
      await node.service.stop();
      await node.store.close();
    }
    await direct?.close();
    await client.stop();
    for (const node of nodes) await node.peer.stop();
    await rm(root, { recursive: true, force: true });
  }
}

/** The bench's node list: every node may forward to every other (what the masters would say). */
const directory = new Map<string, string>();

async function startNode(dir: string, blake3: Awaited<ReturnType<typeof loadBlake3>>): Promise<BenchNode> {
  const privateKey = await generateKeyPair('Ed25519');
  const peer = await createPeer({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] });
  const store = await ChunkStore.open({ dir, blake3 });
  const service = new ChunkService({ peer, privateKey, store, blake3, resolveNode: (id) => directory.get(id) });
  await service.start();
  const addr = peer.listenAddrs.find((a) => a.startsWith('/ip4/127.0.0.1/')) ?? '';
  directory.set(peer.peerId, addr.includes('/p2p/') ? addr : `${addr}/p2p/${peer.peerId}`);
  return { peer, store, service, addr };
}




async function sendRaw(peer: DfsPeer, target: string, chunks: readonly Uint8Array[]): Promise<void> {
  const stream = await peer.dialProtocol(target, RAW);
  const done = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', () => resolve(), { once: true });
    stream.addEventListener('close', (evt) => (evt.error ? reject(evt.error) : resolve()), { once: true });
  });
  for (const chunk of chunks) {
    if (!stream.send(chunk)) await waitForDrain(stream);
  }
  await stream.close();
  await done;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.env.UV_THREADPOOL_SIZE ??= '16';
  await runChunkBench();
}
