import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HashPasswordOptions } from '../auth/index.ts';
import { deleteChunks } from '../protocol/chunk-client.ts';
import { type Clock, type Rng, systemClock, systemRng } from '../env/index.ts';
import { DfsError } from '../errors/index.ts';
import { type Logger, silentLogger } from '../log/index.ts';
import { createPeer, type DfsPeer, IDENTITY_FILE_NAME, peerIdInAddr } from '../net/index.ts';
import { addrOf } from './data-plane.ts';
import { GarbageCollector, type NodeChunkDeleter } from './garbage-collector.ts';
import { FailureDetector } from './health.ts';
import { RepairTask } from './repair.ts';
import { LeaderTaskHost } from './leader-tasks.ts';
import { MetaMachine } from './meta-machine.ts';
import { MetaService } from './meta-service.ts';
import { type RaftLogStore, RaftDriver } from './raft-driver.ts';
import { RaftStore } from './raft-store.ts';
import { createMetricsRegistry, metricsRoute, type RunningHttpServer, startHttpServer } from '../metrics/index.ts';
import type { NodeView } from '../meta/index.ts';
import { type MasterMetricsSource, registerMasterMetrics } from './master-metrics.ts';
import { statusRoutes } from './status-page.ts';
import type { Registry } from 'prom-client';
import { Libp2pRaftTransport } from './raft-transport.ts';

export interface MasterOptions {
  /** A human name for logs and `dfs status` (m1, m2, ...). */
  readonly name: string;
  readonly dir: string;
  /** Multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/7001. */
  readonly listen: readonly string[];
  /** The other masters, as multiaddrs ending in /p2p/<peer id>. */
  readonly peers: readonly string[];
  readonly psk?: Uint8Array;
  /** How the secret is checked (PeerOptions.secretMode); default handshake. */
  readonly secretMode?: 'handshake' | 'pnet';
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly snapshotEveryEntries?: number;
  /** Unreferenced chunks are deleted from nodes once untouched this long. Default 10 min. */
  readonly gcGraceMs?: number;
  readonly gcIntervalMs?: number;
  /** No heartbeat for this long: a node is suspect (default 3 s), then dead (default 10 s). */
  readonly suspectAfterMs?: number;
  readonly deadAfterMs?: number;
  /** New storage nodes get data at once ('auto', a local cluster) or after `dfs node admit` ('manual', the default). */
  readonly admitNodes?: 'auto' | 'manual';
  /** Peer ids holding the cluster's admin key: taken for user `admin`, role admin (see access.ts). */
  readonly adminPeers?: readonly string[];
  /** Argon2 parameters for new password hashes (tests pass cheap ones; default OWASP's). */
  readonly passwords?: HashPasswordOptions;
  /** A new leader waits at most this long for the nodes' full reports before repairing. Default 15 s. */
  readonly repairReportWaitMs?: number;
  readonly clock?: Clock;
  readonly rng?: Rng;
  readonly logger?: Logger;
  /** Opens the Raft log (tests wrap the real store to inject disk faults). */
  readonly openRaftStore?: (dir: string) => Promise<RaftLogStore>;
  /** Persistence failed and the master stopped acting (a process exits from here). */
  readonly onFailure?: (err: Error) => void;
  /** host:port to serve /metrics, the status page (/) and /status.json on; default: none. */
  readonly http?: string;
}

export interface Master {
  readonly name: string;
  readonly peerId: string;
  readonly addrs: readonly string[];
  readonly driver: RaftDriver;
  readonly service: MetaService;
  readonly gc: GarbageCollector;
  readonly repair: RepairTask;
  readonly health: FailureDetector;
  readonly leaderTasks: LeaderTaskHost;
  /** Where the metrics and status page are served (host:port), when asked for. */
  readonly httpAddress?: string;
  stop(): Promise<void>;
}

/**
 * Written by `dfs master init`: this master has never run, so an empty Raft log means "new",
 * and it may bootstrap as a founding voter. Removed once its Raft state is on disk.
 */
export const BOOTSTRAP_MARKER = 'bootstrap-pending';

/** The peer id at the end of a multiaddr (/.../p2p/<id>); ERR_INVALID_ARGUMENT without one. */
export function peerIdOf(addr: string): string {
  const id = peerIdInAddr(addr);
  if (!id) throw new DfsError('ERR_INVALID_ARGUMENT', `master address ${addr} must end in /p2p/<peer id> (see dfs master init)`);
  return id;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Marks a master directory as new (see BOOTSTRAP_MARKER); `dfs master init` calls it. */
export async function markMasterNew(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, BOOTSTRAP_MARKER), 'this master has not run yet: it bootstraps as a founding voter on its first start\n', { mode: 0o600 });
}

/**
 * Starts a master: its libp2p peer (identity in `dir`), its Raft log (`dir/raft`), Raft over
 * /dfs/raft/1.0.0 to the other masters, the metadata service on /dfs/meta/1.0.0, and the
 * leader-only tasks (GC) under a host tied to confirmed leadership.
 */
export async function startMaster(options: MasterOptions): Promise<Master> {
  const logger = (options.logger ?? silentLogger).child({ master: options.name });
  const clock = options.clock ?? systemClock;
  const rng = options.rng ?? systemRng;
  // A directory with no identity yet is a new master, as is one `dfs master init` marked. The
  // mark stays until the Raft state is on disk, so a crash before that is still "new".
  if (!(await exists(join(options.dir, IDENTITY_FILE_NAME)))) await markMasterNew(options.dir);
  const isNew = await exists(join(options.dir, BOOTSTRAP_MARKER));
  const peerAddrs = new Map<string, string>();
  for (const addr of options.peers) peerAddrs.set(peerIdOf(addr), addr);
  const registry = createMetricsRegistry({ role: 'master', name: options.name });
  const peer: DfsPeer = await createPeer({
    dataDir: options.dir,
    ...(options.http !== undefined ? { metricsRegistry: registry } : {}),
    listen: [...options.listen],
    ...(options.psk ? { psk: options.psk, ...(options.secretMode ? { secretMode: options.secretMode } : {}) } : {}),
  });
  let store: RaftLogStore | undefined;
  let http: RunningHttpServer | undefined;
  try {
    if (peerAddrs.has(peer.peerId)) throw new DfsError('ERR_INVALID_ARGUMENT', `--peers lists this master itself (${peer.peerId})`);
    store = await (options.openRaftStore ?? RaftStore.open)(join(options.dir, 'raft'));
    const persisted = await store.load();
    const hasState = persisted !== undefined;
    if (!hasState && !isNew) throw stateMissing(options.dir, peer.peerId);
    const selfAddr = peer.listenAddrs[0];
    const masterAddrs = new Map(peerAddrs);
    if (selfAddr) masterAddrs.set(peer.peerId, selfAddr);
    const transport = new Libp2pRaftTransport(peer, peerAddrs, { snapshotDir: join(options.dir, 'raft-incoming'), logger });
    await transport.start();
    const machine = new MetaMachine();
    let failed: ((err: Error) => void) | undefined;
    const driver = await RaftDriver.start({
      id: peer.peerId,
      store,
      preloaded: { state: persisted },
      transport,
      machine,
      bootstrap: { voters: [peer.peerId, ...peerAddrs.keys()].sort(), learners: [] },
      tickMs: options.tickMs ?? 50,
      electionTicks: options.electionTicks ?? 10,
      // A heartbeat every other tick (100 ms, etcd's default) against an election timeout of
      // 500-1000 ms: five beats before the earliest timeout. Every beat costs each follower
      // a message through Noise and Yamux; at one per tick the three idle masters spent 0.11
      // cores, at two 0.07 (measured with bench/data.ts's CPU accounting).
      heartbeatTicks: heartbeatTicksFor(options.electionTicks ?? 10),
      clock,
      rng,
      logger,
      onFailure: (err) => failed?.(err),
      ...(options.snapshotEveryEntries !== undefined ? { snapshotEveryEntries: options.snapshotEveryEntries } : {}),
    });
    await driver.idle(); // the first Ready (the founding configuration) is persisted, or failed
    if (driver.failure) throw driver.failure;
    await rm(join(options.dir, BOOTSTRAP_MARKER), { force: true });
    let service: MetaService | undefined;
    const plane = () => service?.dataPlane;
    // GC and repair deletes carry delete tickets, signed by this leader for itself as bearer.
    const deleteOnNode: NodeChunkDeleter = (node, ids, fence) => {
      if (!service) throw new DfsError('ERR_NOT_LEADER', 'the metadata service is not running');
      const access = service.access;
      return deleteChunks(peer, addrOf(node), ids, fence, (batch) => access.ticket('delete', batch, peer.peerId, fence));
    };
    const repair = new RepairTask({
      plane,
      nodes: () => machine.state.nodes(),
      refCount: (id) => machine.state.refCount(id),
      referencedChunks: () => machine.state.referencedChunks(),
      replicationFactor: () => machine.state.settings.replicationFactor,
      deleteOnNode,
      now: () => clock.now(),
      logger,
      ...(options.repairReportWaitMs !== undefined ? { reportWaitMs: options.repairReportWaitMs } : {}),
    });
    service = new MetaService({
      name: options.name,
      peer,
      driver,
      machine,
      masterAddrs,
      clock,
      rng,
      logger,
      dataPlane: { ...(options.gcGraceMs !== undefined ? { gcGraceMs: options.gcGraceMs } : {}) },
      repair: () => repair,
      autoAdmit: options.admitNodes === 'auto',
      adminPeers: new Set(options.adminPeers ?? []),
      ...(options.passwords ? { passwords: options.passwords } : {}),
    });
    const metaService = service;
    await metaService.start();
    const health = new FailureDetector({
      plane,
      nodes: () => machine.state.nodes(),
      commit: async (nodeId, state) => {
        await metaService.proposeOwn({ op: 'setNodeState', nodeId, state, nowMs: clock.now() });
      },
      now: () => clock.now(),
      logger,
      ...(options.suspectAfterMs !== undefined ? { suspectAfterMs: options.suspectAfterMs } : {}),
      ...(options.deadAfterMs !== undefined ? { deadAfterMs: options.deadAfterMs } : {}),
    });
    const gc = new GarbageCollector({
      plane,
      refCount: (id) => machine.state.refCount(id),
      node: (id) => machine.state.node(id),
      deleteOnNode,
      intervalMs: options.gcIntervalMs ?? Math.min(5_000, Math.max(100, (options.gcGraceMs ?? 600_000) / 4)),
      logger,
    });
    const leaderTasks = new LeaderTaskHost({ driver, tasks: [health, repair, gc], clock, logger });
    leaderTasks.start();
    if (options.http !== undefined) {
      try {
        http = await serveHttp(registry, options.http, metaService, peer.peerId, logger);
      } catch (err) {
        // A port already taken: nothing of this master may keep running.
        await leaderTasks.stop();
        await transport.stop();
        await driver.close();
        throw err;
      }
    }
    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        await http?.close();
        await leaderTasks.stop();
        await transport.stop();
        await driver.close();
        await peer.stop();
      })());
    failed = (err) => {
      void leaderTasks.stop();
      options.onFailure?.(err);
    };
    if (driver.failure) failed(driver.failure);
    return { name: options.name, peerId: peer.peerId, addrs: peer.listenAddrs, driver, service: metaService, gc, repair, health, leaderTasks, ...(http ? { httpAddress: http.address } : {}), stop };
  } catch (err) {
    await http?.close().catch(() => {});
    await store?.close().catch(() => {});
    await peer.stop().catch(() => {});
    throw err;
  }
}

/** /metrics, the status page and /status.json, read from the service as this master itself. */
async function serveHttp(registry: Registry, listen: string, service: MetaService, selfPeerId: string, logger: Logger): Promise<RunningHttpServer> {
  const source: MasterMetricsSource = {
    status: () => service.status(),
    nodes: async () => {
      if (service.dataPlane === undefined) return undefined;
      const answer = await service.handle({ type: 'nodes' }, { peerId: selfPeerId });
      return answer.ok ? (answer.value as NodeView[]) : undefined;
    },
  };
  registerMasterMetrics(registry, source);
  return startHttpServer({ listen, routes: { '/metrics': metricsRoute(registry), ...statusRoutes(source) }, logger });
}

function stateMissing(dir: string, peerId: string): DfsError {
  return new DfsError(
    'ERR_RAFT_STATE_MISSING',
    `master ${peerId} has run before (its identity is in ${dir}) but its Raft log ${join(dir, 'raft')} is empty. ` +
      'Starting it as a voter could vote twice in one term. If its disk was lost, remove it from the cluster and add it back as a new member ' +
      '(a fresh --dir and `dfs master init`); if the Raft directory was moved, put it back.',
  );
}

/**
 * A heartbeat every 2 ticks at the default election timeout of 10 (etcd's 100 ms against 1 s),
 * but always at least 5 beats per timeout: every tick for timeouts under 10 ticks.
 */
function heartbeatTicksFor(electionTicks: number): number {
  return Math.max(1, Math.min(2, Math.floor(electionTicks / 5)));
}
