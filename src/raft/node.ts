import type {
  ConfChange,
  Configuration,
  Entry,
  EntryType,
  HardState,
  PersistedState,
  ProposeResult,
  ReadIndexResult,
  ReadState,
  Refusal,
  RoleName,
  Snapshot,
  SoftState,
  CompactResult,
  TransferResult,
} from './types.ts';
import type { AppendRequest, AppendResponse, Heartbeat, HeartbeatResponse, InstallSnapshot, Message, VoteRequest, VoteResponse } from './messages.ts';
import type { RaftOptions, ResolvedOptions } from './options.ts';
import type { DropReason, RaftStats } from './stats.ts';
import { resolveOptions } from './options.ts';
import { emptyStats } from './stats.ts';
import { RaftLog } from './log.ts';
import { Progress } from './progress.ts';
import { ReadOnlyQueue } from './read-only.ts';
import { EMPTY_CONFIG, applyConfChange, confChangeProblem, isMember, isVoter, members, quorumSize } from './config.ts';
import { MAX_READ_CONTEXT_LENGTH, decodeConfigEntry, decodeReadRound, encodeConfigEntry, encodeReadRound } from './codec.ts';
import { assertNever, invariant } from './invariant.ts';

/** The result of ready(): what to persist, then send, then apply. See index.ts for the contract. */
export interface Ready {
  readonly softState: SoftState;
  /** Persist if not null (it changed since the last Ready). */
  readonly hardState: HardState | null;
  /** Persist (replacing the whole persisted log) and restore the state machine from it, if not null. */
  readonly snapshot: Snapshot | null;
  /** Persist: append, first discarding persisted entries with index >= entries[0].index. */
  readonly entries: readonly Entry[];
  /** Send only after hardState, snapshot and entries above are durable. */
  readonly messages: readonly Message[];
  /** Apply in order, after the above are durable. */
  readonly committedEntries: readonly Entry[];
  /** Linearizable reads that may be served once committedEntries are applied. */
  readonly readStates: readonly ReadState[];
}

interface LeaderState {
  readonly kind: 'leader';
  readonly progress: Map<string, Progress>;
  readonly readOnly: ReadOnlyQueue;
  transferee: string | null;
  /** No configuration change may be proposed until this index is committed (thesis errata fix). */
  pendingConfIndex: number;
  heartbeatElapsed: number;
  /** New entries wait for the next ready() so that proposals batch into one append per follower. */
  needsBroadcast: boolean;
}

/** The role of a node, with the state only that role has. */
type Role =
  | { readonly kind: 'follower'; leaderId: string | null }
  | { readonly kind: 'preCandidate'; readonly votes: Map<string, boolean> }
  | { readonly kind: 'candidate'; readonly votes: Map<string, boolean> }
  | LeaderState;

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: 'probe' | 'replicate' | 'snapshot';
  readonly inflight: number;
}

export interface NodeStatus {
  readonly id: string;
  readonly role: RoleName;
  readonly term: number;
  readonly vote: string | null;
  readonly leaderId: string | null;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  readonly config: Configuration;
  readonly transferee: string | null;
}

interface PendingReady {
  readonly lastEntryIndex: number | null;
  readonly lastAppliedIndex: number | null;
  readonly snapshotIndex: number | null;
  readonly hardState: HardState | null;
}

const EMPTY_DATA = new Uint8Array(0);
/** Committing can enable more commits only through a configuration change, one at a time. */
const MAX_COMMIT_ROUNDS = 16;

function emptySnapshot(config: Configuration): Snapshot {
  return { metadata: { index: 0, term: 0, config }, data: EMPTY_DATA };
}

function sameHardState(a: HardState | null, b: HardState): boolean {
  return a !== null && a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/**
 * One Raft server as a pure, deterministic state machine (etcd's raft + rawnode). It performs
 * no I/O and reads no clock: the caller feeds tick(), step(), propose() and friends, and
 * drains ready() / advance().
 */
export class RaftNode {
  readonly id: string;
  readonly stats: RaftStats = emptyStats();
  private readonly options: ResolvedOptions;
  private readonly log: RaftLog;
  private term: number;
  private vote: string | null;
  private role: Role = { kind: 'follower', leaderId: null };
  private config: Configuration;
  /** Index up to which committed config entries have been folded into `config`. */
  private configScanned: number;
  /** The newest snapshot: sent to followers that are too far behind. */
  private snapshot: Snapshot;
  /** A snapshot that the next Ready must hand out for persisting. */
  private pendingSnapshot: Snapshot | null = null;
  private persistedHardState: HardState | null;
  private outbox: Message[] = [];
  /** Reads confirmed by a quorum, waiting for the application to apply up to their index. */
  private confirmedReads: ReadState[] = [];
  private electionElapsed = 0;
  private randomizedElectionTimeout = 0;
  private tickCount = 0;
  private pendingReady: PendingReady | null = null;

  private constructor(options: ResolvedOptions, snapshot: Snapshot, hardState: HardState, entries: readonly Entry[]) {
    this.options = options;
    this.id = options.id;
    const { index, term } = snapshot.metadata;
    invariant(hardState.commit <= index + entries.length, `persisted commit ${hardState.commit} beyond persisted log`);
    this.log = new RaftLog(index, term, entries, Math.max(hardState.commit, index));
    invariant(this.log.lastTerm() <= hardState.term, 'persisted log has entries from a future term');
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.snapshot = snapshot;
    this.config = snapshot.metadata.config;
    this.configScanned = index;
    this.persistedHardState = hardState;
    this.applyCommittedConfig();
    this.resetElectionTimeout();
  }

  /** A founding member of a new cluster. Its first Ready persists the configuration as snapshot 0. */
  static bootstrap(options: RaftOptions, config: Configuration): RaftNode {
    const node = new RaftNode(resolveOptions(options), emptySnapshot(config), { term: 0, vote: null, commit: 0 }, []);
    node.pendingSnapshot = node.snapshot;
    node.persistedHardState = null;
    return node;
  }

  /**
   * A server that will be added to an existing cluster: it starts with no configuration and
   * never campaigns until the log (or a snapshot) makes it a voter.
   */
  static join(options: RaftOptions): RaftNode {
    const node = new RaftNode(resolveOptions(options), emptySnapshot(EMPTY_CONFIG), { term: 0, vote: null, commit: 0 }, []);
    node.persistedHardState = null;
    return node;
  }

  /** A server coming back from a crash with what earlier Ready()s persisted. */
  static restart(options: RaftOptions, persisted: PersistedState): RaftNode {
    const snapshot = persisted.snapshot ?? emptySnapshot(EMPTY_CONFIG);
    return new RaftNode(resolveOptions(options), snapshot, persisted.hardState, persisted.entries);
  }

  // ---------------------------------------------------------------- inspection

  status(): NodeStatus {
    return {
      id: this.id,
      role: this.role.kind,
      term: this.term,
      vote: this.vote,
      leaderId: this.leaderId(),
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      snapshotIndex: this.log.snapshotPoint().index,
      config: this.config,
      transferee: this.role.kind === 'leader' ? this.role.transferee : null,
    };
  }

  /** The term of the entry at `index`, or null if compacted or absent. */
  logTerm(index: number): number | null {
    return this.log.term(index);
  }

  logEntry(index: number): Entry | null {
    return this.log.entryAt(index);
  }

  progressOf(id: string): ProgressStatus | null {
    if (this.role.kind !== 'leader') return null;
    const pr = this.role.progress.get(id);
    if (pr === undefined) return null;
    return { match: pr.match, next: pr.next, state: pr.state.kind, inflight: pr.inflights.count() };
  }

  private leaderId(): string | null {
    switch (this.role.kind) {
      case 'follower':
        return this.role.leaderId;
      case 'leader':
        return this.id;
      case 'preCandidate':
      case 'candidate':
        return null;
      default:
        return assertNever(this.role, 'role');
    }
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    this.assertNoPendingReady('tick');
    this.tickCount++;
    switch (this.role.kind) {
      case 'leader':
        this.tickLeader(this.role);
        return;
      case 'follower':
      case 'preCandidate':
      case 'candidate':
        this.tickElection();
        return;
      default:
        assertNever(this.role, 'role');
    }
  }

  /** Handles one message from a peer. Never throws for bad input: it is dropped and counted. */
  step(m: Message): void {
    this.assertNoPendingReady('step');
    if (m.to !== this.id || m.from === this.id) return this.drop('wrong_recipient');
    if (!this.acceptsFrom(m)) return this.drop('unknown_peer');
    if (m.term > this.term) {
      if (!this.stepHigherTerm(m)) return;
    } else if (m.term < this.term) {
      return this.stepLowerTerm(m);
    }
    switch (m.type) {
      case 'preVote':
      case 'vote':
        return this.handleVoteRequest(m);
      case 'preVoteResp':
      case 'voteResp':
        return this.handleVoteResponse(m);
      case 'append':
      case 'heartbeat':
      case 'installSnapshot':
        return this.handleFromLeader(m);
      case 'appendResp':
        return this.role.kind === 'leader' ? this.handleAppendResponse(this.role, m) : this.drop('unexpected_for_role');
      case 'heartbeatResp':
        return this.role.kind === 'leader' ? this.handleHeartbeatResponse(this.role, m) : this.drop('unexpected_for_role');
      case 'timeoutNow':
        if (this.role.kind !== 'follower' || !this.promotable()) return this.drop('unexpected_for_role');
        return this.campaign(true);
      default:
        return assertNever(m, 'message');
    }
  }

  propose(data: Uint8Array): ProposeResult {
    this.assertNoPendingReady('propose');
    if (!(data instanceof Uint8Array)) return { ok: false, reason: 'invalid_argument', detail: 'data must be a Uint8Array' };
    const refusal = this.refuseProposal();
    if (refusal !== null) return refusal;
    const entry = this.appendEntry('normal', data);
    return { ok: true, index: entry.index, term: entry.term };
  }

  /** Proposes a single-server membership change; it takes effect on each node once committed. */
  proposeConfChange(change: ConfChange): ProposeResult {
    this.assertNoPendingReady('proposeConfChange');
    const problem = confChangeProblem(change);
    if (problem !== null) return { ok: false, reason: 'invalid_argument', detail: problem };
    const refusal = this.refuseProposal();
    if (refusal !== null) return refusal;
    const leader = this.role as LeaderState;
    if (leader.pendingConfIndex > this.log.committed) return { ok: false, reason: 'config_change_pending' };
    const next = applyConfChange(this.config, change);
    if ('ok' in next) return next;
    if (change.type === 'addVoter') {
      const pr = leader.progress.get(change.id);
      if (pr === undefined || pr.match < this.log.committed) return { ok: false, reason: 'learner_not_caught_up' };
    }
    const entry = this.appendEntry('config', encodeConfigEntry({ change: { type: change.type, id: change.id }, config: next }));
    leader.pendingConfIndex = entry.index;
    return { ok: true, index: entry.index, term: entry.term };
  }

  /**
   * Starts a linearizable read (thesis 6.4): once a heartbeat round confirms leadership and the
   * application has applied the commit index recorded now, a ReadState with `context` comes out.
   * The context stays local (heartbeats carry the leader's own round numbers); it may be reused
   * once its ReadState came out, but not while that read is pending.
   */
  readIndex(context: string): ReadIndexResult {
    this.assertNoPendingReady('readIndex');
    if (typeof context !== 'string' || context.length > MAX_READ_CONTEXT_LENGTH) {
      return { ok: false, reason: 'invalid_argument', detail: `context must be a string of at most ${MAX_READ_CONTEXT_LENGTH} characters` };
    }
    if (this.role.kind !== 'leader') return { ok: false, reason: 'not_leader', leaderHint: this.leaderId() };
    if (this.log.term(this.log.committed) !== this.term) return { ok: false, reason: 'no_commit_in_term' };
    const { readOnly } = this.role;
    if (readOnly.full()) return { ok: false, reason: 'too_many_pending_reads' };
    if (readOnly.has(context) || this.confirmedReads.some((r) => r.context === context)) {
      return { ok: false, reason: 'duplicate_read_context' };
    }
    if (this.isQuorum(new Set([this.id]))) {
      this.confirmedReads.push({ index: this.log.committed, context });
      return { ok: true };
    }
    readOnly.add(context, this.log.committed);
    this.broadcastHeartbeat(this.role, readOnly.roundToSend());
    return { ok: true };
  }

  /** Hands leadership to `to` (thesis 3.10); aborted if not done within an election timeout. */
  transferLeadership(to: string): TransferResult {
    this.assertNoPendingReady('transferLeadership');
    if (this.role.kind !== 'leader') return { ok: false, reason: 'not_leader', leaderHint: this.leaderId() };
    if (to === this.id) return { ok: false, reason: 'already_leader' };
    if (!isVoter(this.config, to)) return { ok: false, reason: 'not_a_voter' };
    const leader = this.role;
    if (leader.transferee === to) return { ok: true };
    leader.transferee = to;
    this.electionElapsed = 0;
    const pr = leader.progress.get(to);
    invariant(pr !== undefined, `no progress for voter ${to}`);
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(leader, to, true);
    return { ok: true };
  }

  /**
   * The application made a snapshot of its state machine at `index` (<= applied): the log up to
   * there is dropped and the snapshot is what lagging followers will receive. The caller
   * persists the returned snapshot itself before discarding persisted entries up to `index`.
   */
  compact(index: number, data: Uint8Array): CompactResult {
    this.assertNoPendingReady('compact');
    const { index: snapshotIndex } = this.log.snapshotPoint();
    if (!Number.isSafeInteger(index) || index <= snapshotIndex || index > this.log.applied) {
      return { ok: false, reason: 'invalid_argument', detail: `compact index must be in (${snapshotIndex}, ${this.log.applied}]` };
    }
    const term = this.log.term(index);
    invariant(term !== null, `no term for applied index ${index}`);
    const snapshot: Snapshot = { metadata: { index, term, config: this.configAt(index) }, data };
    this.log.compact(index);
    this.snapshot = snapshot;
    return { ok: true, snapshot };
  }

  // ---------------------------------------------------------------- ready / advance

  hasReady(): boolean {
    if (this.pendingReady !== null) return false;
    if (this.role.kind === 'leader' && this.role.needsBroadcast) return true;
    return (
      this.outbox.length > 0 ||
      this.pendingSnapshot !== null ||
      this.log.stabled < this.log.lastIndex() ||
      Math.max(this.log.applied, this.log.snapshotPoint().index) < this.log.committed ||
      !sameHardState(this.persistedHardState, this.hardState()) ||
      this.confirmedReads.some((r) => r.index <= this.log.applied)
    );
  }

  ready(): Ready {
    this.assertNoPendingReady('ready');
    if (this.role.kind === 'leader' && this.role.needsBroadcast) this.broadcastAppend(this.role);
    const hardState = this.hardState();
    const changedHardState = sameHardState(this.persistedHardState, hardState) ? null : hardState;
    const entries = this.log.unstableEntries();
    const committedEntries = this.log.nextCommittedEntries(this.options.maxApplyBytesPerReady);
    const snapshot = this.pendingSnapshot;
    const lastApplied = committedEntries[committedEntries.length - 1]?.index ?? Math.max(this.log.applied, snapshot?.metadata.index ?? 0);
    const readStates = this.confirmedReads.filter((r) => r.index <= lastApplied);
    if (readStates.length > 0) this.confirmedReads = this.confirmedReads.filter((r) => r.index > lastApplied);
    const messages = this.outbox;
    this.outbox = [];
    this.pendingReady = {
      lastEntryIndex: entries[entries.length - 1]?.index ?? null,
      lastAppliedIndex: committedEntries[committedEntries.length - 1]?.index ?? null,
      snapshotIndex: snapshot?.metadata.index ?? null,
      hardState: changedHardState,
    };
    return { softState: { role: this.role.kind, leaderId: this.leaderId() }, hardState: changedHardState, snapshot, entries, messages, committedEntries, readStates };
  }

  /** Acknowledges the last Ready: its state is persisted, its messages sent, its entries applied. */
  advance(): void {
    const done = this.pendingReady;
    invariant(done !== null, 'advance() without a ready()');
    this.pendingReady = null;
    if (done.snapshotIndex !== null) {
      this.pendingSnapshot = null;
      if (done.snapshotIndex > this.log.applied) this.log.applied = done.snapshotIndex;
    }
    if (done.lastEntryIndex !== null) this.log.stableTo(done.lastEntryIndex);
    if (done.lastAppliedIndex !== null) this.log.appliedTo(done.lastAppliedIndex);
    if (done.hardState !== null) this.persistedHardState = done.hardState;
  }

  private assertNoPendingReady(what: string): void {
    invariant(this.pendingReady === null, `${what}() called between ready() and advance()`);
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  // ---------------------------------------------------------------- terms and roles

  /** Returns whether processing continues after adopting a higher term. */
  private stepHigherTerm(m: Message): boolean {
    if ((m.type === 'preVote' || m.type === 'vote') && !m.transfer && this.inLease()) {
      // Thesis 4.2.3: a server that hears from a leader ignores disruptive vote requests.
      this.drop('in_lease');
      return false;
    }
    if (m.type === 'preVote') return true; // a pre-vote never changes our term
    if (m.type === 'preVoteResp' && !m.reject) return true; // a grant for the term we will campaign in
    const fromLeader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'installSnapshot';
    this.becomeFollower(m.term, fromLeader ? m.from : null);
    return true;
  }

  private stepLowerTerm(m: Message): void {
    if (m.type === 'append' || m.type === 'heartbeat') {
      // A stale leader (e.g. healed from a partition) learns the new term from this reply and
      // steps down; with PreVote and CheckQuorum nothing else would tell it.
      this.send({ type: 'appendResp', to: m.from, term: this.term, reject: true, index: 0, rejectHint: 0, logTerm: 0 });
    } else if (m.type === 'preVote') {
      this.send({ type: 'preVoteResp', to: m.from, term: this.term, reject: true });
    }
    this.drop('stale_term');
  }

  private inLease(): boolean {
    return this.options.checkQuorum && this.leaderId() !== null && this.electionElapsed < this.options.electionTicks;
  }

  private promotable(): boolean {
    return isVoter(this.config, this.id);
  }

  /**
   * Responses count only from members of our configuration. Requests (votes, appends,
   * heartbeats, snapshots) are taken from anyone: our configuration may lag the sender's (a
   * server added while we were down may now lead), and the term and log checks alone keep
   * them safe.
   */
  private acceptsFrom(m: Message): boolean {
    switch (m.type) {
      case 'preVoteResp':
      case 'voteResp':
      case 'appendResp':
      case 'heartbeatResp':
        return isMember(this.config, m.from);
      case 'preVote':
      case 'vote':
      case 'append':
      case 'heartbeat':
      case 'installSnapshot':
      case 'timeoutNow':
        return true;
      default:
        return assertNever(m, 'message');
    }
  }

  private becomeFollower(term: number, leaderId: string | null): void {
    if (term !== this.term) {
      invariant(term > this.term, `term moving back from ${this.term} to ${term}`);
      this.term = term;
      this.vote = null;
    }
    this.role = { kind: 'follower', leaderId };
    this.electionElapsed = 0;
    this.resetElectionTimeout();
  }

  private becomePreCandidate(): void {
    this.role = { kind: 'preCandidate', votes: new Map() };
  }

  private becomeCandidate(): void {
    invariant(this.role.kind !== 'leader', 'leader becoming candidate');
    this.term += 1;
    this.vote = this.id;
    this.role = { kind: 'candidate', votes: new Map() };
    this.electionElapsed = 0;
    this.resetElectionTimeout();
  }

  private becomeLeader(): void {
    invariant(this.role.kind === 'candidate', `becoming leader from ${this.role.kind}`);
    const progress = new Map<string, Progress>();
    const leader: LeaderState = {
      kind: 'leader',
      progress,
      readOnly: new ReadOnlyQueue(this.options.maxPendingReads, this.id),
      transferee: null,
      pendingConfIndex: 0,
      heartbeatElapsed: 0,
      needsBroadcast: true,
    };
    this.role = leader;
    for (const id of members(this.config)) this.addProgress(leader, id);
    this.electionElapsed = 0;
    this.stats.becameLeader++;
    // A new leader commits an entry of its own term first: it settles which configuration
    // is in force before any change (thesis errata) and makes ReadIndex safe (thesis 6.4).
    const entry = this.appendEntry('normal', EMPTY_DATA);
    leader.pendingConfIndex = entry.index;
  }

  private addProgress(leader: LeaderState, id: string): void {
    const pr = new Progress(this.log.lastIndex() + 1, this.options.maxInflightMsgs);
    // A fresh peer gets the benefit of the doubt until the next CheckQuorum round.
    pr.recentActive = true;
    if (id === this.id) pr.match = this.log.lastIndex();
    leader.progress.set(id, pr);
  }

  private resetElectionTimeout(): void {
    const { electionTicks, rng } = this.options;
    const jitter = Math.min(electionTicks - 1, Math.floor(rng() * electionTicks));
    this.randomizedElectionTimeout = electionTicks + Math.max(0, jitter);
  }

  // ---------------------------------------------------------------- elections

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup();
    }
  }

  private hup(): void {
    if (this.options.preVote) this.preCampaign();
    else this.campaign(false);
  }

  private preCampaign(): void {
    this.becomePreCandidate();
    this.stats.preVotesStarted++;
    this.requestVotes('preVote', this.term + 1, false);
  }

  private campaign(transfer: boolean): void {
    this.becomeCandidate();
    this.stats.electionsStarted++;
    this.requestVotes('vote', this.term, transfer);
  }

  private requestVotes(type: 'preVote' | 'vote', term: number, transfer: boolean): void {
    const role = this.role;
    invariant(role.kind === 'preCandidate' || role.kind === 'candidate', 'requesting votes outside a campaign');
    role.votes.set(this.id, true);
    if (this.tallyVotes(role.votes) === 'won') return this.winCampaign();
    const lastLogIndex = this.log.lastIndex();
    const lastLogTerm = this.log.lastTerm();
    for (const id of this.config.voters) {
      if (id !== this.id) this.send({ type, to: id, term, lastLogIndex, lastLogTerm, transfer });
    }
  }

  private tallyVotes(votes: Map<string, boolean>): 'won' | 'lost' | 'pending' {
    let granted = 0;
    let rejected = 0;
    for (const id of this.config.voters) {
      const v = votes.get(id);
      if (v === true) granted++;
      else if (v === false) rejected++;
    }
    const quorum = quorumSize(this.config);
    if (granted >= quorum) return 'won';
    if (rejected > this.config.voters.length - quorum) return 'lost';
    return 'pending';
  }

  private winCampaign(): void {
    if (this.role.kind === 'preCandidate') this.campaign(false);
    else this.becomeLeader();
  }

  private handleVoteRequest(m: VoteRequest): void {
    const respType = m.type === 'preVote' ? 'preVoteResp' : 'voteResp';
    const canVote =
      this.vote === m.from ||
      (this.vote === null && this.leaderId() === null) ||
      (m.type === 'preVote' && m.term > this.term);
    if (canVote && this.log.isUpToDate(m.lastLogIndex, m.lastLogTerm)) {
      // A granted pre-vote carries the term it was asked for, so the candidate can count it.
      this.send({ type: respType, to: m.from, term: m.term, reject: false });
      if (m.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true });
    }
  }

  private handleVoteResponse(m: VoteResponse): void {
    const role = this.role;
    const expected = role.kind === 'preCandidate' ? 'preVoteResp' : role.kind === 'candidate' ? 'voteResp' : null;
    if (expected !== m.type || (role.kind !== 'preCandidate' && role.kind !== 'candidate')) {
      return this.drop('unexpected_for_role');
    }
    if (!isVoter(this.config, m.from)) return this.drop('unexpected_for_role');
    // A grant left over from an earlier pre-campaign must not count for this one.
    if (m.type === 'preVoteResp' && !m.reject && m.term !== this.term + 1) return this.drop('stale_response');
    role.votes.set(m.from, !m.reject);
    switch (this.tallyVotes(role.votes)) {
      case 'won':
        return this.winCampaign();
      case 'lost':
        return this.becomeFollower(this.term, null);
      case 'pending':
        return;
    }
  }

  // ---------------------------------------------------------------- follower side

  private handleFromLeader(m: AppendRequest | Heartbeat | InstallSnapshot): void {
    switch (this.role.kind) {
      case 'leader':
        // Two leaders in one term cannot happen; a peer claiming it is broken.
        return this.drop('unexpected_for_role');
      case 'preCandidate':
      case 'candidate':
        this.becomeFollower(m.term, m.from);
        break;
      case 'follower':
        this.role.leaderId = m.from;
        break;
      default:
        assertNever(this.role, 'role');
    }
    this.electionElapsed = 0;
    switch (m.type) {
      case 'append':
        return this.handleAppend(m);
      case 'heartbeat':
        return this.handleHeartbeat(m);
      case 'installSnapshot':
        return this.handleSnapshot(m);
      default:
        return assertNever(m, 'message from leader');
    }
  }

  private handleAppend(m: AppendRequest): void {
    if (m.prevLogIndex < this.log.committed) {
      // Everything up to our commit index is settled; tell the leader where we are.
      this.sendAppendResponse(m.from, false, this.log.committed, 0, 0);
      return;
    }
    const lastNew = this.log.maybeAppend(m.prevLogIndex, m.prevLogTerm, m.commit, m.entries);
    if (lastNew === 'conflict_with_committed') return this.drop('conflict_with_committed');
    if (lastNew === null) {
      const hint = this.log.findConflictByTerm(Math.min(m.prevLogIndex, this.log.lastIndex()), m.prevLogTerm);
      this.sendAppendResponse(m.from, true, m.prevLogIndex, hint.index, hint.term);
      return;
    }
    this.applyCommittedConfig();
    this.sendAppendResponse(m.from, false, lastNew, 0, 0);
  }

  private handleHeartbeat(m: Heartbeat): void {
    if (m.commit > this.log.lastIndex()) this.drop('commit_beyond_log');
    else if (this.log.commitTo(m.commit)) this.applyCommittedConfig();
    this.send({ type: 'heartbeatResp', to: m.from, term: this.term, context: m.context });
  }

  private handleSnapshot(m: InstallSnapshot): void {
    const { index, term, config } = m.snapshot.metadata;
    if (index <= this.log.committed) {
      this.sendAppendResponse(m.from, false, this.log.committed, 0, 0);
      return;
    }
    if (this.log.matchTerm(index, term)) {
      // Our log already has the snapshot's last entry: just learn that it is committed.
      this.log.commitTo(index);
      this.applyCommittedConfig();
      this.sendAppendResponse(m.from, false, this.log.committed, 0, 0);
      return;
    }
    this.log.restore(index, term);
    this.snapshot = m.snapshot;
    this.pendingSnapshot = m.snapshot;
    this.config = config;
    this.configScanned = index;
    this.stats.snapshotsRestored++;
    this.sendAppendResponse(m.from, false, this.log.lastIndex(), 0, 0);
  }

  private sendAppendResponse(to: string, reject: boolean, index: number, rejectHint: number, logTerm: number): void {
    this.send({ type: 'appendResp', to, term: this.term, reject, index, rejectHint, logTerm });
  }

  // ---------------------------------------------------------------- leader side

  private refuseProposal(): Refusal | null {
    if (this.role.kind !== 'leader') return { ok: false, reason: 'not_leader', leaderHint: this.leaderId() };
    if (this.role.transferee !== null) return { ok: false, reason: 'transfer_in_progress' };
    if (this.log.lastIndex() - this.log.committed >= this.options.maxUncommittedEntries) {
      return { ok: false, reason: 'too_many_uncommitted_entries' };
    }
    return null;
  }

  private appendEntry(type: EntryType, data: Uint8Array): Entry {
    const leader = this.role;
    invariant(leader.kind === 'leader', 'append outside leadership');
    const entry: Entry = { index: this.log.lastIndex() + 1, term: this.term, type, data };
    this.log.appendNew([entry]);
    const self = leader.progress.get(this.id);
    invariant(self !== undefined, 'leader has no progress for itself');
    self.maybeUpdate(entry.index);
    leader.needsBroadcast = true;
    this.maybeCommit(leader);
    return entry;
  }

  private tickLeader(leader: LeaderState): void {
    leader.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.options.electionTicks) {
      this.electionElapsed = 0;
      if (this.options.checkQuorum) {
        if (!this.quorumActive(leader)) {
          this.stats.checkQuorumStepDowns++;
          return this.becomeFollower(this.term, null);
        }
        for (const [id, pr] of leader.progress) pr.recentActive = id === this.id;
      }
      if (leader.transferee !== null) this.abortTransfer(leader);
    }
    if (leader.heartbeatElapsed >= this.options.heartbeatTicks) {
      leader.heartbeatElapsed = 0;
      this.retrySnapshots(leader);
      this.broadcastHeartbeat(leader, leader.readOnly.roundToSend());
    }
  }

  private quorumActive(leader: LeaderState): boolean {
    let active = 0;
    for (const id of this.config.voters) {
      if (id === this.id || leader.progress.get(id)?.recentActive === true) active++;
    }
    return active >= quorumSize(this.config);
  }

  private isQuorum(acks: ReadonlySet<string>): boolean {
    let count = 0;
    for (const id of this.config.voters) if (acks.has(id)) count++;
    return count >= quorumSize(this.config);
  }

  private abortTransfer(leader: LeaderState): void {
    leader.transferee = null;
    this.stats.transfersAborted++;
  }

  /** An InstallSnapshot may be lost; after an election timeout without an answer, probe again. */
  private retrySnapshots(leader: LeaderState): void {
    for (const pr of leader.progress.values()) {
      if (pr.state.kind === 'snapshot' && this.tickCount - pr.state.sentAtTick >= this.options.electionTicks) {
        pr.becomeProbe();
      }
    }
  }

  /** Heartbeats to every peer, carrying the read round to confirm (null if no read is pending). */
  private broadcastHeartbeat(leader: LeaderState, readRound: number | null): void {
    const context = readRound === null ? null : encodeReadRound(readRound);
    for (const [id, pr] of leader.progress) {
      if (id === this.id) continue;
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: 'heartbeat', to: id, term: this.term, commit, context });
    }
  }

  private broadcastAppend(leader: LeaderState): void {
    leader.needsBroadcast = false;
    for (const id of leader.progress.keys()) {
      if (id !== this.id) this.sendAppends(leader, id, true);
    }
  }

  /** Sends as many appends as the follower's flow control allows (bounded by the inflight window). */
  private sendAppends(leader: LeaderState, to: string, sendIfEmpty: boolean): void {
    const bound = this.options.maxInflightMsgs + 1;
    for (let k = 0; k < bound; k++) {
      if (!this.sendAppend(leader, to, sendIfEmpty && k === 0)) return;
    }
  }

  /** Sends one append (or a snapshot if the entries are compacted); false if nothing was sent. */
  private sendAppend(leader: LeaderState, to: string, sendIfEmpty: boolean): boolean {
    const pr = leader.progress.get(to);
    invariant(pr !== undefined, `no progress for ${to}`);
    if (pr.isPaused()) return false;
    const prevLogIndex = pr.next - 1;
    const prevLogTerm = this.log.term(prevLogIndex);
    if (prevLogTerm === null) return this.sendSnapshot(pr, to);
    const lastIndex = this.log.lastIndex();
    const entries = pr.next <= lastIndex ? this.log.slice(pr.next, lastIndex + 1, this.options.maxSizePerMsgBytes) : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({ type: 'append', to, term: this.term, prevLogIndex, prevLogTerm, entries, commit: this.log.committed });
    pr.sentEntries(entries.length, prevLogIndex + entries.length);
    return true;
  }

  private sendSnapshot(pr: Progress, to: string): boolean {
    // Only worth the bytes if the follower is alive.
    if (!pr.recentActive) return false;
    invariant(this.snapshot.metadata.index === this.log.snapshotPoint().index, 'snapshot and log disagree');
    this.send({ type: 'installSnapshot', to, term: this.term, snapshot: this.snapshot });
    pr.becomeSnapshot(this.snapshot.metadata.index, this.tickCount);
    this.stats.snapshotsSent++;
    return true;
  }

  private sendTimeoutNow(to: string): void {
    this.send({ type: 'timeoutNow', to, term: this.term });
  }

  private handleAppendResponse(leader: LeaderState, m: AppendResponse): void {
    const pr = leader.progress.get(m.from);
    if (pr === undefined) return this.drop('unknown_peer');
    if (m.index > this.log.lastIndex()) return this.drop('impossible_index');
    pr.recentActive = true;
    if (m.reject) {
      let hint = m.rejectHint;
      if (m.logTerm > 0) hint = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (!pr.maybeDecrTo(m.index, hint)) return this.drop('stale_response');
      if (pr.state.kind === 'replicate') pr.becomeProbe();
      this.sendAppend(leader, m.from, true);
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index) && !(pr.match === m.index && pr.state.kind === 'probe')) return;
    switch (pr.state.kind) {
      case 'probe':
        pr.becomeReplicate();
        break;
      case 'snapshot':
        if (pr.match + 1 >= this.log.firstIndex()) {
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case 'replicate':
        pr.inflights.freeLE(m.index);
        break;
    }
    if (this.maybeCommit(leader)) {
      leader.needsBroadcast = true;
    } else if (wasPaused) {
      this.sendAppend(leader, m.from, true);
    }
    // The commit may have changed the configuration: removed us, or removed the sender.
    if (this.role !== leader || leader.progress.get(m.from) !== pr) return;
    this.sendAppends(leader, m.from, false);
    if (m.from === leader.transferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResponse(leader: LeaderState, m: HeartbeatResponse): void {
    const pr = leader.progress.get(m.from);
    if (pr === undefined) return this.drop('unknown_peer');
    pr.recentActive = true;
    if (pr.state.kind === 'probe') pr.state.probeSent = false;
    if (pr.state.kind === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.sendAppend(leader, m.from, true);
    const round = decodeReadRound(m.context);
    if (round !== null) {
      const confirmed = leader.readOnly.recvAck(m.from, round, (acks) => this.isQuorum(acks));
      if (confirmed === null) return this.drop('impossible_index');
      this.confirmedReads.push(...confirmed);
    }
  }

  /** Commits what a quorum of voters has, if it is from the current term (§5.4.2). */
  private maybeCommit(leader: LeaderState): boolean {
    let advanced = false;
    for (let round = 0; ; round++) {
      invariant(round < MAX_COMMIT_ROUNDS, 'commit did not settle');
      const index = this.quorumMatch(leader);
      if (index <= this.log.committed || this.log.term(index) !== this.term) return advanced;
      this.log.commitTo(index);
      advanced = true;
      this.applyCommittedConfig();
      if (this.role !== leader) return advanced;
    }
  }

  private quorumMatch(leader: LeaderState): number {
    const matches = this.config.voters.map((id) => leader.progress.get(id)?.match ?? 0);
    matches.sort((a, b) => b - a);
    const index = matches[quorumSize(this.config) - 1];
    invariant(index !== undefined, 'configuration without voters has no quorum');
    return index;
  }

  // ---------------------------------------------------------------- configuration

  /** Folds newly committed config entries into the configuration in force. */
  private applyCommittedConfig(): void {
    let changed = false;
    const from = Math.max(this.configScanned, this.log.snapshotPoint().index) + 1;
    for (let index = from; index <= this.log.committed; index++) {
      const entry = this.log.entryAt(index);
      invariant(entry !== null, `committed entry ${index} missing`);
      if (entry.type !== 'config') continue;
      const decoded = decodeConfigEntry(entry.data);
      invariant(decoded !== null, `undecodable config entry at ${index}`);
      this.config = decoded.config;
      changed = true;
    }
    this.configScanned = Math.max(this.configScanned, this.log.committed);
    if (changed && this.role.kind === 'leader') this.leaderConfigChanged(this.role);
  }

  private leaderConfigChanged(leader: LeaderState): void {
    if (!isVoter(this.config, this.id)) {
      // Removed (or demoted): step down; the rest elect a new leader after a timeout.
      this.becomeFollower(this.term, null);
      return;
    }
    for (const id of members(this.config)) if (!leader.progress.has(id)) this.addProgress(leader, id);
    for (const id of [...leader.progress.keys()]) if (!isMember(this.config, id)) leader.progress.delete(id);
    if (leader.transferee !== null && !isVoter(this.config, leader.transferee)) this.abortTransfer(leader);
    this.confirmedReads.push(...leader.readOnly.confirmAll((acks) => this.isQuorum(acks)));
    leader.needsBroadcast = true;
  }

  /** The configuration in force at `index` (>= snapshot index, <= commit). */
  private configAt(index: number): Configuration {
    let config = this.snapshot.metadata.config;
    for (let i = this.log.snapshotPoint().index + 1; i <= index; i++) {
      const entry = this.log.entryAt(i);
      if (entry?.type !== 'config') continue;
      const decoded = decodeConfigEntry(entry.data);
      invariant(decoded !== null, `undecodable config entry at ${i}`);
      config = decoded.config;
    }
    return config;
  }

  // ---------------------------------------------------------------- plumbing

  private send(m: DistributiveOmit<Message, 'from'>): void {
    if (this.outbox.length >= this.options.maxOutboxMsgs) {
      this.stats.droppedOutgoing++;
      return;
    }
    this.outbox.push({ ...m, from: this.id } as Message);
  }

  private drop(reason: DropReason): void {
    this.stats.droppedMessages[reason]++;
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
