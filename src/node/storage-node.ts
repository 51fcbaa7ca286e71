import { join } from 'node:path';
import { loadBlake3 } from '../chunker/index.ts';
import { MetaClient } from '../client/index.ts';
import { MAX_CHUNK_IDS_PER_MESSAGE } from '../meta/index.ts';
import { DfsError } from '../errors/index.ts';
import { createPeer, type DfsPeer, peerIdInAddr } from '../net/index.ts';
import { ChunkStore } from '../storage/index.ts';
import { ChunkService } from './chunk-service.ts';
import { LeaderFence } from './leader-fence.ts';

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
}

export interface StorageNode {
  readonly name: string;
  readonly peerId: string;
  readonly addrs: readonly string[];
  readonly store: ChunkStore;
  stop(): Promise<void>;
}

/** Ids per report page and per heartbeat delta: the protocol's bound. */
const PAGE_IDS = MAX_CHUNK_IDS_PER_MESSAGE;

/**
 * A storage node: a ChunkStore served over /dfs/chunk/1.0.0, registered with the masters and
 * heartbeating the leader with its load and what it stored or dropped since the last beat.
 * When the leader asks (after it took over, or when deltas overflowed) it sends a full report.
 */
export async function startStorageNode(options: StorageNodeOptions): Promise<StorageNode> {
  if (options.masters.length === 0) throw new DfsError('ERR_USAGE', 'a storage node needs --masters');
  const blake3 = await loadBlake3();
  const store = await ChunkStore.open({ dir: join(options.dir, 'chunks'), blake3 });
  let peer: DfsPeer | undefined;
  try {
    peer = await createPeer({ dataDir: options.dir, listen: [...options.listen], bootstrap: [...options.masters], ...(options.psk ? { psk: options.psk } : {}) });
    const masterIds = new Set(options.masters.map(peerIdInAddr).filter((x): x is string => x !== undefined));
    const service = new ChunkService({ peer, store, blake3, canDelete: (peerId) => masterIds.has(peerId) });
    await service.start();
    const meta = new MetaClient({ peer, masters: options.masters, timeoutMs: 5_000, attemptTimeoutMs: 2_000 });
    const reporter = new ChunkReporter(store);
    // Deletes are refused until a heartbeat answer brings the leader's fence (see LeaderFence).
    const leaderFence = new LeaderFence(store.fences);
    const self = { peerId: peer.peerId, addrs: peer.listenAddrs };
    let registered = false;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;

    const register = async () => {
      await meta.write({ op: 'registerNode', nodeId: self.peerId, addrs: self.addrs, capacityBytes: options.capacityBytes ?? 0 });
      registered = true;
    };
    const beat = async () => {
      const s = await store.stats();
      const usedBytes = s.bytes;
      const freeBytes = Math.max(0, Math.min(s.freeBytes, options.capacityBytes !== undefined ? options.capacityBytes - usedBytes : Infinity));
      const { added, removed } = reporter.takeDelta(PAGE_IDS);
      try {
        const r = (await meta.leaderRequest({
          type: 'heartbeat',
          nodeId: self.peerId,
          freeBytes,
          capacityBytes: options.capacityBytes ?? s.totalBytes,
          usedBytes,
          chunkCount: s.chunks,
          inflight: 0,
          added,
          removed,
        })) as { registered: boolean; fullReportWanted: boolean; fence?: unknown };
        leaderFence.observe(r.fence); // optional in the answer: read defensively
        if (!r.registered) await register();
        if (r.fullReportWanted || reporter.overflowed) await sendFullReport();
      } catch (err) {
        reporter.putBack(added, removed); // try again with the next beat (a new leader asks for a full report anyway)
        throw err;
      }
    };
    const sendFullReport = async () => {
      reporter.clear();
      let page: string[] = [];
      let first = true;
      for await (const c of store.list()) {
        page.push(c.id);
        if (page.length === PAGE_IDS) {
          await meta.leaderRequest({ type: 'report', nodeId: self.peerId, ids: page, first, last: false });
          first = false;
          page = [];
        }
      }
      await meta.leaderRequest({ type: 'report', nodeId: self.peerId, ids: page, first, last: true });
    };
    const loop = () => {
      if (stopped) return;
      const run = registered ? beat() : register().then(beat);
      run
        .catch((err: unknown) => {
          if (!stopped) console.error(`node ${options.name}: heartbeat failed: ${(err as Error).message}`);
        })
        .finally(() => {
          if (!stopped) timer = setTimeout(loop, options.heartbeatMs ?? 1_000);
        });
    };
    loop();
    const thePeer = peer;
    return {
      name: options.name,
      peerId: self.peerId,
      addrs: self.addrs,
      store,
      async stop() {
        stopped = true;
        clearTimeout(timer);
        meta.close(); // a heartbeat under way stops retrying now
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

/** Chunks stored or dropped since the last heartbeat, bounded; overflow means "send a full report". */
class ChunkReporter {
  #added = new Set<string>();
  #removed = new Set<string>();
  overflowed = false;

  constructor(store: ChunkStore) {
    store.onChange((id, change) => {
      const [into, from] = change === 'added' ? [this.#added, this.#removed] : [this.#removed, this.#added];
      from.delete(id);
      if (into.size >= 16 * PAGE_IDS) this.overflowed = true;
      else into.add(id);
    });
  }

  takeDelta(max: number): { added: string[]; removed: string[] } {
    const added = [...this.#added].slice(0, max);
    const removed = [...this.#removed].slice(0, max);
    for (const id of added) this.#added.delete(id);
    for (const id of removed) this.#removed.delete(id);
    return { added, removed };
  }

  putBack(added: readonly string[], removed: readonly string[]): void {
    for (const id of added) if (!this.#removed.has(id)) this.#added.add(id);
    for (const id of removed) if (!this.#added.has(id)) this.#removed.add(id);
  }

  clear(): void {
    this.#added.clear();
    this.#removed.clear();
    this.overflowed = false;
  }
}
