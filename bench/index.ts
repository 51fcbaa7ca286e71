// `npm run bench [-- name...]`: runs the named benchmarks (all by default) and prints a table
// each, with every figure beside a yardstick measured in the same run. DFS_BENCH_MIB=N shrinks
// the data benchmarks (default 1024 MiB) for a quick look.
// fsync holds a libuv pool thread for milliseconds; the default pool of 4 would cap every
// 8-in-flight figure below, for dfs and for the yardsticks alike. Read at the pool's first use.
process.env.UV_THREADPOOL_SIZE ??= '16';
import { runChunkerBench } from './chunker.ts';
import { runChunkBench } from './chunk.ts';
import { runDataBench } from './data.ts';
import { runMasterBench } from './master.ts';
import { runNetBench } from './net.ts';
import { runRaftBench } from './raft.ts';
import { runRepairBench } from './repair.ts';
import { runStoreBench } from './store.ts';

const benches: Record<string, () => Promise<void>> = {
  chunker: runChunkerBench,
  store: runStoreBench,
  raft: runRaftBench,
  net: runNetBench,
  master: runMasterBench,
  chunk: runChunkBench,
  data: runDataBench,
  repair: runRepairBench,
};

const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in benches)) {
    console.error(`unknown benchmark "${name}"; known: ${Object.keys(benches).join(', ')}`);
    process.exitCode = 2;
  }
}
if (!process.exitCode) {
  console.log(`# dfs benchmarks — node ${process.version}, ${new Date().toISOString()}`);
  for (const [name, run] of Object.entries(benches)) {
    if (wanted.length === 0 || wanted.includes(name)) await run();
  }
}
