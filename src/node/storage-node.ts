import { type Logger, silentLogger } from '../log/index.ts';
import { join } from 'node:path';
import { loadBlake3 } from '../chunker/index.ts';
import { MetaClient } from '../meta/meta-client.ts';
import { putChunk } from '../protocol/chunk-client.ts';
import type { Clock } from '../env/index.ts';
import { systemClock } from '../env/index.ts';
import { DfsError } from '../errors/index.ts';
import { createPeer, type DfsPeer, loadOrCreateIdentity, peerIdInAddr, type PeerOptions } from '../net/index.ts';
import { ChunkStore } from '../storage/index.ts';
import { ChunkService } from '../protocol/chunk-service.ts';
import { ClusterKey } from './cluster-key.ts';
import { ControlLoop } from './control-loop.ts';
import { NodeDirectory } from './node-directory.ts';
import { Scrubber } from './scrubber.ts';
import { createMetricsRegistry, metricsRoute, type RunningHttpServer, startHttpServer } from '../metrics/index.ts';
import { registerNodeMetrics } from './node-metrics.ts';
import type { ScrubPass } from './scrubber.ts';

export interface StorageNodeOptions {
  readonly name: string;
  readonly dir: string;
  readonly listen: readonly string[];
  /** Every master's multiaddr, ending in /p2p/<peer id>. */
  readonly masters: readonly string[];
  /** Bytes this node offers; default: whatever the disk has. */
  readonly capacityBytes?: number;
  readonly heartbeatMs?: number;
  readonly psk?: Uint8Array;
  /** How the cluster secret is checked (see PeerOptions.secretMode). */
  readonly secretMode?: PeerOptions['secretMode'];
  /** Every chunk is re-hashed within this period (the scrubber). Default 7 days. */
  readonly scrubIntervalMs?: number;
  /** The scrubber's slowest pace, bytes/s. Default 1 MiB/s. */
  readonly scrubMinBytesPerSec?: number;
  /** Quarantined (corrupt) chunk files are deleted after this long. Default 24 hours. */
  readonly quarantineRetentionMs?: number;
  /** Copies the leader asks for, made at once. Default 4. */
  readonly replicationConcurrency?: number;
  /** Bandwidth of those copies, bytes/s. Default: unlimited. */
  readonly replicationBytesPerSec?: number;
  /** Share of the in-flight budget one remote peer may hold (see ChunkServiceOptions). */
  readonly maxInflightBytesPerPeer?: number;
  /** Time and timers of the control loop and the scrubber. Default: the system's. */
  readonly clock?: Clock;
  /** Structured log lines (heartbeat, scrub and copy failures, quarantined chunks). */
  readonly logger?: Logger;
  /** host:port to serve Prometheus metrics on (/metrics); default: none. */
  readonly http?: string;
}

export interface StorageNode {
  readonly name: string;
  readonly peerId: string;
  readonly addrs: readonly string[];
  readonly store: ChunkStore;
  /** The heartbeats and the commands they bring (copies, verifies), and the node list. */
  readonly control: ControlLoop;
  readonly scrubber: Scrubber;
  /** Re-hashes every chunk now (`dfs node scrub <node> --now`); resolves with what it found. */
  scrubNow(): Promise<ScrubPass>;
  /** Where /metrics is served (host:port), when asked for. */
  readonly httpAddress?: string;
  stop(): Promise<void>;
}

/**
 * A storage node: a ChunkStore served over /dfs/chunk/1.0.0, registered with the masters and
 * heartbeating the leader (ControlLoop) with its load, what it stored or dropped since the last
 * beat and the results of the copies it was asked for; the answers bring the leader's fence, the
 * node list (the only peers this node dials: pipelines name peer ids, resolved through it),
 * chunks to verify and copies to make. A scrubber re-hashes every chunk in the background.
 * Receipts for stored chunks are signed with the node's identity key.
 */
export async function startStorageNode(options: StorageNodeOptions): Promise<StorageNode> {
  if (options.masters.length === 0) throw new DfsError('ERR_USAGE', 'a storage node needs --masters');
  const blake3 = await loadBlake3();
  const clock = options.clock ?? systemClock;
  const store = await ChunkStore.open({ dir: join(options.dir, 'chunks'), blake3, clock: () => clock.now() });
  let peer: DfsPeer | undefined;
  let http: RunningHttpServer | undefined;
  try {
    // The identity signs receipts too: loaded here and handed to the peer (same key, same id).
    const privateKey = await loadOrCreateIdentity(options.dir);
    const registry = createMetricsRegistry({ role: 'node', name: options.name });
    peer = await createPeer({
      privateKey,
      ...(options.http !== undefined ? { metricsRegistry: registry } : {}),
      listen: [...options.listen],
      bootstrap: [...options.masters],
      ...(options.psk ? { psk: options.psk } : {}),
      ...(options.secretMode ? { secretMode: options.secretMode } : {}),
    });
    const thePeer = peer;
    const masterIds = new Set(options.masters.map(peerIdInAddr).filter((x): x is string => x !== undefined));
    const directory = new NodeDirectory();
    // Filled from the masters' answers by the control loop; chunk tickets are checked with it.
    const clusterKey = new ClusterKey();
    // The control loop comes next; until it runs there is nothing to refresh from.
    let refreshDirectory = (): Promise<void> => Promise.resolve();
    const metrics = registerNodeMetrics(registry, store);
    // First of what listens: a port already taken fails the start before anything else runs.
    if (options.http !== undefined) http = await startHttpServer({ listen: options.http, routes: { '/metrics': metricsRoute(registry) }, logger: options.logger });
    const service = new ChunkService({
      peer,
      privateKey,
      observe: (op, outcome, bytes, seconds) => metrics.observe(op, outcome, bytes, seconds),
      store,
      blake3,
      canDelete: (peerId) => masterIds.has(peerId),
      resolveNode: (peerId) => directory.addressOf(peerId),
      knowsNode: (peerId) => directory.knows(peerId),
      clusterKey,
      clock,
      refreshNodes: () => refreshDirectory(),
      ...(options.maxInflightBytesPerPeer !== undefined ? { maxInflightBytesPerPeer: options.maxInflightBytesPerPeer } : {}),
    });
    await service.start();
    const meta = new MetaClient({ peer, masters: options.masters, timeoutMs: 5_000, attemptTimeoutMs: 2_000 });
    const self = { peerId: peer.peerId, addrs: peer.listenAddrs };
    const logger = (options.logger ?? silentLogger).child({ node: options.name, peerId: peer.peerId });
    const log = (what: string, err: unknown): void => {
      const fields = { what, err: (err as Error)?.message ?? String(err) };
      // A master announcing another cluster key is an attack or a misconfiguration, not noise.
      if (what === 'cluster key') logger.error(fields, 'refused a cluster key other than the one learnt first');
      else logger.warn(fields, `${what} failed`);
    };
    const scrubber = new Scrubber({
      store,
      clock,
      ...(options.scrubIntervalMs !== undefined ? { scrubIntervalMs: options.scrubIntervalMs } : {}),
      ...(options.scrubMinBytesPerSec !== undefined ? { minBytesPerSec: options.scrubMinBytesPerSec } : {}),
      ...(options.quarantineRetentionMs !== undefined ? { quarantineRetentionMs: options.quarantineRetentionMs } : {}),
      onError: (err) => log('scrub', err),
    });
    const control: ControlLoop = new ControlLoop({
      nodeId: self.peerId,
      store,
      directory,
      clusterKey,
      scrubber,
      clock,
      onError: log,
      ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
      ...(options.capacityBytes !== undefined ? { capacityBytes: options.capacityBytes } : {}),
      ...(options.replicationConcurrency !== undefined ? { replicationConcurrency: options.replicationConcurrency } : {}),
      ...(options.replicationBytesPerSec !== undefined ? { replicationBytesPerSec: options.replicationBytesPerSec } : {}),
      link: {
        register: async () => {
          return meta.write({ op: 'registerNode', nodeId: self.peerId, name: options.name.slice(0, 64), addrs: self.addrs, capacityBytes: options.capacityBytes ?? 0 });
        },
        heartbeat: (request) => meta.leaderRequest({ type: 'heartbeat', ...request }),
        report: async (page) => {
          await meta.leaderRequest({ type: 'report', nodeId: self.peerId, ...page });
        },
      },
      // The receipt of the target is checked by putChunk before this resolves.
      copy: (toAddr, id, bytes, fence, ticket, signal) => putChunk(thePeer, [toAddr], id, bytes, fence, ticket, { signal }),
    });
    refreshDirectory = () => control.refreshDirectory();
    control.start();
    scrubber.start();
    return {
      ...(http ? { httpAddress: http.address } : {}),
      name: options.name,
      peerId: self.peerId,
      addrs: self.addrs,
      store,
      control,
      scrubber,
      scrubNow: () => scrubber.scrubNow(),
      async stop() {
        await http?.close();
        meta.close(); // a heartbeat under way stops retrying now
        await control.stop();
        await scrubber.stop();
        await service.stop();
        await thePeer.stop();
        await store.close();
      },
    };
  } catch (err) {
    await http?.close().catch(() => {});
    await peer?.stop().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
}
