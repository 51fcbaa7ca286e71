import { randomBytes } from 'node:crypto';
import { DfsError } from '../errors/index.ts';
import { type Configuration, type Message, RaftNode, type RaftOptions, type Ready, type Snapshot, type SoftState } from '../raft/index.ts';
import type { RaftStore } from './raft-store.ts';

/** The application the driver replicates: deterministic apply, snapshot and restore. */
export interface ReplicatedStateMachine {
  apply(index: number, data: Uint8Array): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): Promise<void>;
}

/** How Raft messages leave and arrive; the driver checks nothing about peers itself. */
export interface RaftTransport {
  send(message: Message): void;
  onMessage(handler: (message: Message) => void): void;
}

export interface RaftDriverOptions {
  readonly id: string;
  readonly store: RaftStore;
  readonly transport: RaftTransport;
  readonly machine: ReplicatedStateMachine;
  /** The founding configuration, used only when the store is empty. */
  readonly bootstrap?: Configuration;
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Take a snapshot (and compact the log) after this many applied entries. */
  readonly snapshotEveryEntries?: number;
  /** How long a proposal or a linearizable read may wait before ERR_TIMEOUT. */
  readonly requestTimeoutMs?: number;
  readonly rng?: () => number;
}

interface PendingProposal {
  readonly term: number;
  readonly resolve: (result: unknown) => void;
  readonly reject: (err: DfsError) => void;
  readonly timer: NodeJS.Timeout;
}

interface PendingRead {
  index: number | null;
  readonly resolve: () => void;
  readonly reject: (err: DfsError) => void;
  readonly timer: NodeJS.Timeout;
}

/** Inputs that arrive while a Ready is being persisted wait here (the core allows none then). */
const MAX_QUEUED_INPUTS = 50_000;

/**
 * The thin, impure adapter around the pure Raft core: a ticking clock, the Ready loop (persist
 * with fsync → send → apply → serve reads → advance), proposals and linearizable reads as
 * promises, and periodic snapshots. Single-threaded: every call into the core happens from here.
 * Inputs arriving while a Ready is persisted queue up and run right after advance(), so the next
 * Ready carries them all: fsyncs are group commits.
 */
export class RaftDriver {
  readonly id: string;
  readonly #node: RaftNode;
  readonly #store: RaftStore;
  readonly #transport: RaftTransport;
  readonly #machine: ReplicatedStateMachine;
  readonly #snapshotEveryEntries: number;
  readonly #requestTimeoutMs: number;
  readonly #proposals = new Map<number, PendingProposal>();
  readonly #reads = new Map<string, PendingRead>();
  readonly #queue: Array<() => void> = [];
  #inReady = false;
  #draining = false;
  #applied = 0;
  #snapshotIndex = 0;
  #soft: SoftState = { role: 'follower', leaderId: null };
  #ticker: NodeJS.Timeout | undefined;
  #stopped = false;
  #failure: Error | undefined;
  readonly #listeners = new Set<() => void>();

  private constructor(options: RaftDriverOptions, node: RaftNode, applied: number) {
    this.id = options.id;
    this.#node = node;
    this.#store = options.store;
    this.#transport = options.transport;
    this.#machine = options.machine;
    this.#snapshotEveryEntries = options.snapshotEveryEntries ?? 10_000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.#applied = applied;
    this.#snapshotIndex = applied;
  }

  static async start(options: RaftDriverOptions): Promise<RaftDriver> {
    const raftOptions: RaftOptions = {
      id: options.id,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: options.heartbeatTicks ?? 1,
      rng: options.rng ?? (() => randomBytes(4).readUInt32BE(0) / 2 ** 32),
      preVote: true,
      checkQuorum: true,
    };
    const persisted = await options.store.load();
    let node: RaftNode;
    let applied = 0;
    if (persisted) {
      node = RaftNode.restart(raftOptions, persisted);
      if (persisted.snapshot && persisted.snapshot.data.length > 0) {
        await options.machine.restore(persisted.snapshot.data);
        applied = persisted.snapshot.metadata.index;
      }
    } else if (options.bootstrap) {
      node = RaftNode.bootstrap(raftOptions, options.bootstrap);
    } else {
      node = RaftNode.join(raftOptions);
    }
    const driver = new RaftDriver(options, node, applied);
    options.transport.onMessage((m) => driver.#input(() => driver.#node.step(m)));
    driver.#ticker = setInterval(() => driver.#input(() => driver.#node.tick()), options.tickMs ?? 50);
    driver.#kick();
    return driver;
  }

  get role(): SoftState['role'] {
    return this.#soft.role;
  }

  get leaderId(): string | null {
    return this.#soft.leaderId;
  }

  /** On the leader: each follower's replication progress (match index), else null. */
  progressOf(id: string): ReturnType<RaftNode['progressOf']> {
    return this.#node.progressOf(id);
  }

  /** The core's counters (elections, snapshots sent and restored, dropped messages by reason). */
  get stats(): RaftNode['stats'] {
    return this.#node.stats;
  }

  get appliedIndex(): number {
    return this.#applied;
  }

  status(): ReturnType<RaftNode['status']> & { applied: number; snapshotIndex: number; pendingProposals: number } {
    return { ...this.#node.status(), applied: this.#applied, snapshotIndex: this.#snapshotIndex, pendingProposals: this.#proposals.size };
  }

  /**
   * Proposes `data` and resolves with the state machine's result once it is applied here.
   * ERR_NOT_LEADER (with the leader's id in `leaderHint`) when this node does not lead or loses
   * leadership before the entry commits — the outcome is then unknown, so callers retry with the
   * same request id (the state machine applies a retried request once).
   */
  propose(data: Uint8Array): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#input(() => {
        const r = this.#node.propose(data);
        if (!r.ok) return reject(this.#refusal(r.reason, 'leaderHint' in r ? r.leaderHint : null));
        const timer = setTimeout(() => {
          this.#proposals.delete(r.index);
          reject(new DfsError('ERR_TIMEOUT', `entry ${r.index} was not committed within ${this.#requestTimeoutMs} ms (no quorum?)`));
        }, this.#requestTimeoutMs);
        this.#proposals.set(r.index, { term: r.term, resolve, reject, timer });
      }, reject);
    });
  }

  /** Resolves once a linearizable read may run: this leader is confirmed and has applied enough. */
  readBarrier(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#input(() => {
        const context = randomBytes(8).toString('hex');
        const r = this.#node.readIndex(context);
        if (!r.ok) return reject(this.#refusal(r.reason, 'leaderHint' in r ? r.leaderHint : null));
        const timer = setTimeout(() => {
          this.#reads.delete(context);
          reject(new DfsError('ERR_TIMEOUT', `read not confirmed by a quorum within ${this.#requestTimeoutMs} ms`));
        }, this.#requestTimeoutMs);
        this.#reads.set(context, { index: null, resolve, reject, timer });
      }, reject);
    });
  }

  /** Calls `listener` after every processed Ready (role, commit or applied index may have moved). */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once `predicate` holds, checked after every change; ERR_TIMEOUT after `timeoutMs`. */
  until(predicate: () => boolean, timeoutMs: number): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new DfsError('ERR_TIMEOUT', `condition not reached within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onChange(() => {
        if (predicate()) {
          clearTimeout(timer);
          off();
          resolve();
        }
      });
    });
  }

  /** Asks the leader to hand leadership to `to` (used by graceful shutdown and tests). */
  transferLeadership(to: string): void {
    this.#input(() => void this.#node.transferLeadership(to));
  }

  /** Stops ticking and answering. Not a clean shutdown of the store: that is close(). */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#ticker);
    this.#failAll(new DfsError('ERR_NOT_LEADER', 'this master is shutting down'));
  }

  async close(): Promise<void> {
    this.stop();
    while (this.#draining) await new Promise((r) => setImmediate(r));
    await this.#store.close();
  }

  // ---- the loop ----

  #input(fn: () => void, onError?: (err: DfsError) => void): void {
    if (this.#stopped || this.#failure) {
      onError?.(new DfsError('ERR_NOT_LEADER', 'this master is not running'));
      return;
    }
    if (this.#inReady) {
      if (this.#queue.length >= MAX_QUEUED_INPUTS) {
        onError?.(new DfsError('ERR_TIMEOUT', 'this master is overloaded'));
        return; // a dropped tick or message is harmless to Raft
      }
      this.#queue.push(fn);
      return;
    }
    fn();
    this.#kick();
  }

  #kick(): void {
    if (this.#draining || this.#stopped) return;
    this.#draining = true;
    queueMicrotask(() => {
      this.#drain()
        .catch((err: unknown) => this.#crash(err))
        .finally(() => {
          this.#draining = false;
          // Input that arrived after the loop's last check must not wait for the next tick.
          if (!this.#stopped && !this.#failure && this.#node.hasReady()) this.#kick();
        });
    });
  }

  async #drain(): Promise<void> {
    for (let rounds = 0; !this.#stopped && this.#node.hasReady(); rounds++) {
      if (rounds > 1_000_000) throw new Error('raft driver: ready loop does not settle');
      const rd = this.#node.ready();
      this.#inReady = true;
      try {
        await this.#handleReady(rd);
      } finally {
        this.#node.advance();
        this.#inReady = false;
      }
      for (const fn of this.#queue.splice(0)) fn();
      await this.#maybeSnapshot();
    }
  }

  async #handleReady(rd: Ready): Promise<void> {
    // Committed entries that an earlier Ready already persisted here are durable on a quorum
    // including this node, so they are applied — and their clients answered — while this
    // Ready's new entries are fsynced, not after: one fsync less on a commit's path under load.
    // Entries of this very Ready (a single-voter cluster commits on append; a follower may learn
    // of commit with the entries) wait for the fsync like the messages do.
    const firstNew = rd.snapshot ? 0 : (rd.entries[0]?.index ?? Infinity);
    const early = rd.committedEntries.filter((e) => e.index < firstNew);
    const late = rd.committedEntries.slice(early.length);
    const persisting = this.#store.persistReady(rd);
    persisting.catch(() => {}); // awaited below; not unhandled while we apply
    this.#applyCommitted(early);
    await persisting;
    if (rd.snapshot) await this.#installSnapshot(rd.snapshot);
    this.#applyCommitted(late);
    for (const m of rd.messages) this.#transport.send(m);
    for (const rs of rd.readStates) {
      const read = this.#reads.get(rs.context);
      if (read) read.index = rs.index;
    }
    this.#serveReads();
    this.#onSoftState(rd.softState);
    for (const listener of this.#listeners) listener();
  }

  #applyCommitted(entries: Ready['committedEntries']): void {
    for (const e of entries) {
      const result = e.type === 'normal' && e.data.length > 0 ? this.#machine.apply(e.index, e.data) : undefined;
      this.#applied = e.index;
      const pending = this.#proposals.get(e.index);
      if (pending) {
        this.#proposals.delete(e.index);
        clearTimeout(pending.timer);
        if (pending.term === e.term) pending.resolve(result);
        else pending.reject(new DfsError('ERR_NOT_LEADER', 'leadership changed before the request committed; retry'));
      }
    }
  }

  async #installSnapshot(snapshot: Snapshot): Promise<void> {
    await this.#machine.restore(snapshot.data);
    this.#applied = snapshot.metadata.index;
    this.#snapshotIndex = snapshot.metadata.index;
  }

  #serveReads(): void {
    for (const [context, read] of this.#reads) {
      if (read.index !== null && read.index <= this.#applied) {
        this.#reads.delete(context);
        clearTimeout(read.timer);
        read.resolve();
      }
    }
  }

  #onSoftState(soft: SoftState): void {
    const wasLeader = this.#soft.role === 'leader';
    this.#soft = soft;
    if (wasLeader && soft.role !== 'leader') {
      this.#failAll(new DfsError('ERR_NOT_LEADER', 'this master lost leadership; retry at the new leader'));
    }
  }

  async #maybeSnapshot(): Promise<void> {
    if (this.#applied - this.#snapshotIndex < this.#snapshotEveryEntries) return;
    const r = this.#node.compact(this.#applied, this.#machine.snapshot());
    if (!r.ok) return;
    this.#inReady = true; // hold inputs: the snapshot must be durable before more state changes
    try {
      await this.#store.saveSnapshot(r.snapshot);
    } finally {
      this.#inReady = false;
    }
    this.#snapshotIndex = r.snapshot.metadata.index;
    for (const fn of this.#queue.splice(0)) fn();
  }

  #failAll(err: DfsError): void {
    for (const [index, p] of this.#proposals) {
      clearTimeout(p.timer);
      p.reject(err);
      this.#proposals.delete(index);
    }
    for (const [context, r] of this.#reads) {
      clearTimeout(r.timer);
      r.reject(err);
      this.#reads.delete(context);
    }
  }

  #refusal(reason: string, leaderHint: string | null): DfsError {
    if (reason === 'not_leader') {
      const err = new DfsError('ERR_NOT_LEADER', leaderHint ? `not the leader; the leader is ${leaderHint}` : 'not the leader; no leader is known (election under way?)');
      (err as DfsError & { leaderHint?: string | null }).leaderHint = leaderHint;
      return err;
    }
    return new DfsError('ERR_TIMEOUT', `the leader refused the request for now (${reason}); retry`);
  }

  /**
   * A failed fsync (disk full, I/O error) leaves the durable state unknown: stop this master
   * rather than risk acknowledging something that is not on disk. The others carry on.
   */
  #crash(err: unknown): void {
    this.#failure = err instanceof Error ? err : new Error(String(err));
    this.stop();
    console.error(`raft driver ${this.id} stopped: ${this.#failure.message}`);
  }

  get failure(): Error | undefined {
    return this.#failure;
  }
}
