import { execFile, spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { formatTable } from '../src/cli/format.ts';
import { LocalCluster } from '../src/cluster/index.ts';
import { SERVER_V8_FLAGS } from '../src/cli/v8-flags.ts';

const BIN = new URL('../bin/dfs.js', import.meta.url).pathname;
const SINK = new URL('./support/raw-sink.ts', import.meta.url).pathname;
const SOURCE = new URL('./support/raw-source.ts', import.meta.url).pathname;
const run = promisify(execFile);

async function randomFile(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path);
  const block = new Uint8Array(4 * 1024 * 1024);
  for (let written = 0; written < bytes; written += block.length) {
    randomFillSync(block);
    if (!out.write(block.subarray(0, Math.min(block.length, bytes - written)))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
}

/**
 * One raw libp2p stream between two processes: the transport's limit on this machine. Both ends
 * run with `v8Flags`, so the yardstick can be measured with V8's defaults and with the settings
 * dfs's servers run with (src/cli/v8-flags.ts), which move bytes faster.
 */
async function rawStreamMBps(bytes: number, v8Flags: readonly string[]): Promise<number> {
  const sink = spawn(process.execPath, [...v8Flags, SINK], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [line] = (await once(createInterface({ input: sink.stdout! }), 'line')) as [string];
    const { addr } = JSON.parse(line) as { addr: string };
    const { stdout } = await run(process.execPath, [...v8Flags, SOURCE, addr, String(bytes)]);
    return (JSON.parse(stdout) as { mbPerS: number }).mbPerS;
  } finally {
    sink.kill('SIGTERM');
  }
}

interface CliFigures {
  ms: number;
  peakRssBytes: number;
}

/** Peak RSS in MB (10^6 bytes, the unit of the target), with MiB beside it. */
function rssMB(figures: CliFigures): string {
  return `${(figures.peakRssBytes / 1e6).toFixed(0)} MB (${(figures.peakRssBytes / 2 ** 20).toFixed(0)} MiB)`;
}

async function dfsJson(cluster: string, ...args: string[]): Promise<CliFigures> {
  const { stdout } = await run(process.execPath, [BIN, ...args, '--json', '--cluster', cluster], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as CliFigures;
}

/**
 * The data path on this machine, in one run: 3 masters + 5 storage nodes (separate processes),
 * `dfs put` (RF 3) and `dfs get` of a random file as a user runs them (separate client process),
 * beside a raw libp2p stream between two processes; and the client's peak RSS, which must not
 * grow with the file. DFS_BENCH_MIB sets the file size (default 1024), DFS_BENCH_RSS_MIB the
 * size of the larger file used only to show RSS stays flat (default 0 = skip).
 */
export async function runDataBench(): Promise<void> {
  const mib = Number(process.env.DFS_BENCH_MIB ?? 1024);
  const bytes = mib * 1024 * 1024;
  const dir = await mkdtemp(join(tmpdir(), 'dfs-bench-data-'));
  const cluster = new LocalCluster({ dir: join(dir, 'cluster'), nodes: 5 });
  try {
    const file = join(dir, 'file.bin');
    await randomFile(file, bytes);
    const rawDefault = await rawStreamMBps(bytes, []);
    const raw = await rawStreamMBps(bytes, SERVER_V8_FLAGS);
    await cluster.start();
    const put = await dfsJson(cluster.dir, 'put', file, '/bench/file.bin');
    const get = await dfsJson(cluster.dir, 'get', '/bench/file.bin', join(dir, 'back.bin'));
    const vsRaw = (mbPerS: number) => `${(mbPerS / raw).toFixed(2)}x raw (${(mbPerS / rawDefault).toFixed(2)}x defaults)`;
    const rows = [
      ['raw libp2p stream, 2 processes, V8 defaults', rawDefault.toFixed(0), '', '', 'transport limit with node\'s defaults'],
      ['raw libp2p stream, 2 processes, dfs V8 flags', raw.toFixed(0), `${(raw / rawDefault).toFixed(2)}x defaults`, '', 'the yardstick: same settings as dfs servers'],
      ['dfs put (RF 3, pipeline)', (bytes / 1e6 / (put.ms / 1000)).toFixed(0), vsRaw(bytes / 1e6 / (put.ms / 1000)), '>= 0.4x', `client peak RSS ${rssMB(put)}`],
      ['dfs get (verified)', (bytes / 1e6 / (get.ms / 1000)).toFixed(0), vsRaw(bytes / 1e6 / (get.ms / 1000)), '>= 0.8x', `client peak RSS ${rssMB(get)}`],
    ];
    const rssMib = Number(process.env.DFS_BENCH_RSS_MIB ?? 0);
    if (rssMib > 0) {
      const big = join(dir, 'big.bin');
      await rm(join(dir, 'back.bin'), { force: true });
      await randomFile(big, rssMib * 1024 * 1024);
      const bigPut = await dfsJson(cluster.dir, 'put', big, '/bench/big.bin');
      rows.push([`dfs put of ${rssMib} MiB`, (rssMib * 1.048576 / (bigPut.ms / 1000)).toFixed(0), '', 'RSS <= 150 MB', `client peak RSS ${rssMB(bigPut)}`]);
      await rm(big);
      const bigGet = await dfsJson(cluster.dir, 'get', '/bench/big.bin', join(dir, 'big-back.bin'));
      rows.push([`dfs get of ${rssMib} MiB`, (rssMib * 1.048576 / (bigGet.ms / 1000)).toFixed(0), '', 'RSS <= 150 MB', `client peak RSS ${rssMB(bigGet)}`]);
    }
    console.log(`\n## data path: ${mib} MiB random file, 3 masters + 5 nodes + client as separate processes on this machine\n`);
    process.stdout.write(formatTable(['benchmark', 'MB/s', 'vs (same run)', 'target', 'note'], rows, new Set([1])));
  } finally {
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
