import { constants as fsc } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ChunkFileWriter } from '../../src/storage/chunk-file-writer.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * Review of 3e9f283 (ChunkFileWriter.begin): a full disk in the middle of a streamed chunk
 * (ENOSPC from a write), or a put dropped half way, must give its direct slot back and leave no
 * file; otherwise a node would fall back to the page cache for good after 8 such puts.
 */
const tempDir = useTempDirs();
const MiB = 1024 * 1024;

function enospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
}

describe('review: streamed chunk files under faults', () => {
  it('a write failing mid-chunk surfaces at finish, removes nothing else, and gives the slot back (20 times over 8 slots)', async () => {
    const dir = await tempDir();
    const directOpens: boolean[] = [];
    const failing = (fh: FileHandle): FileHandle =>
      new Proxy(fh, {
        get(target, prop) {
          if (prop === 'write') return async () => Promise.reject(enospc());
          const v = Reflect.get(target, prop);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
    const writer = new ChunkFileWriter({
      slots: 8,
      open: async (path, flags, mode) => {
        directOpens.push((flags & (fsc.O_DIRECT ?? 0)) !== 0);
        const fh = await open(path, flags, mode);
        return path.includes('fail') ? failing(fh) : fh;
      },
    });
    for (let i = 0; i < 20; i++) {
      const path = join(dir, `fail-${i}`);
      const sink = await writer.begin(path, 3 * MiB);
      for (let at = 0; at < 3 * MiB; at += 256 * 1024) sink.append(new Uint8Array(256 * 1024).fill(i));
      const err = await sink.finish().then(() => undefined, (e: unknown) => e);
      expect((err as { code?: string }).code).toBe('ENOSPC');
      await sink.discard(); // what ChunkStore does after a failed finish: a no-op here
    }
    for (let i = 0; i < 20; i++) {
      const sink = await writer.begin(join(dir, `drop-${i}`), 2 * MiB);
      sink.append(new Uint8Array(MiB + 5));
      await sink.discard();
    }
    const ok = await writer.begin(join(dir, 'ok'), 10);
    ok.append(new Uint8Array(10));
    await ok.finish();
    expect(writer.direct).toBe(true);
    expect(directOpens.every(Boolean)).toBe(true); // every chunk found a free slot
    // Failed files are the store's to unlink (it does); dropped ones are gone already.
    expect((await readdir(dir)).filter((n) => !n.startsWith('fail-')).sort()).toEqual(['ok']);
  });
});
