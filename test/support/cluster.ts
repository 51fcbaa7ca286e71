import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MetaClient, MetaClientOptions } from '../../src/client/index.ts';
import { LocalCluster, type SecretMode } from '../../src/cluster/index.ts';
import type { MasterStatus } from '../../src/meta/index.ts';

/**
 * The one fixture that starts a real local cluster (separate processes on loopback), the same
 * code as `dfs cluster up`. Integration and chaos tests use it. Like `dfs cluster up`, the
 * cluster runs with a secret (its swarm.key) unless `insecure`: a test's own libp2p peer must
 * hold it, so make one with `t.cluster.createClientPeer()`.
 */
export interface TestCluster {
  readonly cluster: LocalCluster;
  readonly dir: string;
  client<T>(fn: (c: MetaClient) => Promise<T>, options?: Partial<MetaClientOptions>): Promise<T>;
  statuses(withHash?: boolean): Promise<Array<{ name: string; status?: MasterStatus; error?: string }>>;
  leaderName(): Promise<string>;
  /** Waits until every running master has applied the same index, then returns their statuses. */
  converged(timeoutMs?: number): Promise<MasterStatus[]>;
  stop(): Promise<void>;
}

export interface TestClusterOptions {
  masters?: number;
  nodes?: number;
  masterArgs?: string[];
  nodeArgs?: string[];
  /** Run without a cluster secret (every process warns so). */
  insecure?: boolean;
  secretMode?: SecretMode;
}

export async function startTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'dfs-cluster-'));
  const cluster = new LocalCluster({
    dir,
    masters: options.masters ?? 3,
    nodes: options.nodes ?? 0,
    masterArgs: options.masterArgs ?? [],
    nodeArgs: options.nodeArgs ?? [],
    insecure: options.insecure === true,
    ...(options.secretMode ? { secretMode: options.secretMode } : {}),
  });
  await cluster.start();
  const nameOf = new Map(cluster.spec.masters.map((m) => [m.addr, m.name]));
  const t: TestCluster = {
    cluster,
    dir,
    client: (fn, clientOptions) => cluster.withClient(fn, clientOptions),
    async statuses(withHash = false) {
      const all = await cluster.withClient((c) => c.statusAll({ withHash }));
      return all.map(({ addr, status, error }) => ({ name: nameOf.get(addr)!, ...(status ? { status } : {}), ...(error ? { error } : {}) }));
    },
    async leaderName() {
      const leader = await cluster.withClient((c) => c.waitForLeader(15_000));
      return leader.name;
    },
    async converged(timeoutMs = 15_000) {
      const deadline = performance.now() + timeoutMs;
      for (let pauseMs = 20; ; pauseMs = Math.min(2 * pauseMs, 200)) {
        const running = (await t.statuses(true)).filter((s) => cluster.isRunning(s.name));
        const up = running.map((s) => s.status).filter((s): s is MasterStatus => s !== undefined);
        if (up.length === running.length && up.length > 0 && new Set(up.map((s) => s.appliedIndex)).size === 1 && up.some((s) => s.role === 'leader')) return up;
        if (performance.now() > deadline) throw new Error(`masters did not converge: ${JSON.stringify(running.map((s) => [s.name, s.status?.appliedIndex, s.error]))}`);
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    },
    async stop() {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return t;
}
