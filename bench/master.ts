import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { MetaClient } from '../src/client/index.ts';
import { LocalCluster } from '../src/cluster/index.ts';
import { formatTable } from '../src/cli/format.ts';

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

interface Row {
  name: string;
  ops: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  note?: string;
}

/** Runs `clients` loops of `op` for `durationMs`; latency of every op. */
async function load(clients: number, durationMs: number, op: (client: number, i: number) => Promise<unknown>): Promise<{ latencies: number[]; elapsedMs: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let i = 0; performance.now() - start < durationMs; i++) {
        const t0 = performance.now();
        await op(client, i);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return { latencies: latencies.sort((a, b) => a - b), elapsedMs: performance.now() - start };
}

function row(name: string, r: { latencies: number[]; elapsedMs: number }, note?: string): Row {
  return { name, ops: r.latencies.length, perSecond: r.latencies.length / (r.elapsedMs / 1000), p50Ms: percentile(r.latencies, 50), p99Ms: percentile(r.latencies, 99), ...(note ? { note } : {}) };
}

/**
 * Three masters on loopback with fsync on: metadata commits per second and latency at 1 and 64
 * concurrent clients, beside a bare synced LevelDB write (the floor under every commit) and a
 * status round trip over libp2p (the network floor), and failover time over repeated SIGKILLs of
 * the leader.
 */
export async function runMasterBench(): Promise<void> {
  const durationMs = Number(process.env.DFS_BENCH_SECONDS ?? 5) * 1000;
  const dir = await mkdtemp(join(tmpdir(), 'dfs-bench-masters-'));
  const rows: Row[] = [];
  const cluster = new LocalCluster({ dir: join(dir, 'cluster') });
  await cluster.start();
  const peer = await cluster.createClientPeer();
  try {
    const db = new ClassicLevel<string, string>(join(dir, 'floor'));
    await db.open();
    rows.push(row('floor: classic-level put, sync', await load(1, durationMs / 2, (_, i) => db.put(`k${i}`, 'v', { sync: true })), 'one fsync'));
    await db.close();
    const statusClient = new MetaClient({ peer, masters: cluster.masterAddrs });
    rows.push(row('floor: status round trip (libp2p)', await load(1, durationMs / 2, () => statusClient.statusAll())));
    for (const clients of [1, 64]) {
      const metas = Array.from({ length: clients }, () => new MetaClient({ peer, masters: cluster.masterAddrs }));
      await metas[0]!.write({ op: 'mkdir', path: `/c${clients}`, parents: true });
      const r = await load(clients, durationMs, (c, i) => metas[c]!.write({ op: 'mkdir', path: `/c${clients}/${c}-${i}`, parents: false }));
      rows.push(row(`commit (mkdir), ${clients} client${clients > 1 ? 's' : ''}`, r, 'through Raft, fsync on 3 masters'));
    }
    console.log(`\n## metadata masters: 3 processes on loopback, fsync on, ${durationMs / 1000} s per row\n`);
    process.stdout.write(
      formatTable(
        ['benchmark', 'ops', 'ops/s', 'p50 ms', 'p99 ms', 'note'],
        rows.map((r) => [r.name, String(r.ops), r.perSecond.toFixed(0), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2), r.note ?? '']),
        new Set([1, 2, 3, 4]),
      ),
    );
    console.log('targets: >= 5,000 commits/s at 64 clients; p50 <= 3 ms at 1 client');

    const kills = Number(process.env.DFS_BENCH_KILLS ?? 10);
    const failovers: number[] = [];
    const writer = new MetaClient({ peer, masters: cluster.masterAddrs, timeoutMs: 20_000 });
    for (let k = 0; k < kills; k++) {
      const leader = (await writer.waitForLeader()).name;
      await cluster.kill(leader, 'SIGKILL');
      const t0 = performance.now();
      await writer.write({ op: 'mkdir', path: `/failover-${k}`, parents: false });
      failovers.push(performance.now() - t0);
      await cluster.startMaster(leader);
    }
    failovers.sort((a, b) => a - b);
    console.log(`\nfailover, SIGKILL of the leader to the first acknowledged write through the new leader, ${kills} kills:`);
    console.log(`  median ${percentile(failovers, 50).toFixed(0)} ms, min ${failovers[0]!.toFixed(0)} ms, max ${failovers[failovers.length - 1]!.toFixed(0)} ms (target median <= 1500 ms; election timeout 500-1000 ms)`);
  } finally {
    await peer.stop();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
