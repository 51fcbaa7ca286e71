// `npm run bench [-- name...]`: runs the named benchmarks (all by default) and prints a table
// each, with every figure beside a yardstick measured in the same run. DFS_BENCH_MIB=N shrinks
// the data benchmarks (default 1024 MiB) for a quick look.
// fsync holds a libuv pool thread for milliseconds; the default pool of 4 would cap every
// 8-in-flight figure below, for dfs and for the yardsticks alike. Read at the pool's first use.
process.env.UV_THREADPOOL_SIZE ??= '16';
import { runChunkerBench } from './chunker.ts';
import { runChunkBench } from './chunk.ts';
import { runChunkPoolBench } from './chunk-pool.ts';
import { runDataBench } from './data.ts';
import { runMasterBench } from './master.ts';
import { runNetBench } from './net.ts';
import { runPutInflightBench } from './put-inflight.ts';
import { runRaftBench } from './raft.ts';
import { runRepairBench } from './repair.ts';
import { runStoreBench } from './store.ts';

const benches: Record<string, () => Promise<void>> = {
  chunker: runChunkerBench,
  chunkpool: runChunkPoolBench,
  store: runStoreBench,
  raft: runRaftBench,
  net: runNetBench,
  master: runMasterBench,
  chunk: runChunkBench,
  data: runDataBench,
  inflight: runPutInflightBench,
  repair: runRepairBench,
};

const HELP = `npm run bench [-- name...]   benchmarks: all by default; --help prints this.
Environment:
  DFS_BENCH_MIB=1024        size of the data sets in MiB (1 GiB is the documented figure; 256 for a quick look)
  DFS_BENCH_SECRET=on       data: on (the cluster secret, as dfs cluster up), off (--insecure), both (the cost beside it)
  DFS_BENCH_RSS_MIB=0       data: also put/get a file this large to show the client's RSS stays flat
  DFS_BENCH_PEER=auto       data: MooseFS beside dfs (../shared/bench/moosefs-bench.sh) when installed and root; 0 skips
  DFS_BENCH_CLIENT_ARGS=    data: node flags for the dfs client process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p"
  DFS_NODE_ARGS=            node flags for every master and node process LocalCluster starts
  DFS_BENCH_INFLIGHT="1 2 3 6 12"  inflight: chunk uploads in flight to try
Run only when named: chunkpool (prototype worker-pool chunking), inflight (put rate vs chunks in flight).
Profiles: node bench/profile.ts [MiB] [dir] (client, masters and nodes of a put and a get, by category).
A/B of two builds (one process, steadier on a shared machine): node --max-semi-space-size=1 bench/pipeline-cpu.ts [MiB] [inFlight]
  (CPU s/GiB of chunk puts through a 3-node pipeline and of gets), node --max-semi-space-size=1 bench/store-stream.ts (disk path, whole vs streamed).
Rows land in bench/out/results.json (MB/s; for data also CPU s/GiB summed over all processes, client peak RSS).`;

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(HELP);
  process.exit(0);
}
const wanted = args;
for (const name of wanted) {
  if (!(name in benches)) {
    console.error(`unknown benchmark "${name}"; known: ${Object.keys(benches).join(', ')}`);
    process.exitCode = 2;
  }
}
/** Studies for issue 16, run only when named: not figures every run needs. */
const OPT_IN: ReadonlySet<string> = new Set(['chunkpool', 'inflight']);
if (!process.exitCode) {
  console.log(`# dfs benchmarks — node ${process.version}, ${new Date().toISOString()}`);
  for (const [name, run] of Object.entries(benches)) {
    if (wanted.length === 0 ? !OPT_IN.has(name) : wanted.includes(name)) await run();
  }
}
