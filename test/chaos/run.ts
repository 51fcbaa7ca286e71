/**
 * npm run chaos -- [--seed S] [--duration 3m] [--nodes 6] [--workers 4] [--put-rate 6] [--dir DIR]
 *                  [--keep] [--no-partitions] [--no-small-disk] [--self-test]
 *
 * A real cluster (3 masters, storage nodes, RF 3) under a workload, and a seeded schedule of
 * faults: kills and restarts (the leader on purpose), pauses, a kill in a put's pipeline, a kill
 * during repair, two nodes at once, corrupted and deleted chunk files, a full disk, network
 * partitions. Then the faults heal and the checks run (see checks.ts). The seed is printed
 * first and replays the same schedule; the figures come last. Exit code 1 when a check fails,
 * 2 when the harness itself fails.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadBlake3 } from '../../src/chunker/index.ts';
import type { MetaClient } from '../../src/client/index.ts';
import { LocalCluster } from '../../src/cluster/index.ts';
import { DEFAULT_REPLICATION_FACTOR } from '../../src/meta/index.ts';
import { Checks } from './checks.ts';
import { ContentCatalog } from './content.ts';
import { inspectChunk, SmallDisk } from './disk.ts';
import { FaultRunner } from './faults.ts';
import { Firewall, type FirewallTool } from './firewall.ts';
import { History } from './history.ts';
import { Monitor } from './monitor.ts';
import { Procs } from './procs.ts';
import { describeStep, makeSchedule } from './schedule.ts';
import { sabotage } from './selftest.ts';
import { admitPending, AS_UID, handOver, markRunDir, masterFlags, removeOrphans, RUN_DIR_PREFIX, uidPlan } from './setup.ts';
import { groupPaths, Workload } from './workload.ts';

interface Options {
  seed: number;
  durationMs: number;
  durationText: string;
  nodes: number;
  workers: number;
  dir: string | undefined;
  keep: boolean;
  partitions: boolean;
  smallDisk: boolean;
  selfTest: boolean;
  putMiBPerSec: number;
}

const USAGE = 'usage: npm run chaos -- [--seed S] [--duration 3m] [--nodes 6] [--workers 4] [--put-rate MiB/s] [--dir DIR] [--keep] [--no-partitions] [--no-small-disk] [--self-test]';

function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`--duration takes a time such as 90s, 3m or 1h, not "${text}"`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { seed: (Math.random() * 2 ** 32) >>> 0, durationMs: 180_000, durationText: '3m', nodes: 6, workers: 4, dir: undefined, keep: false, partitions: true, smallDisk: true, selfTest: false, putMiBPerSec: 6 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    const int = (min: number) => {
      const v = value();
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < min) throw new Error(`${flag} takes an integer of at least ${min}, not "${v}"`);
      return n;
    };
    if (flag === '--seed') o.seed = int(0) >>> 0;
    else if (flag === '--duration') {
      o.durationText = value();
      o.durationMs = parseDuration(o.durationText);
    } else if (flag === '--nodes') o.nodes = int(5);
    else if (flag === '--workers') o.workers = int(1);
    else if (flag === '--dir') o.dir = resolve(value());
    else if (flag === '--keep') o.keep = true;
    else if (flag === '--no-partitions') o.partitions = false;
    else if (flag === '--no-small-disk') o.smallDisk = false;
    else if (flag === '--self-test') o.selfTest = true;
    else if (flag === '--put-rate') o.putMiBPerSec = int(1);
    else if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${flag}\n${USAGE}`);
  }
  return o;
}

function replayCommand(o: Options): string {
  const extra = [o.nodes !== 6 ? `--nodes ${o.nodes}` : '', o.workers !== 4 ? `--workers ${o.workers}` : '', o.putMiBPerSec !== 6 ? `--put-rate ${o.putMiBPerSec}` : '', o.partitions ? '' : '--no-partitions', o.smallDisk ? '' : '--no-small-disk', o.selfTest ? '--self-test' : ''].filter(Boolean);
  return `npm run chaos -- --seed ${o.seed} --duration ${o.durationText}${extra.length ? ` ${extra.join(' ')}` : ''}`;
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * Bound on everything after the load phase: the workers' last operations, healing, waiting for
 * repair, the checks (each wait takes what is left). A passing 3-minute run here takes about
 * 3 min 20 s in all (setup 6-30 s, checks 5-15 s); with setup's own bound (~40 s) and the
 * watchdog below, even a failing one ends within 5 minutes.
 */
const CHECK_BUDGET_MS = 60_000;
/** Past the budget by this much, the harness gives up (exit 2) rather than hang a CI job. */
const WATCHDOG_GRACE_MS = 20_000;
/** The small disk (one node's data directory) when the harness runs as root. */
const SMALL_DISK_BYTES = 192 * 2 ** 20;

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  console.log(`seed: ${o.seed}`);
  console.log(`replay: ${replayCommand(o)}`);
  const runStart = performance.now();
  for (const line of await removeOrphans()) console.log(`[chaos] ${line}`);

  const dir = o.dir ?? (await mkdtemp(join(tmpdir(), `${RUN_DIR_PREFIX}${o.seed}-`)));
  if (o.dir) {
    if (!dir.split('/').some((part) => part.startsWith(RUN_DIR_PREFIX))) throw new Error(`--dir must name a directory whose name starts with ${RUN_DIR_PREFIX} (the harness finds a dead run's processes by it)`);
    await mkdir(dir, { recursive: true });
  }
  await markRunDir(dir);
  const history = new History(join(dir, 'history.jsonl'));
  console.log(`[chaos] run directory ${dir}; history in ${history.file}`);

  // Timing flags the masters take in this tree (faster detection when they exist).
  const flags = await masterFlags();
  const fast = flags.has('--suspect-after') && flags.has('--dead-after');
  const suspectAfterMs = fast ? 1_500 : 3_000;
  const deadAfterMs = fast ? 5_000 : 10_000;
  const masterArgs = [
    ...(fast ? ['--suspect-after', String(suspectAfterMs), '--dead-after', String(deadAfterMs)] : []),
    ...(flags.has('--gc-grace-ms') ? ['--gc-grace-ms', '20000'] : []),
    ...(flags.has('--snapshot-every') ? ['--snapshot-every', '500'] : []),
  ];
  console.log(`[chaos] masters: ${masterArgs.join(' ') || 'default flags'}${fast ? '' : ' (no --suspect-after/--dead-after in this tree: node failure detection at its defaults, 3 s / 10 s)'}`);

  // Partitions need root, a firewall tool and a uid per process.
  let firewallTool: FirewallTool | undefined;
  if (o.partitions) {
    const found = await Firewall.detect();
    if ('tool' in found) firewallTool = found.tool;
    else console.log(`[chaos] network partitions SKIPPED: ${found.reason}`);
  } else console.log('[chaos] network partitions SKIPPED: --no-partitions');
  const root = process.getuid?.() === 0;
  if (!o.smallDisk) console.log('[chaos] full-disk faults SKIPPED: --no-small-disk');
  else if (!root) console.log('[chaos] full-disk faults SKIPPED: not running as root (they mount a small tmpfs)');

  const cluster = new LocalCluster({ dir: join(dir, 'cluster'), masters: 3, nodes: o.nodes, masterArgs, readyTimeoutMs: 30_000 });
  let firewall: Firewall | undefined;
  let smallDisk: SmallDisk | undefined;
  let procs: Procs | undefined;
  let cleaned = false;
  const cleanupSync = () => {
    if (cleaned) return;
    for (const pid of Object.values(cluster.pids())) {
      try {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    firewall?.destroySync();
    smallDisk?.unmountSync();
  };
  process.on('exit', cleanupSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.log(`[chaos] ${signal}: stopping the cluster and removing rules and mounts; the run directory ${dir} is kept`);
      cleanupSync();
      cleaned = true;
      process.exit(130);
    });
  }

  const spec = await cluster.init();
  const names = [...spec.masters.map((m) => m.name), ...(spec.nodes ?? []).map((n) => n.name)];
  const plan = firewallTool ? uidPlan(names) : undefined;
  if (plan) {
    await handOver(cluster, plan.uids, plan.gid, dir);
    process.env.DFS_CHAOS_UIDS = JSON.stringify(plan.uids);
    process.env.DFS_CHAOS_GID = String(plan.gid);
    process.env.DFS_NODE_ARGS = `${process.env.DFS_NODE_ARGS ?? ''} --import=${AS_UID}`.trim();
    const ports = new Map(names.map((n) => [n, [...spec.masters, ...(spec.nodes ?? [])].find((p) => p.name === n)!.port]));
    firewall = await Firewall.install(firewallTool!, Object.values(plan.uids), { uidOf: (n) => plan.uids[n]!, portOf: (n) => ports.get(n)! });
    console.log(`[chaos] network partitions through ${firewallTool}: each process runs as its own uid (${Object.entries(plan.uids).map(([n, u]) => `${n} ${u}`).join(', ')})`);
  }
  const smallNode = spec.nodes!.at(-1)!;
  if (o.smallDisk && root) {
    smallDisk = await SmallDisk.mount(smallNode.dir, SMALL_DISK_BYTES, plan?.uids[smallNode.name] ?? 0, plan?.gid ?? 0);
    console.log(`[chaos] ${smallNode.name}'s data directory is a ${mib(SMALL_DISK_BYTES)} tmpfs (filled up on schedule)`);
  }

  let exitCode = 2;
  let peer: Awaited<ReturnType<LocalCluster['createClientPeer']>> | undefined;
  try {
    const startedAt = performance.now();
    await Promise.all(spec.masters.map((m) => cluster.startMaster(m.name)));
    await cluster.withClient((c) => c.waitForLeader(30_000));
    await Promise.all(cluster.nodeNames.map((n) => cluster.startNode(n)));
    await cluster.withClient((c) => admitPending(c, o.nodes, 30_000));
    await cluster.waitForLiveNodes(o.nodes, 30_000);
    console.log(`[chaos] cluster up in ${secs(performance.now() - startedAt)}: 3 masters, ${o.nodes} nodes, RF ${DEFAULT_REPLICATION_FACTOR}`);

    peer = await cluster.createClientPeer();
    const token = await cluster.adminToken();
    const blake3 = await loadBlake3();
    const catalog = new ContentCatalog(blake3, o.seed);
    procs = new Procs(cluster, history);
    const groups = groupPaths(12);
    let inspectMeta: MetaClient | undefined;
    const inspect = (id: string) => inspectChunk(id, procs!, inspectMeta!, blake3);
    const workload = new Workload({ seed: o.seed, workers: o.workers, peer, masters: cluster.masterAddrs, blake3, catalog, history, groups, requestTimeoutMs: 15_000, impatientWorkers: Math.min(2, o.workers - 1), inspect, putBytesPerSec: o.putMiBPerSec * 2 ** 20, runDir: dir, token });
    const meta = workload.meta({ timeoutMs: 10_000 });
    inspectMeta = workload.meta({ timeoutMs: 5_000 });
    for (const g of groups) await meta.write({ op: 'mkdir', path: g[0]!.slice(0, g[0]!.lastIndexOf('/')), parents: true });
    const monitor = new Monitor(workload.meta({ timeoutMs: 3_000 }), procs, history);

    const schedule = makeSchedule({ seed: o.seed, durationMs: o.durationMs, nodeNames: cluster.nodeNames, smallDiskNode: smallNode.name, suspectAfterMs, deadAfterMs });
    await writeFile(join(dir, 'schedule.json'), JSON.stringify(schedule, null, 1));
    console.log(`[chaos] schedule: ${schedule.length} faults over ${secs(o.durationMs)} (schedule.json)`);
    for (const s of schedule) console.log(`[chaos]   ${describeStep(s)}`);

    // The load phase: workload and faults together.
    const loadStartMs = history.now();
    history.loadStartMs = loadStartMs;
    history.event('load-start', { seed: o.seed, durationMs: o.durationMs, nodes: o.nodes, workers: o.workers, masterArgs });
    procs.watch();
    monitor.start();
    workload.start();
    const faults = new FaultRunner({ procs, firewall, smallDisk, monitor, workload, catalog, history, meta, groups, deadAfterMs, loadStartMs });
    const faultsDone = faults.run(schedule);
    await sleep(o.durationMs);
    console.log(`[chaos] load phase over after ${secs(history.now() - loadStartMs)}: healing`);
    faults.stop();
    // Longer soaks have longer histories: their checks get more time.
    const extraMs = Math.max(0, o.durationMs - 180_000) / 10;
    const checkDeadline = performance.now() + CHECK_BUDGET_MS + extraMs;
    const watchdog = setTimeout(() => {
      console.log(`[chaos] WATCHDOG: the checks ran ${secs(CHECK_BUDGET_MS + extraMs + WATCHDOG_GRACE_MS)} past the load phase; giving up (the cluster is killed)`);
      console.log(`replay with: ${replayCommand(o)}   (run directory kept: ${dir})`);
      process.exit(2);
    }, CHECK_BUDGET_MS + extraMs + WATCHDOG_GRACE_MS);
    watchdog.unref();
    await faultsDone;
    const workersDone = await Promise.race([workload.stop().then(() => true), sleep(30_000).then(() => false)]);
    if (!workersDone) console.log('[chaos] the workers did not stop within 30 s');
    await procs.healAll();
    await firewall?.healAll();
    await smallDisk?.free();
    history.event('healed', {});
    console.log(`[chaos] healed at ${secs(history.now() - loadStartMs)}: every process running, no partition, disk freed`);

    const sabotaged = o.selfTest ? await sabotage({ procs, meta, peer, blake3, catalog, paths: groups.flat() }) : undefined;
    const checks = new Checks({ procs, meta, monitor, workload, history, catalog, groups, blake3, replicationFactor: DEFAULT_REPLICATION_FACTOR, damaged: faults.damaged, deadline: checkDeadline, linearizabilityBudgetMs: 16_000 + extraMs / 2 });
    if (!workersDone) checks.results.push({ name: 'workload stopped', verdict: 'fail', detail: 'workers still running 30 s after the load phase' });
    await checks.converged();
    await checks.nodesLive();
    await checks.chunksAtRf();
    await checks.readBackAll();
    await checks.namespace();
    checks.linearizable();
    await checks.diskAudit();
    await procs.stopWatching();
    checks.exits();
    monitor.stop();
    await checks.logs();
    for (const n of faults.notes) console.log(`[note] ${n}`);
    history.event('checks', { results: checks.results });

    // Verdict, then the figures (last).
    let failed = checks.results.filter((r) => r.verdict === 'fail');
    if (sabotaged) {
      // The checks must have caught what the self-test broke; then the run passes.
      const caught =
        (!sabotaged.lost || checks.readBack.lost.some((l) => l.path === sabotaged.lost)) &&
        (!sabotaged.vanished || checks.readBack.lost.some((l) => l.path === sabotaged.vanished)) &&
        (!sabotaged.cameBack || checks.readBack.cameBack.some((c) => c.path === sabotaged.cameBack));
      console.log(`[self-test] ${caught ? 'the checks caught' : 'the checks MISSED'} what was broken: ${JSON.stringify(sabotaged)}`);
      failed = caught ? [] : [{ name: 'self-test', verdict: 'fail', detail: 'the checks missed the sabotage' }];
    }
    console.log('');
    if (failed.length > 0) {
      console.log(`FAILED: ${failed.map((r) => r.name).join(', ')}`);
      console.log(`replay with: ${replayCommand(o)}   (run directory kept: ${dir}${o.keep ? '' : ", without the nodes' chunk files"})`);
    } else console.log(`${sabotaged ? 'PASSED: the checks caught what the self-test broke' : 'PASSED: every check'}${o.keep ? ` (run directory kept: ${dir})` : ''}`);
    const totals = workload.totals();
    const byKind = new Map<string, number>();
    for (const f of faults.injected) byKind.set(f.step.kind, (byKind.get(f.step.kind) ?? 0) + 1);
    const longest = monitor.longestRepairMs(history.now());
    const lost = new Set(checks.readBack.lost.map((l) => l.path));
    console.log('');
    console.log(`--- figures (seed ${o.seed}) ---`);
    console.log(`load phase: ${secs(o.durationMs)}; whole run: ${secs(performance.now() - runStart)}`);
    console.log(`faults injected: ${faults.injected.length}`);
    console.log(`  by kind: ${[...byKind].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
    if (faults.skipped.length > 0) console.log(`  skipped: ${faults.skipped.length} (${[...new Set(faults.skipped.map((s) => `${s.step.kind}: ${s.reason}`))].join('; ')})`);
    console.log(`  processes: ${procs.counts.kills} SIGKILLs, ${procs.counts.pauses} SIGSTOPs, ${procs.counts.restarts} restarts; leader changes seen: ${monitor.leaderChanges}; chunk files damaged: ${faults.damaged.length}`);
    const slowest = [...procs.restartTimes].sort((a, b) => b.ms - a.ms)[0];
    if (slowest) console.log(`  slowest restart: ${slowest.name} took ${secs(slowest.ms)} to be ready (at ${secs(slowest.atMs - loadStartMs)}); ${procs.restartTimes.filter((r) => r.ms > 5_000).length} of ${procs.restartTimes.length} restarts took over 5 s`);
    console.log(`operations: ${totals.all} (ok ${totals.ok}, error ${totals.error}, indeterminate ${totals.indeterminate})`);
    console.log(`  ${[...workload.tally].map(([k, t]) => `${k} ${t.ok}/${t.error}/${t.indeterminate}`).join(', ')}  (ok/error/indeterminate)`);
    if (workload.errorCodes.size > 0) console.log(`  error codes: ${[...workload.errorCodes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ')}`);
    const refusedPuts = history.ops.filter((r) => (r.op === 'put' || r.op === 'create') && r.outcome === 'error' && r.return !== null);
    const nearChange = refusedPuts.filter((r) => monitor.leaderChangeTimes.some((t) => r.return! >= t - 1_000 && r.return! <= t + 5_000)).length;
    if (refusedPuts.length > 0) console.log(`  puts refused: ${refusedPuts.length}, of which ${nearChange} within 5 s of a leader change being seen`);
    for (const [reason, n] of [...workload.failureReasons].sort((a, b) => b[1] - a[1]).slice(0, 6)) console.log(`    ${n}x ${reason}`);
    if (workload.skippedPuts.budget + workload.skippedPuts.disk > 0) console.log(`  puts turned into reads: ${workload.skippedPuts.budget} over the ${o.putMiBPerSec} MiB/s budget, ${workload.skippedPuts.disk} while the disk was low`);
    console.log(`bytes acknowledged: ${mib(workload.bytesAcked)}; bytes verified: ${mib(checks.readBack.bytesVerified)} at the end (${checks.readBack.files} files), ${mib(workload.bytesRead)} by reads during the run`);
    console.log(`longest repair: ${monitor.sawChunkHealth ? `${secs(longest.ms)}${longest.open ? ' (still open)' : ''} (${monitor.episodes.length} under-replication episodes; final wait ${secs(checks.repairWaitMs)})` : 'unknown (the leader reports no chunk health)'}`);
    console.log(`came back: ${checks.readBack.cameBack.length}`);
    console.log(`data lost: ${lost.size}`);
    exitCode = failed.length > 0 ? 1 : 0;
    meta.close();
  } catch (err) {
    console.log(`[chaos] the harness failed: ${(err as Error).stack ?? err}`);
    console.log(`replay with: ${replayCommand(o)}   (run directory kept: ${dir})`);
    exitCode = 2;
  } finally {
    await procs?.stopWatching();
    procs?.continueAll();
    await peer?.stop().catch(() => {});
    await cluster.stop(3_000).catch(() => {});
    // The small disk goes with its node's log: keep a copy of the log in the run directory.
    if (smallDisk) await copyFile(join(smallNode.dir, 'process.log'), join(dir, `${smallNode.name}-process.log`)).catch(() => {});
    cleanupSync();
    cleaned = true;
    await firewall?.destroy();
    await smallDisk?.unmount();
    await history.close();
    if (exitCode === 0 && !o.keep) await rm(dir, { recursive: true, force: true }).catch(() => {});
    else if (!o.keep) {
      // A failed run keeps its history, schedule, logs and Raft logs; the chunk files (gigabytes) go.
      for (const n of spec.nodes ?? []) await rm(join(n.dir, 'chunks'), { recursive: true, force: true }).catch(() => {});
    }
  }
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`[chaos] ${(err as Error).message ?? err}`);
    process.exit(2);
  },
);
