import { access } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CLIENT_CONFIG_FILE, CLUSTER_FILE } from '../cluster/index.ts';
import type { CliIO } from './io.ts';

/** Where `dfs cluster up` puts a cluster when not told (commands/cluster.ts has the same default). */
const DEFAULT_DIR = '.dfs-local';

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * The directory of the local cluster `dfs cluster down` stops, found as every client command
 * finds its cluster (client-context.ts): --cluster (the directory, or its dfs-client.json), else
 * DFS_CLUSTER, else the nearest directory, from the working directory up, that holds a running
 * local cluster's cluster.json (itself, or its .dfs-local). Nothing found: ./.dfs-local, where
 * `cluster up` would have put one.
 */
export async function findLocalClusterDir(option: string | undefined, io: Pick<CliIO, 'env'>, cwd = process.cwd()): Promise<string> {
  const given = option ?? io.env.DFS_CLUSTER;
  if (given) {
    const p = resolve(cwd, given);
    return basename(p) === CLIENT_CONFIG_FILE ? dirname(p) : p;
  }
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    if (await exists(join(dir, DEFAULT_DIR, CLUSTER_FILE))) return join(dir, DEFAULT_DIR);
    if (await exists(join(dir, CLUSTER_FILE))) return dir;
    if (dirname(dir) === dir) break;
  }
  return resolve(cwd, DEFAULT_DIR);
}
