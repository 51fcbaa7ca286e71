import { copyFile, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { isDfsError } from '../../src/errors/index.ts';
import { RaftStore } from '../../src/master/raft-store.ts';
import type { Entry, Snapshot } from '../../src/raft/index.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const MiB = 1024 * 1024;
const config = { voters: ['m1', 'm2', 'm3'], learners: [] };

function entries(from: number, to: number, term = 1): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: 'normal', data: new TextEncoder().encode(`e${i}`) });
  return out;
}

/** Bytes that differ from one snapshot to the next (`seed`) and along the buffer. */
function bytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  for (let i = 0; i + 4 <= length; i += 4) view.setUint32(i, Math.imul(i + seed, 2654435761) >>> 0);
  return out;
}

function snapshot(index: number, data: Uint8Array, term = 1): Snapshot {
  return { metadata: { index, term, config }, data };
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;

/** A store with entries 1..20 and a committed snapshot at 10 (`first`); closed. */
async function storeWithSnapshot(dir: string, first: Uint8Array): Promise<string> {
  const s = await RaftStore.open(dir);
  await s.load();
  await s.persistReady({ snapshot: snapshot(0, new Uint8Array(0)), entries: entries(1, 20), hardState: { term: 1, vote: 'm1', commit: 20 } });
  await s.saveSnapshot(snapshot(10, first));
  const file = s.snapshotFile!;
  await s.close();
  return file;
}

describe('RaftStore: snapshots as files', () => {
  it('keeps a large snapshot in its own file, not in LevelDB, and loads it back after a restart', async () => {
    const dir = await tempDir();
    const data = bytes(80 * MiB, 1);
    const s = await RaftStore.open(dir);
    expect(await s.load()).toBeUndefined();
    await s.persistReady({ snapshot: snapshot(0, new Uint8Array(0)), entries: entries(1, 30), hardState: { term: 1, vote: 'm1', commit: 30 } });
    const started = performance.now();
    await s.saveSnapshot(snapshot(25, data));
    console.log(`[raft-store] 80 MiB snapshot saved (file + fsync + batch) in ${(performance.now() - started).toFixed(0)} ms`);
    expect(s.persistedRange).toEqual({ first: 26, last: 30 });
    expect(await readdir(join(dir, 'snapshots'))).toEqual([s.snapshotFile]);
    await s.close();

    // No LevelDB value holds the bytes.
    const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    let largest = 0;
    for await (const [, v] of db.iterator()) largest = Math.max(largest, v.length);
    await db.close();
    expect(largest).toBeLessThan(4096);

    const again = await RaftStore.open(dir);
    const loaded = (await again.load())!;
    expect(loaded.snapshot!.metadata).toEqual({ index: 25, term: 1, config });
    expect(same(loaded.snapshot!.data, data)).toBe(true);
    expect(loaded.entries.map((e) => e.index)).toEqual([26, 27, 28, 29, 30]);
    expect(loaded.hardState).toEqual({ term: 1, vote: 'm1', commit: 30 });
    await again.close();
  });

  it('a newer snapshot replaces the older one and deletes its file', async () => {
    const dir = await tempDir();
    const oldFile = await storeWithSnapshot(dir, bytes(MiB, 1));
    const s = await RaftStore.open(dir);
    await s.load();
    await s.saveSnapshot(snapshot(15, bytes(2 * MiB, 2)));
    expect(s.snapshotFile).not.toBe(oldFile);
    expect(await readdir(join(dir, 'snapshots'))).toEqual([s.snapshotFile]);
    await s.close();
    const loaded = (await (await reopen(dir)).load())!;
    expect(loaded.snapshot!.metadata.index).toBe(15);
    expect(same(loaded.snapshot!.data, bytes(2 * MiB, 2))).toBe(true);
  });

  /** Opens the store in `dir`, closing any opened before (LevelDB allows one at a time). */
  const opened: RaftStore[] = [];
  async function reopen(dir: string): Promise<RaftStore> {
    for (const s of opened.splice(0)) await s.close();
    const s = await RaftStore.open(dir);
    opened.push(s);
    return s;
  }
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });

  describe('a crash at any point leaves the old or the new snapshot', () => {
    it('crash while writing the new file (a partial temp file): the old one loads, the temp file goes', async () => {
      const dir = await tempDir();
      const first = bytes(3 * MiB, 1);
      const file = await storeWithSnapshot(dir, first);
      await writeFile(join(dir, 'snapshots', '000000000000000f-0000000000000001-0badf00d.snap.tmp'), bytes(MiB, 2));
      const s = await reopen(dir);
      const loaded = (await s.load())!;
      expect(loaded.snapshot!.metadata.index).toBe(10);
      expect(same(loaded.snapshot!.data, first)).toBe(true);
      expect(await readdir(join(dir, 'snapshots'))).toEqual([file]);
      await s.close();
    });

    it('crash after the new file is complete but before the metadata points at it: the old one loads, the new file goes', async () => {
      const dir = await tempDir();
      const first = bytes(3 * MiB, 1);
      const file = await storeWithSnapshot(dir, first);
      await writeFile(join(dir, 'snapshots', '000000000000000f-0000000000000001-0badf00d.snap'), bytes(4 * MiB, 2));
      const s = await reopen(dir);
      const loaded = (await s.load())!;
      expect(loaded.snapshot!.metadata.index).toBe(10);
      expect(same(loaded.snapshot!.data, first)).toBe(true);
      expect(loaded.entries.map((e) => e.index)).toEqual(entries(11, 20).map((e) => e.index));
      expect(await readdir(join(dir, 'snapshots'))).toEqual([file]);
      await s.close();
    });

    it('crash after the metadata points at the new file but before the old file is deleted: the new one loads, the old file goes', async () => {
      const dir = await tempDir();
      const oldFile = await storeWithSnapshot(dir, bytes(3 * MiB, 1));
      await copyFile(join(dir, 'snapshots', oldFile), join(dir, 'kept-aside'));
      const s = await reopen(dir);
      await s.load();
      const second = bytes(5 * MiB, 2);
      await s.saveSnapshot(snapshot(18, second));
      const newFile = s.snapshotFile!;
      await s.close();
      await copyFile(join(dir, 'kept-aside'), join(dir, 'snapshots', oldFile)); // as if never deleted
      const t = await reopen(dir);
      const loaded = (await t.load())!;
      expect(loaded.snapshot!.metadata.index).toBe(18);
      expect(same(loaded.snapshot!.data, second)).toBe(true);
      expect(loaded.entries.map((e) => e.index)).toEqual([19, 20]);
      expect(await readdir(join(dir, 'snapshots'))).toEqual([newFile]);
      await t.close();
    });

    it('a damaged or missing snapshot file is an I/O error at load, never a silent empty state', async () => {
      const dir = await tempDir();
      const file = await storeWithSnapshot(dir, bytes(3 * MiB, 1));
      const path = join(dir, 'snapshots', file);
      const good = await readFile(path);
      const bad = Buffer.from(good);
      bad[12345]! ^= 1;
      await writeFile(path, bad);
      let s = await reopen(dir);
      expect(isDfsError(await s.load().catch((e: unknown) => e), 'ERR_IO')).toBe(true);
      await writeFile(path, good.subarray(0, good.length - 1));
      s = await reopen(dir);
      expect(isDfsError(await s.load().catch((e: unknown) => e), 'ERR_IO')).toBe(true);
      await unlink(path);
      s = await reopen(dir);
      expect(isDfsError(await s.load().catch((e: unknown) => e), 'ERR_IO')).toBe(true);
      await s.close();
    });
  });

  it('a snapshot from the leader (persistReady) replaces the log and the snapshot file in one step', async () => {
    const dir = await tempDir();
    await storeWithSnapshot(dir, bytes(MiB, 1));
    const s = await reopen(dir);
    await s.load();
    const leaders = bytes(6 * MiB, 3);
    await s.persistReady({ snapshot: snapshot(100, leaders, 2), entries: [], hardState: { term: 2, vote: null, commit: 100 } });
    expect(s.persistedRange).toEqual({ first: 101, last: 100 });
    await s.persistReady({ snapshot: null, entries: entries(101, 103, 2), hardState: null });
    expect(await readdir(join(dir, 'snapshots'))).toEqual([s.snapshotFile]);
    await s.close();
    const loaded = (await (await reopen(dir)).load())!;
    expect(loaded.snapshot!.metadata).toEqual({ index: 100, term: 2, config });
    expect(same(loaded.snapshot!.data, leaders)).toBe(true);
    expect(loaded.entries.map((e) => e.index)).toEqual([101, 102, 103]);
  });

  it('a compaction that a snapshot from the leader overtook is dropped with its file', async () => {
    const dir = await tempDir();
    await storeWithSnapshot(dir, bytes(MiB, 1));
    const s = await reopen(dir);
    await s.load();
    const compaction = s.saveSnapshot(snapshot(15, bytes(8 * MiB, 2)));
    await s.persistReady({ snapshot: snapshot(50, bytes(MiB, 3), 2), entries: [], hardState: { term: 2, vote: null, commit: 50 } });
    await compaction;
    expect(await readdir(join(dir, 'snapshots'))).toEqual([s.snapshotFile]);
    await s.close();
    const loaded = (await (await reopen(dir)).load())!;
    expect(loaded.snapshot!.metadata.index).toBe(50);
    expect(same(loaded.snapshot!.data, bytes(MiB, 3))).toBe(true);
  });

  it('Readies persisted while a large compaction writes its file do not wait for it', async () => {
    const dir = await tempDir();
    const s = await reopen(dir);
    await s.load();
    await s.persistReady({ snapshot: snapshot(0, new Uint8Array(0)), entries: entries(1, 10), hardState: { term: 1, vote: 'm1', commit: 10 } });
    const order: string[] = [];
    const compaction = s.saveSnapshot(snapshot(10, bytes(64 * MiB, 1))).then(() => order.push('snapshot'));
    await s.persistReady({ snapshot: null, entries: entries(11, 11), hardState: { term: 1, vote: 'm1', commit: 11 } }).then(() => order.push('ready'));
    await compaction;
    expect(order).toEqual(['ready', 'snapshot']);
    expect(s.persistedRange).toEqual({ first: 11, last: 11 });
    await s.close();
    const loaded = (await (await reopen(dir)).load())!;
    expect(loaded.snapshot!.metadata.index).toBe(10);
    expect(loaded.entries.map((e) => e.index)).toEqual([11]);
  });

  it('reads a snapshot stored the old way (bytes in LevelDB) and drops that value with the next snapshot', async () => {
    const dir = await tempDir();
    const db = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    await db.open();
    const legacy = bytes(MiB, 9);
    await db.batch([
      { type: 'put', key: 'snap:meta', value: new TextEncoder().encode(JSON.stringify({ index: 4, term: 1, config })) },
      { type: 'put', key: 'snap:data', value: legacy },
      { type: 'put', key: 'hs', value: new TextEncoder().encode(JSON.stringify({ term: 1, vote: 'm1', commit: 4 })) },
    ]);
    await db.close();
    const s = await reopen(dir);
    const loaded = (await s.load())!;
    expect(loaded.snapshot!.metadata.index).toBe(4);
    expect(same(loaded.snapshot!.data, legacy)).toBe(true);
    await s.persistReady({ snapshot: null, entries: entries(5, 8), hardState: { term: 1, vote: 'm1', commit: 8 } });
    await s.saveSnapshot(snapshot(8, bytes(MiB, 10)));
    await s.close();
    const check = new ClassicLevel<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    expect(await check.get('snap:data')).toBeUndefined();
    await check.close();
    const again = (await (await reopen(dir)).load())!;
    expect(same(again.snapshot!.data, bytes(MiB, 10))).toBe(true);
  });
});
