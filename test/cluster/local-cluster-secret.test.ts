import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cluster/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { createPeer, type DfsPeer, formatSwarmKey, type PeerOptions } from '../../src/net/index.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * LocalCluster (what `dfs cluster up` and the integration tests run) with the cluster secret:
 * made once, 0600, handed to every process and named in the client config; a peer without it
 * (or with another) cannot connect.
 */
const tempDir = useTempDirs();
let running: LocalCluster | undefined;
const peers: DfsPeer[] = [];

afterEach(async () => {
  await Promise.all(peers.splice(0).map((p) => p.stop()));
  await running?.stop();
  running = undefined;
});

async function start(options: Partial<ConstructorParameters<typeof LocalCluster>[0]> = {}): Promise<LocalCluster> {
  const cluster = new LocalCluster({ dir: join(await tempDir(), 'cluster'), masters: 1, ...options });
  running = cluster;
  await cluster.start();
  return cluster;
}

/** What dialling the master with `options` gives: 'connected', or the error's code and cause. */
async function dialMaster(cluster: LocalCluster, options: PeerOptions, timeoutMs = 5_000): Promise<string> {
  const peer = await createPeer(options);
  peers.push(peer);
  try {
    const stream = await peer.dialProtocol(cluster.masterAddrs[0]!, '/dfs/meta/1.0.0', { timeoutMs });
    stream.abort(new Error('done'));
    return 'connected';
  } catch (err) {
    if (!isDfsError(err)) throw err;
    return `${err.code} ${(err.cause as Error | undefined)?.name}`;
  }
}

async function cmdline(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
}

describe('LocalCluster and the cluster secret', () => {
  it('makes swarm.key (0600) once, starts every process with it, names it in the client config, and its client uses it', async () => {
    const cluster = await start({ nodes: 1 });
    const keyPath = join(cluster.dir, 'swarm.key');
    expect(cluster.swarmKeyPath).toBe(keyPath);
    expect((await stat(keyPath)).mode & 0o777).toBe(0o600);
    expect((await stat(cluster.dir)).mode & 0o777).toBe(0o700);
    const key = await readFile(keyPath);
    expect(cluster.swarmKey).toEqual(new Uint8Array(key));
    expect(JSON.parse(await readFile(join(cluster.dir, 'dfs-client.json'), 'utf8'))).toEqual({ masters: cluster.masterAddrs, swarmKey: 'swarm.key' });
    for (const [name, pid] of Object.entries(cluster.pids())) {
      const argv = await cmdline(pid);
      expect(argv[argv.indexOf('--swarm-key') + 1], name).toBe(keyPath);
      expect(argv, name).not.toContain('--insecure');
    }
    // Its own client holds the key: the master answers, and hears the node (which holds it too).
    const status = await cluster.withClient((c) => c.waitForLeader(10_000));
    expect(status.liveNodes).toBe(1);
    expect(await dialMaster(cluster, cluster.peerOptions)).toBe('connected');

    // Started again: the same key, not a new one.
    await cluster.stop();
    await cluster.start();
    expect(await readFile(keyPath)).toEqual(key);
    expect(await cluster.withClient(async (c) => (await c.waitForLeader(10_000)).role)).toBe('leader');
  });

  it('a peer without the key, or with another, fails the handshake at once', async () => {
    const cluster = await start();
    expect(await dialMaster(cluster, {})).toBe('ERR_PEER_UNREACHABLE EncryptionFailedError');
    expect(await dialMaster(cluster, { psk: formatSwarmKey(new Uint8Array(32).fill(7)) })).toBe('ERR_PEER_UNREACHABLE EncryptionFailedError');
    expect(await dialMaster(cluster, { psk: cluster.swarmKey! })).toBe('connected');
  });

  it('insecure: no key, "insecure": true in the client config, and every process warns in its log', async () => {
    const cluster = await start({ insecure: true, nodes: 1 });
    expect(cluster.swarmKeyPath).toBeUndefined();
    await expect(stat(join(cluster.dir, 'swarm.key'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(JSON.parse(await readFile(join(cluster.dir, 'dfs-client.json'), 'utf8'))).toEqual({ masters: cluster.masterAddrs, insecure: true });
    for (const [name, pid] of Object.entries(cluster.pids())) expect(await cmdline(pid), name).toContain('--insecure');
    expect(await readFile(join(cluster.dir, 'masters', 'm1', 'process.log'), 'utf8')).toMatch(/^dfs: warning: master m1 runs without a cluster secret \(--insecure\)/m);
    expect(await readFile(join(cluster.dir, 'nodes', 'n1', 'process.log'), 'utf8')).toMatch(/^dfs: warning: storage node n1 runs without a cluster secret \(--insecure\)/m);
    expect(await dialMaster(cluster, {})).toBe('connected');
  });

  it('pnet mode: processes and the client config carry it; a peer with the key but in handshake mode cannot connect', async () => {
    const cluster = await start({ secretMode: 'pnet' });
    expect(JSON.parse(await readFile(join(cluster.dir, 'dfs-client.json'), 'utf8'))).toEqual({ masters: cluster.masterAddrs, swarmKey: 'swarm.key', secretMode: 'pnet' });
    const argv = await cmdline(cluster.pids().m1!);
    expect(argv[argv.indexOf('--secret-mode') + 1]).toBe('pnet');
    expect(await dialMaster(cluster, cluster.peerOptions)).toBe('connected');
    // The pnet side reads the Noise handshake as ciphertext: a reset or a hang, by chance.
    expect(await dialMaster(cluster, { psk: cluster.swarmKey! }, 2_000)).toMatch(/^ERR_(PEER_UNREACHABLE|TIMEOUT) /);
  });
});
