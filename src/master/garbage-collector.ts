import { deleteChunks } from '../client/chunk-client.ts';
import type { DfsPeer } from '../net/index.ts';
import { addrOf } from './data-plane.ts';
import type { MetaMachine } from './meta-machine.ts';
import type { MetaService } from './meta-service.ts';

export interface GarbageCollectorOptions {
  readonly peer: DfsPeer;
  readonly service: MetaService;
  readonly machine: MetaMachine;
  readonly intervalMs: number;
  /** Chunks handled per round. */
  readonly batch?: number;
}

/**
 * On the leader, every `intervalMs`: chunks no manifest references and nobody touched for the
 * grace period (see DataPlane.garbage) are deleted from every node holding them. A chunk is
 * tombstoned first, so it is neither offered for dedup nor accepted in a commit while it goes.
 * Never a chunk a committed manifest references: the reference count is read at that moment.
 */
export class GarbageCollector {
  readonly #o: GarbageCollectorOptions;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  readonly stats = { rounds: 0, chunksDeleted: 0, failures: 0 };

  constructor(options: GarbageCollectorOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => void this.runOnce(), this.#o.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async runOnce(): Promise<number> {
    const plane = this.#o.service.dataPlane;
    if (!plane || this.#running) return 0;
    this.#running = true;
    try {
      this.stats.rounds++;
      const garbage = plane.garbage(this.#o.batch ?? 512);
      const byNode = new Map<string, string[]>();
      for (const { id, holders } of garbage) {
        plane.markDeleting(id);
        for (const n of holders) byNode.set(n, [...(byNode.get(n) ?? []), id]);
      }
      const done = new Map<string, string[]>(garbage.map(({ id }) => [id, []]));
      await Promise.all(
        [...byNode].map(async ([nodeId, ids]) => {
          const node = this.#o.machine.state.node(nodeId);
          if (!node) return;
          try {
            await deleteChunks(this.#o.peer, addrOf(node), ids);
            for (const id of ids) done.get(id)!.push(nodeId);
          } catch {
            this.stats.failures++; // retried next round: the node still reports the chunk
          }
        }),
      );
      for (const [id, nodes] of done) plane.deleted(id, nodes);
      this.stats.chunksDeleted += garbage.length;
      return garbage.length;
    } finally {
      this.#running = false;
    }
  }
}
