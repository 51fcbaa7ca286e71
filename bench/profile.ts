// `node bench/profile.ts [mib] [outDir]`: CPU profiles (node --cpu-prof) of the data path, then a
// summary by category (bench/support/profile-summary.ts). Phases, each on its own profiles:
//   put/  the client of `dfs put`, and every master and node while the put runs
//   get/  the client of `dfs get`, and every master and node while it runs (a restart of the
//         same cluster: start-up is in the servers' profiles, the put is not)
// A server's profile is written when it exits (SIGTERM), so each phase stops the cluster.
// Sampling costs a few percent of CPU: compare shares, not the bench's absolute figures.
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { LocalCluster } from '../src/cluster/index.ts';
import { randomFile } from './harness.ts';
import { printSummary, summarise } from './support/profile-summary.ts';

const run = promisify(execFile);
const BIN = new URL('../bin/dfs.js', import.meta.url).pathname;
const mib = Number(process.argv[2] ?? 256);
const outDir = process.argv[3] ?? join(tmpdir(), `dfs-profile-${Date.now()}`);
const bytes = mib * 1024 * 1024;
const work = await mkdtemp(join(tmpdir(), 'dfs-profile-data-'));

/** One phase: cluster started with profiling into `dir/cluster`, the client profiled into `dir/client`. */
async function phase(name: string, cluster: LocalCluster, args: string[]): Promise<void> {
  const dir = join(outDir, name);
  mkdirSync(join(dir, 'cluster'), { recursive: true });
  mkdirSync(join(dir, 'client'), { recursive: true });
  process.env.DFS_NODE_ARGS = `--cpu-prof --cpu-prof-dir=${join(dir, 'cluster')}`;
  await cluster.start();
  const names = Object.fromEntries(Object.entries(cluster.pids()).map(([n, pid]) => [pid, n]));
  const load = loadavg()[0]!.toFixed(2);
  // Every metadata request names a user: the cluster's admin (a login made before the clock starts).
  const env = { ...process.env, DFS_TOKEN: await cluster.adminToken() };
  const started = performance.now();
  const fromUs = Number(process.hrtime.bigint() / 1000n);
  const { stdout } = await run(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'client')}`, BIN, ...args, '--json', '--cluster', cluster.dir], { env });
  const ms = performance.now() - started;
  const toUs = Number(process.hrtime.bigint() / 1000n);
  await cluster.stop();
  const figures = JSON.parse(stdout) as { ms: number; cpuMs: number; peakRssBytes: number };
  console.log(`\n# ${name}: ${mib} MiB in ${figures.ms} ms (${(bytes / 1e6 / (figures.ms / 1000)).toFixed(0)} MB/s, profiled), client CPU ${(figures.cpuMs / 1000).toFixed(2)} s, peak RSS ${(figures.peakRssBytes / 1e6).toFixed(0)} MB; load average ${load} before, ${loadavg()[0]!.toFixed(2)} after; wall ${ms.toFixed(0)} ms`);
  const files = (sub: string) => readdirSync(join(dir, sub)).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, sub, f));
  printSummary(`${name}: client`, summarise(files('client')));
  const byRole = new Map<string, string[]>();
  for (const f of files('cluster')) {
    const pid = /CPU\.\d+\.\d+\.(\d+)\./.exec(f)?.[1] ?? '';
    // Profile file names carry the pid; a node re-execs itself (same pid) with the server flags.
    const role = (names[pid] ?? '?').startsWith('m') ? 'masters' : 'nodes';
    byRole.set(role, [...(byRole.get(role) ?? []), f]);
  }
  // Only while the client command ran: the servers' start-up (module loading) is left out.
  for (const [role, list] of byRole) printSummary(`${name}: ${role} (${list.length} processes, while the command ran)`, summarise(list, [fromUs, toUs]));
}

try {
  const file = join(work, 'file.bin');
  await randomFile(file, bytes);
  const cluster = new LocalCluster({ dir: join(work, 'cluster'), nodes: 5 });
  await phase('put', cluster, ['put', file, '/p/file.bin']);
  await phase('get', cluster, ['get', '/p/file.bin', join(work, 'back.bin')]);
  console.log(`\nprofiles in ${outDir}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
