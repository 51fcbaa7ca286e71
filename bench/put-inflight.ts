import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBlake3 } from '../src/chunker/index.ts';
import { PooledFileReads, putFile } from '../src/client/index.ts';
import { MetaClient } from '../src/meta/meta-client.ts';
import { LocalCluster } from '../src/cluster/index.ts';
import { type BenchRow, mbPerS, printRows, randomFile } from './harness.ts';
import { cpuSecondsOf } from './support/proc-cpu.ts';

const GiB = 1024 ** 3;

/**
 * Chunk uploads in flight vs put rate (issue 16: is a put latency-bound or CPU-bound here?).
 * One cluster (3 masters + 5 nodes, secret on), the client in this process; for each
 * concurrency a fresh random file (no dedup), put with PutOptions.concurrency = N. CPU is summed
 * over this process and every master and node. DFS_BENCH_INFLIGHT="1 3 8" sets the values,
 * DFS_BENCH_MIB the file size (default 128 here).
 */
export async function runPutInflightBench(): Promise<void> {
  const mib = Number(process.env.DFS_BENCH_MIB ?? 128);
  const bytes = mib * 1024 * 1024;
  const levels = (process.env.DFS_BENCH_INFLIGHT ?? '1 2 3 6 12').split(' ').filter(Boolean).map(Number);
  const dir = await mkdtemp(join(tmpdir(), 'dfs-bench-inflight-'));
  const cluster = new LocalCluster({ dir: join(dir, 'cluster'), nodes: 5 });
  const rows: BenchRow[] = [];
  try {
    await cluster.start();
    const peer = await cluster.createClientPeer();
    const meta = new MetaClient({ peer, masters: cluster.masterAddrs });
    const blake3 = await loadBlake3();
    try {
      for (const [i, concurrency] of levels.entries()) {
        const file = join(dir, `f${i}.bin`);
        await randomFile(file, bytes);
        const pids = Object.values(cluster.pids());
        const clusterBefore = cpuSecondsOf(pids);
        const cpu = process.cpuUsage();
        const start = performance.now();
        await putFile(new PooledFileReads(file), `/inflight/${i}.bin`, { peer, meta, blake3, concurrency });
        const ms = performance.now() - start;
        const used = process.cpuUsage(cpu);
        const clientS = (used.user + used.system) / 1e6;
        const clusterS = cpuSecondsOf(pids) - clusterBefore;
        rows.push({
          name: `put, ${concurrency} chunk${concurrency > 1 ? 's' : ''} in flight`,
          mbPerS: mbPerS(bytes, ms),
          ...(i > 0 ? { vs: rows[0]!.name } : {}),
          cpuSPerGiB: (clientS + clusterS) / (bytes / GiB),
          note: `CPU s/GiB ${((clientS + clusterS) / (bytes / GiB)).toFixed(1)} (client ${(clientS / (bytes / GiB)).toFixed(1)}); load ${loadavg()[0]!.toFixed(2)}`,
        });
        await rm(file);
      }
    } finally {
      await peer.stop();
    }
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
  printRows(`put rate vs chunks in flight, ${mib} MiB random files, RF 3, client in-process, ${availableParallelism()} cores`, rows);
}
