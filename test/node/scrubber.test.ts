import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { Scrubber } from '../../src/node/scrubber.ts';
import type { ScrubberOptions } from '../../src/node/scrubber.ts';
import { ChunkStore } from '../../src/storage/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { useTempDirs } from '../support/tmp.ts';
import { ManualClock, until } from './manual-clock.ts';

const tempDir = useTempDirs();
const blake3 = await loadBlake3();
const KiB = 1024;
const HOUR = 60 * 60_000;

/** A store and a scrubber on one manual clock, with `count` chunks of `size` bytes stored at time 0. */
async function setUp(count: number, size: number, options: Partial<ScrubberOptions> = {}) {
  const clock = new ManualClock(0);
  const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, clock: () => clock.now() });
  const rng = new SeededBytes(count * 1000 + size);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const bytes = rng.bytes(size);
    const id = blake3.hashHex(bytes);
    await store.put(id, bytes);
    ids.push(id);
  }
  ids.sort(); // the order a pass takes (the index's)
  const scrubber = new Scrubber({ store, clock, ...options });
  const stop = async (): Promise<void> => {
    await scrubber.stop();
    await store.close();
  };
  return { clock, store, scrubber, ids, stop };
}

async function corrupt(store: ChunkStore, id: string): Promise<void> {
  const bytes = await readFile(store.layout.chunkPath(id));
  bytes[0]! ^= 1;
  await writeFile(store.layout.chunkPath(id), bytes);
}

describe('Scrubber', () => {
  it('re-hashes every chunk due, paced evenly by the clock (no sleeps in the test)', async () => {
    // 4 x 256 KiB within a 10 s period would be 100 KiB/s; the floor of 256 KiB/s wins: 1 s a chunk.
    const { clock, store, scrubber, ids, stop } = await setUp(4, 256 * KiB, { scrubIntervalMs: 10_000, minBytesPerSec: 256 * KiB });
    try {
      expect(await scrubber.pace()).toBe(256 * KiB);
      clock.set(20_000); // every chunk was verified (written) more than a period ago: all due
      scrubber.start();
      await until(() => scrubber.stats.chunksChecked === 1 && clock.pending === 1, 5000, 'the first chunk, then a pause');
      // Its time is recorded; the others wait for the pace.
      expect((await store.info(ids[0]!))?.verifiedAtMs).toBe(20_000);
      expect((await store.info(ids[1]!))?.verifiedAtMs).toBe(0);
      clock.advance(999);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(scrubber.stats.chunksChecked).toBe(1);
      for (let n = 2; n <= 4; n++) {
        clock.advance(1);
        await until(() => scrubber.stats.chunksChecked === n && clock.pending === 1, 5000, `chunk ${n}`);
        if (n < 4) clock.advance(999);
      }
      expect((await store.info(ids[3]!))?.verifiedAtMs).toBe(23_000);
      expect(scrubber.stats).toMatchObject({ passes: 1, bytesChecked: 4 * 256 * KiB, quarantined: 0 });
      // The pass ends after the last pause; the next one, after a rest, finds nothing due.
      clock.advance(1000);
      await until(() => clock.pending === 1 && (clock.nextAt ?? 0) > 24_000, 5000, 'the rest between passes');
      clock.advance(1000); // the rest: 10 s / 24, at least 1 s
      await until(() => scrubber.stats.passes === 2 && clock.pending === 1, 5000, 'the second pass');
      expect(scrubber.stats.chunksChecked).toBe(4);
    } finally {
      await stop();
    }
  });

  it('paces by the store size over the period when that is faster than the floor', async () => {
    const { scrubber, stop } = await setUp(2, 64 * KiB, { scrubIntervalMs: 1000, minBytesPerSec: 1 });
    try {
      expect(await scrubber.pace()).toBe(128 * KiB); // 128 KiB per second
    } finally {
      await stop();
    }
  });

  it('quarantines a corrupt chunk (reported removed), and sweeps quarantined files after the retention', async () => {
    const { clock, store, scrubber, ids, stop } = await setUp(3, 4 * KiB, { scrubIntervalMs: 10 * HOUR, quarantineRetentionMs: HOUR });
    try {
      const removed: string[] = [];
      store.onChange((id, change) => change === 'removed' && removed.push(id));
      await corrupt(store, ids[1]!);
      clock.set(11 * HOUR);
      scrubber.start();
      await until(() => scrubber.stats.passes === 1 && scrubber.stats.chunksChecked === 3, 5000, 'a pass');
      expect(removed).toEqual([ids[1]]);
      expect(scrubber.stats.quarantined).toBe(1);
      expect(await store.has(ids[1]!)).toBe(false);
      expect(await store.quarantined()).toHaveLength(1);
      // Between passes the scrubber rests (at most an hour); the file goes once older than the retention.
      await until(() => clock.pending === 1, 5000, 'the rest');
      clock.advance(HOUR / 2);
      await until(() => scrubber.stats.passes === 2 && clock.pending === 1, 5000, 'the second pass');
      expect(await store.quarantined()).toHaveLength(1);
      clock.advance(HOUR);
      await until(() => scrubber.stats.swept === 1, 5000, 'the sweep');
      expect(await store.quarantined()).toEqual([]);
    } finally {
      await stop();
    }
  });

  it('scrubNow re-hashes every chunk at once, recently verified ones too, without pacing', async () => {
    const { clock, store, scrubber, ids, stop } = await setUp(5, 64 * KiB, { scrubIntervalMs: 10 * HOUR, minBytesPerSec: 1 });
    try {
      await corrupt(store, ids[4]!);
      // Not started, nothing due (all written just now): a paced pass would check nothing.
      const pass = await scrubber.scrubNow();
      expect(pass).toMatchObject({ checked: 5, quarantined: 1, skipped: 0, interrupted: false });
      expect(await store.has(ids[4]!)).toBe(false);
      // A slow paced pass under way gives way to scrubNow.
      clock.set(11 * HOUR); // everything due again; at 1 byte/s the paced pass pauses after each chunk
      await until(() => clock.pending === 1, 5000, 'the pause after scrubNow');
      clock.advance(HOUR); // the rest ends: a paced pass starts and pauses after its first chunk
      await until(() => scrubber.stats.passes === 2 && clock.pending === 1, 5000, 'the paced pass to pause');
      expect(await scrubber.scrubNow()).toMatchObject({ checked: 4, skipped: 0 });
      expect(scrubber.stats.passes).toBe(3);
    } finally {
      await stop();
    }
  });
});
