import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { MetaClient } from '../client/index.ts';
import { CLIENT_CONFIG_FILE, type ClientConfig } from '../cluster/index.ts';
import { DfsError } from '../errors/index.ts';
import { userInfo } from 'node:os';
import { createPeer, type DfsPeer } from '../net/index.ts';
import type { CliIO } from './io.ts';

export interface ClusterOption {
  /** A cluster directory or a dfs-client.json file. */
  cluster?: string;
}

/**
 * Where the cluster is: --cluster (a directory or a dfs-client.json), else DFS_CLUSTER, else the
 * first dfs-client.json in the working directory or above it (what `dfs cluster up` writes).
 */
export async function findClientConfig(option: string | undefined, io: CliIO, cwd = process.cwd()): Promise<{ path: string; config: ClientConfig }> {
  const given = option ?? io.env.DFS_CLUSTER;
  const candidates: string[] = [];
  if (given) {
    const p = resolve(cwd, given);
    const isDir = await stat(p).then((s) => s.isDirectory(), () => false);
    candidates.push(isDir ? join(p, CLIENT_CONFIG_FILE) : p);
  } else {
    for (let dir = resolve(cwd); ; dir = dirname(dir)) {
      candidates.push(join(dir, CLIENT_CONFIG_FILE));
      candidates.push(join(dir, '.dfs-local', CLIENT_CONFIG_FILE));
      if (dirname(dir) === dir) break;
    }
  }
  for (const path of candidates) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      continue;
    }
    const config = JSON.parse(text) as ClientConfig;
    if (!Array.isArray(config.masters) || config.masters.length === 0) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `${path} lists no masters`);
    }
    return { path, config };
  }
  throw new DfsError(
    'ERR_NOT_FOUND',
    given ? `no ${CLIENT_CONFIG_FILE} at ${given}` : `no cluster found: start one with "dfs cluster up", or point to one with --cluster DIR or DFS_CLUSTER`,
  );
}

/** Who writes are attributed to (not authenticated yet): $USER, else the OS account. */
export function currentUser(io: CliIO): string {
  if (io.env.USER) return io.env.USER;
  try {
    return userInfo().username;
  } catch {
    return 'anonymous';
  }
}

/** Runs `fn` with a libp2p peer and a metadata client of the cluster; always stops the peer. */
export async function withClusterClient<T>(options: ClusterOption, io: CliIO, fn: (peer: DfsPeer, meta: MetaClient) => Promise<T>): Promise<T> {
  const { config } = await findClientConfig(options.cluster, io);
  const peer = await createPeer({});
  try {
    return await fn(peer, new MetaClient({ peer, masters: config.masters, user: currentUser(io) }));
  } finally {
    await peer.stop();
  }
}

export function withMetaClient<T>(options: ClusterOption, io: CliIO, fn: (client: MetaClient) => Promise<T>): Promise<T> {
  return withClusterClient(options, io, (_, meta) => fn(meta));
}
