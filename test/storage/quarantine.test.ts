import { readdir, readFile, truncate, unlink, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { type Blake3, loadBlake3 } from '../../src/chunker/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { ChunkStore } from '../../src/storage/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const blake3: Blake3 = await loadBlake3();

function chunk(rng: SeededBytes, size: number): { id: string; bytes: Uint8Array } {
  const bytes = rng.bytes(size);
  return { id: blake3.hashHex(bytes), bytes };
}

/** A store whose clock the test sets. */
async function openStore(dir: string, time: { now: number }): Promise<ChunkStore> {
  return ChunkStore.open({ dir, blake3, reserveBytes: 0, clock: () => time.now });
}

describe('ChunkStore.verifyOrQuarantine', () => {
  it('records the time of a good chunk, and moves a corrupt, truncated or missing one out of service', async () => {
    const dir = await tempDir();
    const time = { now: 1_000 };
    const store = await openStore(dir, time);
    const rng = new SeededBytes(41);
    const [good, corrupt, short, missing] = [chunk(rng, 5000), chunk(rng, 6000), chunk(rng, 7000), chunk(rng, 8000)];
    for (const c of [good, corrupt, short, missing]) await store.put(c.id, c.bytes);
    const changes: string[] = [];
    store.onChange((id, change) => changes.push(`${change} ${id}`));

    const onDisk = await readFile(store.layout.chunkPath(corrupt.id));
    onDisk[100]! ^= 0x20;
    await writeFile(store.layout.chunkPath(corrupt.id), onDisk);
    await truncate(store.layout.chunkPath(short.id), 10);
    await unlink(store.layout.chunkPath(missing.id));

    time.now = 5_000;
    expect(await store.verifyOrQuarantine(good.id)).toBe('verified');
    expect((await store.info(good.id))?.verifiedAtMs).toBe(5_000);
    for (const c of [corrupt, short, missing]) expect(await store.verifyOrQuarantine(c.id)).toBe('quarantined');
    expect(changes).toEqual([corrupt, short, missing].map((c) => `removed ${c.id}`));
    expect(await store.verifyOrQuarantine(missing.id)).toBe('absent'); // no longer listed
    expect(await store.verifyOrQuarantine(chunk(rng, 10).id)).toBe('absent');

    // Never served again: not listed, not there, not counted.
    for (const c of [corrupt, short, missing]) {
      expect(await store.has(c.id)).toBe(false);
      expect(await store.info(c.id)).toBeUndefined();
      const err = await store.get(c.id).then(() => undefined, (e: unknown) => e);
      expect(isDfsError(err, 'ERR_CHUNK_NOT_FOUND')).toBe(true);
    }
    const listed: string[] = [];
    for await (const c of store.list()) listed.push(c.id);
    expect(listed).toEqual([good.id]);
    expect(await store.stats()).toMatchObject({ chunks: 1, bytes: 5000 });
    // The two files that were there now lie in quarantine/, stamped with the time.
    expect(await store.quarantined()).toEqual([`${corrupt.id}.5000.0`, `${short.id}.5000.1`].sort());
    expect((await readdir(store.layout.quarantineDir)).length).toBe(2);

    // A put stores the chunk afresh (as a copy from a good replica does).
    expect(await store.put(corrupt.id, corrupt.bytes)).toEqual({ stored: true });
    expect(Buffer.from(await store.get(corrupt.id)).equals(corrupt.bytes)).toBe(true);
    await store.close();

    // Quarantined files are not adopted back by the crash recovery walk.
    const { ClassicLevel } = await import('classic-level');
    const db = new ClassicLevel<string, Uint8Array>(store.layout.indexDir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.put('m:state', new TextEncoder().encode('open')); // as after a crash
    await db.close();
    const reopened = await openStore(dir, time);
    expect(reopened.recovery.wasDirty).toBe(true);
    expect(await reopened.has(short.id)).toBe(false);
    expect((await reopened.quarantined()).length).toBe(2);
    await reopened.close();
  });

  it('sweeps quarantined files once they are older than the retention', async () => {
    const time = { now: 10_000 };
    const store = await openStore(await tempDir(), time);
    const rng = new SeededBytes(42);
    const [a, b] = [chunk(rng, 3000), chunk(rng, 3000)];
    for (const c of [a, b]) await store.put(c.id, c.bytes);
    for (const c of [a, b]) await writeFile(store.layout.chunkPath(c.id), Buffer.from('rot'));
    expect(await store.verifyOrQuarantine(a.id)).toBe('quarantined');
    time.now = 20_000;
    expect(await store.verifyOrQuarantine(b.id)).toBe('quarantined');
    await writeFile(`${store.layout.quarantineDir}/stray-file`, 'x'); // not ours: left alone
    time.now = 30_000;
    expect(await store.sweepQuarantine(15_000)).toBe(1); // a (20 s old), not b (10 s old)
    expect(await store.quarantined()).toEqual([`${b.id}.20000.1`, 'stray-file']);
    expect(await store.sweepQuarantine(0)).toBe(1);
    expect(await store.quarantined()).toEqual(['stray-file']);
    await store.close();
  });

  it('lists in pages: after an id, at most a limit', async () => {
    const store = await openStore(await tempDir(), { now: 1 });
    const rng = new SeededBytes(43);
    const chunks = Array.from({ length: 7 }, () => chunk(rng, 100));
    for (const c of chunks) await store.put(c.id, c.bytes);
    const sorted = chunks.map((c) => c.id).sort();
    const pages: string[][] = [];
    let after: string | undefined;
    for (;;) {
      const page: string[] = [];
      for await (const c of store.list({ ...(after === undefined ? {} : { after }), limit: 3 })) page.push(c.id);
      if (page.length === 0) break;
      pages.push(page);
      after = page.at(-1);
    }
    expect(pages).toEqual([sorted.slice(0, 3), sorted.slice(3, 6), sorted.slice(6)]);
    await store.close();
  });
});
