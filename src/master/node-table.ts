/** What a storage node says about itself with every heartbeat. */
export interface NodeLoad {
  readonly freeBytes: number;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly chunkCount: number;
  /** Transfers under way on the node. */
  readonly inflight: number;
}

/** A copy the leader asks a node to make: read chunk `id` and put it on node `to`. */
export interface ReplicateCommand {
  readonly id: string;
  /** The target's peer id and its dialable address (from the replicated node table). */
  readonly to: string;
  readonly toAddr: string;
  readonly fence: number;
}

interface NodeSoftState {
  lastHeartbeatMs: number;
  load: NodeLoad;
  /** A full chunk report has been received since this leader took over (or since it came back). */
  reported: boolean;
  /** Ids received so far of a full report in pages. */
  reportInProgress: Set<string> | undefined;
  /** Chunks a client found bad here, to be re-hashed by the node. */
  verify: Set<string>;
  /** Copies for the node to make, handed out with its next heartbeat answer. */
  replicate: ReplicateCommand[];
  /** An operator asked for a full scrub now (`dfs node scrub --now`). */
  scrubNow: boolean;
}

const EMPTY_LOAD: NodeLoad = { freeBytes: 0, capacityBytes: 0, usedBytes: 0, chunkCount: 0, inflight: 0 };
/** Bound on chunks waiting to be verified on one node (a flood of bad-replica reports). */
const MAX_VERIFY_PER_NODE = 4096;
/** Bound on copies queued for one node. */
const MAX_REPLICATE_PER_NODE = 1024;

/**
 * The leader's soft state about each storage node: when it was last heard, its load, whether
 * it has sent a full chunk report to this leader, and the commands waiting for it (they leave
 * with the node's next heartbeat answer). Rebuilt by every new leader from heartbeats.
 */
export class NodeTable {
  readonly #nodes = new Map<string, NodeSoftState>();
  readonly #now: () => number;
  /** When this leader started: nodes it never heard are measured from here. */
  readonly #startedMs: number;

  constructor(now: () => number) {
    this.#now = now;
    this.#startedMs = now();
  }

  /** Records a heartbeat. */
  heard(nodeId: string, load: NodeLoad): void {
    const s = this.#state(nodeId);
    s.lastHeartbeatMs = this.#now();
    s.load = load;
  }

  /** Milliseconds since the node was last heard (since this leader started, if never). */
  silentForMs(nodeId: string): number {
    return this.#now() - (this.#nodes.get(nodeId)?.lastHeartbeatMs ?? this.#startedMs);
  }

  heardSinceStart(nodeId: string): boolean {
    return this.#nodes.has(nodeId);
  }

  load(nodeId: string): NodeLoad {
    return this.#nodes.get(nodeId)?.load ?? EMPTY_LOAD;
  }

  freeBytes(nodeId: string): number {
    return this.load(nodeId).freeBytes;
  }

  reported(nodeId: string): boolean {
    return this.#nodes.get(nodeId)?.reported ?? false;
  }

  /** The node must send a full report again (it came back from the dead, or lost track). */
  forgetReport(nodeId: string): void {
    const s = this.#nodes.get(nodeId);
    if (s) s.reported = false;
  }

  /** Adds one page of a full report; on the last page returns the whole set, else undefined. */
  reportPage(nodeId: string, ids: readonly string[], first: boolean, last: boolean): Set<string> | undefined {
    const s = this.#nodes.get(nodeId);
    if (!s) return undefined; // heartbeat first
    if (first || !s.reportInProgress) s.reportInProgress = new Set();
    for (const id of ids) s.reportInProgress.add(id);
    if (!last) return undefined;
    const all = s.reportInProgress;
    s.reportInProgress = undefined;
    s.reported = true;
    return all;
  }

  requestVerify(nodeId: string, chunkId: string): void {
    const s = this.#state(nodeId);
    if (s.verify.size < MAX_VERIFY_PER_NODE) s.verify.add(chunkId);
  }

  takeVerify(nodeId: string): string[] {
    const s = this.#nodes.get(nodeId);
    if (!s) return [];
    const out = [...s.verify];
    s.verify.clear();
    return out;
  }

  /** Queues a copy for `nodeId`; false when its queue is full. */
  queueReplicate(nodeId: string, command: ReplicateCommand): boolean {
    const s = this.#state(nodeId);
    if (s.replicate.length >= MAX_REPLICATE_PER_NODE) return false;
    s.replicate.push(command);
    return true;
  }

  /** Drops the copies queued for a node that will not take them (not alive). */
  clearReplicate(nodeId: string): void {
    const s = this.#nodes.get(nodeId);
    if (s) s.replicate.length = 0;
  }

  /** Every node heard since this leader started. */
  heardIds(): IterableIterator<string> {
    return this.#nodes.keys();
  }

  takeReplicate(nodeId: string, max: number): ReplicateCommand[] {
    const s = this.#nodes.get(nodeId);
    return s ? s.replicate.splice(0, max) : [];
  }

  requestScrub(nodeId: string): void {
    this.#state(nodeId).scrubNow = true;
  }

  /** Whether a scrub was asked for since the last call (each request is handed out once). */
  takeScrub(nodeId: string): boolean {
    const s = this.#nodes.get(nodeId);
    const wanted = s?.scrubNow === true;
    if (s) s.scrubNow = false;
    return wanted;
  }

  #state(nodeId: string): NodeSoftState {
    let s = this.#nodes.get(nodeId);
    if (!s) {
      s = { lastHeartbeatMs: this.#startedMs, load: EMPTY_LOAD, reported: false, reportInProgress: undefined, verify: new Set(), replicate: [], scrubNow: false };
      this.#nodes.set(nodeId, s);
    }
    return s;
  }
}
