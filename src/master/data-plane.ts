import type { NodeRecord, Placement } from '../meta/index.ts';

/** What a storage node says about itself with every heartbeat. */
export interface NodeLoad {
  readonly freeBytes: number;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly chunkCount: number;
  /** Transfers under way on the node. */
  readonly inflight: number;
}

interface NodeSoftState {
  lastHeartbeatMs: number;
  load: NodeLoad;
  /** A full chunk report has been received since this leader took over. */
  reported: boolean;
  /** Ids received so far of a full report in pages. */
  reportInProgress: Set<string> | undefined;
}

export type { Placement } from '../meta/index.ts';

/** Bound on chunks waiting to be verified on one node (a flood of bad-replica reports). */
const MAX_VERIFY_REQUESTS_PER_NODE = 4096;

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
  readonly replicationFactor: () => number;
  readonly refCount: (chunkId: string) => number;
  /** The leader's term: fences are issued from it. */
  readonly term: number;
  /** A node is placeable while its last heartbeat is younger than this. Default 3 s. */
  readonly suspectAfterMs?: number;
  /** Unreferenced chunks are collected once untouched for this long. Default 10 min. */
  readonly gcGraceMs?: number;
}

/**
 * The leader's soft state about data: node liveness and load (from heartbeats) and where each
 * chunk is (from node reports and from pipeline acks a client passes along with its commit).
 * Not replicated: a new leader starts empty, asks every node for a full report, and waits one
 * grace period before collecting anything. Placement and garbage collection read it.
 */
export class DataPlane {
  readonly #o: DataPlaneOptions;
  readonly #nodes = new Map<string, NodeSoftState>();
  readonly #holders = new Map<string, Set<string>>();
  /** When a chunk was last placed, located or first seen: the GC's grace counts from here. */
  readonly #touchedMs = new Map<string, number>();
  /**
   * Chunks being deleted by GC: never placed as existing nor committed until the delete has
   * settled; `settled` resolves then (a commit naming one waits for it, then looks again).
   */
  readonly #deleting = new Map<string, { settled: Promise<void>; resolve: () => void }>();
  readonly fences: FenceClock;
  /**
   * Uploads under way: every chunk a put has been placed (stored or found existing) is kept from
   * GC while its upload is alive — renewed by each placement, ended by its commit, expired after
   * the grace period of silence.
   */
  readonly #uploads = new Map<string, { lastActiveMs: number; chunks: Set<string> }>();
  readonly #startedMs: number;
  /** Chunks clients found bad, per node, to be verified by that node. */
  readonly #verify = new Map<string, Set<string>>();

  constructor(options: DataPlaneOptions) {
    this.#o = options;
    this.#startedMs = options.now();
    this.fences = new FenceClock(options.term);
  }

  // ---- node reports ----

  /** Records a heartbeat; answers whether the node must send a full chunk report. */
  heartbeat(nodeId: string, load: NodeLoad, added: readonly string[], removed: readonly string[]): { fullReportWanted: boolean } {
    const state = this.#nodes.get(nodeId) ?? { lastHeartbeatMs: 0, load, reported: false, reportInProgress: undefined };
    state.lastHeartbeatMs = this.#o.now();
    state.load = load;
    this.#nodes.set(nodeId, state);
    for (const id of added) this.#addHolder(id, nodeId);
    for (const id of removed) this.#removeHolder(id, nodeId);
    return { fullReportWanted: !state.reported };
  }

  /** One page of a full report; the last page replaces everything known about the node. */
  report(nodeId: string, ids: readonly string[], first: boolean, last: boolean): void {
    const state = this.#nodes.get(nodeId);
    if (!state) return; // heartbeat first
    if (first || !state.reportInProgress) state.reportInProgress = new Set();
    for (const id of ids) state.reportInProgress.add(id);
    if (!last) return;
    const now = state.reportInProgress;
    state.reportInProgress = undefined;
    state.reported = true;
    for (const [id, holders] of this.#holders) if (holders.has(nodeId) && !now.has(id)) this.#removeHolder(id, nodeId);
    for (const id of now) this.#addHolder(id, nodeId);
  }

  /** Pipeline acks passed along by a client: these nodes have fsynced these chunks. */
  recordStored(stored: ReadonlyArray<readonly [string, readonly string[]]>): void {
    for (const [id, nodes] of stored) for (const n of nodes) this.#addHolder(id, n);
  }

  /**
   * A client found this node's copy bad: the node is asked (in its next heartbeat answer) to
   * verify it. The location stays until the node itself says the chunk is gone. Bounded per node.
   */
  requestVerify(nodeId: string, chunkId: string): void {
    let wanted = this.#verify.get(nodeId);
    if (!wanted) this.#verify.set(nodeId, (wanted = new Set()));
    if (wanted.size < MAX_VERIFY_REQUESTS_PER_NODE) wanted.add(chunkId);
  }

  /** The chunks to ask `nodeId` to verify (each asked once). */
  takeVerifyRequests(nodeId: string): string[] {
    const wanted = this.#verify.get(nodeId);
    this.#verify.delete(nodeId);
    return wanted ? [...wanted] : [];
  }

  // ---- liveness ----

  /** Registered, alive (in the log) and heard from recently: may receive new replicas. */
  liveNodes(): NodeRecord[] {
    const now = this.#o.now();
    const suspectAfterMs = this.#o.suspectAfterMs ?? 3_000;
    return this.#o.nodes().filter((n) => {
      const s = this.#nodes.get(n.id);
      return n.state === 'alive' && s !== undefined && now - s.lastHeartbeatMs < suspectAfterMs;
    });
  }

  // ---- placement and lookup ----

  /** Live nodes outside `exclude` with room for a chunk of `size` bytes (as their last heartbeat said). */
  nodesWithRoom(size: number, exclude: ReadonlySet<string>): number {
    return this.liveNodes().filter((n) => !exclude.has(n.id) && this.#freeBytes(n.id) > size).length;
  }

  /**
   * Where to store each chunk: `existing` when at least the replication factor of live nodes
   * hold it (dedup: nothing to send), else that many distinct live targets, most free space
   * first, excluding `exclude` (nodes a client just failed to reach). Fewer live nodes than
   * needed → the chunk is missing from the answer's targets (the caller fails clearly).
   */
  place(chunks: ReadonlyArray<{ id: string; size: number }>, exclude: ReadonlySet<string> = new Set(), uploadId?: string): Placement[] {
    // Also the chunks answered "existing" go into the upload: all are promised to it.
    const rf = this.#o.replicationFactor();
    const live = this.liveNodes().filter((n) => !exclude.has(n.id));
    const now = this.#o.now();
    if (uploadId !== undefined) {
      const upload = this.#uploads.get(uploadId) ?? { lastActiveMs: now, chunks: new Set<string>() };
      upload.lastActiveMs = now;
      for (const c of chunks) upload.chunks.add(c.id);
      this.#uploads.set(uploadId, upload);
    }
    const fence = this.fences.next();
    return chunks.map(({ id, size }) => {
      this.#touchedMs.set(id, now);
      const liveHolders = this.#liveHolders(id, live);
      if (!this.#deleting.has(id) && liveHolders.length >= rf) return { id, existing: true, holders: liveHolders.length };
      const candidates = live
        .filter((n) => this.#freeBytes(n.id) > size)
        // Most free space first; a random jitter spreads equal nodes.
        .map((n) => ({ n, score: this.#freeBytes(n.id) * (0.9 + 0.2 * this.#o.rng()) }))
        .sort((a, b) => b.score - a.score)
        .slice(0, rf)
        .map(({ n }) => addrOf(n));
      return { id, targets: candidates, fence };
    });
  }

  /** Holders of each chunk, live ones first, least loaded first, as dialable addresses. */
  locate(ids: readonly string[]): Array<{ id: string; holders: string[] }> {
    const live = new Set(this.liveNodes().map((n) => n.id));
    const byId = new Map(this.#o.nodes().map((n) => [n.id, n]));
    const now = this.#o.now();
    return ids.map((id) => {
      this.#touchedMs.set(id, now);
      const holders = [...(this.#holders.get(id) ?? [])]
        .map((nodeId) => byId.get(nodeId))
        .filter((n): n is NodeRecord => n !== undefined)
        .sort((a, b) => Number(live.has(b.id)) - Number(live.has(a.id)) || (this.#nodes.get(a.id)?.load.inflight ?? 0) - (this.#nodes.get(b.id)?.load.inflight ?? 0));
      return { id, holders: holders.map(addrOf) };
    });
  }

  holderCount(id: string): number {
    return this.#deleting.has(id) ? 0 : (this.#holders.get(id)?.size ?? 0);
  }

  // ---- uploads ----

  /** Whether an upload is alive (placed something within the grace period). */
  uploadAlive(uploadId: string): boolean {
    const u = this.#uploads.get(uploadId);
    return u !== undefined && this.#o.now() - u.lastActiveMs < (this.#o.gcGraceMs ?? 600_000);
  }

  /** The upload committed (or gave up): its chunks are protected by references now, or not at all. */
  endUpload(uploadId: string): void {
    this.#uploads.delete(uploadId);
  }

  /** Whether an upload still alive was promised this chunk (placed it, or was told it exists). */
  promised(chunkId: string): boolean {
    const now = this.#o.now();
    const graceMs = this.#o.gcGraceMs ?? 600_000;
    for (const u of this.#uploads.values()) if (now - u.lastActiveMs < graceMs && u.chunks.has(chunkId)) return true;
    return false;
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
    const protectedIds = new Set<string>();
    for (const [uploadId, u] of this.#uploads) {
      if (now - u.lastActiveMs >= graceMs) this.#uploads.delete(uploadId);
      else for (const id of u.chunks) protectedIds.add(id);
    }
    const out: Array<{ id: string; holders: string[] }> = [];
    for (const [id, holders] of this.#holders) {
      if (out.length >= limit) break;
      if (this.#o.refCount(id) > 0 || this.#deleting.has(id) || protectedIds.has(id)) continue;
      if (now - (this.#touchedMs.get(id) ?? 0) < graceMs) continue;
      out.push({ id, holders: [...holders] });
    }
    return out;
  }

  markDeleting(id: string): void {
    if (this.#deleting.has(id)) return;
    let resolve!: () => void;
    const settled = new Promise<void>((r) => (resolve = r));
    this.#deleting.set(id, { settled, resolve });
  }

  /**
   * A GC delete settled: `fromNodes` confirmed the chunk gone (a node that refused, or did not
   * answer, still holds it or will say so in its reports). A decided delete that was called
   * off before it was sent settles with no nodes.
   */
  deleted(id: string, fromNodes: readonly string[]): void {
    for (const n of fromNodes) this.#removeHolder(id, n);
    const d = this.#deleting.get(id);
    this.#deleting.delete(id);
    d?.resolve();
  }

  /** Resolves once no delete of these chunks is under way. */
  async deletesSettled(ids: Iterable<string>): Promise<void> {
    for (const id of ids) await this.#deleting.get(id)?.settled;
  }

  /** Free bytes a node reported in its last heartbeat (0 if it never did). */
  #freeBytes(nodeId: string): number {
    return this.#nodes.get(nodeId)?.load.freeBytes ?? 0;
  }

  #liveHolders(id: string, live: readonly NodeRecord[]): NodeRecord[] {
    const holders = this.#holders.get(id);
    return holders ? live.filter((n) => holders.has(n.id)) : [];
  }

  #addHolder(id: string, nodeId: string): void {
    let set = this.#holders.get(id);
    if (!set) {
      set = new Set();
      this.#holders.set(id, set);
      if (!this.#touchedMs.has(id)) this.#touchedMs.set(id, this.#o.now());
    }
    set.add(nodeId);
  }

  #removeHolder(id: string, nodeId: string): void {
    const set = this.#holders.get(id);
    if (!set) return;
    set.delete(nodeId);
    if (set.size === 0) {
      this.#holders.delete(id);
      this.#touchedMs.delete(id);
    }
  }
}

/** A node's dialable address: its first registered multiaddr, with /p2p/<id>. */
export function addrOf(node: NodeRecord): string {
  const addr = node.addrs[0] ?? '';
  return addr.includes('/p2p/') ? addr : `${addr}/p2p/${node.id}`;
}
