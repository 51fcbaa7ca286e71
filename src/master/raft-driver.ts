import { type Clock, randomHex, type Rng, systemClock, systemRng, type TimerHandle } from '../env/index.ts';
import { DfsError } from '../errors/index.ts';
import { type Logger, silentLogger } from '../log/index.ts';
import { type Configuration, type Message, type PersistedState, RaftNode, type RaftOptions, type Ready, type Snapshot, type SoftState } from '../raft/index.ts';

/** The application the driver replicates: deterministic apply, snapshot and restore. */
export interface ReplicatedStateMachine {
  apply(index: number, data: Uint8Array): unknown;
  /**
   * The state as bytes, as of the moment of the call: the state must be captured synchronously
   * (applies go on while the promise serialises the capture, over many event-loop turns).
   */
  snapshot(): Promise<Uint8Array>;
  restore(data: Uint8Array): Promise<void>;
}

/**
 * Where the driver keeps the Raft log, hard state and snapshot (classic-level in production,
 * a simulated disk that loses un-synced writes in the simulator). Operations may be called
 * concurrently; the store runs them in call order.
 */
export interface RaftLogStore {
  /** Everything persisted, for RaftNode.restart; undefined when nothing ever was. */
  load(): Promise<PersistedState | undefined>;
  /** Step 1 of a Ready (snapshot, entries, hard state), durable when the promise resolves. */
  persistReady(rd: Pick<Ready, 'snapshot' | 'entries' | 'hardState'>): Promise<void>;
  /** A snapshot the application took; entries it covers may go. Ignored if an newer one is stored. */
  saveSnapshot(snapshot: Snapshot): Promise<void>;
  close(): Promise<void>;
}

/** How Raft messages leave and arrive; the driver checks nothing about peers itself. */
export interface RaftTransport {
  send(message: Message): void;
  onMessage(handler: (message: Message) => void): void;
}

export interface RaftDriverOptions {
  readonly id: string;
  readonly store: RaftLogStore;
  readonly transport: RaftTransport;
  readonly machine: ReplicatedStateMachine;
  /** The founding configuration, used only when the store is empty. */
  readonly bootstrap?: Configuration;
  /** What `store.load()` already returned (the caller looked before starting), so it is not read twice. */
  readonly preloaded?: { readonly state: PersistedState | undefined };
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Take a snapshot (and compact the log) after this many applied entries. */
  readonly snapshotEveryEntries?: number;
  /**
   * A leader compacts only up to what its followers have matched, unless one is more than this
   * many entries behind the applied index (it will need a snapshot anyway). Default 5,000.
   */
  readonly catchUpEntries?: number;
  /** How long a proposal or a linearizable read may wait before ERR_TIMEOUT. */
  readonly requestTimeoutMs?: number;
  readonly rng?: Rng;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /**
   * Called once when persistence failed: the driver has stopped and reports itself a follower.
   * A master process exits from here (its durable state is unknown).
   */
  readonly onFailure?: (err: Error) => void;
}

interface PendingProposal {
  readonly term: number;
  readonly resolve: (result: unknown) => void;
  readonly reject: (err: DfsError) => void;
  readonly timer: TimerHandle;
}

interface PendingRead {
  index: number | null;
  readonly resolve: () => void;
  readonly reject: (err: DfsError) => void;
  readonly timer: TimerHandle;
}

/**
 * An input that arrived while a Ready was being persisted (the core allows none then), with
 * what fails it if the driver stops or fails before it runs: every promise handed out settles.
 */
interface QueuedInput {
  readonly fn: () => void;
  readonly onError: ((err: DfsError) => void) | undefined;
}

/** Inputs that arrive while a Ready is being persisted wait here (the core allows none then). */
const MAX_QUEUED_INPUTS = 50_000;

/**
 * The thin, impure adapter around the pure Raft core: a ticking clock, the Ready loop (persist
 * with fsync → send → apply → serve reads → advance), proposals and linearizable reads as
 * promises, and periodic snapshots. Single-threaded: every call into the core happens from here.
 * Inputs arriving while a Ready is persisted queue up and run right after advance(), so the next
 * Ready carries them all: fsyncs are group commits. Time, randomness, storage, network and logs
 * are injected, so the simulator runs this very code.
 *
 * Contract on failure: if persisting anything fails, the driver stops at once — it reports
 * itself a follower with no known leader, answers nothing, sends nothing — and calls onFailure.
 */
export class RaftDriver {
  readonly id: string;
  readonly #node: RaftNode;
  readonly #store: RaftLogStore;
  readonly #transport: RaftTransport;
  readonly #machine: ReplicatedStateMachine;
  readonly #clock: Clock;
  readonly #rng: Rng;
  readonly #log: Logger;
  readonly #onFailure: ((err: Error) => void) | undefined;
  readonly #snapshotEveryEntries: number;
  readonly #catchUpEntries: number;
  readonly #requestTimeoutMs: number;
  readonly #proposals = new Map<number, PendingProposal>();
  readonly #reads = new Map<string, PendingRead>();
  readonly #queue: QueuedInput[] = [];
  #inReady = false;
  #draining: Promise<void> | undefined;
  #applied = 0;
  #snapshotIndex = 0;
  /** A snapshot job (serialise, compact, save) under way. */
  #snapshotting: Promise<void> | undefined;
  #soft: SoftState = { role: 'follower', leaderId: null };
  #ticker: TimerHandle | undefined;
  #stopped = false;
  #failure: Error | undefined;
  readonly #listeners = new Set<() => void>();

  private constructor(options: RaftDriverOptions, node: RaftNode, applied: number) {
    this.id = options.id;
    this.#node = node;
    this.#store = options.store;
    this.#transport = options.transport;
    this.#machine = options.machine;
    this.#clock = options.clock ?? systemClock;
    this.#rng = options.rng ?? systemRng;
    this.#log = (options.logger ?? silentLogger).child({ component: 'raft' });
    this.#onFailure = options.onFailure;
    this.#snapshotEveryEntries = options.snapshotEveryEntries ?? 10_000;
    this.#catchUpEntries = options.catchUpEntries ?? 5_000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.#applied = applied;
    this.#snapshotIndex = applied;
  }

  static async start(options: RaftDriverOptions): Promise<RaftDriver> {
    const raftOptions: RaftOptions = {
      id: options.id,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: options.heartbeatTicks ?? 1,
      rng: options.rng ?? systemRng,
      preVote: true,
      checkQuorum: true,
    };
    const persisted = options.preloaded ? options.preloaded.state : await options.store.load();
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
    options.transport.onMessage((m) => driver.#receive(m));
    const clock = options.clock ?? systemClock;
    driver.#ticker = clock.setInterval(() => driver.#input(() => driver.#node.tick()), options.tickMs ?? 50);
    driver.#log.info({ id: options.id, restarted: persisted !== undefined, applied }, 'raft driver started');
    driver.#kick();
    return driver;
  }

  /** The role this master acts in: never 'leader' once stopped or failed. */
  get role(): SoftState['role'] {
    return this.#halted ? 'follower' : this.#soft.role;
  }

  get leaderId(): string | null {
    return this.#halted ? null : this.#soft.leaderId;
  }

  /** The current term (as the core knows it). */
  get term(): number {
    return this.#node.status().term;
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
    const s = this.#node.status();
    const halted = this.#halted ? { role: 'follower' as const, leaderId: null } : {};
    return { ...s, ...halted, applied: this.#applied, snapshotIndex: this.#snapshotIndex, pendingProposals: this.#proposals.size };
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
        const timer = this.#clock.setTimeout(() => {
          this.#proposals.delete(r.index);
          reject(new DfsError('ERR_TIMEOUT', `entry ${r.index} was not committed within ${this.#requestTimeoutMs} ms (no quorum?)`));
        }, this.#requestTimeoutMs);
        this.#proposals.set(r.index, { term: r.term, resolve, reject, timer });
      }, reject);
    });
  }

  /**
   * Resolves once a linearizable read may run: this leader is confirmed and has applied enough.
   * A leader fresh in its term has committed nothing of it yet: the barrier waits for that (its
   * no-op entry) instead of refusing.
   */
  readBarrier(): Promise<void> {
    return new Promise((resolve, reject) => {
      const deadline = this.#clock.now() + this.#requestTimeoutMs;
      const attempt = (): void => {
        const context = randomHex(this.#rng);
        const r = this.#node.readIndex(context);
        if (!r.ok && r.reason === 'no_commit_in_term' && this.#clock.now() < deadline) {
          const off = this.onChange(() => {
            off();
            this.#input(attempt, reject);
          });
          return;
        }
        if (!r.ok) return reject(this.#refusal(r.reason, 'leaderHint' in r ? r.leaderHint : null));
        const timer = this.#clock.setTimeout(() => {
          this.#reads.delete(context);
          reject(new DfsError('ERR_TIMEOUT', `read not confirmed by a quorum within ${this.#requestTimeoutMs} ms`));
        }, Math.max(1, deadline - this.#clock.now()));
        this.#reads.set(context, { index: null, resolve, reject, timer });
      };
      this.#input(attempt, reject);
    });
  }

  /** Calls `listener` after every processed Ready and when the driver stops or fails. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once `predicate` holds, checked after every change; ERR_TIMEOUT after `timeoutMs`. */
  until(predicate: () => boolean, timeoutMs: number): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        off();
        reject(new DfsError('ERR_TIMEOUT', `condition not reached within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onChange(() => {
        if (predicate()) {
          timer.cancel();
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

  /**
   * Stops ticking and answering. Not a clean shutdown of the store: that is close(). Every
   * proposal, read and queued input still waiting fails with ERR_NOT_LEADER.
   */
  stop(): void {
    this.#halt(new DfsError('ERR_NOT_LEADER', 'this master is shutting down'), new DfsError('ERR_NOT_LEADER', 'this master is not running'));
  }

  /**
   * Stops for good: `pending` fails the proposals and reads under way, `queued` the inputs that
   * wait for a Ready to end (a halted driver runs none of them), so no promise it handed out is
   * left pending — a snapshot job waiting for its compact input ends, and close() with it.
   */
  #halt(pending: DfsError, queued: DfsError): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#ticker?.cancel();
    this.#failAll(pending);
    for (const { onError } of this.#queue.splice(0)) onError?.(queued);
    this.#notify();
  }

  async close(): Promise<void> {
    this.stop();
    await this.#draining;
    await this.#snapshotting;
    await this.#store.close();
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Resolves once the Ready loop has nothing under way (what it had is persisted, or failed). */
  async idle(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  get #halted(): boolean {
    return this.#stopped || this.#failure !== undefined;
  }

  /** Messages dropped because their sender is not a member of the current configuration. */
  droppedFromStrangers = 0;

  /**
   * A message from a peer outside the current configuration changes nothing: no term bump, no
   * vote, no append, no snapshot. (A master that has not joined a configuration yet has none to
   * check against; its transport only hears the masters it was told of.)
   */
  #receive(m: Message): void {
    const { voters, learners } = this.#node.status().config;
    if (m.to !== this.id || ((voters.length > 0 || learners.length > 0) && !voters.includes(m.from) && !learners.includes(m.from))) {
      if (this.droppedFromStrangers++ % 1000 === 0) this.#log.warn({ from: m.from, type: m.type, term: m.term }, 'dropped a raft message from a non-member');
      return;
    }
    this.#input(() => this.#node.step(m));
  }

  // ---- the loop ----

  #input(fn: () => void, onError?: (err: DfsError) => void): void {
    if (this.#halted) {
      onError?.(new DfsError('ERR_NOT_LEADER', 'this master is not running'));
      return;
    }
    if (this.#inReady) {
      if (this.#queue.length >= MAX_QUEUED_INPUTS) {
        onError?.(new DfsError('ERR_TIMEOUT', 'this master is overloaded'));
        return; // a dropped tick or message is harmless to Raft
      }
      this.#queue.push({ fn, onError });
      return;
    }
    fn();
    this.#kick();
  }

  #kick(): void {
    if (this.#draining || this.#halted) return;
    this.#draining = (async () => {
      await Promise.resolve(); // a microtask later: inputs of this turn join the same Ready
      try {
        await this.#drain();
      } catch (err) {
        this.#crash(err);
      } finally {
        this.#draining = undefined;
      }
      // Input that arrived after the loop's last check must not wait for the next tick.
      if (!this.#halted && this.#node.hasReady()) this.#kick();
    })();
  }

  async #drain(): Promise<void> {
    for (let rounds = 0; !this.#halted && this.#node.hasReady(); rounds++) {
      if (rounds > 1_000_000) throw new Error('raft driver: ready loop does not settle');
      const rd = this.#node.ready();
      this.#inReady = true;
      try {
        await this.#handleReady(rd);
      } finally {
        this.#node.advance();
        this.#inReady = false;
      }
      // (Stopped during the Ready: #halt already failed what was queued, nothing runs.)
      const queued = this.#queue.splice(0);
      for (let i = 0; i < queued.length; i++) {
        try {
          queued[i]!.fn();
        } catch (err) {
          // The loop crashes; what did not run goes back, for #crash to fail it.
          for (let j = i + 1; j < queued.length; j++) this.#queue.push(queued[j]!);
          throw err;
        }
      }
      this.#maybeSnapshot();
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
    if (this.#halted) return; // stopped meanwhile: nothing of this Ready leaves
    if (rd.snapshot) await this.#installSnapshot(rd.snapshot);
    this.#applyCommitted(late);
    for (const m of rd.messages) this.#transport.send(m);
    for (const rs of rd.readStates) {
      const read = this.#reads.get(rs.context);
      if (read) read.index = rs.index;
    }
    this.#serveReads();
    this.#onSoftState(rd.softState);
    this.#notify();
  }

  #applyCommitted(entries: Ready['committedEntries']): void {
    for (const e of entries) {
      const result = e.type === 'normal' && e.data.length > 0 ? this.#machine.apply(e.index, e.data) : undefined;
      this.#applied = e.index;
      const pending = this.#proposals.get(e.index);
      if (pending) {
        this.#proposals.delete(e.index);
        pending.timer.cancel();
        if (pending.term === e.term) pending.resolve(result);
        else pending.reject(new DfsError('ERR_NOT_LEADER', 'leadership changed before the request committed; retry'));
      }
    }
  }

  async #installSnapshot(snapshot: Snapshot): Promise<void> {
    await this.#machine.restore(snapshot.data);
    this.#applied = snapshot.metadata.index;
    this.#snapshotIndex = snapshot.metadata.index;
    this.#log.info({ index: snapshot.metadata.index, term: snapshot.metadata.term, bytes: snapshot.data.length }, 'installed a snapshot from the leader');
  }

  #serveReads(): void {
    for (const [context, read] of this.#reads) {
      if (read.index !== null && read.index <= this.#applied) {
        this.#reads.delete(context);
        read.timer.cancel();
        read.resolve();
      }
    }
  }

  #onSoftState(soft: SoftState): void {
    const before = this.#soft;
    this.#soft = soft;
    if (before.role !== soft.role || before.leaderId !== soft.leaderId) {
      this.#log.info({ role: soft.role, leaderId: soft.leaderId, term: this.term, was: before.role }, soft.role === 'leader' ? 'became leader' : 'role changed');
    }
    if (before.role === 'leader' && soft.role !== 'leader') {
      this.#failAll(new DfsError('ERR_NOT_LEADER', 'this master lost leadership; retry at the new leader'));
    }
  }

  /**
   * Takes a snapshot in the background once enough entries were applied past the last one. A
   * leader waits while a follower that can still catch up from the log has not matched the
   * applied index (so it needs no snapshot), unless that follower is hopelessly behind.
   */
  #maybeSnapshot(): void {
    if (this.#snapshotting || this.#halted) return;
    if (this.#applied - this.#snapshotIndex < this.#snapshotEveryEntries) return;
    if (this.#followerNeedsLog()) return;
    this.#snapshotting = this.#takeSnapshot(this.#applied)
      .catch((err: unknown) => this.#crash(err))
      .finally(() => {
        this.#snapshotting = undefined;
      });
  }

  #followerNeedsLog(): boolean {
    const s = this.#node.status();
    if (s.role !== 'leader') return false;
    // Waiting is bounded: a log twice the snapshot interval is compacted whoever lags.
    if (this.#applied - this.#snapshotIndex >= 2 * this.#snapshotEveryEntries) return false;
    const floor = this.#applied - this.#catchUpEntries;
    for (const id of [...s.config.voters, ...s.config.learners]) {
      if (id === this.id) continue;
      const match = this.#node.progressOf(id)?.match ?? 0;
      if (match < this.#applied && match >= Math.max(floor, this.#snapshotIndex)) return true;
    }
    return false;
  }

  async #takeSnapshot(index: number): Promise<void> {
    const startedMs = this.#clock.now();
    const data = await this.#machine.snapshot(); // the state as of `index`, captured at the call
    if (this.#halted) return;
    // compact() may not run between ready() and advance(): it goes in as an input.
    const compacted = await new Promise<ReturnType<RaftNode['compact']> | null>((resolve) => {
      this.#input(() => resolve(this.#node.compact(index, data)), () => resolve(null));
    });
    if (compacted === null || !compacted.ok) return; // stopped, or a snapshot from the leader got further
    await this.#store.saveSnapshot(compacted.snapshot);
    this.#snapshotIndex = Math.max(this.#snapshotIndex, index);
    this.#log.info({ index, bytes: data.length, ms: this.#clock.now() - startedMs }, 'took a snapshot');
  }

  #failAll(err: DfsError): void {
    for (const [index, p] of this.#proposals) {
      p.timer.cancel();
      p.reject(err);
      this.#proposals.delete(index);
    }
    for (const [context, r] of this.#reads) {
      r.timer.cancel();
      r.reject(err);
      this.#reads.delete(context);
    }
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
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
   * A failed fsync (disk full, I/O error) leaves the durable state unknown: this master stops at
   * once — no more messages, answers or leader-only work — rather than act on state that may not
   * be on disk. The others carry on; onFailure lets the process exit.
   */
  #crash(err: unknown): void {
    if (this.#failure) return;
    this.#failure = err instanceof Error ? err : new Error(String(err));
    this.#log.fatal({ err: this.#failure.message, term: this.term, wasRole: this.#soft.role }, 'persistence failed: this master stops');
    const stopped = new DfsError('ERR_NOT_LEADER', `this master is not running (persistence failed: ${this.#failure.message})`);
    this.#halt(stopped, stopped);
    this.#notify();
    this.#onFailure?.(this.#failure);
  }
}
