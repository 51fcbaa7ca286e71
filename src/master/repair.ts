import { type Logger, silentLogger } from '../log/index.ts';
import type { MasterStatus, NodeRecord, NodeState } from '../meta/index.ts';
import { verifyReceipt } from '../net/receipt.ts';
import { addrOf, type DataPlane } from './data-plane.ts';
import type { NodeChunkDeleter } from './garbage-collector.ts';
import type { LeaderContext, LeaderTask } from './leader-tasks.ts';

/** What a node said about a copy it was asked to make. */
export interface ReplicateResult {
  readonly id: string;
  readonly to: string;
  readonly ok: boolean;
  readonly code?: string | undefined;
  /** The target's receipt signature for (id, the copy's fence), when ok. */
  readonly sig?: string | undefined;
}

/** Replication health of the referenced chunks, as `dfs status` shows it (the protocol's type). */
export type ChunkHealth = NonNullable<MasterStatus['chunks']>;

export interface RepairOptions {
  readonly plane: () => DataPlane | undefined;
  readonly nodes: () => readonly NodeRecord[];
  readonly refCount: (chunkId: string) => number;
  readonly referencedChunks: () => Iterable<string>;
  readonly replicationFactor: () => number;
  readonly deleteOnNode: NodeChunkDeleter;
  readonly now: () => number;
  readonly logger?: Logger;
  /** How often the leader looks for work. Default 200 ms. */
  readonly checkEveryMs?: number;
  /** A new leader decides nothing until every live node reported, or this long. Default 15 s. */
  readonly reportWaitMs?: number;
  /** Copies one node makes (as source) or receives (as target) at once. Default 32. */
  readonly copiesPerNode?: number;
  /** A copy not confirmed by its target within this long is given up and tried again. Default 30 s. */
  readonly copyTimeoutMs?: number;
  /** Room a target must have for one chunk (the largest a chunk can be). Default 8 MiB. */
  readonly chunkRoomBytes?: number;
}

interface Copy {
  readonly source: string;
  readonly target: string;
  readonly fence: number;
  readonly startedMs: number;
}

/** Node states whose copies count toward the replication factor. */
const COUNTS: ReadonlySet<NodeState> = new Set(['alive', 'suspect']);
/** Node states a copy can be read from. */
const READABLE: ReadonlySet<NodeState> = new Set(['alive', 'suspect', 'draining']);

/** A round rests at least this many times as long as its survey took (RepairTask.run). */
const SURVEY_REST_FACTOR = 9;
/** The longest rest between rounds, and while chunks wait for copies (RepairTask.run). */
const MAX_REST_MS = 5_000;
const MAX_REST_WITH_WORK_MS = 1_000;

/**
 * A leader-only task that keeps every referenced chunk at its replication factor:
 * - **repair**: a chunk with fewer counted copies (on alive or suspect nodes; dead and draining
 *   ones do not count) is copied node to node — a surviving holder is asked (with its next
 *   heartbeat answer) to put it on a target chosen like a placement; fewest copies first; at
 *   most `copiesPerNode` in flight per source and per target. A copy counts only once the target
 *   itself reports the chunk.
 * - **trim**: a chunk with more counted copies than needed (a node came back after repair; a
 *   drained node's copies) loses the extras — draining holders first — under a fence, after a
 *   leadership confirmation, and only while the copies that stay are on alive nodes that
 *   reported to this leader.
 * A new leader takes no decision until the live nodes have sent their full reports (bounded wait).
 */
export class RepairTask implements LeaderTask {
  readonly name = 'repair';
  readonly #o: RepairOptions;
  readonly #log: Logger;
  readonly #inflight = new Map<string, Copy[]>();
  readonly #results: ReplicateResult[] = [];
  readonly #done: number[] = [];
  #repaired = 0;
  #health: ChunkHealth = { total: 0, underReplicated: 0, missing: 0, repairing: 0, repaired: 0, copiesPerSecond: 0, ready: false };
  #plane: DataPlane | undefined;
  #lastSurveyMs = 0;
  /** Whether the last round found chunks to copy or copies under way. */
  #hadWork = false;

  constructor(options: RepairOptions) {
    this.#o = options;
    this.#log = (options.logger ?? silentLogger).child({ component: 'repair' });
  }

  /** Counted now (not as of the last round): a status right after a node died shows it. */
  get health(): ChunkHealth {
    const plane = this.#o.plane();
    if (!plane || plane !== this.#plane) return this.#health;
    const states = new Map(this.#o.nodes().map((n) => [n.id, n]));
    const { health } = this.#survey(plane, states);
    return { ...this.#health, ...health, repairing: this.#inflightCount() };
  }

  /** Copies under way whose source or target is `nodeId`. */
  inflightFor(nodeId: string): number {
    let n = 0;
    for (const copies of this.#inflight.values()) for (const c of copies) if (c.source === nodeId || c.target === nodeId) n++;
    return n;
  }

  /**
   * A node's heartbeat told how its copies went: a failure is planned again at once; a success
   * that carries the target's receipt (checked against the copy's fence) counts now — the
   * target's own word, without waiting for its next report.
   */
  noteResults(nodeId: string, results: readonly ReplicateResult[]): void {
    for (const r of results) {
      // Only the node a copy was asked of may say how it went.
      if (!this.#inflight.get(r.id)?.some((c) => c.target === r.to && c.source === nodeId)) continue;
      if (!r.ok) this.#results.push(r);
      else if (r.sig !== undefined) void this.#countReceipt(r.id, r.to, r.sig);
    }
    if (results.some((r) => !r.ok)) this.#log.info({ node: nodeId, failed: results.filter((r) => !r.ok).length }, 'copies failed on a node');
  }

  async #countReceipt(id: string, to: string, sig: string): Promise<void> {
    const copy = this.#inflight.get(id)?.find((c) => c.target === to);
    const plane = this.#plane;
    if (!copy || !plane) return;
    if (await verifyReceipt(id, copy.fence, { node: to, sig })) {
      if (this.#plane === plane && plane.receiptFresh(id, copy.fence)) plane.locations.add(id, to);
    }
  }

  async run(ctx: LeaderContext): Promise<void> {
    this.#lastSurveyMs = 0; // a new leadership: nothing measured yet
    for (;;) {
      // A round's survey walks every referenced chunk, so its cost grows with what is stored
      // (measured: 90-110 ms for 200,000 chunks, a third of a core at a fixed 200 ms interval;
      // a million chunks would take most of one). Resting SURVEY_REST_FACTOR times the last
      // survey keeps repair under a tenth of the leader's thread however large the namespace,
      // where a fixed interval would have it spend all of it; small clusters keep the interval.
      // The rest is capped (lower while copies are wanted, as they are queued once a round),
      // so a survey that seemed long because the clock jumped or the process was paused
      // cannot stall repair.
      const capMs = this.#hadWork ? MAX_REST_WITH_WORK_MS : MAX_REST_MS;
      const restMs = Math.min(capMs, this.#lastSurveyMs * SURVEY_REST_FACTOR);
      await ctx.sleep(Math.max(this.#o.checkEveryMs ?? 200, Number.isFinite(restMs) ? restMs : 0));
      await this.runOnce(ctx);
    }
  }

  /** How long the last round's survey took (ms, the injected clock). */
  get lastSurveyMs(): number {
    return this.#lastSurveyMs;
  }

  /** One round: settle copies, count, queue new copies, trim extras. */
  async runOnce(ctx: LeaderContext): Promise<void> {
    const plane = this.#o.plane();
    if (!plane) return;
    if (plane !== this.#plane) this.#resetFor(plane);
    const states = new Map(this.#o.nodes().map((n) => [n.id, n]));
    const ready = this.#ready(plane, states);
    this.#settle(plane);
    const surveyStartedMs = this.#o.now();
    const { jobs, extras, health } = this.#survey(plane, states);
    this.#lastSurveyMs = Math.max(0, this.#o.now() - surveyStartedMs);
    this.#hadWork = jobs.length > 0 || this.#inflight.size > 0;
    if (ready) this.#queueCopies(plane, states, jobs);
    if (ready && jobs.length === 0 && this.#rebalanceLeft > 0) this.#rebalance(plane, states);
    this.#health = { ...health, ready, repairing: this.#inflightCount(), repaired: this.#repaired, copiesPerSecond: this.#rate() };
    if (ready && extras.length > 0) await this.#trim(ctx, plane, states, extras);
  }

  /**
   * Evens out usage (`dfs rebalance`): up to `maxChunks` chunks at RF on the fullest nodes get
   * one more copy on the emptiest node without one; trim then removes the copy on the fuller
   * node (it deletes from the node with the least free space first). Only while nothing needs
   * repair, within the same per-node copy budget.
   */
  requestRebalance(maxChunks: number): void {
    this.#rebalanceLeft = Math.max(0, Math.min(maxChunks, 1_000_000));
  }

  #rebalanceLeft = 0;

  #rebalance(plane: DataPlane, states: ReadonlyMap<string, NodeRecord>): void {
    const live = [...states.values()].filter((n) => n.state === 'alive');
    const usage = (id: string) => {
      const l = plane.nodes.load(id);
      return l.capacityBytes > 0 ? l.usedBytes / l.capacityBytes : 0;
    };
    const ranked = live.sort((a, b) => usage(b.id) - usage(a.id));
    const fullest = ranked[0];
    const emptiest = ranked[ranked.length - 1];
    // Done when the spread is within 5 points of capacity.
    if (!fullest || !emptiest || usage(fullest.id) - usage(emptiest.id) < 0.05) {
      this.#rebalanceLeft = 0;
      return;
    }
    const rf = this.#o.replicationFactor();
    let queued = 0;
    for (const id of plane.locations.chunksOf(fullest.id)) {
      if (queued >= 64 || this.#rebalanceLeft <= 0) break;
      const holders = plane.locations.holders(id);
      if (holders.has(emptiest.id) || holders.size !== rf || this.#inflight.has(id) || this.#o.refCount(id) === 0) continue;
      const fence = plane.fences.next();
      if (!plane.queueReplicate(fullest.id, { id, to: emptiest.id, toAddr: addrOf(emptiest), fence })) break;
      this.#inflight.set(id, [{ source: fullest.id, target: emptiest.id, fence, startedMs: this.#o.now() }]);
      this.#rebalanceLeft--;
      queued++;
    }
    if (queued === 0) this.#rebalanceLeft = 0; // nothing movable: stop
  }

  #resetFor(plane: DataPlane): void {
    this.#plane = plane;
    this.#inflight.clear();
    this.#results.length = 0;
  }

  /** Every node the replicated state calls alive has sent this leader a full report (or waited long enough). */
  #ready(plane: DataPlane, states: ReadonlyMap<string, NodeRecord>): boolean {
    const waited = this.#o.now() - plane.startedMs >= (this.#o.reportWaitMs ?? 15_000);
    if (waited) return true;
    for (const n of states.values()) if (n.state === 'alive' && !plane.nodes.reported(n.id)) return false;
    return true;
  }

  /** Drops copies that are done (the target reported the chunk), failed, or took too long. */
  #settle(plane: DataPlane): void {
    const failed = new Set(this.#results.splice(0).map((r) => `${r.id} ${r.to}`));
    const now = this.#o.now();
    const timeoutMs = this.#o.copyTimeoutMs ?? 30_000;
    // Nodes that may still take commands: a dead (or removed) one will not.
    const alive = new Set(this.#o.nodes().filter((n) => READABLE.has(n.state)).map((n) => n.id));
    for (const id of plane.nodes.heardIds()) if (!alive.has(id)) plane.nodes.clearReplicate(id);
    for (const [id, copies] of this.#inflight) {
      const holders = plane.locations.holders(id);
      const left = copies.filter((c) => {
        if (holders.has(c.target)) {
          this.#repaired++;
          this.#done.push(now);
          return false;
        }
        // Failed, too slow, or an end of it dead: planned again next round.
        return !failed.has(`${id} ${c.target}`) && now - c.startedMs < timeoutMs && alive.has(c.source) && alive.has(c.target);
      });
      if (left.length === 0) this.#inflight.delete(id);
      else this.#inflight.set(id, left);
    }
  }

  #survey(plane: DataPlane, states: ReadonlyMap<string, NodeRecord>) {
    const rf = this.#o.replicationFactor();
    const jobs: Array<{ id: string; counted: number; holders: ReadonlySet<string> }> = [];
    const extras: Array<{ id: string; holders: ReadonlySet<string> }> = [];
    let total = 0;
    let under = 0;
    let missing = 0;
    for (const id of this.#o.referencedChunks()) {
      total++;
      const holders = plane.locations.holders(id);
      let counted = 0;
      let readable = 0;
      for (const h of holders) {
        const state = states.get(h)?.state;
        if (state && COUNTS.has(state)) counted++;
        if (state && READABLE.has(state)) readable++;
      }
      if (holders.size === 0) missing++;
      if (counted < rf) {
        under++;
        if (readable > 0 && !plane.isDeleting(id)) jobs.push({ id, counted, holders });
      } else if (readable > rf && !this.#inflight.has(id) && !plane.isDeleting(id)) {
        // A dead holder's copy is left alone: if the node comes back, it counts again (and is trimmed then).
        extras.push({ id, holders: new Set([...holders].filter((h) => READABLE.has(states.get(h)?.state ?? 'dead'))) });
      }
    }
    jobs.sort((a, b) => a.counted - b.counted); // the most endangered first
    return { jobs, extras, health: { total, underReplicated: under, missing } };
  }

  #queueCopies(plane: DataPlane, states: ReadonlyMap<string, NodeRecord>, jobs: ReadonlyArray<{ id: string; counted: number; holders: ReadonlySet<string> }>): void {
    const rf = this.#o.replicationFactor();
    const perNode = this.#o.copiesPerNode ?? 32;
    const busy = new Map<string, number>();
    for (const copies of this.#inflight.values()) {
      for (const c of copies) {
        busy.set(c.source, (busy.get(c.source) ?? 0) + 1);
        busy.set(c.target, (busy.get(c.target) ?? 0) + 1);
      }
    }
    const free = (nodeId: string) => (busy.get(nodeId) ?? 0) < perNode;
    for (const job of jobs) {
      const going = this.#inflight.get(job.id) ?? [];
      let needed = rf - job.counted - going.length;
      while (needed > 0) {
        // An alive holder if there is one (a suspect may be dead already), least busy first.
        const source = [...job.holders]
          .filter((h) => READABLE.has(states.get(h)?.state ?? 'dead') && free(h))
          .sort((a, b) => Number(states.get(b)?.state === 'alive') - Number(states.get(a)?.state === 'alive') || (busy.get(a) ?? 0) - (busy.get(b) ?? 0))[0];
        if (!source) break;
        const exclude = new Set([...job.holders, ...going.map((c) => c.target), ...[...busy].filter(([, n]) => n >= perNode).map(([id]) => id)]);
        const [target] = plane.pickTargets(this.#o.chunkRoomBytes ?? 8 * 1024 * 1024, 1, exclude);
        if (!target) break;
        const fence = plane.fences.next();
        if (!plane.queueReplicate(source, { id: job.id, to: target.id, toAddr: addrOf(target), fence })) break;
        going.push({ source, target: target.id, fence, startedMs: this.#o.now() });
        busy.set(source, (busy.get(source) ?? 0) + 1);
        busy.set(target.id, (busy.get(target.id) ?? 0) + 1);
        this.#log.debug({ chunk: job.id, source, target: target.id, counted: job.counted }, 'copy queued');
        needed--;
      }
      if (going.length > 0) this.#inflight.set(job.id, going);
    }
  }

  /** Deletes copies beyond the replication factor, draining holders first. */
  async #trim(ctx: LeaderContext, plane: DataPlane, states: ReadonlyMap<string, NodeRecord>, extras: ReadonlyArray<{ id: string; holders: ReadonlySet<string> }>): Promise<void> {
    const rf = this.#o.replicationFactor();
    const byNode = new Map<string, string[]>();
    for (const { id, holders } of extras.slice(0, 512)) {
      const ranked = [...holders].sort((a, b) => trimOrder(states.get(a)?.state) - trimOrder(states.get(b)?.state) || plane.nodes.freeBytes(a) - plane.nodes.freeBytes(b));
      const keep = ranked.slice(ranked.length - rf);
      // The copies that stay must be confirmed: alive, and reported to this leader.
      if (!keep.every((h) => states.get(h)?.state === 'alive' && plane.nodes.reported(h))) continue;
      for (const h of ranked.slice(0, ranked.length - rf)) byNode.set(h, [...(byNode.get(h) ?? []), id]);
    }
    if (byNode.size === 0) return;
    const ids = [...new Set([...byNode.values()].flat())];
    for (const id of ids) plane.markDeleting(id);
    const fence = plane.fences.next();
    plane.noteDeleteDecided(ids, fence);
    const gone = new Map<string, string[]>(ids.map((id) => [id, []]));
    try {
      await ctx.confirm();
      if (!ctx.leading()) return; // a higher term arrived since the barrier
      await Promise.all(
        [...byNode].map(async ([nodeId, chunkIds]) => {
          const node = states.get(nodeId);
          if (!node) return;
          const still = chunkIds.filter((id) => this.#o.refCount(id) > 0); // GC's, otherwise
          try {
            const { kept } = await this.#o.deleteOnNode(node, still, fence);
            const keptSet = new Set(kept);
            for (const id of still) if (!keptSet.has(id)) gone.get(id)!.push(nodeId);
            this.#log.info({ node: nodeId, fence, trimmed: still.length - keptSet.size, kept: keptSet.size }, 'trimmed extra copies');
          } catch (err) {
            plane.deleteOutcomeUnknown(nodeId, still);
            this.#log.warn({ node: nodeId, err: (err as Error).message }, 'trim failed on a node');
          }
        }),
      );
    } finally {
      for (const [id, nodes] of gone) plane.deleted(id, nodes);
    }
  }

  #inflightCount(): number {
    let n = 0;
    for (const copies of this.#inflight.values()) n += copies.length;
    return n;
  }

  #rate(): number {
    const since = this.#o.now() - 60_000;
    while (this.#done.length > 0 && this.#done[0]! < since) this.#done.shift();
    if (this.#done.length < 2) return this.#done.length;
    const spanMs = Math.max(1_000, this.#o.now() - this.#done[0]!);
    return (this.#done.length * 1_000) / spanMs;
  }
}

/** Which holder loses its copy first: draining, then dead, then suspect, then alive. */
function trimOrder(state: NodeState | undefined): number {
  switch (state) {
    case 'draining':
      return 0;
    case 'dead':
    case undefined:
      return 1;
    case 'suspect':
      return 2;
    default:
      return 3;
  }
}
