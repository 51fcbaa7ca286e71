import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ByteSink, getFile, MetaClient, PooledFileReads, putFile } from '../../src/client/index.ts';
import { hasChunks } from '../../src/protocol/chunk-client.ts';
import { type Blake3, DEFAULT_CHUNKER_PARAMS, loadBlake3 } from '../../src/chunker/index.ts';
import { DfsError, isDfsError } from '../../src/errors/index.ts';
import type { FileEntry } from '../../src/meta/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { startTestCluster, type TestCluster } from '../support/cluster.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';

/** One cluster for the whole file: 3 masters, 5 storage nodes, replication factor 3. */
let t: TestCluster;
let peer: DfsPeer;
let meta: MetaClient;
let blake3: Blake3;
let seed: number;
/** A writer's login: the cluster has users, and a test peer is nobody by itself. */
let token: string;

beforeAll(async () => {
  seed = testSeed('data path');
  t = await startTestCluster({ nodes: 5, masterArgs: ['--gc-grace-ms', '1500'] });
  peer = await t.cluster.createClientPeer();
  const password = 'data-path-test-password';
  await t.client((c) => c.addUser('tester', password, ['writer']));
  ({ token } = await t.client((c) => c.login('tester', password)));
  meta = new MetaClient({ peer, masters: t.cluster.masterAddrs, token });
  blake3 = await loadBlake3();
}, 120_000);

afterAll(async () => {
  await peer?.stop();
  await t?.stop();
});

function* reads(data: Uint8Array, readBytes = 256 * 1024): Generator<Uint8Array> {
  for (let o = 0; o < data.length; o += readBytes) yield data.subarray(o, o + readBytes);
}

function collect(): ByteSink & { bytes(): Buffer } {
  const parts: Uint8Array[] = [];
  // Copied: getFile reuses a chunk's buffer once write resolves.
  return { write: async (pieces) => void parts.push(...pieces.map((p) => Buffer.from(p))), bytes: () => Buffer.concat(parts) };
}

async function put(path: string, data: Uint8Array, client = meta, onProgress?: (bytes: number) => void) {
  return putFile(reads(data) as unknown as AsyncIterable<Uint8Array>, path, { peer, meta: client, blake3, ...(onProgress ? { onProgress } : {}) });
}

async function get(path: string, client = meta, window: { concurrency?: number; maxWindowBytes?: number } = {}): Promise<Buffer> {
  const sink = collect();
  await getFile(path, sink, { peer, meta: client, blake3, ...window });
  return sink.bytes();
}

/** How many storage nodes hold each chunk of a file (asked of every node directly). */
async function replicaCounts(path: string): Promise<number[]> {
  const ids = ((await meta.stat(path)) as FileEntry).manifest.chunks.map(([id]) => id);
  const counts = ids.map(() => 0);
  for (const addr of nodeAddrs()) {
    (await hasChunks(peer, addr, ids)).forEach((present, i) => (counts[i]! += present ? 1 : 0));
  }
  return counts;
}

/** Every running storage node's address, as it announced it. */
function nodeAddrs(): string[] {
  return t.cluster.nodeNames.filter((n) => t.cluster.isRunning(n)).map((n) => t.cluster.readyInfo(n).addrs[0]!);
}

describe('put and get through a real cluster (3 masters, 5 nodes, RF 3)', () => {
  const { minSize, avgSize, maxSize } = DEFAULT_CHUNKER_PARAMS;
  for (const size of [0, 1, minSize - 1, minSize, avgSize, maxSize, maxSize + 1]) {
    it(`round-trips ${size} bytes byte-identical, every chunk on exactly 3 distinct nodes`, async () => {
      const data = new SeededBytes(seed + size).bytes(size);
      const r = await put(`/sizes/${size}`, data);
      expect(r.size).toBe(size);
      expect((await get(`/sizes/${size}`)).equals(data)).toBe(true);
      const counts = await replicaCounts(`/sizes/${size}`);
      expect(counts).toHaveLength(r.chunks);
      expect(counts.every((c) => c === 3), `replicas per chunk: ${counts}`).toBe(true);
    });
  }

  it('puts a file of tiny chunks: placement batches stay within what one request may name', async () => {
    // A 256-byte average makes 4 MiB of average chunks 16,384 of them: more than a place request takes.
    const params = { minSize: 64, avgSize: 256, maxSize: 1024 };
    const data = new SeededBytes(seed ^ 0x7e).bytes(400_000);
    // Many uploads in flight: each tiny chunk still waits for three fsyncs.
    const r = await putFile(reads(data) as unknown as AsyncIterable<Uint8Array>, '/tiny/chunks', { peer, meta, blake3, params, concurrency: 16 });
    expect(r.chunks).toBeGreaterThan(1024);
    expect((await get('/tiny/chunks', meta, { concurrency: 16 })).equals(data)).toBe(true);
  });

  it('round-trips 100 MiB of random data', async () => {
    const data = new SeededBytes(seed ^ 0x100).bytes(100 * 1024 * 1024);
    const started = performance.now();
    const r = await put('/big/100MiB', data);
    const putMs = performance.now() - started;
    const t0 = performance.now();
    const back = await get('/big/100MiB');
    const getMs = performance.now() - t0;
    expect(back.equals(data)).toBe(true);
    expect(r.chunks).toBeGreaterThan(25); // many chunks at the 2 MiB average
    // A window smaller than any chunk still moves one chunk at a time; a wide one many at once.
    expect((await get('/big/100MiB', meta, { maxWindowBytes: 1 })).equals(data)).toBe(true);
    expect((await get('/big/100MiB', meta, { concurrency: 16, maxWindowBytes: 64 * 1024 * 1024 })).equals(data)).toBe(true);
    console.log(`[data] 100 MiB: put ${(100 / (putMs / 1000)).toFixed(0)} MiB/s, get ${(100 / (getMs / 1000)).toFixed(0)} MiB/s (${r.chunks} chunks, RF 3, all processes on this machine)`);
  });

  it('puts a file read into reused buffers: byte-identical, and the reader allocates a bounded few', async () => {
    const data = new SeededBytes(seed ^ 0xf1).bytes(30 * 1024 * 1024 + 12345);
    const file = join(t.dir, 'pooled-source.bin');
    await writeFile(file, data);
    const reads = new PooledFileReads(file);
    const r = await putFile(reads, '/pooled/file', { peer, meta, blake3 });
    expect(r.size).toBe(data.length);
    expect((await get('/pooled/file')).equals(data)).toBe(true);
    // The chunker holds at most one chunk (max 4 MiB) and one read of 256 KiB; without release,
    // the reader would have allocated one buffer per read (121 here).
    expect(reads.buffers).toBeLessThanOrEqual(maxSize / (256 * 1024) + 2);
  });

  it('a placement that fails ends the put with its error (nothing committed), while earlier chunks are uploading', async () => {
    const data = new SeededBytes(seed ^ 0xb1).bytes(20 * 1024 * 1024);
    const client = new MetaClient({ peer, masters: t.cluster.masterAddrs, token });
    let places = 0;
    const ask = client.leaderRequest.bind(client);
    client.leaderRequest = async (request) => {
      if (request.type === 'place' && ++places === 2) throw new DfsError('ERR_UNAVAILABLE', 'injected: the leader is gone');
      return ask(request);
    };
    const err = await putFile(reads(data) as unknown as AsyncIterable<Uint8Array>, '/bounded/failed', { peer, meta: client, blake3, batchSize: 2 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isDfsError(err, 'ERR_UNAVAILABLE')).toBe(true);
    expect(isDfsError(await meta.stat('/bounded/failed').catch((e: unknown) => e), 'ERR_NOT_FOUND')).toBe(true);
  });

  it('dedups: the same file twice sends nothing; a copy with an insertion sends only the chunks around it', async () => {
    const data = new SeededBytes(seed ^ 0xdd).bytes(20 * 1024 * 1024);
    const first = await put('/dedup/a', data);
    expect(first.sentBytes).toBe(data.length);
    const second = await put('/dedup/b', data);
    expect(second.sentBytes).toBe(0);
    expect(second.dedupedBytes).toBe(data.length);
    const edited = Buffer.concat([data.subarray(0, 10_000_000), Buffer.from('an insertion in the middle'), data.subarray(10_000_000)]);
    const third = await put('/dedup/c', edited);
    console.log(`[data] dedup: second upload sent ${second.sentBytes} B; edited copy sent ${third.sentBytes} B of ${edited.length} (${third.chunks} chunks)`);
    expect(third.sentBytes).toBeGreaterThan(0);
    expect(third.sentBytes).toBeLessThanOrEqual(3 * maxSize);
    expect((await get('/dedup/c')).equals(edited)).toBe(true);
  });

  it('20 concurrent puts and gets', async () => {
    const files = Array.from({ length: 20 }, (_, i) => new SeededBytes(seed + 1000 + i).bytes(200_000 + i * 50_000));
    const clients = files.map(() => new MetaClient({ peer, masters: t.cluster.masterAddrs, token }));
    await Promise.all(files.map((d, i) => put(`/concurrent/${i}`, d, clients[i])));
    const back = await Promise.all(files.map((_, i) => get(`/concurrent/${i}`, clients[i])));
    back.forEach((b, i) => expect(b.equals(files[i]!)).toBe(true));
  });

  it('a chunk file corrupted on disk: get reads another replica and reports the bad one', async () => {
    const data = new SeededBytes(seed ^ 0xc0).bytes(600_000);
    await put('/corrupt/f', data);
    const entry = (await meta.stat('/corrupt/f')) as FileEntry;
    const [id] = entry.manifest.chunks[0]!;
    // Damage the copy the client will try first: the first holder the leader names.
    const [located] = (await meta.leaderRequest({ type: 'locate', ids: [id], path: '/corrupt/f' })) as Array<{ holders: string[] }>;
    const first = located!.holders[0]!;
    const node = t.cluster.nodeNames.find((n) => t.cluster.readyInfo(n).addrs.includes(first))!;
    const dir = (t.cluster.spec.nodes ?? []).find((n) => n.name === node)!.dir;
    const path = join(dir, 'chunks', 'chunks', id.slice(0, 2), id.slice(2, 4), id);
    const bytes = await readFile(path);
    bytes[100]! ^= 0xff;
    await writeFile(path, bytes);
    expect((await get('/corrupt/f')).equals(data)).toBe(true);
    // The client told the leader: the bad replica is no longer offered.
    const deadline = performance.now() + 5_000;
    let holders = [first];
    while (holders.includes(first) && performance.now() < deadline) {
      holders = ((await meta.leaderRequest({ type: 'locate', ids: [id], path: '/corrupt/f' })) as Array<{ holders: string[] }>)[0]!.holders;
      if (holders.includes(first)) await new Promise((r) => setTimeout(r, 50));
    }
    expect(holders).not.toContain(first);
  });

  it('a node holding replicas is SIGKILLed: get still succeeds, and new puts place on the others', async () => {
    const data = new SeededBytes(seed ^ 0x5e).bytes(3 * 1024 * 1024);
    await put('/survive/f', data);
    const ids = ((await meta.stat('/survive/f')) as FileEntry).manifest.chunks.map(([id]) => id);
    let victim: string | undefined;
    for (const n of t.cluster.nodeNames) {
      if ((await hasChunks(peer, t.cluster.readyInfo(n).addrs[0]!, ids)).some(Boolean)) victim = n;
    }
    expect(victim).toBeDefined();
    await t.cluster.kill(victim!, 'SIGKILL');
    try {
      expect((await get('/survive/f')).equals(data)).toBe(true);
      const more = new SeededBytes(seed ^ 0x5f).bytes(2 * 1024 * 1024);
      const r = await put('/survive/g', more);
      const counts = await replicaCounts('/survive/g'); // asks the running nodes only
      expect(counts).toHaveLength(r.chunks);
      // At least 3 on live nodes. More is possible: the leader still counts the dead node live for
      // up to 3 s, a pipeline through it fails part way, the nodes before it keep their (valid)
      // copies and the retry places 3 more. Trimming extra replicas is the repair's job.
      expect(counts.every((c) => c >= 3), `replicas per chunk: ${counts}`).toBe(true);
      expect((await get('/survive/g')).equals(more)).toBe(true);
    } finally {
      await t.cluster.startNode(victim!);
      await t.cluster.waitForLiveNodes(5);
    }
  });

  it('a node killed mid-put: the put succeeds or fails cleanly, never a committed file with a missing chunk', async () => {
    const data = new SeededBytes(seed ^ 0x6e).bytes(24 * 1024 * 1024);
    // Killed when the first chunk is through: the put is under way, more chunks to go.
    let killing: Promise<void> | undefined;
    const putting = put('/midput/f', data, meta, () => {
      killing ??= t.cluster.kill('n2', 'SIGKILL');
    }).then(
      () => 'ok' as const,
      (err: unknown) => err,
    );
    const outcome = await putting;
    expect(killing).toBeDefined(); // the kill happened while the put was under way
    await killing;
    try {
      if (outcome === 'ok') {
        expect((await get('/midput/f')).equals(data)).toBe(true);
      } else {
        expect(isDfsError(outcome)).toBe(true);
        const err = await meta.stat('/midput/f').catch((e: unknown) => e);
        expect(isDfsError(err, 'ERR_NOT_FOUND')).toBe(true);
      }
      console.log(`[data] node killed mid-put: ${outcome === 'ok' ? 'put succeeded (retried elsewhere)' : `put failed cleanly: ${(outcome as Error).message}`}`);
    } finally {
      await t.cluster.startNode('n2');
      await t.cluster.waitForLiveNodes(5);
    }
  });

  it('rm frees chunks: after the grace period they are deleted from the nodes; chunks still referenced stay', async () => {
    const shared = new SeededBytes(seed ^ 0x9c).bytes(12_000_000);
    const own = new SeededBytes(seed ^ 0x9d).bytes(6_000_000);
    await put('/gc/keep', shared);
    await put('/gc/drop', Buffer.concat([shared, own])); // starts with the chunks of /gc/keep
    const keepIds = new Set(((await meta.stat('/gc/keep')) as FileEntry).manifest.chunks.map(([id]) => id));
    const dropIds = ((await meta.stat('/gc/drop')) as FileEntry).manifest.chunks.map(([id]) => id);
    const dropOnly = dropIds.filter((id) => !keepIds.has(id));
    expect(dropIds.length - dropOnly.length).toBeGreaterThan(0); // some chunks really are shared
    expect(dropOnly.length).toBeGreaterThan(0);
    await meta.write({ op: 'rm', path: '/gc/drop', recursive: false });
    const deadline = performance.now() + 20_000;
    let remaining = Infinity;
    while (performance.now() < deadline) {
      remaining = 0;
      for (const a of nodeAddrs()) remaining += (await hasChunks(peer, a, dropOnly)).filter(Boolean).length;
      if (remaining === 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(remaining).toBe(0);
    const keepCounts = await replicaCounts('/gc/keep');
    expect(keepCounts.length).toBeGreaterThan(0);
    expect(keepCounts.every((c) => c === 3), `replicas per chunk of /gc/keep: ${keepCounts}`).toBe(true);
    expect((await get('/gc/keep')).equals(shared)).toBe(true);
  });

});
