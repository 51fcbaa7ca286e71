// `node --max-semi-space-size=1 bench/store-stream.ts [chunks]`: the CPU a storage node's disk
// path costs per GiB, for 1 MiB chunks stored whole (ChunkStore.put, the bytes in hand) and
// streamed as they would arrive (ChunkStore.beginPut, 64 KiB appends a turn of the event loop
// apart), 4 at once, 3 rounds alternating. This process's CPU time (user + system, every
// thread); compare the two in the same run.
import { randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBlake3 } from '../src/chunker/index.ts';
import { ChunkStore } from '../src/storage/index.ts';

const MiB = 1024 * 1024;
const FRAME = 64 * 1024;
const n = Number(process.argv[2] ?? 192);
const blake3 = await loadBlake3();
const chunks = Array.from({ length: n }, () => randomFillSync(new Uint8Array(MiB)));
const ids = chunks.map((c) => blake3.hashHex(c));

async function pool(width: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    for (let i = next++; i < n; i = next++) await job(i);
  }));
}

const frames = (c: Uint8Array): Uint8Array[] => Array.from({ length: Math.ceil(c.byteLength / FRAME) }, (_, k) => c.subarray(k * FRAME, (k + 1) * FRAME));
const modes = {
  whole: (store: ChunkStore, i: number) => store.put(ids[i]!, frames(chunks[i]!), { alreadyVerified: true, fence: 1 }).then(() => {}),
  streamed: async (store: ChunkStore, i: number) => {
    const put = await store.beginPut(ids[i]!, MiB, { fence: 1 });
    for (const frame of frames(chunks[i]!)) {
      put.append(frame);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await put.commit();
  },
};
console.log(`load average ${loadavg()[0]!.toFixed(2)}`);
for (let round = 0; round < 3; round++) {
  for (const [mode, put] of Object.entries(modes)) {
    const dir = await mkdtemp(join(tmpdir(), 'dfs-bench-store-stream-'));
    const store = await ChunkStore.open({ dir, blake3 });
    const cpu = process.cpuUsage();
    const started = performance.now();
    await pool(4, (i) => put(store, i));
    const used = process.cpuUsage(cpu);
    console.log(`${mode.padEnd(8)} ${((used.user + used.system) / 1e6 / (n / 1024)).toFixed(2)} CPU s/GiB, ${(performance.now() - started).toFixed(0)} ms`);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}
