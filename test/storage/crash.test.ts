import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { ChunkStore } from '../../src/storage/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const CHILD = new URL('./fixtures/put-loop.ts', import.meta.url).pathname;

/**
 * Runs the put loop in a child process and SIGKILLs it `delayMs` after its `killAfter`-th
 * acknowledgement, so that kills land in every phase of the puts under way (hashing, writing,
 * fsync, rename, indexing). The delay is the chaos, not a wait for an event. Resolves with the
 * acknowledged ids and the ids it deleted.
 */
async function runAndKill(dir: string, seed: number, killAfter: number, delayMs: number): Promise<{ acked: Set<string>; deleted: Set<string> }> {
  const child = spawn(process.execPath, [CHILD, dir, String(seed)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const acked = new Set<string>();
  const deleted = new Set<string>();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let acks = 0;
  for await (const line of createInterface({ input: child.stdout! })) {
    const [kind, id] = line.split(' ');
    if (kind === 'ack') {
      acked.add(id!);
      deleted.delete(id!);
      if (++acks === killAfter) setTimeout(() => child.kill('SIGKILL'), delayMs);
    } else if (kind === 'del') {
      // Announced before the delete starts: from here on the chunk may or may not be there.
      deleted.add(id!);
      acked.delete(id!);
    } else if (kind === 'ready' && killAfter === 0) {
      setTimeout(() => child.kill('SIGKILL'), delayMs);
    }
  }
  await exited;
  return { acked, deleted };
}

describe('ChunkStore crash safety', () => {
  it('after kill -9 at random points of a put loop, every acknowledged chunk is whole and nothing half-written is listed', async () => {
    const dir = await tempDir();
    const seed = testSeed('store crash');
    const rng = new SeededBytes(seed);
    const blake3 = await loadBlake3();
    const everAcked = new Set<string>();
    const rounds = 12;
    const totals = { acked: 0, swept: 0, adopted: 0, dropped: 0 };
    let dirtyOpens = 0;
    for (let round = 0; round < rounds; round++) {
      const { acked, deleted } = await runAndKill(dir, rng.nextU32(), rng.nextU32() % 12, rng.nextU32() % 30);
      for (const id of acked) everAcked.add(id);
      for (const id of deleted) everAcked.delete(id);

      const store = await ChunkStore.open({ dir, blake3, reserveBytes: 0 });
      if (store.recovery.wasDirty) dirtyOpens += 1;
      expect(await readdir(join(dir, 'tmp'))).toEqual([]);
      const listed = new Set<string>();
      for await (const entry of store.list()) {
        const bytes = await store.get(entry.id); // verifies against the id
        expect(bytes.length).toBe(entry.size);
        listed.add(entry.id);
      }
      for (const id of everAcked) expect(listed.has(id), `acknowledged chunk ${id} lost`).toBe(true);
      await store.close();
      totals.acked += acked.size;
      totals.swept += store.recovery.tempFilesSwept;
      totals.adopted += store.recovery.orphansAdopted;
      totals.dropped += store.recovery.entriesDropped;
      console.log(`[crash] round ${round}: ${acked.size} acked, ${listed.size} listed, recovery ${JSON.stringify(store.recovery)}`);
    }
    console.log(`[crash] ${rounds} kills: ${totals.acked} acked chunks, 0 lost; ${totals.swept} temp files swept, ${totals.adopted} orphans adopted, ${totals.dropped} entries dropped`);
    // The child never closes the store, so every reopen must have gone through recovery.
    expect(dirtyOpens).toBe(rounds);
  });
});
