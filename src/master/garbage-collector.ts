import { type Logger, silentLogger } from '../log/index.ts';
import type { NodeRecord } from '../meta/index.ts';
import type { DataPlane } from './data-plane.ts';
import type { LeaderContext, LeaderTask } from './leader-tasks.ts';

/** Deletes chunks on one node under a fence; answers the ids the node kept because of it. */
export type NodeChunkDeleter = (node: NodeRecord, ids: readonly string[], fence: number) => Promise<{ kept: readonly string[] }>;

export interface GarbageCollectorOptions {
  /** The leader's data plane (undefined while this master does not lead). */
  readonly plane: () => DataPlane | undefined;
  /** Replicated state: how many committed manifests reference a chunk; a node's record. */
  readonly refCount: (chunkId: string) => number;
  readonly node: (nodeId: string) => NodeRecord | undefined;
  readonly deleteOnNode: NodeChunkDeleter;
  readonly intervalMs: number;
  /** Chunks handled per round. */
  readonly batch?: number;
  readonly logger?: Logger;
}

/**
 * A leader-only task, every `intervalMs`: chunks no manifest references, promised to no upload
 * and untouched for the grace period (DataPlane.garbage) are deleted from every node holding
 * them. Each round:
 * 1. decides and tombstones its chunks (neither offered for dedup nor accepted in a commit
 *    while they go) and takes a fence;
 * 2. confirms leadership through a quorum — which also applies everything committed so far;
 * 3. looks again at every chunk: referenced now, or promised to an upload since → called off;
 * 4. sends the deletes under the fence, so a node keeps a chunk it accepted a put of after the
 *    decision (a re-upload of the same bytes racing the delete).
 */
export class GarbageCollector implements LeaderTask {
  readonly name = 'gc';
  readonly #o: GarbageCollectorOptions;
  readonly #log: Logger;
  readonly stats = { rounds: 0, chunksDeleted: 0, calledOff: 0, keptByFence: 0, failures: 0 };

  constructor(options: GarbageCollectorOptions) {
    this.#o = options;
    this.#log = (options.logger ?? silentLogger).child({ component: 'gc' });
  }

  async run(ctx: LeaderContext): Promise<void> {
    for (;;) {
      await ctx.sleep(this.#o.intervalMs);
      await this.runOnce(ctx);
    }
  }

  /** One round; returns how many chunks it sent deletes for. */
  async runOnce(ctx: LeaderContext): Promise<number> {
    const plane = this.#o.plane();
    if (!plane) return 0;
    this.stats.rounds++;
    const decided = plane.garbage(this.#o.batch ?? 512);
    if (decided.length === 0) return 0;
    for (const { id } of decided) plane.markDeleting(id);
    const fence = plane.fences.next();
    plane.noteDeleteDecided(decided.map((d) => d.id), fence);
    let going: typeof decided = [];
    try {
      await ctx.confirm();
      if (!ctx.leading()) return 0; // a higher term arrived since the barrier
      going = this.#stillGarbage(plane, decided);
      this.#log.info({ term: ctx.term, fence, decided: decided.length, going: going.length }, 'gc round decided');
      await this.#send(plane, going, fence);
      return going.length;
    } finally {
      // Whatever was not sent (called off, or leadership lost before sending) settles unsent.
      const sent = new Set(going.map((g) => g.id));
      for (const { id } of decided) if (!sent.has(id)) plane.deleted(id, []);
    }
  }

  /** The decided chunks that are still garbage now that the state is current. */
  #stillGarbage(plane: DataPlane, decided: ReadonlyArray<{ id: string; holders: string[] }>): Array<{ id: string; holders: string[] }> {
    return decided.filter(({ id }) => {
      if (this.#o.refCount(id) === 0 && !plane.promised(id)) return true;
      this.stats.calledOff++;
      return false;
    });
  }

  async #send(plane: DataPlane, going: ReadonlyArray<{ id: string; holders: string[] }>, fence: number): Promise<void> {
    const byNode = new Map<string, string[]>();
    for (const { id, holders } of going) for (const n of holders) byNode.set(n, [...(byNode.get(n) ?? []), id]);
    const gone = new Map<string, string[]>(going.map(({ id }) => [id, []]));
    await Promise.all(
      [...byNode].map(async ([nodeId, ids]) => {
        const node = this.#o.node(nodeId);
        if (!node) return;
        try {
          const { kept } = await this.#o.deleteOnNode(node, ids, fence);
          const keptSet = new Set(kept);
          for (const id of ids) if (!keptSet.has(id)) gone.get(id)!.push(nodeId);
          this.stats.keptByFence += keptSet.size;
          this.#log.info({ node: nodeId, fence, deleted: ids.filter((id) => !keptSet.has(id)), kept }, 'gc deleted chunks on a node');
        } catch (err) {
          plane.deleteOutcomeUnknown(nodeId, ids);
          this.stats.failures++;
          this.#log.warn({ node: nodeId, fence, ids: ids.length, err: (err as Error).message }, 'gc delete failed on a node');
        }
      }),
    );
    for (const [id, nodes] of gone) plane.deleted(id, nodes);
    this.stats.chunksDeleted += going.length;
  }
}
