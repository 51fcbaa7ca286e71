import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PooledFileReads } from '../../src/client/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();

describe('PooledFileReads', () => {
  it('yields a file whole and in order, whatever its size against the read size', async () => {
    const dir = await tempDir();
    for (const size of [0, 1, 4095, 4096, 4097, 3 * 4096 + 7]) {
      const data = new SeededBytes(testSeed('pooled-reads') + size).bytes(size);
      const file = join(dir, `f${size}`);
      await writeFile(file, data);
      const parts: Buffer[] = [];
      const reads = new PooledFileReads(file, 4096);
      for await (const read of reads) {
        expect(read.byteLength).toBeLessThanOrEqual(4096);
        parts.push(Buffer.from(read)); // copied: the buffer is reused after release
        reads.release(parts.reduce((n, p) => n + p.length, 0));
      }
      expect(Buffer.concat(parts).equals(data), `size ${size}`).toBe(true);
      expect(reads.buffers).toBeLessThanOrEqual(1); // released at once: one buffer serves every read
    }
  });

  it('reuses a buffer only once everything in it is released', async () => {
    const file = join(await tempDir(), 'f');
    await writeFile(file, new SeededBytes(testSeed('pooled-reads-hold')).bytes(10 * 4096));
    const reads = new PooledFileReads(file, 4096);
    const seen: Uint8Array[] = [];
    let offset = 0;
    for await (const read of reads) {
      // Hold each read until the next two arrived: release lags two reads behind.
      for (const earlier of seen) expect(earlier.buffer).not.toBe(read.buffer);
      seen.push(read);
      offset += read.byteLength;
      if (seen.length > 2) seen.shift();
      reads.release(offset - 2 * 4096);
    }
    expect(reads.buffers).toBe(3);
  });

  it('is one pass', async () => {
    const file = join(await tempDir(), 'f');
    await writeFile(file, new Uint8Array(10));
    const reads = new PooledFileReads(file);
    for await (const _ of reads) void _;
    await expect(async () => {
      for await (const _ of reads) void _;
    }).rejects.toThrow(/one-pass/);
  });
});
