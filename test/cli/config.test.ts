import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT, main } from '../../src/cli/index.ts';
import { findClientConfig } from '../../src/cli/client-context.ts';
import { createSwarmKeyFile } from '../../src/net/index.ts';
import { captureIO } from '../support/cli-io.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
afterEach(() => {
  process.exitCode = 0;
});

/** A peer id shape the client config accepts (never dialled here). */
const MASTER = (n: number) => `/ip4/127.0.0.1/tcp/${7000 + n}/p2p/12D3KooWMaster${n}`;

/** A client config with its own swarm key in `dir`, as an operator hands one out. */
async function clientConfigIn(dir: string, masters: string[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  await createSwarmKeyFile(join(dir, 'swarm.key'));
  const path = join(dir, 'dfs-client.json');
  await writeFile(path, JSON.stringify({ masters, swarmKey: 'swarm.key' }));
  return path;
}

async function dfs(env: Record<string, string>, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const x = captureIO(env);
  const code = await main(argv, x);
  return { code, out: x.out(), err: x.err() };
}

describe('named clusters (dfs cluster add|use|list|rm)', () => {
  it('refuses bad names, a missing source, a source without a secret, and a name taken twice', async () => {
    const root = await tempDir();
    const env = { DFS_CONFIG_DIR: join(root, 'config') };
    const source = await clientConfigIn(join(root, 'ops'), [MASTER(1)]);

    for (const bad of ['../up', 'a/b', '.hidden', '']) {
      const r = await dfs(env, 'cluster', 'add', bad, source);
      expect(r.code, bad).toBe(EXIT.usage);
      expect(r.err, bad).toMatch(/^dfs: .*(is not a cluster name|usage: dfs cluster add).* \[ERR_USAGE\]\n$/);
    }
    const missing = await dfs(env, 'cluster', 'add', 'prod', join(root, 'nowhere'));
    expect(missing.code).toBe(EXIT.notFound);
    expect(missing.err).toMatch(/^dfs: no dfs-client.json at .*nowhere: /);

    await writeFile(join(root, 'nosecret.json'), JSON.stringify({ masters: [MASTER(1)] }));
    const noSecret = await dfs(env, 'cluster', 'add', 'prod', join(root, 'nosecret.json'));
    expect(noSecret.code).toBe(EXIT.usage);
    expect(noSecret.err).toMatch(/nosecret\.json names no cluster secret/);

    await writeFile(join(root, 'badkey.json'), JSON.stringify({ masters: [MASTER(1)], swarmKey: 'nosuch.key' }));
    const badKey = await dfs(env, 'cluster', 'add', 'prod', join(root, 'badkey.json'));
    expect(badKey.code).toBe(EXIT.notFound);
    expect(badKey.err).toMatch(/cannot read the cluster secret .*nosuch\.key/);
    expect((await dfs(env, 'cluster', 'list', '--json')).out).toBe(''); // nothing half-made

    expect((await dfs(env, 'cluster', 'add', 'prod', join(root, 'ops'))).code).toBe(EXIT.ok);
    const twice = await dfs(env, 'cluster', 'add', 'prod', source);
    expect(twice.code).toBe(EXIT.failure);
    expect(twice.err).toBe('dfs: there is already a cluster named prod: remove it first with dfs cluster rm prod [ERR_EXISTS]\n');
    const useMissing = await dfs(env, 'cluster', 'use', 'staging');
    expect(useMissing.code).toBe(EXIT.notFound);
    const rmMissing = await dfs(env, 'cluster', 'rm', 'staging');
    expect(rmMissing.code).toBe(EXIT.notFound);
    const unknown = await dfs(env, 'cluster', 'frob');
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.err).toMatch(/dfs cluster takes init, up, down, add, use, list, rm, not "frob"/);
  });

  it('add copies the client config and its key (0700/0600); use, list (text and --json) and rm', async () => {
    const root = await tempDir();
    const config = join(root, 'config');
    const env = { DFS_CONFIG_DIR: config };
    const prodSource = await clientConfigIn(join(root, 'ops', 'prod'), [MASTER(1), MASTER(2), MASTER(3)]);
    await clientConfigIn(join(root, 'ops', 'lab'), [MASTER(9)]);

    expect((await dfs(env, 'cluster', 'add', 'prod', prodSource)).code).toBe(EXIT.ok);
    expect((await dfs(env, 'cluster', 'add', 'lab', join(root, 'ops', 'lab'))).code).toBe(EXIT.ok);
    const entry = join(config, 'clusters', 'prod');
    expect(JSON.parse(await readFile(join(entry, 'dfs-client.json'), 'utf8'))).toEqual({ masters: [MASTER(1), MASTER(2), MASTER(3)], swarmKey: 'swarm.key' });
    expect(await readFile(join(entry, 'swarm.key'))).toEqual(await readFile(join(root, 'ops', 'prod', 'swarm.key')));
    for (const [path, mode] of [[config, 0o700], [join(config, 'clusters'), 0o700], [entry, 0o700], [join(entry, 'swarm.key'), 0o600], [join(entry, 'dfs-client.json'), 0o600]] as const) {
      expect((await stat(path)).mode & 0o777, path).toBe(mode);
    }

    const table = (await dfs(env, 'cluster', 'list')).out.split('\n');
    expect(table[0]).toMatch(/^NAME +MASTERS +CURRENT$/);
    expect(table.slice(1)).toEqual([`lab   ${MASTER(9)}`, `prod  ${[MASTER(1), MASTER(2), MASTER(3)].join(',')}`, '']);
    const used = await dfs(env, 'cluster', 'use', 'prod');
    expect(used.code).toBe(EXIT.ok);
    expect(JSON.parse(await readFile(join(config, 'config.json'), 'utf8'))).toEqual({ version: 1, currentCluster: 'prod' });
    expect((await stat(join(config, 'config.json'))).mode & 0o777).toBe(0o600);
    const listed = (await dfs(env, 'cluster', 'list', '--json')).out.trim().split('\n').map((l) => JSON.parse(l));
    expect(listed).toEqual([
      { name: 'lab', masters: [MASTER(9)], current: false, path: join(config, 'clusters', 'lab', 'dfs-client.json') },
      { name: 'prod', masters: [MASTER(1), MASTER(2), MASTER(3)], current: true, path: join(entry, 'dfs-client.json') },
    ]);
    expect((await dfs(env, 'cluster', 'list')).out).toMatch(/^prod .* \*$/m);

    const rm = await dfs(env, 'cluster', 'rm', 'prod');
    expect(rm.code).toBe(EXIT.ok);
    expect(rm.err).toMatch(/removed cluster prod; no cluster is the default now/);
    expect((await dfs(env, 'cluster', 'list', '--json')).out.trim().split('\n').map((l) => JSON.parse(l).name)).toEqual(['lab']);
    expect(JSON.parse(await readFile(join(config, 'config.json'), 'utf8'))).toEqual({ version: 1 });
  });

  it('which cluster a command talks to: --cluster > DFS_CLUSTER > a dfs-client.json from here up > the current named cluster', async () => {
    const root = await tempDir();
    const config = join(root, 'config');
    const env: Record<string, string> = { DFS_CONFIG_DIR: config };
    const flagDir = join(root, 'flag');
    const envDir = join(root, 'envdir');
    await clientConfigIn(flagDir, [MASTER(1)]);
    await clientConfigIn(envDir, [MASTER(2)]);
    await clientConfigIn(join(root, 'project', '.dfs-local'), [MASTER(3)]);
    await clientConfigIn(join(root, 'named'), [MASTER(4)]);
    await clientConfigIn(join(root, 'other'), [MASTER(5)]);
    expect((await dfs(env, 'cluster', 'add', 'cur', join(root, 'named'))).code).toBe(EXIT.ok);
    expect((await dfs(env, 'cluster', 'add', 'other', join(root, 'other'))).code).toBe(EXIT.ok);
    expect((await dfs(env, 'cluster', 'use', 'cur')).code).toBe(EXIT.ok);
    const deep = join(root, 'project', 'a', 'b');
    await mkdir(deep, { recursive: true });
    const outside = join(root, 'outside');
    await mkdir(outside);
    const masterOf = async (option: string | undefined, e: Record<string, string>, cwd: string) => (await findClientConfig(option, captureIO(e), cwd)).config.masters[0];

    expect(await masterOf(flagDir, { ...env, DFS_CLUSTER: envDir }, deep)).toBe(MASTER(1));
    expect(await masterOf(join(flagDir, 'dfs-client.json'), env, deep)).toBe(MASTER(1));
    expect(await masterOf('other', { ...env, DFS_CLUSTER: envDir }, deep)).toBe(MASTER(5)); // a name
    expect(await masterOf(undefined, { ...env, DFS_CLUSTER: envDir }, deep)).toBe(MASTER(2));
    expect(await masterOf(undefined, { ...env, DFS_CLUSTER: 'other' }, deep)).toBe(MASTER(5));
    expect(await masterOf(undefined, env, deep)).toBe(MASTER(3)); // found upwards, beats the current
    expect(await masterOf(undefined, env, outside)).toBe(MASTER(4)); // the current named cluster
    // A directory of that name beats a named cluster.
    await clientConfigIn(join(outside, 'other'), [MASTER(6)]);
    expect(await masterOf('other', env, outside)).toBe(MASTER(6));

    await expect(findClientConfig('nosuch', captureIO(env), outside)).rejects.toThrow('no dfs-client.json at nosuch (--cluster) and no cluster named nosuch (see dfs cluster list)');
    await expect(findClientConfig(undefined, captureIO({ ...env, DFS_CLUSTER: 'nosuch' }), outside)).rejects.toThrow('(DFS_CLUSTER)');
    await expect(findClientConfig(undefined, captureIO({ DFS_CONFIG_DIR: join(root, 'empty') }), outside)).rejects.toThrow(
      'no cluster found: start one with "dfs cluster up", or point to one with --cluster DIR|NAME, DFS_CLUSTER or "dfs cluster use NAME"',
    );
    await expect(findClientConfig(undefined, captureIO({ DFS_CONFIG_DIR: join(root, 'empty'), npm_execpath: '/npm' }), outside)).rejects.toThrow('start one with "npx dfs cluster up"');
  });

  it('a damaged config.json or cluster entry is one line naming the file and the problem, exit 2 (never 70)', async () => {
    const root = await tempDir();
    const config = join(root, 'config');
    const env = { DFS_CONFIG_DIR: config };
    await clientConfigIn(join(root, 'named'), [MASTER(4)]);
    expect((await dfs(env, 'cluster', 'add', 'cur', join(root, 'named'))).code).toBe(EXIT.ok);
    expect((await dfs(env, 'cluster', 'use', 'cur')).code).toBe(EXIT.ok);
    const outside = join(root, 'outside');
    await mkdir(outside);
    const configJson = join(config, 'config.json');
    const entryJson = join(config, 'clusters', 'cur', 'dfs-client.json');
    const cases: Array<[string, string, string, RegExp]> = [
      ['config.json not JSON', configJson, '{"version":1,', new RegExp(`^dfs: ${configJson} is not valid JSON: .* \\[ERR_INVALID_ARGUMENT\\]\\n$`)],
      ['config.json version', configJson, '{"version":2}', new RegExp(`^dfs: ${configJson}: field version: expected 1, got number 2 \\[ERR_INVALID_ARGUMENT\\]\\n$`)],
      ['config.json current a path', configJson, '{"version":1,"currentCluster":"../x"}', new RegExp(`^dfs: ${configJson}: field currentCluster: expected string matching .* \\[ERR_INVALID_ARGUMENT\\]\\n$`)],
      ['config.json current gone', configJson, '{"version":1,"currentCluster":"gone"}', new RegExp(`^dfs: ${configJson}: the current cluster "gone" has no entry in .*: choose another with dfs cluster use NAME \\[ERR_INVALID_ARGUMENT\\]\\n$`)],
      ['entry not JSON', entryJson, 'masters:', new RegExp(`^dfs: ${entryJson} is not valid JSON: .* \\[ERR_INVALID_ARGUMENT\\]\\n$`)],
      ['entry masters', entryJson, '{"masters":[],"swarmKey":"swarm.key"}', new RegExp(`^dfs: ${entryJson}: field masters: .* \\[ERR_INVALID_ARGUMENT\\]\\n$`)],
    ];
    for (const [what, file, text, expected] of cases) {
      const good = await readFile(file, 'utf8');
      await writeFile(file, text);
      const x = captureIO(env);
      const cwd = process.cwd();
      process.chdir(outside);
      try {
        expect(await main(['ls', '/'], x), what).toBe(EXIT.usage);
      } finally {
        process.chdir(cwd);
      }
      expect(x.err(), what).toMatch(expected);
      expect(x.err().split('\n').length, what).toBe(2);
      if (file === configJson) {
        // cluster list reads config.json too; one naming a cluster that is gone still lists (it is how to fix it).
        const listed = await dfs(env, 'cluster', 'list');
        expect(listed.code, what).toBe(what === 'config.json current gone' ? EXIT.ok : EXIT.usage);
      }
      await writeFile(file, good);
    }
    const listed = await dfs(env, 'cluster', 'list', '--json');
    expect(listed.code).toBe(EXIT.ok);
  });
});
