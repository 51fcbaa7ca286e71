import { type Logger, silentLogger } from '../log/index.ts';
import type { NodeRecord, NodeState } from '../meta/index.ts';
import type { DataPlane } from './data-plane.ts';
import type { LeaderContext, LeaderTask } from './leader-tasks.ts';

/** Time a node gets, past suspect-after, to find a new leader before that leader judges it. */
const NEW_LEADER_GRACE_MS = 5_000;

export interface FailureDetectorOptions {
  readonly plane: () => DataPlane | undefined;
  /** Registered nodes, from the replicated state. */
  readonly nodes: () => readonly NodeRecord[];
  /** Commits a node's new state through Raft (every master then agrees on it). */
  readonly commit: (nodeId: string, state: NodeState) => Promise<void>;
  readonly now: () => number;
  readonly logger?: Logger;
  /** No heartbeat for this long: suspect (no new data). Default 3 s. */
  readonly suspectAfterMs?: number;
  /** No heartbeat for this long: dead (its copies no longer count; repair starts). Default 10 s. */
  readonly deadAfterMs?: number;
  /** How often states are checked. Default 250 ms. */
  readonly checkEveryMs?: number;
  /** A dead node must be heard this long, without a gap, before it is alive again. Default 1 s. */
  readonly reviveAfterMs?: number;
  /** The revive hold doubles with each death within this window (flapping), up to maxHoldMs. */
  readonly flapWindowMs?: number;
  readonly maxHoldMs?: number;
}

interface NodeHistory {
  /** Deaths within the flap window, newest last. */
  deaths: number[];
  /** Since when the node has been heard without a gap (while not alive), if it has. */
  backSinceMs: number | undefined;
}

/**
 * The one health model: the leader moves each node alive → suspect → dead by heartbeat age and
 * commits every transition through Raft, so every master (and every later leader) agrees. A
 * suspect that is heard again is alive at once; a dead node is alive again only after it has
 * been heard for a hold that doubles each time it died recently, so a flapping node does not
 * set off a replication storm. A draining node keeps its state until it dies.
 */
export class FailureDetector implements LeaderTask {
  readonly name = 'health';
  readonly #o: FailureDetectorOptions;
  readonly #log: Logger;
  readonly #history = new Map<string, NodeHistory>();

  constructor(options: FailureDetectorOptions) {
    this.#o = options;
    this.#log = (options.logger ?? silentLogger).child({ component: 'health' });
  }

  async run(ctx: LeaderContext): Promise<void> {
    for (;;) {
      await ctx.sleep(this.#o.checkEveryMs ?? 250);
      await this.check();
    }
  }

  /** One pass: commits the transitions due now. */
  async check(): Promise<void> {
    const plane = this.#o.plane();
    if (!plane) return;
    // A new leader gives every node time to find it (nodes learn of a leader change when their
    // heartbeat to the old one fails or is refused) before it calls anyone suspect.
    const young = this.#o.now() - plane.startedMs < (this.#o.suspectAfterMs ?? 3_000) + NEW_LEADER_GRACE_MS;
    for (const node of this.#o.nodes()) {
      if (node.state === 'pending') continue; // not admitted: nothing to watch yet
      if (young && !plane.nodes.heardSinceStart(node.id)) continue;
      const next = this.desired(plane, node);
      if (next === node.state) continue;
      this.#log.info({ node: node.id, from: node.state, to: next, silentMs: plane.nodes.silentForMs(node.id) }, 'node state change');
      if (next === 'alive' && node.state === 'dead') plane.nodes.forgetReport(node.id); // it must tell what it holds now
      if (next === 'dead') this.#recordDeath(node.id);
      await this.#o.commit(node.id, next);
    }
  }

  /** The state `node` should be in now. */
  desired(plane: DataPlane, node: NodeRecord): NodeState {
    const silentMs = plane.nodes.silentForMs(node.id);
    const suspectAfterMs = this.#o.suspectAfterMs ?? 3_000;
    const history = this.#historyOf(node.id);
    if (silentMs >= (this.#o.deadAfterMs ?? 10_000)) {
      history.backSinceMs = undefined;
      return 'dead';
    }
    if (silentMs >= suspectAfterMs) {
      history.backSinceMs = undefined;
      return node.state === 'dead' || node.state === 'draining' ? node.state : 'suspect';
    }
    // Heard recently.
    if (node.state !== 'dead') return node.state === 'suspect' ? 'alive' : node.state;
    const now = this.#o.now();
    history.backSinceMs ??= now;
    return now - history.backSinceMs >= this.holdMs(node.id) ? 'alive' : 'dead';
  }

  /** How long a dead node must be heard before it is alive again. */
  holdMs(nodeId: string): number {
    const recent = this.#recentDeaths(nodeId);
    const base = this.#o.reviveAfterMs ?? 1_000;
    return Math.min(this.#o.maxHoldMs ?? 60_000, base * 2 ** Math.max(0, recent - 1));
  }

  #recordDeath(nodeId: string): void {
    this.#historyOf(nodeId).deaths.push(this.#o.now());
  }

  #recentDeaths(nodeId: string): number {
    const h = this.#historyOf(nodeId);
    const since = this.#o.now() - (this.#o.flapWindowMs ?? 10 * 60_000);
    h.deaths = h.deaths.filter((t) => t >= since);
    return h.deaths.length;
  }

  #historyOf(nodeId: string): NodeHistory {
    let h = this.#history.get(nodeId);
    if (!h) this.#history.set(nodeId, (h = { deaths: [], backSinceMs: undefined }));
    return h;
  }
}
