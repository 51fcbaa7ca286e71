import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DfsError } from '../../errors/index.ts';
import type { CliIO } from '../io.ts';

/**
 * `dfs tour` (`npm start`): about a minute of what dfs does, on real processes in a scratch
 * directory: a local cluster, a put with progress, the nodes, a storage node killed and its chunks
 * copied back to three, the Raft leader killed and replaced, the file read back and compared, and
 * everything stopped. Each step prints the command it runs, so a user can type it again.
 */
export interface TourOptions {
  /** Size of the demo file in MiB (default 64). */
  readonly mib?: string | number;
  /** Keep the scratch directory (and say where) instead of removing it. */
  readonly keep?: boolean;
}

const BIN = new URL('../../../bin/dfs.js', import.meta.url).pathname;
const STEP_TIMEOUT_MS = 90_000;

interface ClusterFile {
  readonly masters: ReadonlyArray<{ readonly name: string }>;
  readonly pids?: Readonly<Record<string, number>>;
}

interface StatusJson {
  readonly masters: ReadonlyArray<{ readonly status?: { readonly name: string; readonly role: string; readonly term: number; readonly peerId: string } }>;
  readonly nodes: ReadonlyArray<{ readonly name: string | null; readonly id: string; readonly state: string; readonly chunks: number }>;
  readonly chunks: { readonly total: number; readonly underReplicated: number; readonly missing: number } | null;
}

export async function tourCommand(options: TourOptions, io: CliIO): Promise<void> {
  const mib = Number(options.mib ?? 64);
  if (!(Number.isInteger(mib) && mib >= 1 && mib <= 4096)) throw new DfsError('ERR_USAGE', `--mib wants a whole number of MiB from 1 to 4096, not ${String(options.mib)}`);
  const work = await mkdtemp(join(tmpdir(), 'dfs-tour-'));
  // Logins of the tour's cluster stay in the scratch directory, not in the user's config.
  const env: NodeJS.ProcessEnv = { ...process.env, DFS_CONFIG_DIR: join(work, 'config') };
  delete env.DFS_CLUSTER;
  delete env.DFS_TOKEN;
  delete env.DFS_SWARM_KEY;
  const say = (text: string) => io.stdout.write(`\n${text}\n`);
  const started = Date.now();
  let up = false;
  const dfs: Dfs = (args, show = true) => runDfs(args, work, env, io, show);
  try {
    say(`A scratch directory for this tour: ${work}`);
    say('1. Start a local cluster: 3 metadata masters (Raft) and 5 storage nodes, each a real process.');
    // Set before: a `cluster up` killed at the step timeout cannot clean up after itself.
    up = true;
    await dfs(['cluster', 'up', '--detach']);

    say(`2. Store a ${mib} MiB file. It is cut into chunks named by their BLAKE3 hash; each chunk goes to 3 nodes.`);
    const file = join(work, 'demo.bin');
    await writeRandomFile(file, mib);
    await dfs(['put', 'demo.bin', '/demo.bin']);
    await dfs(['ls', '-l', '/']);

    say('3. The storage nodes, as the Raft leader sees them.');
    await dfs(['nodes']);

    const victim = await nodeWithChunks(dfs);
    say(`4. Kill storage node ${victim.name} (kill -9): the leader notices it is silent, declares it dead, and copies its chunks to other nodes.`);
    killByName(work, victim.name, await readClusterFile(work), io);
    const killedAt = Date.now();
    await waitFor('the dead node\'s chunks to be copied back to 3 nodes', io, async () => {
      const s = await statusJson(dfs);
      const node = s.nodes.find((n) => n.name === victim.name);
      return node?.state === 'dead' && s.chunks !== null && s.chunks.underReplicated === 0 && s.chunks.missing === 0;
    });
    io.stdout.write(`   ${victim.name} declared dead and every chunk back at 3 copies ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill\n`);
    await dfs(['status']);

    const leader = await leaderName(dfs);
    say(`5. Kill the Raft leader, ${leader} (kill -9): the other two masters elect a new one.`);
    killByName(work, leader, await readClusterFile(work), io);
    const leaderKilledAt = Date.now();
    let next = '';
    await waitFor('a new leader', io, async () => {
      next = await leaderName(dfs).catch(() => '');
      return next !== '' && next !== leader;
    });
    io.stdout.write(`   ${next} leads ${((Date.now() - leaderKilledAt) / 1000).toFixed(1)} s after the kill\n`);

    say('6. Read the file back through the new leader and compare it with the original.');
    await dfs(['get', '/demo.bin', 'back.bin']);
    const [a, b] = await Promise.all([sha256(file), sha256(join(work, 'back.bin'))]);
    if (a !== b) throw new DfsError('ERR_CHUNK_CORRUPT', `the file read back differs from the original (${a} vs ${b})`);
    io.stdout.write(`   identical: sha256 ${a}\n`);

    say('7. Stop everything.');
    await dfs(['cluster', 'down']);
    up = false;
    say(`Done in ${((Date.now() - started) / 1000).toFixed(0)} s. Next: "npx dfs cluster up" in a directory of your own, then "npx dfs --help".`);
  } finally {
    if (up) await runDfs(['cluster', 'down'], work, env, io, false).catch(() => {});
    if (options.keep) io.stdout.write(`(kept ${work})\n`);
    else await rm(work, { recursive: true, force: true });
  }
}

type Dfs = (args: string[], show?: boolean) => Promise<string>;

/**
 * Runs one dfs command in `cwd`, printing it first and its output as it comes. Resolves with its
 * stdout; a failure rejects, except for `status`, which exits 1 while anything is degraded (what
 * the tour waits through) and whose JSON is what counts.
 */
function runDfs(args: string[], cwd: string, env: NodeJS.ProcessEnv, io: CliIO, show: boolean): Promise<string> {
  if (show) io.stdout.write(`$ npx dfs ${args.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', show ? 'inherit' : 'pipe'] });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (show) io.stdout.write(d);
    });
    child.stderr?.resume();
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0 || (args[0] === 'status' && code === 1 && out !== '')) resolve(out);
      else reject(new DfsError('ERR_INTERNAL', `"dfs ${args.join(' ')}" failed (exit ${String(code)}): the tour cannot go on`));
    });
  });
}

/** One MiB at a time: --mib goes up to 4096, which must not sit in memory (twice) at once. */
async function writeRandomFile(path: string, mib: number): Promise<void> {
  const file = await open(path, 'wx');
  try {
    for (let i = 0; i < mib; i++) await file.write(randomBytes(1024 * 1024));
  } finally {
    await file.close();
  }
}

function sha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

async function statusJson(dfs: Dfs): Promise<StatusJson> {
  return JSON.parse(await dfs(['status', '--json'], false)) as StatusJson;
}

async function leaderName(dfs: Dfs): Promise<string> {
  const out = await dfs(['status', '--json'], false).catch(() => '');
  if (!out) return '';
  const s = JSON.parse(out) as StatusJson;
  return s.masters.find((m) => m.status?.role === 'leader')?.status?.name ?? '';
}

async function nodeWithChunks(dfs: Dfs): Promise<{ name: string }> {
  const s = await statusJson(dfs);
  const node = [...s.nodes].sort((x, y) => y.chunks - x.chunks)[0];
  if (!node?.name) throw new DfsError('ERR_INTERNAL', 'no storage node holds chunks: the tour cannot go on');
  return { name: node.name };
}

async function readClusterFile(work: string): Promise<ClusterFile> {
  return JSON.parse(await readFile(join(work, '.dfs-local', 'cluster.json'), 'utf8')) as ClusterFile;
}

function killByName(work: string, name: string, cluster: ClusterFile, io: CliIO): void {
  const pid = cluster.pids?.[name];
  if (pid === undefined) throw new DfsError('ERR_INTERNAL', `no pid for ${name} in ${join(work, '.dfs-local', 'cluster.json')}`);
  io.stdout.write(`$ kill -9 ${pid}    # ${name}, pid from .dfs-local/cluster.json\n`);
  process.kill(pid, 'SIGKILL');
}

/** Polls `check` every half second (printing a dot a second) until true or STEP_TIMEOUT_MS. */
async function waitFor(what: string, io: CliIO, check: () => Promise<boolean>): Promise<void> {
  io.stdout.write(`   waiting for ${what} `);
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let lastDot = Date.now();
  for (;;) {
    if (await check().catch(() => false)) break;
    if (Date.now() > deadline) {
      io.stdout.write('\n');
      throw new DfsError('ERR_TIMEOUT', `waited ${STEP_TIMEOUT_MS / 1000} s for ${what}`);
    }
    if (Date.now() - lastDot >= 1000) {
      io.stdout.write('.');
      lastDot = Date.now();
    }
    await sleep(500);
  }
  io.stdout.write('\n');
}
