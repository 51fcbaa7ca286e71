import { constants as fsc, openSync, closeSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkFileWriter } from '../../src/storage/chunk-file-writer.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const KiB = 1024;
const MiB = 1024 * KiB;

/** Whether `dir`'s filesystem lets a file be opened with O_DIRECT (what the writer relies on). */
function acceptsDirectIo(dir: string): boolean {
  try {
    closeSync(openSync(join(dir, 'probe'), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_DIRECT, 0o644));
    return true;
  } catch {
    return false;
  }
}

/** Bytes cut into uneven pieces, as a node receives them. */
function pieces(rng: SeededBytes, size: number): { bytes: Uint8Array; parts: Uint8Array[] } {
  const bytes = rng.bytes(size);
  const parts: Uint8Array[] = [];
  for (let at = 0; at < size; ) {
    const n = Math.min(size - at, 1 + (rng.nextU32() % (200 * KiB)));
    parts.push(bytes.subarray(at, at + n));
    at += n;
  }
  return { bytes, parts };
}

describe('ChunkFileWriter', () => {
  it('writes every size byte-exact, without the alignment padding, directly where the filesystem allows', async () => {
    const dir = await tempDir();
    const writer = new ChunkFileWriter({ slotBytes: 2 * MiB, slots: 2 });
    const rng = new SeededBytes(testSeed('chunk file writer sizes'));
    // Around the 4 KiB block, a slot's size, and over it (that one goes through the page cache).
    const sizes = [0, 1, 4095, 4096, 4097, 65_537, 2 * MiB - 1, 2 * MiB, 2 * MiB + 1, 3 * MiB + 17];
    for (const [i, size] of sizes.entries()) {
      const { bytes, parts } = pieces(rng, size);
      const path = join(dir, `c${i}`);
      await writer.write(path, parts, size);
      expect((await stat(path)).size).toBe(size);
      expect(Buffer.from(await readFile(path)).equals(bytes)).toBe(true);
    }
    expect(writer.direct).toBe(acceptsDirectIo(dir));
  });

  it('writes direct concurrently, more writes than slots, each file whole', async () => {
    const dir = await tempDir();
    const writer = new ChunkFileWriter({ slotBytes: 1 * MiB, slots: 2 });
    const rng = new SeededBytes(testSeed('chunk file writer concurrency'));
    const files = Array.from({ length: 12 }, (_, i) => ({ path: join(dir, `c${i}`), ...pieces(rng, 100 * KiB + i * 70 * KiB) }));
    await Promise.all(files.map((f) => writer.write(f.path, f.parts, f.bytes.byteLength)));
    for (const f of files) expect(Buffer.from(await readFile(f.path)).equals(f.bytes)).toBe(true);
  });

  it('goes through the page cache, for good, once the filesystem refuses O_DIRECT', async () => {
    const dir = await tempDir();
    const refused: number[] = [];
    // A filesystem without direct I/O answers such an open with EINVAL (as tmpfs did before Linux 6.6).
    const writer = new ChunkFileWriter({
      open: async (path, flags, mode) => {
        if (flags & fsc.O_DIRECT) {
          refused.push(flags);
          throw Object.assign(new Error('EINVAL: invalid argument, open'), { code: 'EINVAL' });
        }
        return open(path, flags, mode);
      },
    });
    const rng = new SeededBytes(testSeed('chunk file writer fallback'));
    for (const i of [0, 1, 2]) {
      const { bytes, parts } = pieces(rng, 10_000 + i);
      await writer.write(join(dir, `c${i}`), parts, bytes.byteLength);
      expect(Buffer.from(await readFile(join(dir, `c${i}`))).equals(bytes)).toBe(true);
    }
    expect(writer.direct).toBe(false);
    expect(refused).toHaveLength(1); // tried once, then remembered
  });

  it('never writes direct when told not to', async () => {
    const dir = await tempDir();
    const opened: number[] = [];
    const writer = new ChunkFileWriter({ directIo: false, open: async (path, flags, mode) => (opened.push(flags), open(path, flags, mode)) });
    await writer.write(join(dir, 'c'), [new Uint8Array([1, 2, 3])], 3);
    expect(writer.direct).toBe(false);
    expect(opened.every((flags) => (flags & fsc.O_DIRECT) === 0)).toBe(true);
    expect([...(await readFile(join(dir, 'c')))]).toEqual([1, 2, 3]);
  });

  it('refuses to overwrite an existing file', async () => {
    const dir = await tempDir();
    const writer = new ChunkFileWriter();
    await writer.write(join(dir, 'c'), [new Uint8Array(5000)], 5000);
    await expect(writer.write(join(dir, 'c'), [new Uint8Array(10)], 10)).rejects.toMatchObject({ code: 'EEXIST' });
    expect((await stat(join(dir, 'c'))).size).toBe(5000);
  });
});
