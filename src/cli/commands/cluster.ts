import { resolve } from 'node:path';
import { CLIENT_CONFIG_FILE, LocalCluster, stopDetachedCluster, SWARM_KEY_FILE } from '../../cluster/index.ts';
import { createSwarmKeyFile } from '../../net/index.ts';
import { insecureWarning, parseSecretMode, type SecretOptions, SWARM_KEY_ENV } from '../cluster-secret.ts';
import { DfsError } from '../../errors/index.ts';
import { formatTable } from '../format.ts';
import type { CliIO } from '../io.ts';

export interface ClusterUpOptions extends SecretOptions {
  dir?: string;
  masters?: number;
  nodes?: number;
  detach?: boolean;
}

export const DEFAULT_CLUSTER_DIR = '.dfs-local';

/**
 * `dfs cluster init [--dir DIR]`: makes the cluster secret DIR/swarm.key (mode 0600; never over
 * an existing one) and says what to do with it.
 */
export async function clusterInitCommand(options: { dir?: string }, io: CliIO): Promise<void> {
  const path = resolve(options.dir ?? '.', SWARM_KEY_FILE);
  await createSwarmKeyFile(path);
  io.stdout.write(
    [
      `created the cluster secret ${path} (mode 0600)`,
      'copy it, keeping mode 0600, to every master, storage node and client host; anyone holding it can join the cluster.',
      'give it to each process:',
      `  dfs master start --swarm-key ${path} ...   (or ${SWARM_KEY_ENV}=${path})`,
      `  dfs node start --swarm-key ${path} ...`,
      `  clients: "swarmKey": "${path}" in dfs-client.json (a path relative to that file, or absolute), or --swarm-key / ${SWARM_KEY_ENV}`,
      '',
    ].join('\n'),
  );
}

/** `dfs cluster up`: a local cluster of real processes on loopback ports, with its own secret. */
export async function clusterUpCommand(options: ClusterUpOptions, io: CliIO): Promise<void> {
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  if (options.swarmKey !== undefined) throw new DfsError('ERR_USAGE', `dfs cluster up makes and uses its own secret, ${resolve(dir, SWARM_KEY_FILE)}; --swarm-key is for master, node and client commands`);
  const insecure = options.insecure === true;
  if (insecure && options.secretMode !== undefined) throw new DfsError('ERR_USAGE', '--secret-mode needs a cluster secret; --insecure runs without one');
  const secretMode = parseSecretMode(options.secretMode);
  if (insecure) io.stderr.write(`dfs: warning: ${insecureWarning(`the cluster in ${dir}`)}\n`);
  const cluster = new LocalCluster({
    dir,
    masters: Number(options.masters ?? 3),
    nodes: Number(options.nodes ?? 5),
    detached: options.detach === true,
    insecure,
    ...(secretMode ? { secretMode } : {}),
  });
  await cluster.start();
  io.stdout.write(
    formatTable(['PROCESS', 'ROLE', 'ADDRESS'], [
      ...cluster.spec.masters.map((m) => [m.name, 'master', m.addr]),
      ...(cluster.spec.nodes ?? []).map((n) => [n.name, 'storage node', `/ip4/127.0.0.1/tcp/${n.port}`]),
    ]),
  );
  io.stdout.write(`\ncluster up in ${dir}; client config ${resolve(dir, CLIENT_CONFIG_FILE)}\n`);
  io.stdout.write(cluster.swarmKeyPath ? `cluster secret ${cluster.swarmKeyPath} (mode 0600; the client config names it)\n` : 'no cluster secret (--insecure)\n');
  if (options.detach) {
    io.stdout.write(`running in the background: dfs status --cluster ${dir}; stop with: dfs cluster down --dir ${dir}\n`);
    return;
  }
  io.stdout.write('press Ctrl-C to stop\n');
  await new Promise<void>((ok) => {
    process.once('SIGINT', ok);
    process.once('SIGTERM', ok);
  });
  io.stdout.write('stopping...\n');
  await cluster.stop();
}

export async function clusterDownCommand(options: { dir?: string }, io: CliIO): Promise<void> {
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  // Stopped in parallel: listed by name, masters first, whatever order they went in.
  const stopped = (await stopDetachedCluster(dir)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  io.stdout.write(stopped.length ? `stopped ${stopped.join(', ')}\n` : 'nothing was running\n');
}
