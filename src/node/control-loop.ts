import { type Clock, systemClock, type TimerHandle } from '../env/index.ts';
import { isDfsError } from '../errors/index.ts';
import { MAX_CHUNK_IDS_PER_MESSAGE } from '../meta/index.ts';
import { peerIdInAddr } from '../net/index.ts';
import type { ChunkStore } from '../storage/index.ts';
import { ClusterKey } from './cluster-key.ts';
import { heartbeatAnswerSchema, MAX_REPLICATED_PER_BEAT, registerAnswerSchema } from './control-protocol.ts';
import type { HeartbeatAnswer, HeartbeatRequest, ReplicateCommand, ReplicateResult } from './control-protocol.ts';
import { LeaderFence } from './leader-fence.ts';
import { NodeDirectory } from './node-directory.ts';

/** How the control loop reaches the leader (MetaClient in a node; a fake master in tests). */
export interface MasterLink {
  /** Registers this node (its id, addresses, capacity) through Raft; resolves with the answer's value (its `clusterKey` is read). */
  register(): Promise<unknown>;
  /** Sends one heartbeat to the leader; resolves with the answer's value (parsed by the loop). */
  heartbeat(request: HeartbeatRequest): Promise<unknown>;
  /** Sends one page of a full chunk report. */
  report(page: { readonly ids: string[]; readonly first: boolean; readonly last: boolean }): Promise<void>;
}

/**
 * Puts `bytes` (chunk `id`, read and verified here) on the node at `toAddr` under `fence` with the
 * leader's replicate `ticket`, and resolves only when it holds them, with the nodes' checked
 * receipts (the target's among them; putChunk does both).
 */
export type CopyChunk = (
  toAddr: string,
  id: string,
  bytes: Uint8Array,
  fence: number,
  ticket: string,
  signal: AbortSignal,
) => Promise<{ readonly receipts: ReadonlyArray<{ readonly node: string; readonly sig: string }> } | void>;

export interface ControlLoopOptions {
  /** This node's peer id. */
  readonly nodeId: string;
  readonly store: ChunkStore;
  readonly link: MasterLink;
  readonly copy: CopyChunk;
  /** The node list (also what ChunkService resolves pipelines with). Default: a new one. */
  readonly directory?: NodeDirectory;
  /** Where the cluster key from the masters' answers goes (ChunkService reads it). Default: a new one. */
  readonly clusterKey?: ClusterKey;
  /** Runs `scrubNow` when the leader asks for it. */
  readonly scrubber?: { scrubNow(): Promise<unknown> };
  /** Time and timers. Default: the system's. */
  readonly clock?: Clock;
  /** Between regular heartbeats. Default 1 s. */
  readonly heartbeatMs?: number;
  /** Bytes this node offers (reported); default: the disk's size. */
  readonly capacityBytes?: number;
  /** Copies made at once. Default 4. */
  readonly replicationConcurrency?: number;
  /** Copy bandwidth, bytes per second (paced per chunk). Default: unlimited. */
  readonly replicationBytesPerSec?: number;
  /** Where failures go (the loop keeps going). Default: dropped. */
  readonly onError?: (what: string, err: unknown) => void;
}

export interface ControlLoopStats {
  beats: number;
  beatsFailed: number;
  /** Heartbeats sent before their time, because a batch of copies (or verifies) finished. */
  earlyBeats: number;
  copiesOk: number;
  copiesFailed: number;
  verified: number;
  quarantined: number;
  /** Answers that announced a cluster key other than the one learnt first (refused, reported to onError). */
  clusterKeyRefusals: number;
}

/** Ids per report page and per heartbeat delta: the protocol's bound. */
const PAGE_IDS = MAX_CHUNK_IDS_PER_MESSAGE;
const DEFAULT_HEARTBEAT_MS = 1_000;
const DEFAULT_REPLICATION_CONCURRENCY = 4;
/** Copies waiting to start (beyond, a command is answered ERR_OVERLOADED at once). */
const MAX_QUEUED_COPIES = 4096;
/** Chunks waiting to be verified (beyond, requests are dropped: the leader asks again). */
const MAX_QUEUED_VERIFIES = 16_384;
/** Results kept while the leader cannot be reached (beyond, the oldest are dropped). */
const MAX_PENDING_RESULTS = 16_384;

interface CopyJob {
  readonly cmd: ReplicateCommand;
  readonly key: string;
  /** The commands of one answer still to finish. */
  readonly batch: { left: number };
}

/**
 * A storage node's side of the control traffic with the leader (protocol:
 * src/node/control-protocol.ts): registration, a heartbeat every second carrying load, chunk
 * deltas, the node-list version and the results of copies, and what the answers ask for:
 *
 * - `fence`: raises the delete floor (LeaderFence).
 * - `nodes`: replaces the node list (NodeDirectory): the only peers this node dials.
 * - `verify`: each chunk re-hashed (ChunkStore.verifyOrQuarantine), one at a time in the
 *   background; a missing or corrupt one is quarantined, so the next beat reports it removed.
 * - `replicate`: chunk `id` read here (verified; a bad local copy is quarantined instead and the
 *   result is ERR_CHUNK_CORRUPT) and put on node `to` at `toAddr`, only when `toAddr` names `to`
 *   and `to` is in the node list (else ERR_FORBIDDEN, nothing dialled); `replicationConcurrency`
 *   at once, paced to `replicationBytesPerSec`. Each result goes with a following beat.
 * - `scrubNow`: a full scrub now.
 * - `clusterKey` (also in the registration answer): the cluster's public key, kept in `clusterKey`
 *   for the ChunkService to check tickets with; a different key later is refused (onError,
 *   `stats.clusterKeyRefusals`), the first stays.
 * - each `replicate` command's `ticket` goes with the copy's put (a command without one fails
 *   ERR_UNAUTHENTICATED, nothing dialled).
 * - `registered: false` / `fullReportWanted`: register again / send a full report.
 *
 * At most one heartbeat is in flight. When a batch of copies (the commands of one answer) has
 * finished, or verifies quarantined something, the next beat goes at once rather than at the next
 * tick, so repair moves at the speed of the copies rather than one batch per second.
 * Time comes from the injected clock; `handleAnswer` can be driven directly with an answer.
 */
export class ControlLoop {
  readonly directory: NodeDirectory;
  readonly clusterKey: ClusterKey;
  readonly stats: ControlLoopStats = { beats: 0, beatsFailed: 0, earlyBeats: 0, copiesOk: 0, copiesFailed: 0, verified: 0, quarantined: 0, clusterKeyRefusals: 0 };
  readonly #o: ControlLoopOptions;
  readonly #clock: Clock;
  readonly #heartbeatMs: number;
  readonly #concurrency: number;
  readonly #bytesPerSec: number;
  readonly #reporter: ChunkReporter;
  readonly #leaderFence: LeaderFence;
  readonly #onError: (what: string, err: unknown) => void;
  #registered = false;
  #started = false;
  #stopped = false;
  #timer: TimerHandle | undefined;
  #inFlight: Promise<boolean> | undefined;
  /** A beat was asked for while one was in flight: send the next right after it. */
  #again = false;
  /** Waiting for the answer of a beat that starts after they asked (refreshDirectory). */
  #waitingForNextBeat: Array<() => void> = [];
  #refreshing: Promise<void> | undefined;
  readonly #queue: CopyJob[] = [];
  /** Copies queued or running, by chunk id and target: a repeated command is not run twice. */
  readonly #pendingCopies = new Set<string>();
  #copiesRunning = 0;
  #results: ReplicateResult[] = [];
  /** When the bandwidth budget next allows a copy to start (clock ms). */
  #bandwidthFreeAtMs = -Infinity;
  /**
   * Settles once the last copy started has taken its share of the budget: each copy takes its
   * share after the one before it, so the shares go in the leader's order (most endangered
   * first), not in whatever order the copies' `store.info` lookups happen to finish.
   */
  #bandwidthTurn: Promise<void> = Promise.resolve();
  readonly #verifyQueue = new Set<string>();
  #verifying = false;
  #scrubbing = false;
  readonly #work = new Set<Promise<unknown>>();
  readonly #sleepers = new Set<() => void>();
  readonly #stopping = new AbortController();

  constructor(options: ControlLoopOptions) {
    this.#o = options;
    this.directory = options.directory ?? new NodeDirectory();
    this.clusterKey = options.clusterKey ?? new ClusterKey();
    this.#clock = options.clock ?? systemClock;
    this.#heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.#concurrency = Math.max(1, Math.floor(options.replicationConcurrency ?? DEFAULT_REPLICATION_CONCURRENCY));
    this.#bytesPerSec = options.replicationBytesPerSec ?? Infinity;
    if (!(this.#bytesPerSec > 0)) throw new RangeError(`replicationBytesPerSec must be positive, got ${this.#bytesPerSec}`);
    this.#reporter = new ChunkReporter(options.store);
    // Deletes are refused until an answer brings the leader's fence (see LeaderFence).
    this.#leaderFence = new LeaderFence(options.store.fences);
    this.#onError = options.onError ?? (() => {});
  }

  /** Copies running now. */
  get copiesRunning(): number {
    return this.#copiesRunning;
  }

  /** Copies waiting for a slot. */
  get copiesQueued(): number {
    return this.#queue.length;
  }

  /** Starts the loop: register, then heartbeat every heartbeatMs. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#run();
  }

  /** Stops the loop and the copies (aborted) and verifies under way; waits for them. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#stopping.abort(new Error('the node is stopping'));
    for (const wake of [...this.#sleepers]) wake();
    this.#queue.length = 0;
    this.#verifyQueue.clear();
    this.#reporter.close();
    await this.#inFlight;
    await this.idle();
  }

  /** Resolves once the copies and verifies queued so far (and any queued meanwhile) are done. */
  async idle(): Promise<void> {
    for (let round = 0; round < 10_000 && this.#work.size > 0; round++) await Promise.allSettled([...this.#work]);
  }

  /**
   * Brings the node list up to date now: a heartbeat (which carries the list's version) is sent
   * at once and its answer awaited, at most `timeoutMs`. Calls made meanwhile share it. For a
   * pipeline naming a node that registered since the last beat.
   */
  refreshDirectory(timeoutMs = 3_000): Promise<void> {
    this.#refreshing ??= new Promise<void>((resolve) => {
      const timer = this.#clock.setTimeout(resolve, timeoutMs);
      this.#waitingForNextBeat.push(() => {
        timer.cancel();
        resolve();
      });
      this.beatSoon();
    }).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /** Sends a heartbeat now (right after the one in flight, if any), then resumes the cadence. */
  beatSoon(): void {
    if (!this.#started || this.#stopped) return;
    if (this.#inFlight) {
      this.#again = true;
      return;
    }
    this.stats.earlyBeats++;
    this.#run();
  }

  #run(): void {
    if (this.#stopped || this.#inFlight) return;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#again = false;
    const waiters = this.#waitingForNextBeat.splice(0);
    const tick = this.#tick();
    this.#inFlight = tick;
    void tick.then((ok) => {
      this.#inFlight = undefined;
      for (const wake of waiters) wake();
      if (this.#stopped) return;
      if (ok && this.#again) {
        this.stats.earlyBeats++;
        this.#run();
      } else {
        this.#timer = this.#clock.setTimeout(() => this.#run(), this.#heartbeatMs);
      }
    });
  }

  /** Registers if needed, then one heartbeat; false when it failed (reported to onError). */
  async #tick(): Promise<boolean> {
    try {
      if (!this.#registered) await this.#register();
      await this.beat();
      return true;
    } catch (err) {
      this.stats.beatsFailed++;
      if (!this.#stopped) this.#onError('heartbeat', err);
      return false;
    }
  }

  /**
   * One heartbeat: load, chunk deltas, node-list version and copy results out; the answer
   * handled (handleAnswer). What it carried is kept for the next beat if it fails.
   */
  async beat(): Promise<HeartbeatAnswer> {
    const s = await this.#o.store.stats();
    const usedBytes = s.bytes;
    const capacity = this.#o.capacityBytes;
    const freeBytes = Math.max(0, Math.min(s.freeBytes, capacity !== undefined ? capacity - usedBytes : Infinity));
    const { added, removed } = this.#reporter.takeDelta(PAGE_IDS);
    const replicated = this.#results.splice(0, MAX_REPLICATED_PER_BEAT);
    const nodesVersion = this.directory.version;
    const request: HeartbeatRequest = {
      nodeId: this.#o.nodeId,
      freeBytes,
      capacityBytes: capacity ?? s.totalBytes,
      usedBytes,
      chunkCount: s.chunks,
      inflight: 0,
      added,
      removed,
      ...(nodesVersion !== undefined ? { nodesVersion } : {}),
      ...(replicated.length > 0 ? { replicated } : {}),
    };
    let value: unknown;
    try {
      value = await this.#o.link.heartbeat(request);
    } catch (err) {
      // Try again with the next beat (a new leader asks for a full report anyway).
      this.#reporter.putBack(added, removed);
      this.#results = [...replicated, ...this.#results];
      throw err;
    }
    this.stats.beats++;
    return this.handleAnswer(value);
  }

  /**
   * Acts on a heartbeat answer's value: validated by heartbeatAnswerSchema first (anything else
   * is ERR_PROTOCOL and changes nothing). Verifies and copies are queued and run in the
   * background (see idle()); registration and a full report are done before this resolves.
   */
  async handleAnswer(value: unknown): Promise<HeartbeatAnswer> {
    const answer = heartbeatAnswerSchema.parse(value);
    if (answer.clusterKey !== undefined) this.#learnKey(answer.clusterKey);
    this.#leaderFence.observe(answer.fence);
    // The list first: the copies below may only go to nodes in it.
    if (answer.nodes !== undefined) this.directory.replace(answer.nodesVersion, answer.nodes);
    for (const id of answer.verify ?? []) this.#queueVerify(id);
    if (answer.replicate !== undefined && answer.replicate.length > 0) this.#queueCopies(answer.replicate);
    if (answer.scrubNow === true) this.#scrubNow();
    if (!answer.registered) await this.#register();
    if (answer.fullReportWanted || this.#reporter.overflowed) await this.#sendFullReport();
    return answer;
  }

  async #register(): Promise<void> {
    const value = await this.#o.link.register();
    this.#registered = true;
    // The answer is the state machine's value; only its clusterKey, when there is one, is ours.
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      try {
        const { clusterKey } = registerAnswerSchema.parse(value);
        if (clusterKey !== undefined) this.#learnKey(clusterKey);
      } catch (err) {
        this.#onError('cluster key from the registration answer', err);
      }
    }
  }

  /** The first key is kept; another one is refused and reported (a cluster's key never changes). */
  #learnKey(text: string): void {
    try {
      this.clusterKey.learn(text);
    } catch (err) {
      if (isDfsError(err, 'ERR_FORBIDDEN')) this.stats.clusterKeyRefusals++;
      this.#onError('cluster key', err);
    }
  }

  async #sendFullReport(): Promise<void> {
    this.#reporter.clear();
    let page: string[] = [];
    let first = true;
    for await (const c of this.#o.store.list()) {
      page.push(c.id);
      if (page.length === PAGE_IDS) {
        await this.#o.link.report({ ids: page, first, last: false });
        first = false;
        page = [];
      }
    }
    await this.#o.link.report({ ids: page, first, last: true });
  }

  // ---- verify ----

  #queueVerify(id: string): void {
    if (this.#stopped || this.#verifyQueue.size >= MAX_QUEUED_VERIFIES) return;
    this.#verifyQueue.add(id);
    if (!this.#verifying) {
      this.#verifying = true;
      this.#track(this.#drainVerifies());
    }
  }

  async #drainVerifies(): Promise<void> {
    let quarantined = 0;
    try {
      for (let id = first(this.#verifyQueue); id !== undefined && !this.#stopped; id = first(this.#verifyQueue)) {
        this.#verifyQueue.delete(id);
        try {
          const outcome = await this.#o.store.verifyOrQuarantine(id);
          if (outcome === 'verified') this.stats.verified++;
          if (outcome === 'quarantined') {
            this.stats.quarantined++;
            quarantined++;
          }
        } catch (err) {
          if (isDfsError(err, 'ERR_STORE_CLOSED')) break;
          this.#onError(`verify of chunk ${id}`, err);
        }
      }
    } finally {
      this.#verifying = false;
    }
    if (quarantined > 0) this.beatSoon(); // the leader learns of the loss (and repairs) at once
  }

  // ---- replicate ----

  #queueCopies(commands: readonly ReplicateCommand[]): void {
    if (this.#stopped) return;
    const batch = { left: 0 };
    let refused = 0;
    for (const cmd of commands) {
      const key = `${cmd.id}>${cmd.to}`;
      if (this.#pendingCopies.has(key)) continue; // already queued or running: one result for both
      if (this.#queue.length >= MAX_QUEUED_COPIES) {
        this.#addResult({ id: cmd.id, to: cmd.to, ok: false, code: 'ERR_OVERLOADED' });
        refused++;
        continue;
      }
      this.#pendingCopies.add(key);
      batch.left++;
      this.#queue.push({ cmd, key, batch });
    }
    if (batch.left === 0 && refused > 0) this.beatSoon();
    this.#pump();
  }

  #pump(): void {
    while (!this.#stopped && this.#copiesRunning < this.#concurrency && this.#queue.length > 0) {
      const job = this.#queue.shift()!;
      this.#copiesRunning++;
      this.#track(
        this.#copyOne(job.cmd).then((result) => {
          this.#copiesRunning--;
          this.#pendingCopies.delete(job.key);
          if (result.ok) this.stats.copiesOk++;
          else this.stats.copiesFailed++;
          this.#addResult(result);
          if (--job.batch.left === 0) this.beatSoon();
          this.#pump();
        }),
      );
    }
  }

  /** One copy; never rejects: a failure is a result with its code. */
  async #copyOne(cmd: ReplicateCommand): Promise<ReplicateResult> {
    const fail = (code: string): ReplicateResult => ({ id: cmd.id, to: cmd.to, ok: false, code });
    // Only a storage node the leader listed, at an address naming that very node, is dialled.
    if (peerIdInAddr(cmd.toAddr) !== cmd.to || !this.directory.knows(cmd.to)) return fail('ERR_FORBIDDEN');
    if (cmd.to === this.#o.nodeId) return fail('ERR_INVALID_ARGUMENT');
    // The target refuses a copy without the leader's ticket: not worth reading the chunk for.
    const ticket = cmd.ticket;
    if (ticket === undefined) return fail('ERR_UNAUTHENTICATED');
    // Our turn at the budget is taken now, while #pump starts the copies in queue order.
    const turn = this.#bandwidthTurnFor();
    try {
      let info: Awaited<ReturnType<ChunkStore['info']>>;
      try {
        info = await this.#o.store.info(cmd.id);
        await turn.mine;
      } finally {
        if (info === undefined) turn.pass(); // no share taken: the next copy goes on
      }
      if (info === undefined) return fail('ERR_CHUNK_NOT_FOUND');
      await this.#bandwidth(info.size, turn.pass);
      if (this.#stopped) return fail('ERR_ABORTED');
      let bytes: Uint8Array;
      try {
        bytes = await this.#o.store.get(cmd.id); // verified against its id
      } catch (err) {
        if (isDfsError(err, 'ERR_CHUNK_CORRUPT') || isDfsError(err, 'ERR_CHUNK_NOT_FOUND')) {
          // A bad local copy is never sent on: it is quarantined (reported removed) instead.
          const outcome = await this.#o.store.verifyOrQuarantine(cmd.id).catch(() => undefined);
          if (outcome === 'quarantined') this.stats.quarantined++;
        }
        throw err;
      }
      const put = await this.#o.copy(cmd.toAddr, cmd.id, bytes, cmd.fence, ticket, this.#stopping.signal);
      // The target's receipt lets the leader count the copy now, not at the target's next beat.
      const sig = put?.receipts.find((r) => r.node === cmd.to)?.sig;
      return { id: cmd.id, to: cmd.to, ok: true, ...(sig !== undefined ? { sig } : {}) };
    } catch (err) {
      return fail(isDfsError(err) ? err.code : 'ERR_INTERNAL');
    }
  }

  /**
   * A place in line for the bandwidth budget: `mine` settles once the copies started before have
   * taken their shares; `pass` (idempotent) lets the next copy take its share.
   */
  #bandwidthTurnFor(): { readonly mine: Promise<void> | undefined; readonly pass: () => void } {
    if (!Number.isFinite(this.#bytesPerSec)) return { mine: undefined, pass: () => {} }; // no budget, no line
    const mine = this.#bandwidthTurn;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#bandwidthTurn = promise;
    return { mine, pass: () => resolve() };
  }

  /**
   * Takes `bytes` of the bandwidth budget (each copy paced by its size), lets the next copy take
   * its share (`passTurn`), then waits until this one may go.
   */
  async #bandwidth(bytes: number, passTurn: () => void): Promise<void> {
    if (!Number.isFinite(this.#bytesPerSec)) return passTurn();
    const now = this.#clock.now();
    const start = Math.max(now, this.#bandwidthFreeAtMs);
    this.#bandwidthFreeAtMs = start + (bytes * 1000) / this.#bytesPerSec;
    passTurn();
    if (start > now) await this.#sleep(start - now);
  }

  #addResult(result: ReplicateResult): void {
    this.#results.push(result);
    if (this.#results.length > MAX_PENDING_RESULTS) this.#results.splice(0, this.#results.length - MAX_PENDING_RESULTS);
  }

  // ---- scrub ----

  #scrubNow(): void {
    const scrubber = this.#o.scrubber;
    if (!scrubber || this.#scrubbing || this.#stopped) return;
    this.#scrubbing = true;
    this.#track(
      scrubber
        .scrubNow()
        .catch((err: unknown) => this.#onError('scrub', err))
        .finally(() => {
          this.#scrubbing = false;
        }),
    );
  }

  // ---- helpers ----

  #track(work: Promise<unknown>): void {
    this.#work.add(work);
    const forget = (): boolean => this.#work.delete(work);
    work.then(forget, forget);
  }

  /** Waits `ms` on the clock; stop() ends the wait early. */
  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        timer.cancel();
        this.#sleepers.delete(wake);
        resolve();
      };
      const timer = this.#clock.setTimeout(wake, ms);
      this.#sleepers.add(wake);
    });
  }
}

function first<T>(set: ReadonlySet<T>): T | undefined {
  for (const item of set) return item;
  return undefined;
}

/** Chunks stored or dropped since the last heartbeat, bounded; overflow means "send a full report". */
export class ChunkReporter {
  #added = new Set<string>();
  #removed = new Set<string>();
  overflowed = false;
  readonly #unsubscribe: () => void;

  constructor(store: ChunkStore) {
    this.#unsubscribe = store.onChange((id, change) => {
      const [into, from] = change === 'added' ? [this.#added, this.#removed] : [this.#removed, this.#added];
      from.delete(id);
      if (into.size >= 16 * PAGE_IDS) this.overflowed = true;
      else into.add(id);
    });
  }

  takeDelta(max: number): { added: string[]; removed: string[] } {
    const added = [...this.#added].slice(0, max);
    const removed = [...this.#removed].slice(0, max);
    for (const id of added) this.#added.delete(id);
    for (const id of removed) this.#removed.delete(id);
    return { added, removed };
  }

  putBack(added: readonly string[], removed: readonly string[]): void {
    for (const id of added) if (!this.#removed.has(id)) this.#added.add(id);
    for (const id of removed) if (!this.#added.has(id)) this.#removed.add(id);
  }

  clear(): void {
    this.#added.clear();
    this.#removed.clear();
    this.overflowed = false;
  }

  close(): void {
    this.#unsubscribe();
  }
}
