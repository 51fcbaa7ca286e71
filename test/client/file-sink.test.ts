import { constants as fsc } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileSink } from '../../src/client/file-sink.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';
import { acceptsDirectIo, einval, unevenPieces, withMethod } from '../support/direct-io.ts';

const tempDir = useTempDirs();
const KiB = 1024;
const MiB = 1024 * KiB;
const STAGE = MiB; // FileSink's stage size

/** `size` seeded bytes and the same bytes cut into uneven pieces (1 byte to 300 KiB). */
const cut = (rng: SeededBytes, size: number) => unevenPieces(rng, size, 300 * KiB);

/** Writes `parts` through `sink`, a few per call, as getFile hands a chunk's pieces over. */
async function writeAll(sink: FileSink, parts: readonly Uint8Array[]): Promise<void> {
  for (let i = 0; i < parts.length; i += 3) await sink.write(parts.slice(i, i + 3));
}

describe('FileSink', () => {
  it('writes every size byte-exact, without the alignment padding, directly where the filesystem allows', async () => {
    const dir = await tempDir();
    const rng = new SeededBytes(testSeed('file sink sizes'));
    for (const size of [0, 1, 4095, 4096, 4097, STAGE - 1, STAGE, STAGE + 1, 2 * STAGE, 3 * STAGE + 17, 5 * MiB + 12_345]) {
      const path = join(dir, `f${size}`);
      const sink = await FileSink.create(path);
      expect(sink.direct).toBe(acceptsDirectIo(dir));
      const { bytes, parts } = cut(rng, size);
      await writeAll(sink, parts);
      expect(await sink.finish()).toEqual({ size });
      expect((await stat(path)).size).toBe(size);
      expect(Buffer.from(await readFile(path)).equals(bytes)).toBe(true);
    }
  });

  it('lets the caller reuse a piece as soon as write resolves', async () => {
    const dir = await tempDir();
    const sink = await FileSink.create(join(dir, 'f'));
    const piece = new Uint8Array(300 * KiB);
    const expected: number[] = [];
    for (let i = 0; i < 12; i++) {
      piece.fill(i + 1); // the same buffer, refilled: a later fill must not reach earlier bytes
      await sink.write([piece]);
      expected.push(i + 1);
    }
    await sink.finish();
    const back = await readFile(join(dir, 'f'));
    expect(expected.every((v, i) => back[i * piece.byteLength] === v && back[(i + 1) * piece.byteLength - 1] === v)).toBe(true);
  });

  it('writes through the page cache when O_DIRECT is refused at open, even after the open created the file', async () => {
    const dir = await tempDir();
    const sink = await FileSink.create(join(dir, 'f'), {
      open: async (path, flags, mode) => {
        if (flags & fsc.O_DIRECT) {
          await (await open(path, flags & ~fsc.O_DIRECT, mode)).close(); // created, then refused
          throw einval();
        }
        return open(path, flags, mode);
      },
    });
    expect(sink.direct).toBe(false);
    const { bytes, parts } = cut(new SeededBytes(testSeed('file sink open einval')), 3 * STAGE + 5);
    await writeAll(sink, parts);
    await sink.finish();
    expect(Buffer.from(await readFile(join(dir, 'f'))).equals(bytes)).toBe(true);
  });

  it('carries on through the page cache from where a direct write was refused', async () => {
    for (const refuseAt of [0, 2]) {
      // The filesystem accepts O_DIRECT at open but refuses the direct write number `refuseAt`.
      const dir = await tempDir();
      let directWrites = 0;
      const sink = await FileSink.create(join(dir, 'f'), {
        open: async (path, flags, mode) => {
          const fh = await open(path, flags & ~fsc.O_DIRECT, mode);
          if (!(flags & fsc.O_DIRECT)) return fh;
          return withMethod(fh, 'write', (async (...args: Parameters<FileHandle['write']>) => {
            if (directWrites++ === refuseAt) throw einval();
            return (fh.write as (...a: unknown[]) => unknown)(...args);
          }) as FileHandle['write']);
        },
      });
      const { bytes, parts } = cut(new SeededBytes(testSeed(`file sink write einval ${refuseAt}`)), 4 * STAGE + 777);
      await writeAll(sink, parts);
      expect(await sink.finish()).toEqual({ size: bytes.byteLength });
      expect(sink.direct).toBe(false);
      expect(Buffer.from(await readFile(join(dir, 'f'))).equals(bytes)).toBe(true);
    }
  });

  it('reports a failed write (a full disk) from write or finish, never a short file as whole', async () => {
    const dir = await tempDir();
    for (const directIo of [true, false]) {
      const path = join(dir, `f-${directIo}`);
      const sink = await FileSink.create(path, {
        directIo,
        open: async (p, flags, mode) =>
          withMethod(await open(p, flags, mode), 'write', (async () => {
            throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          }) as FileHandle['write']),
      });
      const { parts } = cut(new SeededBytes(testSeed('file sink enospc')), 3 * STAGE);
      await expect(writeAll(sink, parts).then(() => sink.finish())).rejects.toMatchObject({ code: 'ENOSPC' });
      await sink.abort();
    }
  });

  it('refuses to overwrite an existing file', async () => {
    const dir = await tempDir();
    await (await FileSink.create(join(dir, 'f'))).finish();
    await expect(FileSink.create(join(dir, 'f'))).rejects.toMatchObject({ code: 'EEXIST' });
  });
});
