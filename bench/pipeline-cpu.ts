// `node --max-semi-space-size=1 bench/pipeline-cpu.ts [MiB] [inFlight]`: the CPU a chunk put
// through a 3-node pipeline and a chunk get cost, with the client and the three nodes in this one
// process, measured as this process's CPU time (user + system, every thread) per GiB moved. One
// process on a shared machine: the figure is steadier than a cluster's summed over processes,
// which also pay for masters and for being descheduled, so it is the one to compare two builds of
// the data path with (run each a few times, alternating). Fresh 1 MiB random chunks, tickets
// signed beforehand (a master's work), fsync per chunk as in a cluster.
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { newTicketClaims, signTicket } from '../src/auth/tickets.ts';
import { type Blake3, loadBlake3 } from '../src/chunker/index.ts';
import { ChunkGetSession, ChunkStreams, putChunk } from '../src/protocol/chunk-client.ts';
import { ChunkService } from '../src/protocol/chunk-service.ts';
import { createPeer } from '../src/net/index.ts';
import type { DfsPeer } from '../src/net/index.ts';
import { ChunkStore } from '../src/storage/index.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** DFS_BENCH_CHUNK_MIB: the size of each chunk (default 1, the chunker's average). */
const CHUNK_BYTES = Number(process.env.DFS_BENCH_CHUNK_MIB ?? 1) * MiB;
const directory = new Map<string, string>();

interface Node {
  readonly peer: DfsPeer;
  readonly store: ChunkStore;
  readonly service: ChunkService;
  readonly addr: string;
}

async function startNode(dir: string, blake3: Blake3, clusterKey: PrivateKey): Promise<Node> {
  const privateKey = await generateKeyPair('Ed25519');
  const peer = await createPeer({ privateKey, listen: ['/ip4/127.0.0.1/tcp/0'] });
  const store = await ChunkStore.open({ dir, blake3 });
  const service = new ChunkService({ peer, privateKey, store, blake3, resolveNode: (id) => directory.get(id), clusterKey: { publicKey: clusterKey.publicKey } });
  await service.start();
  const listen = peer.listenAddrs.find((a) => a.startsWith('/ip4/127.0.0.1/')) ?? '';
  const addr = listen.includes('/p2p/') ? listen : `${listen}/p2p/${peer.peerId}`;
  directory.set(peer.peerId, addr);
  return { peer, store, service, addr };
}

async function pool(n: number, width: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    for (let i = next++; i < n; i = next++) await job(i);
  }));
}

/** CPU seconds per GiB and MB/s of `work` moving `bytes`. */
async function measure(bytes: number, work: () => Promise<void>): Promise<{ cpuSPerGiB: number; sysSPerGiB: number; mbPerS: number }> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await work();
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { cpuSPerGiB: (used.user + used.system) / 1e6 / (bytes / GiB), sysSPerGiB: used.system / 1e6 / (bytes / GiB), mbPerS: bytes / 1e6 / (ms / 1000) };
}

const mib = Number(process.argv[2] ?? 128);
const inFlight = Number(process.argv[3] ?? 4);
const blake3 = await loadBlake3();
const clusterKey = await generateKeyPair('Ed25519');
const client = await createPeer({ listen: [] });
const count = Math.max(1, Math.round((mib * MiB) / CHUNK_BYTES));
const chunks = Array.from({ length: count }, () => randomFillSync(new Uint8Array(CHUNK_BYTES)));
const ids = chunks.map((c) => blake3.hashHex(c));
const ticket = (op: 'put' | 'get', i: number) =>
  signTicket(clusterKey, newTicketClaims({ op, ids: [ids[i]!], bearer: client.peerId, now: Date.now(), ttlMs: 600_000, ...(op === 'put' ? { fence: i + 1 } : {}) }));
const putTickets = await Promise.all(ids.map((_, i) => ticket('put', i)));
const getTickets = await Promise.all(ids.map((_, i) => ticket('get', i)));
const root = await mkdtemp(join(tmpdir(), 'dfs-bench-pipeline-'));
const nodes: Node[] = [];
try {
  for (let i = 0; i < 3; i++) nodes.push(await startNode(join(root, `node-${i}`), blake3, clusterKey));
  const streams = new ChunkStreams();
  const pipeline = nodes.map((n) => n.addr);
  const load = loadavg()[0]!.toFixed(2);
  const put = await measure(count * CHUNK_BYTES, () =>
    pool(count, inFlight, async (i) => {
      const { stored } = await putChunk(client, pipeline, ids[i]!, chunks[i]!, i + 1, putTickets[i]!, { pool: streams });
      if (stored.length !== 3) throw new Error(`stored on ${stored.length} nodes`);
    }),
  );
  streams.close();
  const session = new ChunkGetSession(client);
  const get = await measure(count * CHUNK_BYTES, () =>
    pool(count, 2, async (i) => {
      const pieces = await session.get(nodes[i % 3]!.addr, ids[i]!, getTickets[i]!, { blake3 });
      if (pieces.reduce((n, p) => n + p.byteLength, 0) !== CHUNK_BYTES) throw new Error('short chunk');
    }),
  );
  session.close();
  console.log(JSON.stringify({ mib, inFlight, load, putCpuSPerGiB: +put.cpuSPerGiB.toFixed(2), putSysSPerGiB: +put.sysSPerGiB.toFixed(2), putMbPerS: +put.mbPerS.toFixed(0), getCpuSPerGiB: +get.cpuSPerGiB.toFixed(2), getSysSPerGiB: +get.sysSPerGiB.toFixed(2), getMbPerS: +get.mbPerS.toFixed(0) }));
} finally {
  for (const node of nodes) {
    await node.service.stop();
    await node.store.close();
    await node.peer.stop();
  }
  await client.stop();
  await rm(root, { recursive: true, force: true });
}
