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
import { ControlLoop } from './control-loop.ts';
import { NodeDirectory } from './node-directory.ts';
import { Scrubber } from './scrubber.ts';
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
  try {
    // The identity signs receipts too: loaded here and handed to the peer (same key, same id).
    const privateKey = await loadOrCreateIdentity(options.dir);
    peer = await createPeer({
      privateKey,
      listen: [...options.listen],
      bootstrap: [...options.masters],
      ...(options.psk ? { psk: options.psk } : {}),
      ...(options.secretMode ? { secretMode: options.secretMode } : {}),
    });
    const thePeer = peer;
    const masterIds = new Set(options.masters.map(peerIdInAddr).filter((x): x is string => x !== undefined));
    const directory = new NodeDirectory();
    // The control loop comes next; until it runs there is nothing to refresh from.
    let refreshDirectory = (): Promise<void> => Promise.resolve();
    const service = new ChunkService({
      peer,
      privateKey,
      store,
      blake3,
      canDelete: (peerId) => masterIds.has(peerId),
      resolveNode: (peerId) => directory.addressOf(peerId),
      refreshNodes: () => refreshDirectory(),
      ...(options.maxInflightBytesPerPeer !== undefined ? { maxInflightBytesPerPeer: options.maxInflightBytesPerPeer } : {}),
    });
    await service.start();
    const meta = new MetaClient({ peer, masters: options.masters, timeoutMs: 5_000, attemptTimeoutMs: 2_000 });
    const self = { peerId: peer.peerId, addrs: peer.listenAddrs };
    const logger = (options.logger ?? silentLogger).child({ node: options.name, peerId: peer.peerId });
    const log = (what: string, err: unknown): void => logger.warn({ what, err: (err as Error)?.message ?? String(err) }, `${what} failed`);
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
      scrubber,
      clock,
      onError: log,
      ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
      ...(options.capacityBytes !== undefined ? { capacityBytes: options.capacityBytes } : {}),
      ...(options.replicationConcurrency !== undefined ? { replicationConcurrency: options.replicationConcurrency } : {}),
      ...(options.replicationBytesPerSec !== undefined ? { replicationBytesPerSec: options.replicationBytesPerSec } : {}),
      link: {
        register: async () => {
          await meta.write({ op: 'registerNode', nodeId: self.peerId, name: options.name.slice(0, 64), addrs: self.addrs, capacityBytes: options.capacityBytes ?? 0 });
        },
        heartbeat: (request) => meta.leaderRequest({ type: 'heartbeat', ...request }),
        report: async (page) => {
          await meta.leaderRequest({ type: 'report', nodeId: self.peerId, ...page });
        },
      },
      // The receipt of the target is checked by putChunk before this resolves.
      copy: (toAddr, id, bytes, fence, signal) => putChunk(thePeer, [toAddr], id, bytes, fence, { signal }),
    });
    refreshDirectory = () => control.refreshDirectory();
    control.start();
    scrubber.start();
    return {
      name: options.name,
      peerId: self.peerId,
      addrs: self.addrs,
      store,
      control,
      scrubber,
      scrubNow: () => scrubber.scrubNow(),
      async stop() {
        meta.close(); // a heartbeat under way stops retrying now
        await control.stop();
        await scrubber.stop();
        await service.stop();
        await thePeer.stop();
        await store.close();
      },
    };
  } catch (err) {
    await peer?.stop().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
}
