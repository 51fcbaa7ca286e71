import { readdir, readFile, writeFile, mkdir, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { describe, expect, it } from 'vitest';
import { type Blake3, loadBlake3 } from '../../src/chunker/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { ChunkStore, DeleteFences } from '../../src/storage/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const blake3: Blake3 = await loadBlake3();

function chunk(rng: SeededBytes, size: number): { id: string; bytes: Uint8Array } {
  const bytes = rng.bytes(size);
  return { id: blake3.hashHex(bytes), bytes };
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

async function openStore(dir: string, extra: { reserveBytes?: number; maxChunkBytes?: number } = {}) {
  return ChunkStore.open({ dir, blake3, reserveBytes: 0, ...extra });
}

describe('ChunkStore', () => {
  it('puts, gets, lists, counts and deletes chunks', async () => {
    const store = await openStore(await tempDir());
    const rng = new SeededBytes(testSeed('store basics'));
    const chunks = [0, 1, 1000, 300_000].map((n) => chunk(rng, n));
    for (const c of chunks) expect(await store.put(c.id, c.bytes)).toEqual({ stored: true });
    for (const c of chunks) {
      expect(await store.has(c.id)).toBe(true);
      expect(Buffer.from(await store.get(c.id)).equals(c.bytes)).toBe(true);
    }
    const listed = [];
    for await (const entry of store.list()) listed.push(entry.id);
    expect(listed).toEqual(chunks.map((c) => c.id).sort());
    const stats = await store.stats();
    expect(stats.chunks).toBe(4);
    expect(stats.bytes).toBe(301_001);
    expect(stats.freeBytes).toBeGreaterThan(0);
    expect(await store.delete(chunks[3]!.id)).toBe('deleted');
    expect(await store.delete(chunks[3]!.id)).toBe('absent');
    expect(await store.has(chunks[3]!.id)).toBe(false);
    expect(isDfsError(await errorOf(store.get(chunks[3]!.id)), 'ERR_CHUNK_NOT_FOUND')).toBe(true);
    expect((await store.stats()).bytes).toBe(1001);
    await store.close();
  });

  it('stores a chunk given as pieces, and dedups a second put', async () => {
    const store = await openStore(await tempDir());
    const { id, bytes } = chunk(new SeededBytes(1), 100_000);
    expect(await store.put(id, [bytes.subarray(0, 10), bytes.subarray(10, 99_999), bytes.subarray(99_999)])).toEqual({ stored: true });
    expect(await store.put(id, bytes)).toEqual({ stored: false });
    expect(Buffer.from(await store.get(id)).equals(bytes)).toBe(true);
    expect((await store.stats()).chunks).toBe(1);
    await store.close();
  });

  it('refuses bytes that do not hash to the id, storing nothing', async () => {
    const dir = await tempDir();
    const store = await openStore(dir);
    const a = chunk(new SeededBytes(2), 5000);
    const tampered = Uint8Array.from(a.bytes);
    tampered[1234]! ^= 1;
    expect(isDfsError(await errorOf(store.put(a.id, tampered)), 'ERR_CHUNK_CORRUPT')).toBe(true);
    expect(await store.has(a.id)).toBe(false);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(await readFile(store.layout.chunkPath(a.id)).catch((e: NodeJS.ErrnoException) => e.code)).toBe('ENOENT');
    await store.close();
  });

  it('rejects malformed ids (no path tricks) and oversized chunks', async () => {
    const store = await openStore(await tempDir(), { maxChunkBytes: 1024 });
    for (const bad of ['../../etc/passwd', 'ab', 'A'.repeat(64), '']) {
      expect(isDfsError(await errorOf(store.put(bad, new Uint8Array(1))), 'ERR_INVALID_CHUNK_ID')).toBe(true);
      expect(isDfsError(await errorOf(store.get(bad)), 'ERR_INVALID_CHUNK_ID')).toBe(true);
      expect(await store.has(bad)).toBe(false);
    }
    const big = chunk(new SeededBytes(3), 1025);
    expect(isDfsError(await errorOf(store.put(big.id, big.bytes)), 'ERR_CHUNK_TOO_LARGE')).toBe(true);
    await store.close();
  });

  it('verifies on read: a chunk corrupted on disk is ERR_CHUNK_CORRUPT unless verify is off', async () => {
    const store = await openStore(await tempDir());
    const c = chunk(new SeededBytes(4), 70_000);
    await store.put(c.id, c.bytes);
    const path = store.layout.chunkPath(c.id);
    const onDisk = await readFile(path);
    onDisk[500]! ^= 0xff;
    await writeFile(path, onDisk);
    expect(isDfsError(await errorOf(store.get(c.id)), 'ERR_CHUNK_CORRUPT')).toBe(true);
    expect(Buffer.from(await store.get(c.id, { verify: false })).equals(onDisk)).toBe(true);
    await store.close();
  });

  it('verify() re-reads a chunk and records when; get() writes nothing', async () => {
    let nowMs = 1_000;
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, clock: () => nowMs });
    const c = chunk(new SeededBytes(14), 5000);
    await store.put(c.id, c.bytes);
    expect(await store.info(c.id)).toEqual({ size: 5000, storedAtMs: 1_000, verifiedAtMs: 1_000 });
    nowMs = 2_000;
    await store.get(c.id);
    expect((await store.info(c.id))?.verifiedAtMs).toBe(1_000);
    await store.verify(c.id);
    expect(await store.info(c.id)).toEqual({ size: 5000, storedAtMs: 1_000, verifiedAtMs: 2_000 });
    await store.close();
  });

  it('is safe under concurrent puts and deletes of one id', async () => {
    const store = await openStore(await tempDir());
    const c = chunk(new SeededBytes(5), 200_000);
    const results = await Promise.all(Array.from({ length: 20 }, () => store.put(c.id, c.bytes)));
    expect(results.filter((r) => r.stored)).toHaveLength(1);
    // Interleave puts and deletes; whatever the order, the index and the file agree.
    const ops = Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? store.delete(c.id) : store.put(c.id, c.bytes)));
    await Promise.all(ops);
    const indexed = await store.has(c.id);
    const fileThere = await readFile(store.layout.chunkPath(c.id)).then(() => true, () => false);
    expect(fileThere).toBe(indexed);
    expect((await store.stats()).chunks).toBe(indexed ? 1 : 0);
    await store.close();
  });

  it('reopens after a clean close with everything in place and nothing to recover', async () => {
    const dir = await tempDir();
    let store = await openStore(dir);
    const rng = new SeededBytes(6);
    const chunks = [chunk(rng, 10), chunk(rng, 20_000)];
    for (const c of chunks) await store.put(c.id, c.bytes);
    await store.close();
    expect(isDfsError(await errorOf(store.get(chunks[0]!.id)), 'ERR_STORE_CLOSED')).toBe(true);
    store = await openStore(dir);
    expect(store.recovery).toEqual({ wasDirty: false, tempFilesSwept: 0, orphansAdopted: 0, orphansRemoved: 0, entriesDropped: 0 });
    expect((await store.stats()).chunks).toBe(2);
    for (const c of chunks) expect(Buffer.from(await store.get(c.id)).equals(c.bytes)).toBe(true);
    await store.close();
  });

  it('refuses a second process-level open of the same store with a clear error', async () => {
    const dir = await tempDir();
    const store = await openStore(dir);
    const err = await errorOf(openStore(dir));
    expect(isDfsError(err, 'ERR_IO')).toBe(true);
    expect((err as Error).message).toMatch(/in use/);
    await store.close();
  });

  it('after an unclean stop, reconciles the index with the files', async () => {
    const dir = await tempDir();
    const rng = new SeededBytes(7);
    const kept = chunk(rng, 1000);
    const lost = chunk(rng, 2000); // indexed, but its file vanished
    const orphan = chunk(rng, 3000); // whole file, never indexed
    let store = await openStore(dir);
    await store.put(kept.id, kept.bytes);
    await store.put(lost.id, lost.bytes);
    const lostPath = store.layout.chunkPath(lost.id);
    const orphanPath = store.layout.chunkPath(orphan.id);
    const badPath = store.layout.chunkPath('f'.repeat(64));
    await store.close();
    // What a crash can leave behind: a temp file, a renamed but unindexed chunk, plus damage
    // no crash makes but an operator might (a file under a chunk name that is not that chunk).
    await writeFile(join(dir, 'tmp', `${kept.id}.1.0`), kept.bytes.subarray(0, 10));
    await mkdir(join(orphanPath, '..'), { recursive: true });
    await writeFile(orphanPath, orphan.bytes);
    await mkdir(join(badPath, '..'), { recursive: true });
    await writeFile(badPath, 'not the chunk');
    await (await import('node:fs/promises')).unlink(lostPath);
    const db = new ClassicLevel<string, string>(join(dir, 'index'));
    await db.put('m:state', 'open');
    await db.close();

    store = await openStore(dir);
    expect(store.recovery).toEqual({ wasDirty: true, tempFilesSwept: 1, orphansAdopted: 1, orphansRemoved: 1, entriesDropped: 1 });
    const listed = [];
    for await (const entry of store.list()) listed.push(entry.id);
    expect(listed.sort()).toEqual([kept.id, orphan.id].sort());
    expect(Buffer.from(await store.get(orphan.id)).equals(orphan.bytes)).toBe(true);
    expect(await store.has(lost.id)).toBe(false);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect((await store.stats()).chunks).toBe(2);
    await store.close();
  });

  it('reports ERR_IO when a shard path is not a directory, and stays usable', async () => {
    const dir = await tempDir();
    const store = await openStore(dir);
    const c = chunk(new SeededBytes(8), 4000);
    await writeFile(join(dir, 'chunks', c.id.slice(0, 2), c.id.slice(2, 4)), 'in the way');
    expect(isDfsError(await errorOf(store.put(c.id, c.bytes)), 'ERR_IO')).toBe(true);
    expect(await store.has(c.id)).toBe(false);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    const other = chunk(new SeededBytes(9), 4000);
    expect(other.id.slice(0, 4)).not.toBe(c.id.slice(0, 4));
    expect(await store.put(other.id, other.bytes)).toEqual({ stored: true });
    await store.close();
  });
});

describe('ChunkStore: fenced deletes (a GC delete never removes what a newer put acknowledged)', () => {
  async function fencedStore(fences = new DeleteFences({ floor: 0 })) {
    return ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, fences });
  }

  it('keeps a chunk that a newer put found already stored, and deletes it for a newer delete', async () => {
    const store = await fencedStore();
    const x = chunk(new SeededBytes(20), 50_000);
    expect(await store.put(x.id, x.bytes, { fence: 3 })).toEqual({ stored: true });
    // The GC decided with fence 5 that X is garbage; meanwhile a client puts X again with fence
    // 10: it is acked at once (nothing written). Then the delete decided at 5 arrives.
    expect(await store.put(x.id, x.bytes, { fence: 10 })).toEqual({ stored: false });
    expect(await store.delete(x.id, { fence: 5 })).toBe('kept');
    expect(Buffer.from(await store.get(x.id)).equals(x.bytes)).toBe(true);
    expect(await store.delete(x.id, { fence: 11 })).toBe('deleted');
    expect(await store.has(x.id)).toBe(false);
    expect(await store.delete(x.id, { fence: 12 })).toBe('absent');
    await store.close();
  });

  it('orders a put and a delete of one id by their arrival, whichever comes first', async () => {
    const store = await fencedStore();
    const x = chunk(new SeededBytes(21), 300_000);
    await store.put(x.id, x.bytes, { fence: 3 });
    // The put first (it finds X): the older delete queued behind it is refused.
    expect(await Promise.all([store.put(x.id, x.bytes, { fence: 10 }), store.delete(x.id, { fence: 5 })])).toEqual([{ stored: false }, 'kept']);
    // The delete first (decided after every put so far): it goes, and the put writes X anew.
    expect(await Promise.all([store.delete(x.id, { fence: 11 }), store.put(x.id, x.bytes, { fence: 12 })])).toEqual(['deleted', { stored: true }]);
    expect(Buffer.from(await store.get(x.id)).equals(x.bytes)).toBe(true);
    // A new chunk being written when the delete comes: the delete waits, then sees the put's fence.
    const y = chunk(new SeededBytes(22), 300_000);
    expect(await Promise.all([store.put(y.id, y.bytes, { fence: 20 }), store.delete(y.id, { fence: 15 })])).toEqual([{ stored: true }, 'kept']);
    expect(await store.has(y.id)).toBe(true);
    expect((await store.stats()).chunks).toBe(2);
    await store.close();
  });

  it('refuses deletes at or below the floor raised by forgetting puts beyond its capacity', async () => {
    const store = await fencedStore(new DeleteFences({ capacity: 2, floor: 0 })); // one id known at a time
    const rng = new SeededBytes(23);
    const [a, b, c] = [chunk(rng, 1000), chunk(rng, 2000), chunk(rng, 3000)];
    await store.put(a.id, a.bytes, { fence: 10 });
    await store.put(b.id, b.bytes, { fence: 20 });
    await store.put(c.id, c.bytes, { fence: 30 }); // a's and b's fences are forgotten: the floor rises to 20
    expect(store.fences.floor).toBe(20);
    expect(await store.delete(a.id, { fence: 9 })).toBe('kept');
    expect(await store.delete(b.id, { fence: 15 })).toBe('kept');
    expect(await store.delete(a.id, { fence: 21 })).toBe('deleted');
    expect(await store.delete(c.id, { fence: 25 })).toBe('kept'); // still known one by one
    expect(await store.delete(c.id, { fence: 31 })).toBe('deleted');
    await store.close();
  });

  it('refuses every fenced delete while the floor is unknown (a fresh process); an unfenced delete is local and unconditional', async () => {
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0 });
    const x = chunk(new SeededBytes(24), 1000);
    await store.put(x.id, x.bytes);
    expect(await store.delete(x.id, { fence: Number.MAX_SAFE_INTEGER })).toBe('kept');
    store.fences.raiseFloor(100);
    expect(await store.delete(x.id, { fence: 100 })).toBe('kept');
    expect(await store.delete(x.id, { fence: 101 })).toBe('deleted');
    await store.put(x.id, x.bytes, { fence: 200 });
    expect(await store.delete(x.id)).toBe('deleted');
    for (const bad of [-1, 0.5, 2 ** 53]) {
      expect(isDfsError(await errorOf(store.delete(x.id, { fence: bad })), 'ERR_INVALID_ARGUMENT')).toBe(true);
      expect(isDfsError(await errorOf(store.put(x.id, x.bytes, { fence: bad })), 'ERR_INVALID_ARGUMENT')).toBe(true);
    }
    await store.close();
  });
});

describe('ChunkStore: a put of a listed chunk whose file is bad writes it again', () => {
  const MINUTE = 60_000;

  async function clockedStore() {
    const clock = { nowMs: 1_000_000 };
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, clock: () => clock.nowMs });
    const changes: string[] = [];
    store.onChange((id, change) => changes.push(`${change} ${id.slice(0, 8)}`));
    return { store, clock, changes };
  }

  it('a file removed behind its back: has() is false, and a put writes it again', async () => {
    const { store, changes } = await clockedStore();
    const x = chunk(new SeededBytes(30), 40_000);
    await store.put(x.id, x.bytes);
    await unlink(store.layout.chunkPath(x.id));
    expect(await store.has(x.id)).toBe(false);
    expect(await store.put(x.id, x.bytes)).toEqual({ stored: true });
    expect(await store.has(x.id)).toBe(true);
    expect(Buffer.from(await store.get(x.id)).equals(x.bytes)).toBe(true);
    expect(await store.stats()).toMatchObject({ chunks: 1, bytes: 40_000 });
    expect(changes).toEqual([`added ${x.id.slice(0, 8)}`, `added ${x.id.slice(0, 8)}`]);
    await store.close();
  });

  it('a truncated file: has() is false, and a put writes it again even if verified just now', async () => {
    const { store } = await clockedStore();
    const x = chunk(new SeededBytes(31), 40_000);
    await store.put(x.id, x.bytes);
    await truncate(store.layout.chunkPath(x.id), 100);
    expect(await store.has(x.id)).toBe(false);
    expect(await store.put(x.id, x.bytes)).toEqual({ stored: true });
    expect(Buffer.from(await store.get(x.id)).equals(x.bytes)).toBe(true);
    expect(await store.stats()).toMatchObject({ chunks: 1, bytes: 40_000 });
    await store.close();
  });

  it('a corrupt file of the right length not verified lately: a put finds it by hashing and writes it again', async () => {
    const { store, clock } = await clockedStore();
    const x = chunk(new SeededBytes(32), 40_000);
    await store.put(x.id, x.bytes);
    const path = store.layout.chunkPath(x.id);
    const onDisk = await readFile(path);
    onDisk[777]! ^= 0x01;
    await writeFile(path, onDisk);
    clock.nowMs += 11 * MINUTE; // past the 10-minute trust
    expect(await store.put(x.id, x.bytes)).toEqual({ stored: true });
    expect(Buffer.from(await store.get(x.id)).equals(x.bytes)).toBe(true);
    expect(await store.info(x.id)).toMatchObject({ verifiedAtMs: clock.nowMs });
    expect(await store.stats()).toMatchObject({ chunks: 1, bytes: 40_000 });
    await store.close();
  });

  it('trusts a good-length file verified within the window without reading it; a good old one is hashed and the time recorded', async () => {
    const { store, clock } = await clockedStore();
    const x = chunk(new SeededBytes(33), 40_000);
    await store.put(x.id, x.bytes);
    const storedAt = clock.nowMs;
    clock.nowMs += 9 * MINUTE;
    expect(await store.put(x.id, x.bytes)).toEqual({ stored: false });
    expect(await store.info(x.id)).toEqual({ size: 40_000, storedAtMs: storedAt, verifiedAtMs: storedAt });
    clock.nowMs += 2 * MINUTE;
    expect(await store.put(x.id, x.bytes)).toEqual({ stored: false });
    expect(await store.info(x.id)).toEqual({ size: 40_000, storedAtMs: storedAt, verifiedAtMs: clock.nowMs });
    await store.close();
  });
});
