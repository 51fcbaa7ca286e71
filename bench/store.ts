import { randomFillSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBlake3 } from '../src/chunker/index.ts';
import { ChunkStore } from '../src/storage/index.ts';
import { ChunkFileWriter } from '../src/storage/chunk-file-writer.ts';
import { benchBytes, type BenchRow, mbPerS, pool, printRows, timed } from './harness.ts';

const CHUNK_BYTES = 1024 * 1024;



/** Empties the page cache (root only) so reads come from the disk; says whether it could. */
function dropCaches(): boolean {
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/**
 * ChunkStore put/get with 1 MiB chunks beside the plain thing on the same disk in the same run:
 * write+fsync of one file per chunk (through the page cache, and with O_DIRECT as the store
 * writes: ChunkFileWriter alone), and readFile of those files.
 */
export async function runStoreBench(): Promise<void> {
  const bytes = benchBytes();
  const n = bytes / CHUNK_BYTES;
  const blake3 = await loadBlake3();
  const chunks = Array.from({ length: n }, () => randomFillSync(new Uint8Array(CHUNK_BYTES)));
  const ids = chunks.map((c) => blake3.hashHex(c));
  const root = await mkdtemp(join(tmpdir(), 'dfs-bench-store-'));
  const rows: BenchRow[] = [];
  let cold = false;
  try {
    for (const concurrency of [1, 8]) {
      // Plain and store alternate for three rounds and each keeps its best: the disk of a shared
      // machine drifts by tens of percent from second to second.
      const best = { plainPut: Infinity, directPut: Infinity, storePut: Infinity, plainGet: Infinity, storeGet: Infinity };
      const writer = new ChunkFileWriter({ slots: concurrency });
      for (let round = 0; round < 3; round++) {
        const plainDir = join(root, `plain-${concurrency}-${round}`);
        await mkdir(plainDir);
        best.plainPut = Math.min(best.plainPut, await timed(() => pool(n, concurrency, async (i) => {
          const fh = await open(join(plainDir, String(i)), 'w');
          await fh.write(chunks[i]!);
          await fh.sync();
          await fh.close();
        })));
        const directDir = join(root, `direct-${concurrency}-${round}`);
        await mkdir(directDir);
        best.directPut = Math.min(best.directPut, await timed(() => pool(n, concurrency, (i) => writer.write(join(directDir, String(i)), [chunks[i]!], CHUNK_BYTES))));
        await rm(directDir, { recursive: true });
        const store = await ChunkStore.open({ dir: join(root, `store-${concurrency}-${round}`), blake3 });
        best.storePut = Math.min(best.storePut, await timed(() => pool(n, concurrency, (i) => store.put(ids[i]!, chunks[i]!))));
        cold = dropCaches();
        best.plainGet = Math.min(best.plainGet, await timed(() => pool(n, concurrency, (i) => readFile(join(plainDir, String(i))))));
        dropCaches();
        best.storeGet = Math.min(best.storeGet, await timed(() => pool(n, concurrency, (i) => store.get(ids[i]!))));
        await store.close();
        await rm(root + `/store-${concurrency}-${round}`, { recursive: true });
        await rm(plainDir, { recursive: true });
      }
      const plainW = `plain write+fsync, ${concurrency} in flight`;
      const directW = `plain ${writer.direct ? 'O_DIRECT ' : ''}write+fsync, ${concurrency} in flight`;
      const plainR = `plain read, ${concurrency} in flight`;
      rows.push(
        { name: plainW, mbPerS: mbPerS(bytes, best.plainPut), note: 'yardstick: a file per chunk' },
        { name: directW, mbPerS: mbPerS(bytes, best.directPut), vs: plainW, note: 'yardstick: how the store writes a file (ChunkFileWriter)' },
        { name: `ChunkStore.put, ${concurrency} in flight`, mbPerS: mbPerS(bytes, best.storePut), vs: directW, target: '>= 0.8x', note: 'verify + temp/fsync/rename/dirsync + index' },
        { name: plainR, mbPerS: mbPerS(bytes, best.plainGet), note: 'yardstick' },
        { name: `ChunkStore.get, ${concurrency} in flight`, mbPerS: mbPerS(bytes, best.storeGet), vs: plainR, note: 'read + BLAKE3 verify' },
      );
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  printRows(`chunk store, ${n} chunks of 1 MiB, best of 3 alternating rounds (${blake3.backend} BLAKE3, reads ${cold ? 'from a dropped page cache' : 'from the page cache'})`, rows);
}
