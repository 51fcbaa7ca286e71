import { execFile } from 'node:child_process';
import { chmod, chown, lstat, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { MetaClient } from '../../src/client/index.ts';
import type { LocalCluster } from '../../src/cluster/index.ts';
import type { NodeView, WriteCommand } from '../../src/meta/index.ts';

const run = promisify(execFile);
const BIN = fileURLToPath(new URL('../../bin/dfs.js', import.meta.url));
export const AS_UID = fileURLToPath(new URL('./as-uid.ts', import.meta.url));
/** The run directory's name starts with this; orphans of a dead harness are found by it. */
export const RUN_DIR_PREFIX = 'dfs-chaos-';
export const HARNESS_PID_FILE = 'harness.pid';

/** Which of the timing and GC flags `dfs master start` takes in this tree. */
export async function masterFlags(): Promise<Set<string>> {
  const { stdout } = await run(process.execPath, [BIN, 'master', '--help']).catch(() => ({ stdout: '' }));
  return new Set([...stdout.matchAll(/--[a-z-]+/g)].map((m) => m[0]));
}

/** The uid (and the one gid) each process runs as when the network is partitioned. */
export function uidPlan(names: readonly string[]): { uids: Record<string, number>; gid: number } {
  // A block of uids of our own, apart from other runs on the machine (ports keep them apart too).
  const base = 40_000 + (process.pid % 1_000) * 16;
  return { uids: Object.fromEntries(names.map((n, i) => [n, base + 1 + i])), gid: base };
}

/**
 * Makes the cluster's files usable by processes running as their own uids: each process's
 * directory is its own; the directories above it and the swarm key are readable by the group.
 */
export async function handOver(cluster: LocalCluster, uids: Record<string, number>, gid: number, runDir: string): Promise<void> {
  const spec = cluster.spec;
  for (const p of [...spec.masters, ...(spec.nodes ?? [])]) await chownTree(p.dir, uids[p.name]!, gid);
  for (const dir of new Set([runDir, cluster.dir, ...spec.masters.map((m) => dirname(m.dir)), ...(spec.nodes ?? []).map((n) => dirname(n.dir))])) {
    await chown(dir, 0, gid);
    await chmod(dir, 0o750);
  }
  const key = cluster.swarmKeyPath;
  if (key) {
    await chown(key, 0, gid);
    await chmod(key, 0o640);
  }
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  const s = await lstat(path);
  await chown(path, uid, gid);
  if (s.isDirectory()) for (const name of await readdir(path)) await chownTree(join(path, name), uid, gid);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The run directory a path lies in, if it lies in one. */
function runDirOf(path: string): string | undefined {
  const at = path.indexOf(`/${RUN_DIR_PREFIX}`);
  if (at < 0) return undefined;
  const end = path.indexOf('/', at + 1);
  return end < 0 ? path : path.slice(0, end);
}

async function harnessAlive(runDir: string): Promise<boolean> {
  const pid = Number(await readFile(join(runDir, HARNESS_PID_FILE), 'utf8').catch(() => ''));
  return Number.isInteger(pid) && pid > 0 && alive(pid);
}

/**
 * What an earlier run left when it was killed before it could clean up: its cluster processes
 * (found by their --dir inside a run directory whose harness is gone) and its small disks.
 * Returns what was done, one line each.
 */
export async function removeOrphans(): Promise<string[]> {
  const done: string[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (!cmdline.some((a) => a.endsWith('bin/dfs.js'))) continue;
    const dir = cmdline[cmdline.indexOf('--dir') + 1];
    const runDir = dir && cmdline.includes('--dir') ? runDirOf(dir) : undefined;
    if (!runDir || (await harnessAlive(runDir))) continue;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
      done.push(`killed pid ${pid}, left running by a dead chaos run in ${runDir}`);
    } catch {
      // gone meanwhile
    }
  }
  const mounts = await readFile('/proc/mounts', 'utf8').catch(() => '');
  for (const line of mounts.split('\n')) {
    const [, mountPoint, type] = line.split(' ');
    const runDir = mountPoint ? runDirOf(mountPoint) : undefined;
    if (type !== 'tmpfs' || !runDir || (await harnessAlive(runDir))) continue;
    await run('umount', ['-l', mountPoint!]).catch(() => {});
    done.push(`unmounted ${mountPoint}, left by a dead chaos run`);
  }
  return done;
}

export async function markRunDir(dir: string): Promise<void> {
  await writeFile(join(dir, HARNESS_PID_FILE), `${process.pid}\n`);
}

/**
 * Admits every storage node that waits for admission (a tree whose masters keep new nodes
 * pending until `dfs node admit`), until `count` nodes are admitted or `timeoutMs` passes.
 */
export async function admitPending(meta: MetaClient, count: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const views = ((await meta.leaderRequest({ type: 'nodes' }).catch(() => [])) ?? []) as NodeView[];
    const pending = views.filter((v) => v.state === 'pending');
    for (const v of pending) await meta.write({ op: 'admitNode', nodeId: v.id } as unknown as WriteCommand).catch(() => {});
    if (views.length >= count && pending.length === 0) return;
    if (performance.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}
