import type { NodeRecord } from '../meta/index.ts';
import { peerIdInAddr } from '../net/index.ts';
import { DeleteFences } from '../storage/delete-fences.ts';
import { ChunkLocations } from './chunk-locations.ts';
import { type NodeLoad, NodeTable, type ReplicateCommand } from './node-table.ts';
import { UploadSessions } from './upload-sessions.ts';

/** A placement before the leader signs its ticket (see MetaService). */
export type UnsignedPlacement = { readonly id: string; readonly existing: true; readonly holders: number } | { readonly id: string; readonly targets: readonly string[]; readonly fence: number };
export type { NodeLoad, ReplicateCommand } from './node-table.ts';

/**
 * Fences order a leader's chunk puts against its chunk deletes, across leaders too: term × 2³²
 * plus a counter, so every fence a later leader issues is above every fence of an earlier one.
 * A node refuses to delete a chunk for fence E once it has accepted a put of it with fence
 * P > E: a delete decided before a chunk was promised to an upload never lands after it.
 */
export class FenceClock {
  readonly #base: number;
  #counter = 0;

  constructor(term: number) {
    if (!Number.isSafeInteger(term * 2 ** 32 + 2 ** 32)) throw new Error(`term ${term} is too large for fences`);
    this.#base = term * 2 ** 32;
  }

  /** A fence above every fence issued so far. */
  next(): number {
    this.#counter = Math.min(this.#counter + 1, 2 ** 32 - 1);
    return this.#base + this.#counter;
  }

  /** Above every fence issued so far, issued to nobody: what a node that restarted starts from. */
  peek(): number {
    return this.#base + this.#counter + 1;
  }
}

export interface DataPlaneOptions {
  readonly now: () => number;
  readonly rng: () => number;
  /** Registered nodes (from the replicated state). */
  readonly nodes: () => readonly NodeRecord[];
  /** One registered node, by id (from the replicated state). */
  readonly node: (id: string) => NodeRecord | undefined;
  readonly replicationFactor: () => number;
  readonly refCount: (chunkId: string) => number;
  /** The leader's term: fences are issued from it. */
  readonly term: number;
  /** Unreferenced chunks are collected once untouched for this long. Default 10 min. */
  readonly gcGraceMs?: number;
  /** Uploads one peer may have open at once (UploadSessions). */
  readonly maxUploadsPerPeer?: number;
}

/** A node as the leader serves it to peers: its id and where to dial it. */
export interface NodeAddress {
  readonly id: string;
  readonly addrs: readonly string[];
}

/**
 * The leader's soft state about data, in parts with one job each — `nodes` (when each node was
 * heard, its load, commands waiting for it), `locations` (which node holds which chunk, from
 * the nodes' own reports), `uploads` (chunks promised to uploads under way) — and what is
 * decided from them: placement, lookup, garbage. Not replicated: a new leader starts empty, asks
 * every node for a full report, and waits one grace period before collecting anything.
 * Liveness is the replicated node state alone (set by the leader's failure detector).
 */
export class DataPlane {
  readonly #o: DataPlaneOptions;
  readonly nodes: NodeTable;
  readonly locations: ChunkLocations;
  readonly uploads: UploadSessions;
  readonly fences: FenceClock;
  /**
   * Chunks being deleted by GC: never placed as existing nor committed until the delete has
   * settled; `settled` resolves then (a commit naming one waits for it, then looks again).
   */
  readonly #deleting = new Map<string, { settled: Promise<void>; resolve: () => void }>();
  readonly #startedMs: number;
  #gcCursor = 0;
  /**
   * The last fence a delete was decided under, per chunk (bounded: forgotten ones raise a floor,
   * which starts at this term's first fence): a receipt signed under a lower fence may describe
   * a copy that delete removed since.
   */
  readonly #deleteFences: DeleteFences;

  constructor(options: DataPlaneOptions) {
    this.#o = options;
    this.#startedMs = options.now();
    this.fences = new FenceClock(options.term);
    this.#deleteFences = new DeleteFences({ floor: this.fences.peek() - 1 });
    this.nodes = new NodeTable(options.now);
    this.locations = new ChunkLocations(options.now);
    this.uploads = new UploadSessions(options.now, options.gcGraceMs ?? 600_000, options.maxUploadsPerPeer);
  }

  get startedMs(): number {
    return this.#startedMs;
  }

  // ---- node reports ----

  /** Records a heartbeat and the chunks the node added or dropped since its last one. */
  heartbeat(nodeId: string, load: NodeLoad, added: readonly string[], removed: readonly string[]): { fullReportWanted: boolean } {
    this.nodes.heard(nodeId, load);
    for (const id of added) this.locations.add(id, nodeId);
    for (const id of removed) this.locations.remove(id, nodeId);
    return { fullReportWanted: !this.nodes.reported(nodeId) };
  }

  /** One page of a full report; the last page replaces everything known about the node. */
  report(nodeId: string, ids: readonly string[], first: boolean, last: boolean): void {
    const all = this.nodes.reportPage(nodeId, ids, first, last);
    if (all) this.locations.replaceNode(nodeId, all);
  }

  /** A node vouched (a receipt it signed, or its answer to `has`) that it holds these chunks. */
  recordStored(stored: ReadonlyArray<readonly [string, readonly string[]]>): void {
    for (const [id, nodes] of stored) for (const n of nodes) this.locations.add(id, n);
  }

  /**
   * A client found this node's copy bad: the node is asked (in its next heartbeat answer) to
   * verify it. The location stays until the node itself says the chunk is gone.
   */
  requestVerify(nodeId: string, chunkId: string): void {
    this.nodes.requestVerify(nodeId, chunkId);
  }

  takeVerifyRequests(nodeId: string): string[] {
    return this.nodes.takeVerify(nodeId);
  }

  /** Queues a copy for `source` to make (repair); false when its queue is full. */
  queueReplicate(source: string, command: ReplicateCommand): boolean {
    return this.nodes.queueReplicate(source, command);
  }

  // ---- liveness ----

  /** Registered and alive in the replicated node table: may receive new replicas. */
  liveNodes(): NodeRecord[] {
    return this.#o.nodes().filter((n) => n.state === 'alive');
  }

  /** Admitted nodes a peer may dial for pipelines and copies (alive, suspect or draining; never pending). */
  dialableNodes(): NodeAddress[] {
    return this.#o
      .nodes()
      .filter((n) => n.state !== 'dead' && n.state !== 'pending')
      .map((n) => ({ id: n.id, addrs: [addrOf(n)] }));
  }

  // ---- placement and lookup ----

  /** Live nodes outside `exclude` with room for a chunk of `size` bytes (as their last heartbeat said). */
  nodesWithRoom(size: number, exclude: ReadonlySet<string>): number {
    return this.liveNodes().filter((n) => !exclude.has(n.id) && this.nodes.freeBytes(n.id) > size).length;
  }

  /**
   * Where to store each chunk: `existing` when at least the replication factor of live nodes
   * hold it (dedup: nothing to send), else that many distinct live targets, most free space
   * first, excluding `exclude` (nodes a client just failed to reach). Fewer live nodes than
   * needed → the chunk is missing from the answer's targets (the caller fails clearly). Every
   * chunk asked about is promised to the upload, "existing" ones too.
   */
  place(chunks: ReadonlyArray<{ id: string; size: number }>, exclude: ReadonlySet<string> = new Set(), uploadId?: string, owner?: string, user?: string): UnsignedPlacement[] {
    const rf = this.#o.replicationFactor();
    const live = this.liveNodes().filter((n) => !exclude.has(n.id));
    if (uploadId !== undefined) {
      const placed = user === undefined ? undefined : { user, sizes: new Map(chunks.map((c) => [c.id, c.size])) };
      this.uploads.promise(uploadId, chunks.map((c) => c.id), owner, placed);
    }
    const fence = this.fences.next();
    return chunks.map(({ id, size }) => {
      this.locations.touch(id);
      const holders = this.locations.holders(id);
      const liveHolders = live.filter((n) => holders.has(n.id)).length;
      if (!this.#deleting.has(id) && liveHolders >= rf) return { id, existing: true, holders: liveHolders };
      return { id, targets: this.pickTargets(size, rf, exclude).map(addrOf), fence };
    });
  }

  /** Up to `count` live nodes outside `exclude` with room for `size` bytes, most free space first. */
  pickTargets(size: number, count: number, exclude: ReadonlySet<string>): NodeRecord[] {
    return this.liveNodes()
      .filter((n) => !exclude.has(n.id) && this.nodes.freeBytes(n.id) > size)
      // Most free space first; a random jitter spreads equal nodes.
      .map((n) => ({ n, score: this.nodes.freeBytes(n.id) * (0.9 + 0.2 * this.#o.rng()) }))
      .sort((a, b) => b.score - a.score)
      .slice(0, count)
      .map(({ n }) => n);
  }

  /** Holders of each chunk, live ones first, least loaded first, as dialable addresses. */
  locate(ids: readonly string[]): Array<{ id: string; holders: string[] }> {
    const live = new Set(this.liveNodes().map((n) => n.id));
    const byId = new Map(this.#o.nodes().map((n) => [n.id, n]));
    return ids.map((id) => {
      this.locations.touch(id);
      const holders = [...this.locations.holders(id)]
        .map((nodeId) => byId.get(nodeId))
        .filter((n): n is NodeRecord => n !== undefined && n.state !== 'dead')
        .sort((a, b) => Number(live.has(b.id)) - Number(live.has(a.id)) || this.nodes.load(a.id).inflight - this.nodes.load(b.id).inflight);
      return { id, holders: holders.map(addrOf) };
    });
  }

  /** Copies a commit may count: on registered, admitted nodes that are not dead. */
  holderCount(id: string): number {
    if (this.#deleting.has(id)) return 0;
    let n = 0;
    for (const h of this.locations.holders(id)) if (this.#countable(h)) n++;
    return n;
  }

  #countable(nodeId: string): boolean {
    const state = this.#o.node(nodeId)?.state;
    return state !== undefined && state !== 'dead' && state !== 'pending';
  }

  /** A node was removed from the cluster: what it held no longer counts anywhere. */
  forgetNode(nodeId: string): void {
    this.locations.replaceNode(nodeId, new Set());
  }

  // ---- uploads ----

  uploadAlive(uploadId: string): boolean {
    return this.uploads.alive(uploadId);
  }

  /** The upload committed (or gave up): its chunks are protected by references now, or not at all. */
  endUpload(uploadId: string): void {
    this.uploads.end(uploadId);
  }

  promised(chunkId: string): boolean {
    return this.uploads.promised(chunkId);
  }

  // ---- garbage collection ----

  /**
   * Chunks nothing references any more (or that no commit ever referenced) and that nobody has
   * placed or located for the grace period, with their holders. A new leader collects nothing
   * during its first grace period: it does not know which uploads are under way.
   */
  garbage(limit: number): Array<{ id: string; holders: string[] }> {
    const now = this.#o.now();
    const graceMs = this.#o.gcGraceMs ?? 600_000;
    if (now - this.#startedMs < graceMs) return [];
    const promised = this.uploads.promisedChunks();
    const out: Array<{ id: string; holders: string[] }> = [];
    // Only holders a delete can reach; a rotating start, so chunks whose deletes keep failing
    // (a node gone quiet) do not hold the same batch forever.
    const reachable = new Set(this.#o.nodes().filter((n) => n.state !== 'dead' && n.state !== 'pending').map((n) => n.id));
    const entries = [...this.locations.entries()];
    const start = entries.length === 0 ? 0 : this.#gcCursor % entries.length;
    for (let k = 0; k < entries.length && out.length < limit; k++) {
      const [id, holders] = entries[(start + k) % entries.length]!;
      if (this.#o.refCount(id) > 0 || this.#deleting.has(id) || promised.has(id)) continue;
      if (now - this.locations.touchedMs(id) < graceMs) continue;
      const targets = [...holders].filter((h) => reachable.has(h));
      if (targets.length > 0) out.push({ id, holders: targets });
    }
    this.#gcCursor = start + limit;
    return out;
  }

  /** A delete of these chunks is decided under `fence` (GC, trim): older receipts go stale. */
  noteDeleteDecided(ids: Iterable<string>, fence: number): void {
    for (const id of ids) this.#deleteFences.notePut(id, fence);
  }

  /** Whether a receipt signed under `fence` is newer than any delete of the chunk this leader decided (and of this term). */
  receiptFresh(id: string, fence: number): boolean {
    return this.#deleteFences.mayDelete(id, fence);
  }

  markDeleting(id: string): void {
    if (this.#deleting.has(id)) return;
    let resolve!: () => void;
    const settled = new Promise<void>((r) => (resolve = r));
    this.#deleting.set(id, { settled, resolve });
  }

  isDeleting(id: string): boolean {
    return this.#deleting.has(id);
  }

  /**
   * A delete settled: `fromNodes` confirmed the chunk gone (a node that refused, or did not
   * answer, still holds it or will say so in its reports). A decided delete that was called
   * off before it was sent settles with no nodes.
   */
  deleted(id: string, fromNodes: readonly string[]): void {
    for (const n of fromNodes) this.locations.remove(id, n);
    const d = this.#deleting.get(id);
    this.#deleting.delete(id);
    d?.resolve();
  }

  /**
   * A delete on `nodeId` failed, so whether it removed `ids` is unknown: those copies no longer
   * count until the node says again what it holds (a full report), so nothing (a commit, a
   * repair or trim decision) rests on a copy that may be gone.
   */
  deleteOutcomeUnknown(nodeId: string, ids: Iterable<string>): void {
    for (const id of ids) this.locations.remove(id, nodeId);
    this.nodes.forgetReport(nodeId);
  }

  /** Resolves once no delete of these chunks is under way. */
  async deletesSettled(ids: Iterable<string>): Promise<void> {
    for (const id of ids) await this.#deleting.get(id)?.settled;
  }
}

/**
 * A node's dialable address: its first registered multiaddr that names it (or names no peer,
 * then /p2p/<id> is added). Never one naming another peer: deletes and checks for this node
 * must reach this node. With none, an address that fails to dial.
 */
export function addrOf(node: NodeRecord): string {
  for (const addr of node.addrs) {
    const named = peerIdInAddr(addr);
    if (named === node.id) return addr;
    if (named === undefined && !addr.includes('/p2p/')) return `${addr}/p2p/${node.id}`;
  }
  return `/p2p/${node.id}`;
}
