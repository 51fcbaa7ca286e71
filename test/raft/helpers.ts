import type { Configuration, Entry, HardState, Message, RaftOptions, Ready, Snapshot } from '../../src/raft/index.ts';
import { RaftNode, seededRng } from '../../src/raft/index.ts';

/** Small, explicit building blocks for unit tests of single nodes and tiny clusters. */

export function options(id: string, overrides: Partial<RaftOptions> = {}): RaftOptions {
  let seed = 7;
  for (const c of id) seed = (seed * 31 + c.charCodeAt(0)) >>> 0;
  return { id, electionTicks: 10, heartbeatTicks: 1, rng: seededRng(seed), ...overrides };
}

export function entry(index: number, term: number, text = ''): Entry {
  return { index, term, type: 'normal', data: new TextEncoder().encode(text) };
}

/** Entries 1..n with the given terms, e.g. terms(1, 1, 2) -> [1/1, 2/1, 3/2]. */
export function terms(...ts: number[]): Entry[] {
  return ts.map((t, k) => entry(k + 1, t));
}

export function config(voters: string[], learners: string[] = []): Configuration {
  return { voters, learners };
}

/** A node restarted from the given persisted state, with `voters` as its configuration. */
export function nodeWith(
  id: string,
  voters: string[],
  state: { term?: number; vote?: string | null; commit?: number; entries?: Entry[]; learners?: string[] } = {},
  overrides: Partial<RaftOptions> = {},
): RaftNode {
  const snapshot: Snapshot = { metadata: { index: 0, term: 0, config: config(voters, state.learners ?? []) }, data: new Uint8Array() };
  const hardState: HardState = { term: state.term ?? 0, vote: state.vote ?? null, commit: state.commit ?? 0 };
  return RaftNode.restart(options(id, overrides), { hardState, snapshot, entries: state.entries ?? [] });
}

/** Runs one Ready round (as a caller that persists instantly) and returns it. */
export function drainReady(node: RaftNode): Ready {
  const rd = node.ready();
  node.advance();
  return rd;
}

/** The messages a node wants to send now. */
export function outgoing(node: RaftNode): Message[] {
  return node.hasReady() ? [...drainReady(node).messages] : [];
}

export function ticks(node: RaftNode, n: number): void {
  for (let k = 0; k < n; k++) node.tick();
}

/** Ticks until the node starts a (pre-)campaign; bounded by twice the election timeout. */
export function tickUntilCampaign(node: RaftNode): void {
  for (let k = 0; k < 40; k++) {
    node.tick();
    if (node.status().role !== 'follower') return;
  }
  throw new Error(`${node.id} did not campaign`);
}

/**
 * A tiny in-memory cluster with synchronous delivery: every message is delivered in send order
 * unless `filter` drops it. Persisting is instantaneous.
 */
export class Cluster {
  readonly nodes = new Map<string, RaftNode>();
  readonly applied = new Map<string, Entry[]>();
  filter: (m: Message) => boolean = () => true;

  constructor(ids: string[], overrides: Partial<RaftOptions> = {}) {
    for (const id of ids) {
      this.add(RaftNode.bootstrap(options(id, overrides), config(ids)));
    }
  }

  add(node: RaftNode): void {
    this.nodes.set(node.id, node);
    this.applied.set(node.id, []);
  }

  node(id: string): RaftNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** Delivers messages until nothing moves; bounded. */
  settle(): void {
    const queue: Message[] = [];
    for (let round = 0; round < 10_000; round++) {
      for (const node of this.nodes.values()) {
        while (node.hasReady()) {
          const rd = node.ready();
          for (const e of rd.committedEntries) this.applied.get(node.id)!.push(e);
          node.advance();
          queue.push(...rd.messages);
        }
      }
      const m = queue.shift();
      if (m === undefined) return;
      const to = this.nodes.get(m.to);
      if (to !== undefined && this.filter(m)) to.step(m);
    }
    throw new Error('cluster did not settle');
  }

  /** Makes `id` campaign (ticking only it) and settles; returns it. */
  elect(id: string): RaftNode {
    const node = this.node(id);
    tickUntilCampaign(node);
    this.settle();
    if (node.status().role !== 'leader') throw new Error(`${id} did not win: ${JSON.stringify(node.status())}`);
    return node;
  }

  tickAll(n: number): void {
    for (let k = 0; k < n; k++) {
      for (const node of this.nodes.values()) node.tick();
      this.settle();
    }
  }

  appliedData(id: string): string[] {
    return this.applied
      .get(id)!
      .filter((e) => e.type === 'normal' && e.data.length > 0)
      .map((e) => new TextDecoder().decode(e.data));
  }
}

export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}
