import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { formatTable } from '../src/cli/format.ts';
import { LocalCluster } from '../src/cluster/index.ts';
import { SERVER_V8_FLAGS } from '../src/cli/v8-flags.ts';
import { DEFAULT_REPLICATION_FACTOR } from '../src/meta/index.ts';
import { randomFile } from './harness.ts';

const BIN = new URL('../bin/dfs.js', import.meta.url).pathname;
const SINK = new URL('./support/raw-sink.ts', import.meta.url).pathname;
const SOURCE = new URL('./support/raw-source.ts', import.meta.url).pathname;
const run = promisify(execFile);


interface RawFigures {
  mbPerS: number;
  /** CPU seconds both ends spent per GiB moved: what one hop of the transport costs. */
  cpuSPerGiB: number;
}

/**
 * One raw libp2p stream between two processes: the transport's limit on this machine. Both ends
 * run with `v8Flags`, so the yardstick can be measured with V8's defaults and with the settings
 * dfs's servers run with (src/cli/v8-flags.ts), which move bytes faster. Each end reports the
 * CPU time it spent on the transfer.
 */
async function rawStream(bytes: number, v8Flags: readonly string[]): Promise<RawFigures> {
  const sink = spawn(process.execPath, [...v8Flags, SINK], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const lines = createInterface({ input: sink.stdout! })[Symbol.asyncIterator]();
    const { addr } = JSON.parse((await lines.next()).value as string) as { addr: string };
    const { stdout } = await run(process.execPath, [...v8Flags, SOURCE, addr, String(bytes)]);
    const source = JSON.parse(stdout) as { mbPerS: number; cpuMs: number };
    const received = JSON.parse((await lines.next()).value as string) as { cpuMs: number };
    return { mbPerS: source.mbPerS, cpuSPerGiB: (source.cpuMs + received.cpuMs) / 1000 / (bytes / GiB) };
  } finally {
    sink.kill('SIGTERM');
  }
}

const GiB = 1024 ** 3;
/** LocalCluster's replication factor: a new cluster's default. */
const REPLICATION_FACTOR = DEFAULT_REPLICATION_FACTOR;

/** CPU seconds (user + system) the processes have used so far; 0 for one that is gone. */
function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // /proc/<pid>/stat: utime and stime are fields 14 and 15; comm (field 2) may hold spaces.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return ticks / CLOCK_TICKS_PER_S;
}

/** Linux's USER_HZ, the unit of /proc/<pid>/stat times (100 on every mainstream build). */
const CLOCK_TICKS_PER_S = 100;

interface CliFigures {
  ms: number;
  /** The client's own CPU time. */
  cpuMs: number;
  peakRssBytes: number;
}

/** Peak RSS in MB (10^6 bytes, the unit of the target), with MiB beside it. */
function rssMB(figures: CliFigures): string {
  return `${(figures.peakRssBytes / 1e6).toFixed(0)} MB (${(figures.peakRssBytes / 2 ** 20).toFixed(0)} MiB)`;
}

/** Runs a dfs command as a user would; `clusterCpuS` is what the cluster's processes spent meanwhile. */
async function dfsJson(cluster: LocalCluster, ...args: string[]): Promise<CliFigures & { clusterCpuS: number }> {
  const pids = Object.values(cluster.pids());
  const before = cpuSeconds(pids);
  const { stdout } = await run(process.execPath, [BIN, ...args, '--json', '--cluster', cluster.dir], { maxBuffer: 1 << 20 });
  return { ...(JSON.parse(stdout) as CliFigures), clusterCpuS: cpuSeconds(pids) - before };
}

/** CPU seconds per GiB, client and cluster together. */
function cpuPerGiB(figures: CliFigures & { clusterCpuS: number }, bytes: number): string {
  return ((figures.cpuMs / 1000 + figures.clusterCpuS) / (bytes / GiB)).toFixed(1);
}

type SecretRuns = 'on' | 'off' | 'both';

function secretRuns(): SecretRuns {
  const wanted = process.env.DFS_BENCH_SECRET ?? 'on';
  if (wanted === 'on' || wanted === 'off' || wanted === 'both') return wanted;
  throw new Error(`DFS_BENCH_SECRET takes on, off or both, not "${wanted}"`);
}

/**
 * The data path on this machine, in one run: 3 masters + 5 storage nodes (separate processes),
 * `dfs put` (RF 3) and `dfs get` of a random file as a user runs them (separate client process),
 * beside a raw libp2p stream between two processes; and the client's peak RSS, which must not
 * grow with the file. DFS_BENCH_MIB sets the file size (default 1024), DFS_BENCH_RSS_MIB the
 * size of the larger file used only to show RSS stays flat (default 0 = skip).
 * DFS_BENCH_SECRET: `on` (default) runs the cluster with its secret, as `dfs cluster up` does;
 * `off` runs it --insecure; `both` runs the put and get again on a second cluster started
 * --insecure, so the secret's cost shows beside it.
 */
export async function runDataBench(): Promise<void> {
  const mib = Number(process.env.DFS_BENCH_MIB ?? 1024);
  const bytes = mib * 1024 * 1024;
  const secret = secretRuns();
  const dir = await mkdtemp(join(tmpdir(), 'dfs-bench-data-'));
  let cluster = new LocalCluster({ dir: join(dir, 'cluster'), nodes: 5, insecure: secret === 'off' });
  const secretNote = (insecure: boolean) => (insecure ? 'no cluster secret (--insecure)' : 'cluster secret on (Noise handshake)');
  try {
    const file = join(dir, 'file.bin');
    await randomFile(file, bytes);
    const rawDefault = await rawStream(bytes, []);
    const raw = await rawStream(bytes, SERVER_V8_FLAGS);
    await cluster.start();
    const put = await dfsJson(cluster, 'put', file, '/bench/file.bin');
    const get = await dfsJson(cluster, 'get', '/bench/file.bin', join(dir, 'back.bin'));
    const mbPerS = (figures: CliFigures, n: number) => n / 1e6 / (figures.ms / 1000);
    const vsRaw = (rate: number) => `${(rate / raw.mbPerS).toFixed(2)}x raw (${(rate / rawDefault.mbPerS).toFixed(2)}x defaults)`;
    // What a put could reach if the transport were its only cost: every byte crosses RF
    // encrypted hops, each costing what the raw stream's two ends spent, on this many cores.
    const cores = availableParallelism();
    const putCeiling = (cores / (REPLICATION_FACTOR * raw.cpuSPerGiB)) * (GiB / 1e6);
    const rows = [
      ['raw libp2p stream, 2 processes, V8 defaults', rawDefault.mbPerS.toFixed(0), '', '', rawDefault.cpuSPerGiB.toFixed(1), 'transport limit with node\'s defaults'],
      ['raw libp2p stream, 2 processes, dfs V8 flags', raw.mbPerS.toFixed(0), `${(raw.mbPerS / rawDefault.mbPerS).toFixed(2)}x defaults`, '', raw.cpuSPerGiB.toFixed(1), 'the yardstick: same settings as dfs servers'],
      [`ceiling: RF ${REPLICATION_FACTOR} put, transport alone`, putCeiling.toFixed(0), vsRaw(putCeiling), '', (REPLICATION_FACTOR * raw.cpuSPerGiB).toFixed(1), `${cores} cores / (${REPLICATION_FACTOR} hops x the raw stream's CPU); disks, hashes, chunking come on top`],
      [`dfs put (RF ${REPLICATION_FACTOR}, pipeline)`, mbPerS(put, bytes).toFixed(0), vsRaw(mbPerS(put, bytes)), '>= 0.4x', cpuPerGiB(put, bytes), `client peak RSS ${rssMB(put)}; ${secretNote(secret === 'off')}`],
      ['dfs get (verified)', mbPerS(get, bytes).toFixed(0), vsRaw(mbPerS(get, bytes)), '>= 0.8x', cpuPerGiB(get, bytes), `client peak RSS ${rssMB(get)}; ${secretNote(secret === 'off')}`],
    ];
    if (secret === 'both') {
      // The same put and get on a fresh cluster without the secret: its cost, measured here.
      await cluster.stop();
      await rm(join(dir, 'back.bin'), { force: true });
      cluster = new LocalCluster({ dir: join(dir, 'cluster-insecure'), nodes: 5, insecure: true });
      await cluster.start();
      const openPut = await dfsJson(cluster, 'put', file, '/bench/file.bin');
      const openGet = await dfsJson(cluster, 'get', '/bench/file.bin', join(dir, 'back.bin'));
      const secretCost = (on: CliFigures, off: CliFigures, n: number) => `secret on: ${(mbPerS(on, n) / mbPerS(off, n)).toFixed(2)}x this`;
      rows.push(
        [`dfs put (RF ${REPLICATION_FACTOR}), --insecure`, mbPerS(openPut, bytes).toFixed(0), vsRaw(mbPerS(openPut, bytes)), '', cpuPerGiB(openPut, bytes), `${secretNote(true)}; ${secretCost(put, openPut, bytes)}`],
        ['dfs get (verified), --insecure', mbPerS(openGet, bytes).toFixed(0), vsRaw(mbPerS(openGet, bytes)), '', cpuPerGiB(openGet, bytes), `${secretNote(true)}; ${secretCost(get, openGet, bytes)}`],
      );
    }
    const rssMib = Number(process.env.DFS_BENCH_RSS_MIB ?? 0);
    if (rssMib > 0) {
      const big = join(dir, 'big.bin');
      const bigBytes = rssMib * 1024 * 1024;
      await rm(join(dir, 'back.bin'), { force: true });
      await randomFile(big, bigBytes);
      const bigPut = await dfsJson(cluster, 'put', big, '/bench/big.bin');
      rows.push([`dfs put of ${rssMib} MiB`, mbPerS(bigPut, bigBytes).toFixed(0), '', 'RSS <= 150 MB', cpuPerGiB(bigPut, bigBytes), `client peak RSS ${rssMB(bigPut)}`]);
      await rm(big);
      const bigGet = await dfsJson(cluster, 'get', '/bench/big.bin', join(dir, 'big-back.bin'));
      rows.push([`dfs get of ${rssMib} MiB`, mbPerS(bigGet, bigBytes).toFixed(0), '', 'RSS <= 150 MB', cpuPerGiB(bigGet, bigBytes), `client peak RSS ${rssMB(bigGet)}`]);
    }
    console.log(`\n## data path: ${mib} MiB random file, 3 masters + 5 nodes + client as separate processes on this machine\n`);
    process.stdout.write(formatTable(['benchmark', 'MB/s', 'vs (same run)', 'target', 'CPU s/GiB', 'note'], rows, new Set([1, 4])));
    console.log(`\nCPU s/GiB: user + system seconds per GiB of file, summed over the processes involved (raw: both ends, during the transfer; dfs: the whole client command, start-up included, and every master and node meanwhile). ${cores} cores here.`);
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
