import { resolve } from 'node:path';
import { CLIENT_CONFIG_FILE, LocalCluster, stopDetachedCluster } from '../../cluster/index.ts';
import { formatTable } from '../format.ts';
import type { CliIO } from '../io.ts';

export interface ClusterUpOptions {
  dir?: string;
  masters?: number;
  nodes?: number;
  detach?: boolean;
}

export const DEFAULT_CLUSTER_DIR = '.dfs-local';

/** `dfs cluster up`: a local cluster of real processes on loopback ports. */
export async function clusterUpCommand(options: ClusterUpOptions, io: CliIO): Promise<void> {
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  const cluster = new LocalCluster({ dir, masters: Number(options.masters ?? 3), nodes: Number(options.nodes ?? 5), detached: options.detach === true });
  await cluster.start();
  io.stdout.write(
    formatTable(['PROCESS', 'ROLE', 'ADDRESS'], [
      ...cluster.spec.masters.map((m) => [m.name, 'master', m.addr]),
      ...(cluster.spec.nodes ?? []).map((n) => [n.name, 'storage node', `/ip4/127.0.0.1/tcp/${n.port}`]),
    ]),
  );
  io.stdout.write(`\ncluster up in ${dir}; client config ${resolve(dir, CLIENT_CONFIG_FILE)}\n`);
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
  const stopped = await stopDetachedCluster(dir);
  io.stdout.write(stopped.length ? `stopped ${stopped.join(', ')}\n` : 'nothing was running\n');
}
