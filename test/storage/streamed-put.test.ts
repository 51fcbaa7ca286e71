import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { type Blake3, loadBlake3 } from '../../src/chunker/index.ts';
import { ChunkStore, DeleteFences } from '../../src/storage/index.ts';
import type { PendingPut } from '../../src/storage/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';
import { rejection } from '../support/errors.ts';

const tempDir = useTempDirs();
const blake3: Blake3 = await loadBlake3();
const KiB = 1024;
const HANG = new URL('./fixtures/begin-put-hang.ts', import.meta.url).pathname;

function chunk(rng: SeededBytes, size: number): { id: string; bytes: Uint8Array } {
  const bytes = rng.bytes(size);
  return { id: blake3.hashHex(bytes), bytes };
}

/** Appends `bytes` in pieces of pseudo-random sizes (1 byte to 300 KiB), as frames would come. */
function appendInPieces(put: PendingPut, bytes: Uint8Array, rng: SeededBytes): void {
  for (let at = 0; at < bytes.byteLength; ) {
    const n = Math.min(bytes.byteLength - at, 1 + (rng.nextU32() % (300 * KiB)));
    put.append(bytes.subarray(at, at + n));
    at += n;
  }
}

describe('ChunkStore.beginPut (bytes written as they arrive)', () => {
  for (const directIo of [true, false]) {
    it(`stores exactly the appended bytes, of any size and in any pieces (directIo ${directIo})`, async () => {
      const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, directIo });
      const rng = new SeededBytes(testSeed(`streamed put ${directIo}`));
      // Empty, under one block, unaligned, several flushes, and larger than a direct slot (8 MiB).
      for (const size of [0, 1, 4095, 4097, 1000 * KiB + 7, 9 * 1024 * KiB + 1]) {
        const { id, bytes } = chunk(rng, size);
        const put = await store.beginPut(id, size, { fence: 1 });
        appendInPieces(put, bytes, rng);
        expect(await put.commit()).toEqual({ stored: true });
        expect(Buffer.compare(Buffer.from(await store.get(id)), Buffer.from(bytes))).toBe(0);
      }
      expect(await readdir(store.layout.tmpDir)).toEqual([]);
      expect((await store.stats()).chunks).toBe(6);
      await store.close();
    });
  }

  it('abort leaves nothing: no chunk, no temp file; commit and append after it are refused', async () => {
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0 });
    const rng = new SeededBytes(testSeed('streamed abort'));
    const { id, bytes } = chunk(rng, 700 * KiB);
    const put = await store.beginPut(id, bytes.byteLength);
    put.append(bytes.subarray(0, 300 * KiB));
    await put.abort();
    await put.abort(); // idempotent
    expect(await store.has(id)).toBe(false);
    expect(await readdir(store.layout.tmpDir)).toEqual([]);
    expect(() => put.append(bytes.subarray(300 * KiB))).toThrow();
    expect((await rejection(put.commit())).code).toBe('ERR_INTERNAL');
    await store.close();
  });

  it('refuses a commit before every announced byte came, and leaves nothing', async () => {
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0 });
    const { id, bytes } = chunk(new SeededBytes(testSeed('streamed short')), 100 * KiB);
    const put = await store.beginPut(id, bytes.byteLength);
    put.append(bytes.subarray(0, 99 * KiB));
    expect((await rejection(put.commit())).code).toBe('ERR_INTERNAL');
    expect(() => put.append(bytes.subarray(0, 2 * KiB))).toThrow();
    expect(await store.has(id)).toBe(false);
    expect(await readdir(store.layout.tmpDir)).toEqual([]);
    await store.close();
  });

  it('refuses more bytes than announced', async () => {
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0 });
    const { id, bytes } = chunk(new SeededBytes(testSeed('streamed long')), 10 * KiB);
    const put = await store.beginPut(id, 5 * KiB);
    expect(() => put.append(bytes)).toThrow(/appended to a 5120-byte chunk file/);
    await put.abort();
    expect(await readdir(store.layout.tmpDir)).toEqual([]);
    await store.close();
  });

  it('a chunk already stored: the commit notes the fence, drops its temp file and reports stored: false', async () => {
    // A floor known (0): fenced deletes are decided by the fences alone.
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, fences: new DeleteFences({ floor: 0 }) });
    const rng = new SeededBytes(testSeed('streamed dedup'));
    const { id, bytes } = chunk(rng, 200 * KiB);
    await store.put(id, bytes, { fence: 1 });
    const put = await store.beginPut(id, bytes.byteLength, { fence: 9 });
    appendInPieces(put, bytes, rng);
    expect(await put.commit()).toEqual({ stored: false });
    expect(await readdir(store.layout.tmpDir)).toEqual([]);
    // The put's fence was recorded: a GC delete decided before it keeps the chunk.
    expect(await store.delete(id, { fence: 5 })).toBe('kept');
    expect(await store.delete(id, { fence: 10 })).toBe('deleted');
    await store.close();
  });

  it('refuses to start a put that would not fit (ERR_NO_SPACE) or is too large, before any byte', async () => {
    const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 2 ** 52, maxChunkBytes: MiBs(1) });
    const id = 'ab'.repeat(32);
    expect((await rejection(store.beginPut(id, MiBs(2)))).code).toBe('ERR_CHUNK_TOO_LARGE');
    expect((await rejection(store.beginPut(id, 1000))).code).toBe('ERR_NO_SPACE');
    expect(await readdir(store.layout.tmpDir)).toEqual([]);
    await store.close();
  });

  it('a commit after close is ERR_STORE_CLOSED and leaves no temp file', async () => {
    const dir = await tempDir();
    const store = await ChunkStore.open({ dir, blake3, reserveBytes: 0 });
    const { id, bytes } = chunk(new SeededBytes(testSeed('streamed closed')), 10 * KiB);
    const put = await store.beginPut(id, bytes.byteLength);
    put.append(bytes);
    await store.close();
    expect((await rejection(put.commit())).code).toBe('ERR_STORE_CLOSED');
    expect(await readdir(store.layout.tmpDir)).toEqual([]);
  });

  it('a crash between the bytes and the commit leaves no chunk: the temp file is swept at the next open', async () => {
    const dir = await tempDir();
    const child = spawn(process.execPath, [HANG, dir, String(testSeed('streamed crash'))], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let id = '';
    for await (const line of createInterface({ input: child.stdout! })) {
      // Every byte appended and written out (not committed): now the process dies.
      id = line.split(' ')[1]!;
      child.kill('SIGKILL');
    }
    await exited;
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const store = await ChunkStore.open({ dir, blake3, reserveBytes: 0 });
    expect(store.recovery.tempFilesSwept).toBe(1);
    expect(await store.has(id)).toBe(false);
    expect(await readdir(store.layout.tmpDir)).toEqual([]);
    await store.close();
  });
});

function MiBs(n: number): number {
  return n * 1024 * 1024;
}
