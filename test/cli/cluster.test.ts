import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/index.ts';
import { SERVER_V8_FLAGS } from '../../src/cli/v8-flags.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const BIN = new URL('../../bin/dfs.js', import.meta.url).pathname;
const run = promisify(execFile);

/** Runs the real dfs binary in `cwd`; resolves with its output and exit code. */
async function dfs(cwd: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return dfsWithEnv({}, cwd, ...args);
}

/** dfs with `env` added to ours (less any DFS_SWARM_KEY of ours). */
async function dfsWithEnv(env: Record<string, string>, cwd: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const { DFS_SWARM_KEY: _key, ...base } = process.env;
  try {
    const r = await run(process.execPath, [BIN, ...args], { cwd, timeout: 60_000, env: { ...base, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('dfs CLI against a local cluster', () => {
  it('cluster up --detach, status, mkdir, ls, stat, mv, rm, cluster down: as a user types them', async () => {
    const cwd = await tempDir();
    const up = await dfs(cwd, 'cluster', 'up', '--detach');
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/cluster up in/);
    try {
      const status = await dfs(cwd, 'status', '--json');
      expect(status.code, status.stderr).toBe(0);
      const { masters, nodes, chunks } = JSON.parse(status.stdout) as { masters: Array<{ status?: { role: string } }>; nodes: Array<{ state: string }>; chunks: { underReplicated: number } };
      expect(nodes.every((n) => n.state === 'alive')).toBe(true);
      expect(chunks.underReplicated).toBe(0);
      expect(masters.map((m) => m.status?.role).sort()).toEqual(['follower', 'follower', 'leader']);
      expect((await dfs(cwd, 'status')).stdout).toMatch(/leader m\d/);

      expect((await dfs(cwd, 'mkdir', '-p', '/photos/2026')).code).toBe(0);
      const again = await dfs(cwd, 'mkdir', '/photos');
      expect(again.code).toBe(EXIT.failure);
      expect(again.stderr).toBe('dfs: /photos already exists [ERR_EXISTS]\n');
      expect((await dfs(cwd, 'ls', '/photos')).stdout).toBe('2026/\n');
      expect((await dfs(cwd, 'mv', '/photos/2026', '/photos/archive')).code).toBe(0);
      const listed = (await dfs(cwd, 'ls', '/photos', '--json')).stdout.trim().split('\n').map((l) => JSON.parse(l));
      expect(listed).toMatchObject([{ name: 'archive', kind: 'dir' }]);
      expect(JSON.parse((await dfs(cwd, 'stat', '/photos/archive', '--json')).stdout)).toMatchObject({ kind: 'dir', path: '/photos/archive' });
      const bad = await dfs(cwd, 'ls', 'relative/path');
      expect(bad.code).toBe(EXIT.usage);
      expect(bad.stderr).toMatch(/\[ERR_INVALID_PATH\]/);
      expect((await dfs(cwd, 'rm', '-r', '/photos')).code).toBe(0);
      expect((await dfs(cwd, 'ls', '/')).stdout).toBe('');
      const missing = await dfs(cwd, 'stat', '/nope');
      expect(missing.code).toBe(EXIT.notFound);
    } finally {
      // From a directory below: cluster down finds the cluster as every other command does.
      await mkdir(join(cwd, 'deeper', 'still'), { recursive: true });
      const down = await dfs(join(cwd, 'deeper', 'still'), 'cluster', 'down');
      expect(down.stdout).toMatch(/stopped m1, m2, m3/);
    }
    const after = await dfs(cwd, 'status');
    expect(after.code).not.toBe(0); // nothing answers any more: a clear error, not a hang
    expect(after.stderr).toMatch(/ERR_NO_QUORUM/);
  });

  it('cluster down then up again restarts every master and storage node, and stored files are still there', async () => {
    const cwd = await tempDir();
    const file = join(cwd, 'kept.bin');
    await writeFile(file, new SeededBytes(testSeed('cluster-restart')).bytes(300_000));
    expect((await dfs(cwd, 'cluster', 'up', '--detach')).code).toBe(0);
    try {
      const put = await dfs(cwd, 'put', file, '/kept.bin');
      expect(put.code, put.stderr).toBe(0);
      expect((await dfs(cwd, 'cluster', 'down')).stdout).toMatch(/stopped m1, m2, m3, n1, n2, n3, n4, n5/);
      const up = await dfs(cwd, 'cluster', 'up', '--detach');
      expect(up.code, up.stderr).toBe(0);
      const status = await dfs(cwd, 'status');
      expect(status.stdout).toMatch(/5 storage nodes/);
      const get = await dfs(cwd, 'get', '/kept.bin', join(cwd, 'back.bin'));
      expect(get.code, get.stderr).toBe(0);
      expect(await readFile(join(cwd, 'back.bin'))).toEqual(await readFile(file));

      // Masters and storage nodes replaced themselves (same pid) with a process that has the
      // server V8 flags.
      const { pids } = JSON.parse(await readFile(join(cwd, '.dfs-local', 'cluster.json'), 'utf8')) as { pids: Record<string, number> };
      expect(Object.keys(pids).sort()).toEqual(['m1', 'm2', 'm3', 'n1', 'n2', 'n3', 'n4', 'n5']);
      for (const pid of Object.values(pids)) {
        const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
        expect(argv).toEqual(expect.arrayContaining([...SERVER_V8_FLAGS]));
      }

      // An output the client cannot create: one clear line, nothing left behind.
      const nowhere = await dfs(cwd, 'get', '/kept.bin', join(cwd, 'no-such-dir', 'back.bin'));
      expect(nowhere.code).not.toBe(0);
      expect(nowhere.stderr).toMatch(/^dfs: cannot create .*no-such-dir\/back\.bin: .*ENOENT.* \[ERR_IO\]\n$/);
    } finally {
      expect((await dfs(cwd, 'cluster', 'down')).stdout).toMatch(/n5/);
    }
  });

  it('cluster up runs with a 0600 secret; a client with another key, or none, gets one clear line at once; nothing under the cluster dir is open to group or others', async () => {
    const cwd = await tempDir();
    const up = await dfs(cwd, 'cluster', 'up', '--detach', '--nodes', '3');
    expect(up.code, up.stderr).toBe(0);
    const clusterDir = join(cwd, '.dfs-local');
    try {
      expect(up.stdout).toContain(`cluster secret ${join(clusterDir, 'swarm.key')} (mode 0600`);
      expect((await stat(join(clusterDir, 'swarm.key'))).mode & 0o777).toBe(0o600);
      expect(JSON.parse(await readFile(join(clusterDir, 'dfs-client.json'), 'utf8'))).toMatchObject({ swarmKey: 'swarm.key' });

      const file = join(cwd, 'data.bin');
      await writeFile(file, new SeededBytes(testSeed('cluster-secret')).bytes(600_000));
      const put = await dfs(cwd, 'put', file, '/data.bin');
      expect(put.code, put.stderr).toBe(0);
      const get = await dfs(cwd, 'get', '/data.bin', join(cwd, 'back.bin'), '--swarm-key', join(clusterDir, 'swarm.key'));
      expect(get.code, get.stderr).toBe(0);
      expect(await readFile(join(cwd, 'back.bin'))).toEqual(await readFile(file));

      // Another key (by flag or environment) or none: the handshake fails, and the client says
      // so in one line, well before the metadata client's 15 s deadline.
      expect((await dfs(cwd, 'cluster', 'init', '--dir', join(cwd, 'other'))).code).toBe(0);
      const otherKey = join(cwd, 'other', 'swarm.key');
      const attempts: Array<[string, Promise<{ code: number; stdout: string; stderr: string; ms: number }>]> = [
        [`the swarm key ${otherKey} (--swarm-key)`, timedDfs({}, cwd, 'ls', '/', '--swarm-key', otherKey)],
        [`the swarm key ${otherKey} (DFS_SWARM_KEY)`, timedDfs({ DFS_SWARM_KEY: otherKey }, cwd, 'put', file, '/other.bin')],
        ['no secret (--insecure)', timedDfs({}, cwd, 'status', '--insecure')],
      ];
      for (const [used, attempt] of attempts) {
        const r = await attempt;
        expect(r.code, used).toBe(EXIT.failure);
        expect(r.stdout, used).toBe('');
        expect(r.stderr, used).toMatch(/^dfs: cannot connect to the cluster: the secure handshake failed with 3 of 3 masters, and none accepted it \(\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+: [^\n]*\); the cluster secret may be wrong: this client used [^\n]* \[ERR_PEER_UNREACHABLE\]\n$/);
        expect(r.stderr, used).toContain(`this client used ${used} [`);
        expect(r.ms, used).toBeLessThan(10_000);
      }
      expect((await dfs(cwd, 'ls', '/')).stdout).toBe('data.bin\n'); // nothing got in

      // Keys, identities, Raft logs and chunk stores (LevelDB files too), logs and configs.
      const open = (await walk(clusterDir)).filter((e) => (e.mode & 0o077) !== 0).map((e) => `${e.path} ${e.mode.toString(8)}`);
      expect(open).toEqual([]);
      expect((await walk(clusterDir)).some((e) => e.path.includes(join('n1', 'chunks', 'index')))).toBe(true);
    } finally {
      expect((await dfs(cwd, 'cluster', 'down')).stdout).toMatch(/n3/);
    }
  });

  it('cluster up with --masters or --nodes unlike the existing layout is refused in one line saying how to start afresh', async () => {
    const cwd = await tempDir();
    const dir = join(cwd, '.dfs-local');
    await mkdir(dir);
    // A layout as an earlier `cluster up` left it (3 masters, 5 storage nodes); nothing is started.
    const masters = [1, 2, 3].map((i) => ({ name: `m${i}`, dir: join(dir, 'masters', `m${i}`), port: 7000 + i, peerId: `12D3KooWm${i}`, addr: `/ip4/127.0.0.1/tcp/${7000 + i}/p2p/12D3KooWm${i}` }));
    const nodes = [1, 2, 3, 4, 5].map((i) => ({ name: `n${i}`, dir: join(dir, 'nodes', `n${i}`), port: 7100 + i }));
    await writeFile(join(dir, 'cluster.json'), JSON.stringify({ version: 1, masters, nodes }));
    const r = await dfs(cwd, 'cluster', 'up', '--detach', '--nodes', '3');
    expect(r.code).toBe(EXIT.usage);
    // "npx dfs" when the test runs under npm (npm_execpath), as hints say.
    expect(r.stderr.replace('npx dfs', 'dfs')).toBe(
      `dfs: the cluster in ${dir} has 3 masters and 5 storage nodes, not --nodes 3: start it as it is (no --masters or --nodes), or start afresh (its data is lost): dfs cluster down --cluster ${dir}, then remove ${dir} [ERR_USAGE]\n`,
    );
    const both = await dfs(cwd, 'cluster', 'up', '--masters', '1', '--nodes', '5');
    expect(both.code).toBe(EXIT.usage);
    expect(both.stderr).toMatch(/has 3 masters and 5 storage nodes, not --masters 1: /);
    for (const bad of [['--masters', '4'], ['--nodes', 'many'], ['--nodes', '-1']]) {
      const x = await dfs(cwd, 'cluster', 'up', ...bad);
      expect(x.code, bad.join(' ')).toBe(EXIT.usage);
      expect(x.stderr.split('\n')).toHaveLength(2);
    }
  });

  it('commands outside any cluster say how to get one', async () => {
    const cwd = await tempDir();
    const r = await dfs(cwd, 'ls', '/');
    expect(r.code).toBe(EXIT.notFound);
    expect(r.stderr).toMatch(/dfs cluster up/);
  });
});

async function timedDfs(env: Record<string, string>, cwd: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const r = await dfsWithEnv(env, cwd, ...args);
  return { ...r, ms: performance.now() - started };
}

/** Every file and directory under `dir`, itself included, with its permission bits. */
async function walk(dir: string): Promise<Array<{ path: string; mode: number }>> {
  const out: Array<{ path: string; mode: number }> = [];
  const visit = async (path: string): Promise<void> => {
    const s = await stat(path);
    out.push({ path, mode: s.mode & 0o777 });
    if (s.isDirectory()) for (const name of await readdir(path)) await visit(join(path, name));
  };
  await visit(dir);
  return out;
}
