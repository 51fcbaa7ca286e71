import { generateKeyPair } from '@libp2p/crypto/keys';
// Chunk protocol throughput: 1 MiB chunks put to one node, put through a 3-node pipeline, and got
// back, beside a bare libp2p stream moving the same bytes and a ChunkStore written directly on the
// same disk, all in this run. Every peer (client and nodes) lives in this one process, so the
// nodes share its CPU and event loop: the pipeline row pays for three nodes' hashing, framing and
// fsyncs on the same cores a real cluster would spread over three machines.
// Every put and get carries a chunk ticket (src/auth/tickets.ts), signed before the timed part
// (the masters sign them, not the client); the nodes check each. The second table gives what a
// ticket costs per chunk request: signing (a master), a node's first check of it (signature) and
// a check of one seen before (the verifier's cache), beside the time one 1 MiB put takes here.
import { randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PrivateKey } from '@libp2p/interface';
import { newTicketClaims, signTicket, TicketVerifier } from '../src/auth/tickets.ts';
import { loadBlake3 } from '../src/chunker/index.ts';
import { formatTable } from '../src/cli/format.ts';
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
  // The masters' side: one put and one get ticket per chunk, for the client.
  const clusterKey = await generateKeyPair('Ed25519');
  const client = await createPeer({ listen: [] });
  const putTickets = await Promise.all(ids.map((id, i) => signTicket(clusterKey, newTicketClaims({ op: 'put', ids: [id], bearer: client.peerId, now: Date.now(), ttlMs: 600_000, fence: i + 1 }))));
  const getTickets = await Promise.all(ids.map((id) => signTicket(clusterKey, newTicketClaims({ op: 'get', ids: [id], bearer: client.peerId, now: Date.now(), ttlMs: 600_000 }))));
  const root = await mkdtemp(join(tmpdir(), 'dfs-bench-chunk-'));
  const nodes: BenchNode[] = [];
  let direct: ChunkStore | undefined;
  try {
    // Node 0 takes the single-node puts; nodes 1-3 form the pipeline (fresh stores, so no put
    // is deduplicated into a no-op).
    for (let i = 0; i < 4; i++) nodes.push(await startNode(join(root, `node-${i}`), blake3, clusterKey));
    const [single, ...pipeline] = nodes as [BenchNode, BenchNode, BenchNode, BenchNode];
    direct = await ChunkStore.open({ dir: join(root, 'direct'), blake3 });
    const directStore = direct;

    await single.peer.handle(RAW, (stream) => countRaw(stream));
    const rawMs = await bestOf(3, () => sendRaw(client, single.addr, chunks));
    const rawPerChunkMs = await bestOf(3, () => pool(n, IN_FLIGHT, (i) => sendRaw(client, single.addr, [chunks[i]!])));
    const directMs = await timed(() => pool(n, IN_FLIGHT, (i) => directStore.put(ids[i]!, chunks[i]!)));
    const singleMs = await timed(() => pool(n, IN_FLIGHT, (i) => putChunk(client, [single.addr], ids[i]!, chunks[i]!, i + 1, putTickets[i]!)));
    const pipelineMs = await timed(() =>
      pool(n, IN_FLIGHT, async (i) => {
        const { stored } = await putChunk(client, pipeline.map((p) => p.addr), ids[i]!, chunks[i]!, i + 1, putTickets[i]!);
        if (stored.length !== 3) throw new Error(`chunk ${ids[i]} stored on ${stored.length} nodes`);
      }),
    );
    const getMs = await timed(() =>
      pool(n, IN_FLIGHT, async (i) => {
        const got = await getChunk(client, single.addr, ids[i]!, getTickets[i]!, { blake3 });
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
    await printTicketCosts(clusterKey, client.peerId, ids, singleMs / n);
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

async function startNode(dir: string, blake3: Awaited<ReturnType<typeof loadBlake3>>, clusterKey: PrivateKey): Promise<BenchNode> {
  const privateKey = await generateKeyPair('Ed25519');
  const peer = await createPeer({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] });
  const store = await ChunkStore.open({ dir, blake3 });
  const service = new ChunkService({ peer, privateKey, store, blake3, resolveNode: (id) => directory.get(id), clusterKey: { publicKey: clusterKey.publicKey } });
  await service.start();
  const addr = peer.listenAddrs.find((a) => a.startsWith('/ip4/127.0.0.1/')) ?? '';
  directory.set(peer.peerId, addr.includes('/p2p/') ? addr : `${addr}/p2p/${peer.peerId}`);
  return { peer, store, service, addr };
}




/**
 * What a chunk ticket costs per request: a master's signature, a node's first check (signature
 * and claims) and a check of a ticket it has verified before (a map lookup and the claims), each
 * the mean over many, beside the mean time of one 1 MiB put to one node measured above.
 */
async function printTicketCosts(clusterKey: PrivateKey, bearer: string, ids: readonly string[], putMsPerChunk: number): Promise<void> {
  const n = Math.max(2000, ids.length);
  const idAt = (i: number): string => ids[i % ids.length]!;
  const now = Date.now();
  const signStart = performance.now();
  const tickets: string[] = [];
  for (let i = 0; i < n; i++) tickets.push(await signTicket(clusterKey, newTicketClaims({ op: 'put', ids: [idAt(i)], bearer, now, fence: i + 1 })));
  const signUs = ((performance.now() - signStart) * 1000) / n;
  // A cache big enough for all of them, as a node's is for the tickets of the puts under way.
  const verifier = new TicketVerifier({ publicKey: clusterKey.publicKey, cacheSize: n });
  const check = (i: number): void => {
    const r = verifier.verify(tickets[i], { now, op: ['put', 'replicate'], chunkId: idAt(i), bearerPeerId: bearer, fence: i + 1 });
    if (!r.ok) throw new Error(`bench ticket refused: ${r.message}`);
  };
  const coldStart = performance.now();
  for (let i = 0; i < n; i++) check(i);
  const coldUs = ((performance.now() - coldStart) * 1000) / n;
  const rounds = 10;
  const warmStart = performance.now();
  for (let r = 0; r < rounds; r++) for (let i = 0; i < n; i++) check(i);
  const warmUs = ((performance.now() - warmStart) * 1000) / (n * rounds);
  const putUs = putMsPerChunk * 1000;
  const share = (us: number): string => `${((us / putUs) * 100).toFixed(2)}% of a 1 MiB put (${putUs.toFixed(0)} µs here)`;
  console.log(`\n## chunk tickets: cost per chunk request (${n} tickets, mean)\n`);
  process.stdout.write(
    formatTable(
      ['step', 'µs per ticket', 'where', 'share'],
      [
        ['sign (Ed25519)', signUs.toFixed(1), 'a master, per placement or location', ''],
        ['first check: signature + claims', coldUs.toFixed(1), 'the node, on the request', share(coldUs)],
        ['check of a cached ticket', warmUs.toFixed(2), 'the node, a ticket seen again', share(warmUs)],
      ],
      new Set([1]),
    ),
  );
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
