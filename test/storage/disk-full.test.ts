import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { ChunkStore } from '../../src/storage/index.ts';
import { SeededBytes } from '../support/prng.ts';

/**
 * A real full disk: a store on an 8 MiB tmpfs. Needs root (mount); CI and the dev machines run
 * as root. Elsewhere the suite says why it is skipped.
 */
const mountPoint = mkdtempSync(join(tmpdir(), 'dfs-full-'));
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint], { stdio: 'ignore' });
  mounted = true;
} catch {
  console.warn('[disk-full] cannot mount a tmpfs here (not root?): disk-full tests skipped');
}

const blake3 = await loadBlake3();

async function fill(store: ChunkStore, rng: SeededBytes, size: number): Promise<{ ids: string[]; error: unknown }> {
  const ids: string[] = [];
  for (let i = 0; i < 64; i++) {
    const bytes = rng.bytes(size);
    const id = blake3.hashHex(bytes);
    try {
      await store.put(id, bytes);
      ids.push(id);
    } catch (error) {
      return { ids, error };
    }
  }
  throw new Error('an 8 MiB disk never filled up');
}

async function expectConsistent(store: ChunkStore, dir: string, ids: string[]): Promise<void> {
  expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  const listed: string[] = [];
  for await (const entry of store.list()) {
    await store.get(entry.id); // whole and verified
    listed.push(entry.id);
  }
  expect(listed.sort()).toEqual([...ids].sort());
}

describe.skipIf(!mounted)('ChunkStore on a full disk', () => {
  let n = 0;
  const freshDir = () => {
    const dir = join(mountPoint, `store-${n++}`);
    return dir;
  };
  afterAll(() => {
    execFileSync('umount', [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });

  it('fails a put with ERR_NO_SPACE when the disk is really full, loses nothing, and recovers after deletes', async () => {
    const dir = freshDir();
    let store = await ChunkStore.open({ dir, blake3, reserveBytes: 0 });
    const { ids, error } = await fill(store, new SeededBytes(11), 1024 * 1024);
    expect(isDfsError(error, 'ERR_NO_SPACE')).toBe(true);
    expect(ids.length).toBeGreaterThan(3);
    await expectConsistent(store, dir, ids);
    // Make room; puts work again.
    for (const id of ids.splice(0, 2)) await store.delete(id);
    const more = await fill(store, new SeededBytes(12), 256 * 1024);
    expect(more.ids.length).toBeGreaterThan(0);
    ids.push(...more.ids);
    await store.close();
    store = await ChunkStore.open({ dir, blake3, reserveBytes: 0 });
    await expectConsistent(store, dir, ids);
    await store.close();
    rmSync(dir, { recursive: true });
  });

  it('refuses a put that would eat into the reserve before writing anything', async () => {
    const dir = freshDir();
    const store = await ChunkStore.open({ dir, blake3, reserveBytes: 4 * 1024 * 1024 });
    const { ids, error } = await fill(store, new SeededBytes(13), 1024 * 1024);
    expect(isDfsError(error, 'ERR_NO_SPACE')).toBe(true);
    expect((error as Error).message).toMatch(/reserved/);
    expect((await store.stats()).freeBytes).toBeGreaterThanOrEqual(4 * 1024 * 1024 - 1024 * 1024);
    await expectConsistent(store, dir, ids);
    await store.close();
    rmSync(dir, { recursive: true });
  });
});
