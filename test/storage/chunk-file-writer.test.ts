import { constants as fsc } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkFileWriter } from '../../src/storage/chunk-file-writer.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';
import { acceptsDirectIo, einval, unevenPieces, withMethod } from '../support/direct-io.ts';

const tempDir = useTempDirs();
const KiB = 1024;
const MiB = 1024 * KiB;

/** Bytes cut into uneven pieces, as a node receives them. */
const pieces = (rng: SeededBytes, size: number) => unevenPieces(rng, size, 200 * KiB);

describe('ChunkFileWriter', () => {
  it('writes every size byte-exact, without the alignment padding, directly where the filesystem allows', async () => {
    const dir = await tempDir();
    const directOpens: string[] = [];
    const writer = new ChunkFileWriter({
      slotBytes: 2 * MiB,
      slots: 2,
      open: async (path, flags, mode) => {
        const fh = await open(path, flags, mode);
        if (flags & fsc.O_DIRECT) directOpens.push(path);
        return fh;
      },
    });
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
    const direct = acceptsDirectIo(dir);
    expect(writer.direct).toBe(direct);
    // Up to a slot's size direct (where allowed); over it through the page cache.
    const upToSlot = sizes.flatMap((size, i) => (size <= 2 * MiB ? [join(dir, `c${i}`)] : []));
    expect(directOpens).toEqual(direct ? upToSlot : []);
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
          throw einval();
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

  it('falls back when the filesystem created the file before refusing O_DIRECT at open', async () => {
    const dir = await tempDir();
    const writer = new ChunkFileWriter({
      open: async (path, flags, mode) => {
        if (flags & fsc.O_DIRECT) {
          await (await open(path, flags & ~fsc.O_DIRECT, mode)).close(); // created, then refused
          throw einval();
        }
        return open(path, flags, mode);
      },
    });
    await writer.write(join(dir, 'c'), [new Uint8Array([7, 8, 9])], 3);
    expect([...(await readFile(join(dir, 'c')))]).toEqual([7, 8, 9]);
    expect(writer.direct).toBe(false);
  });

  it('falls back when a direct write is refused with EINVAL, rewriting the file whole', async () => {
    const dir = await tempDir();
    const writer = new ChunkFileWriter({
      open: async (path, flags, mode) => {
        const fh = await open(path, flags & ~fsc.O_DIRECT, mode);
        if (!(flags & fsc.O_DIRECT)) return fh;
        return withMethod(fh, 'write', async () => {
          throw einval();
        });
      },
    });
    const bytes = new SeededBytes(testSeed('chunk file writer write einval')).bytes(70_000);
    await writer.write(join(dir, 'c'), [bytes.subarray(0, 5), bytes.subarray(5)], bytes.byteLength);
    expect(Buffer.from(await readFile(join(dir, 'c'))).equals(bytes)).toBe(true);
    expect(writer.direct).toBe(false);
  });

  it('finishes a buffered write that stopped short, or reports the error that stopped it', async () => {
    const dir = await tempDir();
    const bytes = new SeededBytes(testSeed('chunk file writer short writev')).bytes(30_000);
    const parts = [bytes.subarray(0, 10_000), bytes.subarray(10_000, 25_000), bytes.subarray(25_000)];
    // writev stops after 12,000 bytes, as libuv reports one that a full disk interrupted.
    const shortWritev = (fh: FileHandle) =>
      withMethod(fh, 'writev', (async <T extends readonly NodeJS.ArrayBufferView[]>(buffers: T) => {
        const { bytesWritten } = await fh.write(bytes, 0, 12_000, 0);
        return { bytesWritten, buffers };
      }) as FileHandle['writev']);
    const resumes = new ChunkFileWriter({ directIo: false, open: async (path, flags, mode) => shortWritev(await open(path, flags, mode)) });
    await resumes.write(join(dir, 'a'), parts, bytes.byteLength);
    expect(Buffer.from(await readFile(join(dir, 'a'))).equals(bytes)).toBe(true);
    const full = new ChunkFileWriter({
      directIo: false,
      open: async (path, flags, mode) =>
        withMethod(shortWritev(await open(path, flags, mode)), 'write', async () => {
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }),
    });
    await expect(full.write(join(dir, 'b'), parts, bytes.byteLength)).rejects.toMatchObject({ code: 'ENOSPC' });
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
