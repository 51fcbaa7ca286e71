import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { formatTable } from '../src/cli/format.ts';
import { LocalCluster } from '../src/cluster/index.ts';
import { SERVER_V8_FLAGS } from '../src/cli/v8-flags.ts';
import { DEFAULT_REPLICATION_FACTOR } from '../src/meta/index.ts';
import { randomFile, recordResults } from './harness.ts';
import { cpuSecondsOf } from './support/proc-cpu.ts';

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

/**
 * Runs a dfs command as a user would; `clusterCpuS` is what the cluster's processes spent
 * meanwhile. DFS_BENCH_CLIENT_ARGS: extra node flags for the client process (e.g. "--cpu-prof
 * --cpu-prof-dir=/tmp/p"), as DFS_NODE_ARGS is for the cluster's processes (LocalCluster).
 */
async function dfsJson(cluster: LocalCluster, ...args: string[]): Promise<DfsFigures> {
  const named = Object.entries(cluster.pids());
  const masterNames = new Set(cluster.spec.masters.map((m) => m.name));
  const masters = named.filter(([name]) => masterNames.has(name)).map(([, pid]) => pid);
  const nodes = named.filter(([name]) => !masterNames.has(name)).map(([, pid]) => pid);
  const clientArgs = (process.env.DFS_BENCH_CLIENT_ARGS ?? '').split(' ').filter(Boolean);
  // Every metadata request names a user: the cluster's admin, logged in once per cluster.
  const env = { ...process.env, DFS_TOKEN: await adminTokenOf(cluster) };
  const before = [cpuSecondsOf(masters), cpuSecondsOf(nodes)] as const;
  const { stdout } = await run(process.execPath, [...clientArgs, BIN, ...args, '--json', '--cluster', cluster.dir], { maxBuffer: 1 << 20, env });
  const mastersCpuS = cpuSecondsOf(masters) - before[0];
  const nodesCpuS = cpuSecondsOf(nodes) - before[1];
  return { ...(JSON.parse(stdout) as CliFigures), clusterCpuS: mastersCpuS + nodesCpuS, mastersCpuS, nodesCpuS };
}

const adminTokens = new WeakMap<LocalCluster, Promise<string>>();

/** A login token of the cluster's admin, made once per cluster (before any measured command). */
function adminTokenOf(cluster: LocalCluster): Promise<string> {
  let token = adminTokens.get(cluster);
  if (token === undefined) {
    token = cluster.adminToken();
    adminTokens.set(cluster, token);
  }
  return token;
}

/** Where a dfs command's CPU went: "client 1.2 + masters 0.3 + nodes 4.5 s". */
function cpuSplit(f: CliFigures & { mastersCpuS: number; nodesCpuS: number }): string {
  return `CPU: client ${(f.cpuMs / 1000).toFixed(2)} + masters ${f.mastersCpuS.toFixed(2)} + nodes ${f.nodesCpuS.toFixed(2)} s`;
}

type DfsFigures = CliFigures & { clusterCpuS: number; mastersCpuS: number; nodesCpuS: number };

/** CPU seconds per GiB, client and cluster together. */
function cpuPerGiBOf(figures: CliFigures & { clusterCpuS: number }, bytes: number): number {
  return (figures.cpuMs / 1000 + figures.clusterCpuS) / (bytes / GiB);
}

type SecretRuns = 'on' | 'off' | 'both';

function secretRuns(): SecretRuns {
  const wanted = process.env.DFS_BENCH_SECRET ?? 'on';
  if (wanted === 'on' || wanted === 'off' || wanted === 'both') return wanted;
  throw new Error(`DFS_BENCH_SECRET takes on, off or both, not "${wanted}"`);
}

/** One row of the data table; `record` is what goes to bench/out/results.json. */
interface DataRow {
  readonly name: string;
  readonly mbPerS: number | undefined;
  readonly vs: string;
  readonly target: string;
  readonly cpuSPerGiB: number | undefined;
  readonly peakRssBytes?: number;
  readonly note: string;
}

/**
 * The data path on this machine, in one run: 3 masters + 5 storage nodes (separate processes),
 * `dfs put` (RF 3) and `dfs get` of a random file as a user runs them (separate client process),
 * beside a raw libp2p stream between two processes and beside MooseFS (the peer, see peer.ts)
 * measured on the same machine right after; and the client's peak RSS, which must not grow with
 * the file. Rows also go to bench/out/results.json (MB/s, CPU s/GiB, peak RSS).
 *
 * DFS_BENCH_MIB sets the file size (default 1024), DFS_BENCH_RSS_MIB the size of the larger file
 * used only to show RSS stays flat (default 0 = skip).
 * DFS_BENCH_SECRET: `on` (default) runs the cluster with its secret, as `dfs cluster up` does;
 * `off` runs it --insecure; `both` runs the put and get again on a second cluster started
 * --insecure, so the secret's cost shows beside it.
 * DFS_BENCH_PEER: `auto` (default: run MooseFS when installed, else say why not), `0` to skip.
 * DFS_BENCH_CLIENT_ARGS / DFS_NODE_ARGS: extra node flags for the client / the cluster's
 * processes (profiling: "--cpu-prof --cpu-prof-dir=DIR").
 */
export async function runDataBench(): Promise<void> {
  const mib = Number(process.env.DFS_BENCH_MIB ?? 1024);
  const bytes = mib * 1024 * 1024;
  const secret = secretRuns();
  const dir = await mkdtemp(join(tmpdir(), 'dfs-bench-data-'));
  let cluster = new LocalCluster({ dir: join(dir, 'cluster'), nodes: 5, insecure: secret === 'off' });
  const secretNote = (insecure: boolean) => (insecure ? 'no cluster secret (--insecure)' : 'cluster secret on (Noise handshake)');
  const rows: DataRow[] = [];
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
    const dfsRow = (name: string, figures: DfsFigures, n: number, target: string, note: string): DataRow => ({
      name,
      mbPerS: mbPerS(figures, n),
      vs: vsRaw(mbPerS(figures, n)),
      target,
      cpuSPerGiB: cpuPerGiBOf(figures, n),
      peakRssBytes: figures.peakRssBytes,
      note: `client peak RSS ${rssMB(figures)}; ${cpuSplit(figures)}${note ? `; ${note}` : ''}`,
    });
    rows.push(
      { name: 'raw libp2p stream, 2 processes, V8 defaults', mbPerS: rawDefault.mbPerS, vs: '', target: '', cpuSPerGiB: rawDefault.cpuSPerGiB, note: "transport limit with node's defaults" },
      { name: 'raw libp2p stream, 2 processes, dfs V8 flags', mbPerS: raw.mbPerS, vs: `${(raw.mbPerS / rawDefault.mbPerS).toFixed(2)}x defaults`, target: '', cpuSPerGiB: raw.cpuSPerGiB, note: 'the yardstick: same settings as dfs servers' },
      {
        name: `ceiling: RF ${REPLICATION_FACTOR} put, transport alone`,
        mbPerS: putCeiling,
        vs: vsRaw(putCeiling),
        target: '',
        cpuSPerGiB: REPLICATION_FACTOR * raw.cpuSPerGiB,
        note: `${cores} cores / (${REPLICATION_FACTOR} hops x the raw stream's CPU); disks, hashes, chunking come on top`,
      },
      dfsRow(`dfs put (RF ${REPLICATION_FACTOR}, pipeline)`, put, bytes, PUT_TARGET, secretNote(secret === 'off')),
      dfsRow('dfs get (verified)', get, bytes, GET_TARGET, secretNote(secret === 'off')),
    );
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
        dfsRow(`dfs put (RF ${REPLICATION_FACTOR}), --insecure`, openPut, bytes, '', `${secretNote(true)}; ${secretCost(put, openPut, bytes)}`),
        dfsRow('dfs get (verified), --insecure', openGet, bytes, '', `${secretNote(true)}; ${secretCost(get, openGet, bytes)}`),
      );
    }
    const rssMib = Number(process.env.DFS_BENCH_RSS_MIB ?? 0);
    if (rssMib > 0) {
      const big = join(dir, 'big.bin');
      const bigBytes = rssMib * 1024 * 1024;
      await rm(join(dir, 'back.bin'), { force: true });
      await randomFile(big, bigBytes);
      const bigPut = await dfsJson(cluster, 'put', big, '/bench/big.bin');
      rows.push({ ...dfsRow(`dfs put of ${rssMib} MiB`, bigPut, bigBytes, RSS_TARGET, ''), vs: '' });
      await rm(big);
      const bigGet = await dfsJson(cluster, 'get', '/bench/big.bin', join(dir, 'big-back.bin'));
      rows.push({ ...dfsRow(`dfs get of ${rssMib} MiB`, bigGet, bigBytes, RSS_TARGET, ''), vs: '' });
    }
    // The peer runs alone: the dfs cluster is stopped first, so neither competes for the cores.
    await cluster.stop();
    await rm(join(dir, 'back.bin'), { force: true });
    const peer = await runPeer(mib);
    rows.push(...peer.rows);
    compareWithPeer(rows, peer.rows);
    const title = `data path: ${mib} MiB random file, 3 masters + 5 nodes + client as separate processes on this machine`;
    console.log(`\n## ${title}\n`);
    const fixed = (n: number | undefined, digits: number) => (n === undefined ? '-' : n.toFixed(digits));
    process.stdout.write(
      formatTable(
        ['benchmark', 'MB/s', 'vs (same run)', 'target', 'CPU s/GiB', 'note'],
        rows.map((r) => [r.name, fixed(r.mbPerS, 0), r.vs, r.target, fixed(r.cpuSPerGiB, 1), r.note]),
        new Set([1, 4]),
      ),
    );
    if (peer.skipped) console.log(`\n${peer.skipped}`);
    console.log(`\nCPU s/GiB: user + system seconds per GiB of file, summed over the processes involved (raw: both ends, during the transfer; dfs: the whole client command, start-up included, and every master and node meanwhile; MooseFS: the command, mfsmount, mfsmaster and every chunkserver). ${cores} cores here; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}.`);
    recordResults(
      title,
      rows.map((r) => ({
        name: r.name,
        mbPerS: r.mbPerS ?? Number.NaN,
        ...(r.vs ? { vs: r.vs } : {}),
        ...(r.target ? { target: r.target } : {}),
        note: r.note,
        ...(r.cpuSPerGiB === undefined ? {} : { cpuSPerGiB: r.cpuSPerGiB }),
        ...(r.peakRssBytes === undefined ? {} : { peakRssBytes: r.peakRssBytes }),
      })),
    );
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Issue 16's targets: at least MooseFS's rate, CPU summed over every process, client RSS. */
const PUT_TARGET = '>= peer write, <= 15 CPU s/GiB, RSS <= 150 MB';
const GET_TARGET = '>= peer read, <= 4 CPU s/GiB, RSS <= 150 MB';
const RSS_TARGET = 'RSS <= 150 MB';

/** Puts the dfs rows' rate beside MooseFS's in their `vs` column (put vs write, get vs cold read). */
function compareWithPeer(rows: DataRow[], peerRows: readonly DataRow[]): void {
  const write = peerRows.find((r) => r.name.startsWith(`${PEER_PREFIX}write`));
  // dfs nodes write chunk files with O_DIRECT, so a get reads from disk: compare with a cold read.
  const read = peerRows.find((r) => r.name.startsWith(`${PEER_PREFIX}read, cold`)) ?? peerRows.find((r) => r.name.startsWith(`${PEER_PREFIX}read`));
  for (const [i, r] of rows.entries()) {
    const peer = r.name.startsWith('dfs put') ? write : r.name.startsWith('dfs get') ? read : undefined;
    if (!peer?.mbPerS || r.mbPerS === undefined) continue;
    rows[i] = { ...r, vs: `${(r.mbPerS / peer.mbPerS).toFixed(2)}x MooseFS ${peer.name.slice(PEER_PREFIX.length).split(' (')[0]}; ${r.vs}` };
  }
}

const PEER_PREFIX = 'peer: MooseFS ';
/** ../shared/bench/moosefs-bench.sh beside the repository, unless DFS_BENCH_PEER_SCRIPT names another. */
const PEER_SCRIPT = process.env.DFS_BENCH_PEER_SCRIPT ?? fileURLToPath(new URL('../../shared/bench/moosefs-bench.sh', import.meta.url));
const PEER_PACKAGES = 'apt-get update && apt-get install -y moosefs-master moosefs-chunkserver moosefs-client moosefs-cli';

/**
 * MooseFS measured the same way, right after dfs on the same machine (moosefs-bench.sh: 5
 * chunkservers, goal 3, fsync per chunk). `skipped` says why there are no rows: not installed,
 * not root, no script, or DFS_BENCH_PEER=0. A peer run that fails is a row saying so, not a
 * failed benchmark: dfs's own figures still stand.
 */
export async function runPeer(mib: number): Promise<{ rows: DataRow[]; skipped?: string }> {
  const wanted = process.env.DFS_BENCH_PEER ?? 'auto';
  if (wanted === '0' || wanted === 'off') return { rows: [], skipped: 'peer: skipped (DFS_BENCH_PEER=0)' };
  const missing = ['mfsmaster', 'mfschunkserver', 'mfsmount', 'mfscli'].filter((c) => !onPath(c));
  if (missing.length > 0) return { rows: [], skipped: `peer: MooseFS not installed (no ${missing.join(', ')}): no peer rows. To compare: ${PEER_PACKAGES}` };
  if (process.getuid?.() !== 0) return { rows: [], skipped: 'peer: MooseFS needs root (FUSE mount, drop_caches): no peer rows' };
  if (!existsSync(PEER_SCRIPT)) return { rows: [], skipped: `peer: ${PEER_SCRIPT} not found (set DFS_BENCH_PEER_SCRIPT): no peer rows` };
  try {
    const { stdout } = await run('bash', [PEER_SCRIPT], {
      env: { ...process.env, MFS_BENCH_MIB: String(mib) },
      maxBuffer: 1 << 20,
      timeout: 30 * 60_000,
    });
    return { rows: parsePeerTable(stdout) };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message?: string };
    const rows = parsePeerTable(e.stdout ?? '');
    const why = (e.stderr ?? e.message ?? '').trim().split('\n').slice(-2).join(' ');
    return { rows: [...rows, { name: `${PEER_PREFIX}run failed`, mbPerS: undefined, vs: '', target: '', cpuSPerGiB: undefined, note: why }] };
  }
}

/** The rows of moosefs-bench.sh's table ("phase | MB/s | CPU s/GiB | note") that carry a rate. */
export function parsePeerTable(stdout: string): DataRow[] {
  const rows: DataRow[] = [];
  for (const line of stdout.split('\n')) {
    const cells = line.split(' | ').map((c) => c.trim());
    if (cells.length < 4) continue;
    const [phase, rate, cpu, ...rest] = cells as [string, string, string, ...string[]];
    const mbPerS = Number(rate);
    if (rate === '' || !Number.isFinite(mbPerS)) continue; // the header, or a row without a rate
    const note = rest.join(' | ');
    const rss = /mfsmount peak RSS (\d+) MB/.exec(note);
    rows.push({
      name: `${PEER_PREFIX}${phase}`,
      mbPerS,
      vs: '',
      target: '',
      cpuSPerGiB: Number.isFinite(Number(cpu)) ? Number(cpu) : undefined,
      ...(rss ? { peakRssBytes: Number(rss[1]) * 1e6 } : {}),
      note,
    });
  }
  return rows;
}

function onPath(command: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin']);
  return dirs.some((d) => d !== '' && existsSync(join(d, command)));
}
