import { readdir, readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { type Blake3, loadBlake3 } from '../../src/chunker/index.ts';
import { ChunkStore, DeleteFences } from '../../src/storage/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

/** Review of 3e9f283: concurrent streamed puts of one chunk, and one over a damaged copy. */
const tempDir = useTempDirs();
const blake3: Blake3 = await loadBlake3();

describe('review: streamed puts of the same chunk', () => {
  it('two at once: one stores, the other finds it; both fences noted; no temp file; counted once', async () => {
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, fences: new DeleteFences({ floor: 0 }) });
    const bytes = new SeededBytes(testSeed('review same id')).bytes(3 * 1024 * 1024 + 11);
    const id = blake3.hashHex(bytes);
    const [p, q] = [await store.beginPut(id, bytes.byteLength, { fence: 3 }), await store.beginPut(id, bytes.byteLength, { fence: 7 })];
    for (let at = 0; at < bytes.byteLength; at += 65536) {
      p.append(bytes.subarray(at, at + 65536));
      q.append(bytes.subarray(at, at + 65536));
    }
    const results = await Promise.all([p.commit(), q.commit()]);
    expect(results.map((r) => r.stored).sort()).toEqual([false, true]);
    expect(await readdir(store.layout.tmpDir)).toEqual([]);
    expect((await store.stats()).chunks).toBe(1);
    expect(await store.delete(id, { fence: 6 })).toBe('kept'); // fence 7 noted
    await store.close();
  });

  it('over a listed copy damaged on disk (past the trust window): the verified new bytes replace it', async () => {
    let now = 1_000_000;
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, clock: () => now, trustVerifiedMs: 1000 });
    const bytes = new SeededBytes(testSeed('review damaged')).bytes(100_000);
    const id = blake3.hashHex(bytes);
    await store.put(id, bytes);
    const path = store.layout.chunkPath(id);
    const damaged = Buffer.from(await readFile(path));
    damaged[5] = (damaged[5] ?? 0) ^ 0xff;
    await writeFile(path, damaged);
    now += 5000;
    const p = await store.beginPut(id, bytes.byteLength);
    p.append(bytes);
    expect(await p.commit()).toEqual({ stored: true });
    expect(Buffer.from(await readFile(path)).equals(Buffer.from(bytes))).toBe(true);
    expect((await store.stats()).chunks).toBe(1);
    await store.close();
  });
});
