import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT, main } from '../../src/cli/index.ts';
import { readSwarmKeyFile } from '../../src/net/index.ts';
import { captureIO } from '../support/cli-io.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * The cluster secret on the command line: `dfs cluster init`, what `master start` / `node start`
 * demand (a key, or an explicit --insecure that warns), and how a client's config names its key.
 * The cluster-level checks (a client with another key) are in cluster.test.ts.
 */
const tempDir = useTempDirs();
const BIN = new URL('../../bin/dfs.js', import.meta.url).pathname;

afterEach(() => {
  process.exitCode = 0; // main() sets it, as the bin relies on
});

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** A dfs process of the real binary; the environment is ours minus any DFS_SWARM_KEY, plus `env`. */
function dfsProcess(args: string[], env: Record<string, string> = {}): { child: ChildProcess; stdout: () => string; stderr: () => string; exited: Promise<number | null> } {
  const { DFS_SWARM_KEY: _key, ...base } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...base, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function waitFor(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every file and directory under `dir` (itself included) with its permission bits. */
async function modes(dir: string): Promise<Array<{ path: string; mode: number; isDir: boolean }>> {
  const out: Array<{ path: string; mode: number; isDir: boolean }> = [];
  const walk = async (path: string): Promise<void> => {
    const s = await stat(path);
    out.push({ path, mode: s.mode & 0o777, isDir: s.isDirectory() });
    if (s.isDirectory()) for (const name of await readdir(path)) await walk(join(path, name));
  };
  await walk(dir);
  return out;
}

describe('dfs cluster init', () => {
  it('makes DIR/swarm.key, mode 0600, says what to do with it, and never overwrites it', async () => {
    const dir = join(await tempDir(), 'secrets');
    const io = captureIO();
    expect(await main(['cluster', 'init', '--dir', dir], io)).toBe(EXIT.ok);
    const path = join(dir, 'swarm.key');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const key = await readSwarmKeyFile(path); // a valid libp2p swarm key
    expect(io.out()).toContain(path);
    expect(io.out()).toMatch(/copy it, keeping mode 0600, to every master, storage node and client host/);
    expect(io.out()).toMatch(/--swarm-key/);
    expect(io.out()).toMatch(/DFS_SWARM_KEY/);

    const again = captureIO();
    expect(await main(['cluster', 'init', '--dir', dir], again)).toBe(EXIT.failure);
    expect(again.err()).toBe(`dfs: ${path} already exists: a cluster secret is never overwritten [ERR_EXISTS]\n`);
    expect(await readSwarmKeyFile(path)).toEqual(key);
  });
});

describe('dfs master start / node start need the cluster secret', () => {
  it('without --swarm-key, DFS_SWARM_KEY or --insecure: ERR_USAGE at once, naming the fix, and nothing is created', async () => {
    const root = await tempDir();
    const dir = join(root, 'm1');
    const master = captureIO();
    expect(await main(['master', 'start', '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0'], master)).toBe(EXIT.usage);
    expect(master.err()).toMatch(/^dfs: dfs master start needs the cluster secret: --swarm-key FILE or DFS_SWARM_KEY=FILE, or --insecure to run without one; make one with "dfs cluster init"[^\n]* \[ERR_USAGE\]\n$/);
    const node = captureIO();
    expect(await main(['node', 'start', '--dir', join(root, 'n1'), '--listen', '/ip4/127.0.0.1/tcp/0', '--masters', '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJ3PS6omZM3H5umKvH7UVCEE7Yv3vxb58xwUasVanuzdo'], node)).toBe(EXIT.usage);
    expect(node.err()).toMatch(/^dfs: dfs node start needs the cluster secret: [^\n]* \[ERR_USAGE\]\n$/);
    expect(await exists(dir)).toBe(false);
    expect(await exists(join(root, 'n1'))).toBe(false);

    // The real binary too (it re-executes itself first): exit 2, one line, promptly.
    const started = Date.now();
    const p = dfsProcess(['master', 'start', '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0']);
    expect(await p.exited).toBe(EXIT.usage);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(p.stderr()).toMatch(/^dfs: dfs master start needs the cluster secret: [^\n]* \[ERR_USAGE\]\n$/);
    expect(await exists(dir)).toBe(false);
  });

  it('contradictory or broken secret options are one clear line each', async () => {
    const root = await tempDir();
    const listen = ['--dir', join(root, 'm'), '--listen', '/ip4/127.0.0.1/tcp/0'];
    const cases: Array<[string[], Record<string, string>, number, RegExp]> = [
      [['--swarm-key', join(root, 'k'), '--insecure'], {}, EXIT.usage, /give --swarm-key FILE or --insecure, not both \[ERR_USAGE\]/],
      [['--insecure', '--secret-mode', 'pnet'], {}, EXIT.usage, /--secret-mode needs a cluster secret/],
      [['--swarm-key', join(root, 'k'), '--secret-mode', 'xor'], {}, EXIT.usage, /--secret-mode takes handshake or pnet, not "xor" \[ERR_USAGE\]/],
      [['--swarm-key', join(root, 'missing.key')], {}, EXIT.notFound, /cannot read the cluster secret .*missing\.key: .*ENOENT.* \[ERR_NOT_FOUND\]/],
      [[], { DFS_SWARM_KEY: join(root, 'env-missing.key') }, EXIT.notFound, /cannot read the cluster secret .*env-missing\.key/],
    ];
    await writeFile(join(root, 'not-a-key'), 'hello\n');
    cases.push([['--swarm-key', join(root, 'not-a-key')], {}, EXIT.usage, /not-a-key is not a cluster secret \(a libp2p swarm key file/]);
    for (const [flags, env, code, message] of cases) {
      const io = captureIO(env);
      expect(await main(['master', 'start', ...listen, ...flags], io), flags.join(' ')).toBe(code);
      expect(io.err(), flags.join(' ')).toMatch(message);
      expect(io.err().split('\n'), flags.join(' ')).toHaveLength(2);
    }
    expect(await exists(join(root, 'm'))).toBe(false);
  });

  it('--insecure starts without one and warns on stderr and in the process log at every start; what it creates is 0700/0600', async () => {
    const dir = join(await tempDir(), 'm1');
    for (let start = 1; start <= 2; start++) {
      const p = dfsProcess(['master', 'start', '--name', 'm1', '--dir', dir, '--listen', '/ip4/127.0.0.1/tcp/0', '--insecure']);
      try {
        await waitFor('the ready line', () => p.stdout().includes('"event":"ready"'));
        const lines = p.stderr().split('\n');
        // One plain line for a person, one log record for the log's readers.
        expect(lines.filter((l) => l.startsWith('dfs: warning: master m1 runs without a cluster secret (--insecure)')), `start ${start}`).toHaveLength(1);
        const records = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string; insecure?: boolean });
        expect(records.filter((r) => r.level === 40 && r.insecure === true && /runs without a cluster secret/.test(r.msg)), `start ${start}`).toHaveLength(1);
      } finally {
        p.child.kill('SIGTERM');
        await p.exited;
      }
    }
    // The process's umask (0077): its identity, Raft log (LevelDB) and everything else are its own.
    const all = await modes(dir);
    expect(all.map((e) => e.path)).toEqual(expect.arrayContaining([join(dir, 'peer-key'), join(dir, 'raft'), join(dir, 'raft', 'CURRENT'), join(dir, 'raft', 'LOCK')]));
    expect(all.filter((e) => e.path.includes('MANIFEST-')).length).toBeGreaterThan(0);
    expect(all.filter((e) => e.mode !== (e.isDir ? 0o700 : 0o600)).map((e) => `${e.path} ${e.mode.toString(8)}`)).toEqual([]);
  });

  it('a master given its key by DFS_SWARM_KEY starts without a warning', async () => {
    const root = await tempDir();
    expect(await main(['cluster', 'init', '--dir', root], captureIO())).toBe(EXIT.ok);
    const p = dfsProcess(['master', 'start', '--name', 'm1', '--dir', join(root, 'm1'), '--listen', '/ip4/127.0.0.1/tcp/0'], { DFS_SWARM_KEY: join(root, 'swarm.key') });
    try {
      await waitFor('the ready line', () => p.stdout().includes('"event":"ready"') || p.child.exitCode !== null);
      expect(p.stdout(), p.stderr()).toContain('"event":"ready"');
      expect(p.stderr()).not.toMatch(/without a cluster secret/);
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  });
});

describe('the client config names the cluster secret', () => {
  const master = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJ3PS6omZM3H5umKvH7UVCEE7Yv3vxb58xwUasVanuzdo';

  async function lsWith(config: unknown, flags: string[] = [], env: Record<string, string> = {}): Promise<{ code: number; err: string; dir: string }> {
    const dir = await tempDir();
    await writeFile(join(dir, 'dfs-client.json'), typeof config === 'string' ? config : JSON.stringify(config));
    const io = captureIO(env);
    const code = await main(['ls', '/', '--cluster', dir, ...flags], io);
    return { code, err: io.err(), dir };
  }

  it('a config with neither "swarmKey" nor "insecure": true is refused, naming the fix', async () => {
    const r = await lsWith({ masters: [master] });
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toBe(
      `dfs: ${join(r.dir, 'dfs-client.json')} names no cluster secret: add "swarmKey": "<path to the cluster's swarm.key>" to it (or give --swarm-key FILE or DFS_SWARM_KEY=FILE), or "insecure": true if the cluster runs without one [ERR_USAGE]\n`,
    );
  });

  it('fields are checked by the config schema, each error naming the file and the field', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ masters: [master], swarmKey: 5 }, /dfs-client\.json: field swarmKey: expected string, got number 5 \[ERR_INVALID_ARGUMENT\]/],
      [{ masters: [master], insecure: 'yes' }, /dfs-client\.json: field insecure: expected boolean, got string "yes"/],
      [{ masters: [master], swarmKey: 'k', secretMode: 'xor' }, /dfs-client\.json: field secretMode: expected one of "handshake", "pnet", got string "xor"/],
      [{ masters: [], insecure: true }, /dfs-client\.json: field masters: expected at least 1 items, got 0/],
      [{ masters: [master], swarmKey: 'k', insecure: true }, /dfs-client\.json sets both "swarmKey" and "insecure": keep the one the cluster runs with \[ERR_INVALID_ARGUMENT\]/],
      ['{ not json', /dfs-client\.json is not valid JSON: /],
    ];
    for (const [config, message] of cases) {
      const r = await lsWith(config);
      expect(r.code, JSON.stringify(config)).toBe(EXIT.usage);
      expect(r.err, JSON.stringify(config)).toMatch(message);
    }
  });

  it('"swarmKey" is relative to the config file; flags beat DFS_SWARM_KEY, which beats the file', async () => {
    // A key that does not exist names the path each source led to: so the order is visible.
    const relative = await lsWith({ masters: [master], swarmKey: 'keys/swarm.key' });
    expect(relative.err).toContain(`cannot read the cluster secret ${join(relative.dir, 'keys', 'swarm.key')}`);
    const env = await lsWith({ masters: [master], swarmKey: 'keys/swarm.key' }, [], { DFS_SWARM_KEY: '/nonexistent/env.key' });
    expect(env.err).toContain('cannot read the cluster secret /nonexistent/env.key');
    const flag = await lsWith({ masters: [master], swarmKey: 'keys/swarm.key' }, ['--swarm-key', '/nonexistent/flag.key'], { DFS_SWARM_KEY: '/nonexistent/env.key' });
    expect(flag.err).toContain('cannot read the cluster secret /nonexistent/flag.key');
    const absolute = await lsWith({ masters: [master], swarmKey: '/nonexistent/abs.key' });
    expect(absolute.err).toContain('cannot read the cluster secret /nonexistent/abs.key');
    for (const r of [relative, env, flag, absolute]) expect(r.code).toBe(EXIT.notFound);
  });

  it('a key file the client can read is used: with no master listening, the usual unreachable answer follows', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'keys'));
    expect(await main(['cluster', 'init', '--dir', join(dir, 'keys')], captureIO())).toBe(EXIT.ok);
    await writeFile(join(dir, 'dfs-client.json'), JSON.stringify({ masters: [master], swarmKey: 'keys/swarm.key' }));
    const io = captureIO();
    expect(await main(['status', '--cluster', dir], io)).toBe(EXIT.failure);
    expect(io.out()).toMatch(/unreachable/);
    expect(io.err()).toMatch(/^dfs: no leader: [^\n]* \[ERR_NO_QUORUM\]\n$/); // not a secret problem: nobody is there
  });
});
