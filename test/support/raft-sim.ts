import type { Entry, HardState, Message, Ready, Snapshot } from '../../src/raft/index.ts';
import { RaftNode, seededRng } from '../../src/raft/index.ts';
import type { NetworkFaults } from './raft-sim-network.ts';
import { EventQueue, LinkCuts, RELIABLE } from './raft-sim-network.ts';
import { SafetyChecker, SafetyViolation } from './raft-sim-checker.ts';

/**
 * A deterministic, VOPR-style simulation of a Raft cluster: a virtual clock, a seeded network
 * that drops, duplicates, delays and reorders, partitions, crashes with restart from what was
 * persisted only (a disk that loses writes not yet fsynced), membership changes, compaction and
 * client traffic. Every random choice comes from one seed, so a run replays exactly.
 */

export interface SimProfile {
  readonly name: string;
  readonly voters: number;
  /** Extra server ids that membership changes may add. */
  readonly spareServers: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly tickMs: number;
  /** Compact once this many entries are applied past the last snapshot; null = never. */
  readonly compactEvery: number | null;
  readonly maxInflightMsgs: number;
  readonly maxSizePerMsgBytes: number;
}

/**
 * Where in the Ready loop an armed crash strikes: before anything is written, between writing
 * and fsync (the un-synced writes are torn), after fsync but before sending, after sending.
 */
export type CrashPoint = 'beforePersist' | 'duringPersist' | 'afterPersist' | 'afterSend';

export const CRASH_POINTS: readonly CrashPoint[] = ['beforePersist', 'duringPersist', 'afterPersist', 'afterSend'];

/**
 * Messages whose sending can trigger an armed crash: the moments a node promises something
 * (a vote, an acknowledgement) or a leader replicates, where a lost write does the most harm.
 */
export type CrashTrigger = 'voteResp' | 'appendResp' | 'heartbeatResp' | 'append';

export const CRASH_TRIGGERS: readonly CrashTrigger[] = ['voteResp', 'appendResp', 'heartbeatResp', 'append'];

/** One step of a schedule. Server numbers are taken modulo the number of servers. */
export type SimOp =
  | { readonly op: 'run'; readonly ms: number }
  | { readonly op: 'propose'; readonly count: number }
  | { readonly op: 'proposeTo'; readonly server: number }
  /** A client stuck with a deposed leader that does not know it yet: divergent log suffixes. */
  | { readonly op: 'proposeStale'; readonly count: number }
  | { readonly op: 'crash'; readonly server: number }
  | { readonly op: 'crashLeader' }
  | { readonly op: 'crashLeaderDuringReady'; readonly point: CrashPoint }
  | { readonly op: 'crashDuringReady'; readonly server: number; readonly point: CrashPoint }
  /** Arms a crash at `point` of the server's first Ready that sends (grants, accepts) `message`. */
  | { readonly op: 'crashWhenSending'; readonly server: number; readonly message: CrashTrigger; readonly point: CrashPoint }
  | { readonly op: 'restart'; readonly server: number }
  /** Restarts the k-th crashed server (k modulo their number), if any is down. */
  | { readonly op: 'restartCrashed'; readonly k: number }
  | { readonly op: 'partition'; readonly side: readonly number[] }
  | { readonly op: 'isolateLeader' }
  | { readonly op: 'oneWay'; readonly from: number; readonly to: number }
  | { readonly op: 'heal' }
  | { readonly op: 'network'; readonly drop: number; readonly duplicate: number; readonly maxDelayMs: number }
  | { readonly op: 'addLearner' }
  | { readonly op: 'promoteLearner' }
  | { readonly op: 'removeServer'; readonly server: number }
  | { readonly op: 'transferLeadership'; readonly server: number }
  | { readonly op: 'readIndex' }
  | { readonly op: 'compact'; readonly server: number };

interface DurableStorage {
  hardState: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

/**
 * One record of the write-ahead log that a Ready becomes. The term and vote go first and the
 * commit index last, so that every prefix is a state RaftNode.restart accepts (no entry from a
 * term the hard state has not reached, no commit beyond the log): a crash before fsync keeps a
 * prefix of the records, as a log with per-record checksums does.
 */
type DiskWrite =
  | { readonly kind: 'termVote'; readonly term: number; readonly vote: string | null }
  | { readonly kind: 'snapshot'; readonly snapshot: Snapshot }
  | { readonly kind: 'entry'; readonly entry: Entry }
  | { readonly kind: 'commit'; readonly commit: number };

interface SimServer {
  readonly id: string;
  node: RaftNode | null;
  incarnation: number;
  /** What survives a crash. */
  readonly storage: DurableStorage;
  /** Written but not yet fsynced, oldest first: a crash keeps a random prefix of these. */
  unsynced: DiskWrite[];
  /** The application's state machine: how far it applied and a hash of what it applied. */
  applied: number;
  hash: number;
  crashPoint: CrashPoint | null;
  /** With an armed crash point: only a Ready that sends this strikes (null: the next Ready). */
  crashWhen: CrashTrigger | null;
  /** Ticks while leading: paces the background reads. */
  leaderTicks: number;
  /** Contexts of the reads this server served, newest last: a client may reuse one. */
  readonly servedReads: string[];
}

interface PendingRead {
  readonly server: string;
  readonly requiredIndex: number;
}

export interface SimCounters {
  events: number;
  messagesSent: number;
  messagesDropped: number;
  messagesDuplicated: number;
  crashes: number;
  restarts: number;
  proposalsAccepted: number;
  readsServed: number;
  snapshotsInstalled: number;
  compactions: number;
  confChangesAccepted: number;
  transfersStarted: number;
  leaderChanges: number;
  /** Writes lost because a crash came between writing them and fsync. */
  tornWrites: number;
}

const MAX_READY_ROUNDS = 64;
const MAX_IN_FLIGHT_MESSAGES = 20_000;
const MAX_REUSABLE_CONTEXTS = 16;

export class Simulator {
  readonly profile: SimProfile;
  readonly checker = new SafetyChecker();
  readonly counters: SimCounters = {
    events: 0,
    messagesSent: 0,
    messagesDropped: 0,
    messagesDuplicated: 0,
    crashes: 0,
    restarts: 0,
    proposalsAccepted: 0,
    readsServed: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    confChangesAccepted: 0,
    transfersStarted: 0,
    leaderChanges: 0,
    tornWrites: 0,
  };
  private readonly rng: () => number;
  private readonly queue = new EventQueue();
  private readonly cuts = new LinkCuts();
  private readonly servers = new Map<string, SimServer>();
  private readonly spareIds: string[] = [];
  private faults: NetworkFaults = RELIABLE;
  private now = 0;
  private nextCommand = 1;
  private nextReadContext = 1;
  private readsIssued = 0;
  private readonly pendingReads = new Map<string, PendingRead>();
  private lastLeader: string | null = null;

  constructor(profile: SimProfile, seed: number) {
    this.profile = profile;
    this.rng = seededRng(seed);
    const voters = Array.from({ length: profile.voters }, (_, k) => `n${k + 1}`);
    for (let k = 0; k < profile.spareServers; k++) this.spareIds.push(`n${profile.voters + k + 1}`);
    for (const id of voters) {
      const server = this.addServer(id);
      server.node = RaftNode.bootstrap(this.nodeOptions(id), { voters, learners: [] });
      this.scheduleTick(server, Math.floor(this.rng() * profile.tickMs));
      this.drain(server);
    }
  }

  // ---------------------------------------------------------------- inspection

  time(): number {
    return this.now;
  }

  serverIds(): string[] {
    return [...this.servers.keys()];
  }

  node(id: string): RaftNode | null {
    return this.servers.get(id)?.node ?? null;
  }

  appliedIndex(id: string): number {
    return this.servers.get(id)?.applied ?? 0;
  }

  /** What would survive a crash of `id` now: its durable hard state and last durable index. */
  persisted(id: string): { hardState: HardState; lastIndex: number; unsyncedWrites: number } | null {
    const server = this.servers.get(id);
    if (server === undefined) return null;
    const { hardState, snapshot, entries } = server.storage;
    const lastIndex = entries[entries.length - 1]?.index ?? snapshot?.metadata.index ?? 0;
    return { hardState, lastIndex, unsyncedWrites: server.unsynced.length };
  }

  /** The live leader with the highest term, if any. */
  leader(): RaftNode | null {
    let best: RaftNode | null = null;
    for (const server of this.servers.values()) {
      const node = server.node;
      if (node === null) continue;
      const status = node.status();
      if (status.role === 'leader' && (best === null || status.term > best.status().term)) best = node;
    }
    return best;
  }

  // ---------------------------------------------------------------- schedule

  apply(op: SimOp): void {
    switch (op.op) {
      case 'run':
        return this.runFor(op.ms);
      case 'propose':
        for (let k = 0; k < op.count; k++) this.proposeToLeader();
        return;
      case 'proposeTo':
        return this.proposeTo(this.serverAt(op.server));
      case 'proposeStale':
        for (const server of this.staleLeaders()) for (let k = 0; k < op.count; k++) this.proposeTo(server);
        return;
      case 'crash':
        return this.crash(this.serverAt(op.server));
      case 'crashLeader': {
        const leader = this.leader();
        if (leader !== null) this.crash(this.servers.get(leader.id)!);
        return;
      }
      case 'crashLeaderDuringReady': {
        const leader = this.leader();
        if (leader !== null) this.armCrash(this.servers.get(leader.id)!, op.point, null);
        return;
      }
      case 'crashDuringReady':
        return this.armCrash(this.serverAt(op.server), op.point, null);
      case 'crashWhenSending':
        return this.armCrash(this.serverAt(op.server), op.point, op.message);
      case 'restart':
        return this.restart(this.serverAt(op.server));
      case 'restartCrashed': {
        const down = [...this.servers.values()].filter((s) => s.node === null);
        if (down.length > 0) this.restart(down[Math.abs(op.k) % down.length]!);
        return;
      }
      case 'partition': {
        const ids = this.serverIds();
        const side = new Set(op.side.map((k) => ids[k % ids.length]!));
        for (const a of side) for (const b of ids) if (!side.has(b)) this.cuts.cutBoth(a, b);
        return;
      }
      case 'isolateLeader': {
        const leader = this.leader();
        if (leader !== null) this.cuts.isolate(leader.id, this.serverIds());
        return;
      }
      case 'oneWay': {
        const from = this.serverAt(op.from).id;
        const to = this.serverAt(op.to).id;
        if (from !== to) this.cuts.cutOneWay(from, to);
        return;
      }
      case 'heal':
        this.cuts.heal();
        return;
      case 'network':
        this.faults = { drop: op.drop, duplicate: op.duplicate, maxDelayMs: op.maxDelayMs };
        return;
      case 'addLearner':
        return this.addLearner();
      case 'promoteLearner':
        return this.promoteLearner();
      case 'removeServer':
        return this.removeServer(this.serverAt(op.server).id);
      case 'transferLeadership':
        return this.transferLeadership(this.serverAt(op.server).id);
      case 'readIndex':
        return this.readIndex();
      case 'compact':
        return this.compact(this.serverAt(op.server));
    }
  }

  /** Heals every fault and restarts every crashed server. */
  healAll(): void {
    this.cuts.heal();
    this.faults = RELIABLE;
    for (const server of this.servers.values()) {
      server.crashPoint = null;
      server.crashWhen = null;
      if (server.node === null) this.restart(server);
    }
  }

  /**
   * Liveness after healing: within `boundMs` a leader is elected and each of `proposals` fresh
   * proposals is applied by every member of the configuration. Returns the ms it took.
   */
  awaitProgress(boundMs: number, proposals: number): number {
    const start = this.now;
    const deadline = start + boundMs;
    for (let k = 0; k < proposals; k++) {
      let target: { index: number; term: number } | null = null;
      while (target === null || !this.allMembersApplied(target)) {
        if (this.now >= deadline) {
          const states = [...this.servers.values()].map((s) => `${s.id}:${s.node === null ? 'down' : JSON.stringify(s.node.status())}`);
          throw new SafetyViolation('Liveness', `no progress within ${boundMs} ms after healing (proposal ${k}, target ${JSON.stringify(target)}); ${states.join(' ')}`);
        }
        if (target !== null && this.lostTarget(target)) target = null;
        if (target === null) {
          const leader = this.leader();
          const result = leader?.propose(this.command());
          if (leader !== null && leader !== undefined) this.drain(this.servers.get(leader.id)!);
          if (result?.ok === true) target = { index: result.index, term: result.term };
        }
        this.runFor(this.profile.tickMs);
      }
    }
    return this.now - start;
  }

  /** The proposal can no longer commit (a newer leader does not have it): propose again. */
  private lostTarget(target: { index: number; term: number }): boolean {
    const applied = this.checker.appliedDigest[target.index];
    if (applied !== undefined) return !applied.startsWith(`${target.term}/`);
    const leader = this.leader();
    return leader !== null && leader.status().snapshotIndex < target.index && leader.logTerm(target.index) !== target.term;
  }

  private allMembersApplied(target: { index: number; term: number }): boolean {
    const leader = this.leader();
    if (leader === null) return false;
    const config = leader.status().config;
    for (const id of [...config.voters, ...config.learners]) {
      const server = this.servers.get(id);
      if (server === undefined || server.node === null || server.applied < target.index) return false;
    }
    return this.checker.appliedDigest[target.index]?.startsWith(`${target.term}/`) === true;
  }

  // ---------------------------------------------------------------- clock and events

  runFor(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const at = this.queue.peekTime();
      if (at === null || at > end) break;
      const item = this.queue.pop()!;
      this.now = item.at;
      this.counters.events++;
      const event = item.event;
      if (event.kind === 'tick') this.onTick(event.id, event.incarnation);
      else this.onDeliver(event.message);
    }
    this.now = end;
  }

  private onTick(id: string, incarnation: number): void {
    const server = this.servers.get(id)!;
    if (server.node === null || server.incarnation !== incarnation) return;
    server.node.tick();
    this.scheduleTick(server, this.profile.tickMs);
    this.afterEvent(server);
    const node = server.node;
    if (node !== null && node.status().role === 'leader') {
      server.leaderTicks++;
      // A deposed leader that does not know it yet still gets reads; the leader, now and then.
      if (node !== this.leader()) this.readAt(node, true);
      else if (server.leaderTicks % 16 === 0) this.readAt(node, false);
    }
  }

  private onDeliver(message: Message): void {
    const server = this.servers.get(message.to);
    if (server === undefined || server.node === null || this.cuts.blocked(message.from, message.to)) {
      this.counters.messagesDropped++;
      return;
    }
    const node = server.node;
    const commitBefore = node.status().commit;
    node.step(message);
    this.checkFollowerCommit(node, message, commitBefore);
    this.afterEvent(server);
  }

  /**
   * Figure 2, AppendEntries rule 5, seen from outside: a follower's commit index advances only
   * over entries it has verified against the leader of its term: an accepted append up to its
   * last entry, an installed (or already held) snapshot, or for a heartbeat what earlier
   * messages of this term verified (the leader sends min(match, commit)).
   */
  private checkFollowerCommit(node: RaftNode, m: Message, commitBefore: number): void {
    if (m.type !== 'append' && m.type !== 'heartbeat' && m.type !== 'installSnapshot') return;
    const status = node.status();
    if (status.role !== 'follower' || status.term !== m.term) return;
    let allowed: number;
    if (m.type === 'heartbeat') {
      allowed = Math.min(m.commit, this.checker.verifiedIndex(node.id, m.term));
    } else {
      const last = m.type === 'append' ? m.prevLogIndex + m.entries.length : m.snapshot.metadata.index;
      const lastTerm = m.type === 'append' ? (m.entries[m.entries.length - 1]?.term ?? m.prevLogTerm) : m.snapshot.metadata.term;
      // Holding the message's last entry means the logs match up to it (Log Matching).
      const verified = node.logTerm(last) === lastTerm;
      if (verified) this.checker.noteVerified(node.id, m.term, last);
      allowed = !verified ? 0 : m.type === 'append' ? Math.min(m.commit, last) : last;
    }
    this.checker.checkFollowerCommit(node.id, m.type, commitBefore, status.commit, allowed);
  }

  private afterEvent(server: SimServer): void {
    this.drain(server);
    if (server.node !== null) {
      this.checker.observe(server.node);
      this.checkNoBrokenPeers(server.node);
      this.maybeCompact(server);
    }
    const leader = this.leader();
    if (leader !== null && leader.id !== this.lastLeader) {
      this.lastLeader = leader.id;
      this.counters.leaderChanges++;
      // A client read right at the election: the new leader may not know the last commits yet.
      this.readAt(leader, false);
    }
  }

  /** The simulated peers are honest: these drop reasons would mean a bug in the core. */
  private checkNoBrokenPeers(node: RaftNode): void {
    const dropped = node.stats.droppedMessages;
    for (const reason of ['conflict_with_committed', 'commit_beyond_log', 'impossible_index', 'wrong_recipient'] as const) {
      if (dropped[reason] > 0) throw new SafetyViolation('Honest peers', `${node.id} dropped a message as ${reason}`);
    }
  }

  private scheduleTick(server: SimServer, afterMs: number): void {
    this.queue.push(this.now + afterMs, { kind: 'tick', id: server.id, incarnation: server.incarnation });
  }

  private send(message: Message): void {
    this.counters.messagesSent++;
    if (this.queue.size() > MAX_IN_FLIGHT_MESSAGES || this.rng() < this.faults.drop) {
      this.counters.messagesDropped++;
      return;
    }
    const copies = this.rng() < this.faults.duplicate ? 2 : 1;
    if (copies === 2) this.counters.messagesDuplicated++;
    for (let k = 0; k < copies; k++) {
      const delay = 1 + Math.floor(this.rng() * this.faults.maxDelayMs);
      this.queue.push(this.now + delay, { kind: 'deliver', message });
    }
  }

  // ---------------------------------------------------------------- ready processing

  /** Runs the Ready loop of one server, with the crash point it may have armed. */
  private drain(server: SimServer): void {
    for (let round = 0; ; round++) {
      const node = server.node;
      if (node === null || !node.hasReady()) return;
      if (round >= MAX_READY_ROUNDS) throw new Error(`${server.id}: Ready loop did not settle`);
      const status = node.status();
      const isLeader = status.role === 'leader';
      // Before anything is applied or sent: commits seen from here on happened in this term or earlier.
      this.checker.noteTerm(status.term);
      // Commits made by this event, seen before a crash point can hide them.
      this.checker.observe(node);
      const rd = node.ready();
      const crashAt = this.crashPointFor(server, rd);
      if (crashAt === 'beforePersist') return this.crash(server);
      this.write(server, isLeader, rd);
      if (crashAt === 'duringPersist') return this.crash(server);
      this.sync(server);
      if (crashAt === 'afterPersist') return this.crash(server);
      for (const message of rd.messages) this.send(message);
      if (crashAt === 'afterSend') return this.crash(server);
      this.applyReady(server, rd);
      node.advance();
    }
  }

  /**
   * Where this Ready crashes, if a crash is armed and its trigger (if any) is in the Ready. A
   * crash between write and fsync waits for a Ready that writes something: tearing nothing
   * would only repeat 'beforePersist'.
   */
  private crashPointFor(server: SimServer, rd: Ready): CrashPoint | null {
    const point = server.crashPoint;
    if (point === null) return null;
    if (point === 'duringPersist' && rd.hardState === null && rd.snapshot === null && rd.entries.length === 0) return null;
    const when = server.crashWhen;
    if (when === null) return point;
    return rd.messages.some((m) => m.type === when && !('reject' in m && m.reject)) ? point : null;
  }

  /** Writes what the Ready asks to persist, as log records not yet fsynced. */
  private write(server: SimServer, isLeader: boolean, rd: Ready): void {
    const durable = server.storage;
    if (server.unsynced.length > 0) throw new Error(`${server.id}: a Ready began with writes not yet synced`);
    const hs = rd.hardState;
    if (hs !== null && hs.commit < durable.hardState.commit) {
      throw new SafetyViolation('Durability', `${server.id} persisted commit went back from ${durable.hardState.commit} to ${hs.commit}`);
    }
    if (hs !== null && (hs.term !== durable.hardState.term || hs.vote !== durable.hardState.vote)) {
      server.unsynced.push({ kind: 'termVote', term: hs.term, vote: hs.vote });
    }
    if (rd.snapshot !== null) server.unsynced.push({ kind: 'snapshot', snapshot: rd.snapshot });
    if (rd.entries.length > 0) {
      this.checkEntriesWrite(server, isLeader, rd.snapshot ?? durable.snapshot, rd.snapshot === null ? durable.entries : [], rd.entries);
      for (const entry of rd.entries) server.unsynced.push({ kind: 'entry', entry });
    }
    if (hs !== null && hs.commit !== durable.hardState.commit) server.unsynced.push({ kind: 'commit', commit: hs.commit });
  }

  /** Leader Append-Only on disk, and Log Matching for every entry as it reaches a log. */
  private checkEntriesWrite(server: SimServer, isLeader: boolean, snapshot: Snapshot | null, persisted: readonly Entry[], entries: readonly Entry[]): void {
    const first = entries[0]!;
    const snapshotIndex = snapshot?.metadata.index ?? 0;
    const persistedLast = persisted[persisted.length - 1]?.index ?? snapshotIndex;
    this.checker.checkLeaderPersist(server.id, isLeader, persistedLast, entries);
    const prevTerm = first.index - 1 === snapshotIndex
      ? (snapshot?.metadata.term ?? 0)
      : persisted[first.index - 1 - snapshotIndex - 1]?.term;
    if (prevTerm === undefined) throw new Error(`${server.id}: persisted entries would leave a gap before ${first.index}`);
    this.checker.registerEntries(prevTerm, entries, server.id);
  }

  /** fsync: every write so far becomes durable. */
  private sync(server: SimServer): void {
    for (const record of server.unsynced) applyDiskWrite(server.storage, record);
    server.unsynced = [];
  }

  /** A crash before fsync: a random prefix of the writes made it to disk, the rest is lost. */
  private tearUnsynced(server: SimServer): void {
    const kept = Math.floor(this.rng() * (server.unsynced.length + 1));
    for (const record of server.unsynced.slice(0, kept)) applyDiskWrite(server.storage, record);
    this.counters.tornWrites += server.unsynced.length - kept;
    server.unsynced = [];
  }

  private applyReady(server: SimServer, rd: Ready): void {
    if (rd.snapshot !== null) {
      const { index, hash } = decodeSnapshotData(rd.snapshot.data);
      if (index !== rd.snapshot.metadata.index) throw new SafetyViolation('Snapshot', `${server.id} got snapshot data for ${index} at ${rd.snapshot.metadata.index}`);
      this.checker.restored(server.id, index, hash);
      server.applied = index;
      server.hash = hash;
      if (index > 0) this.counters.snapshotsInstalled++;
    }
    for (const entry of rd.committedEntries) {
      server.hash = this.checker.applied(server.id, server.applied + 1, entry, server.hash);
      server.applied = entry.index;
    }
    for (const read of rd.readStates) {
      const pending = this.pendingReads.get(read.context);
      if (pending === undefined || pending.server !== server.id) throw new SafetyViolation('ReadIndex', `${server.id} served unknown read ${read.context}`);
      this.pendingReads.delete(read.context);
      if (read.index < pending.requiredIndex) {
        throw new SafetyViolation('Linearizable reads', `read ${read.context} at ${read.index} misses the write committed at ${pending.requiredIndex} before it began`);
      }
      if (server.applied < read.index) throw new SafetyViolation('ReadIndex', `read ${read.context} served before applying ${read.index}`);
      this.counters.readsServed++;
      server.servedReads.push(read.context);
      if (server.servedReads.length > MAX_REUSABLE_CONTEXTS) server.servedReads.shift();
    }
  }

  // ---------------------------------------------------------------- faults

  private armCrash(server: SimServer, point: CrashPoint, when: CrashTrigger | null): void {
    server.crashPoint = point;
    server.crashWhen = when;
  }

  private crash(server: SimServer): void {
    if (server.node === null) return;
    this.tearUnsynced(server);
    server.node = null;
    server.crashPoint = null;
    server.crashWhen = null;
    server.incarnation++;
    this.counters.crashes++;
  }

  private restart(server: SimServer): void {
    if (server.node !== null) return;
    const { hardState, snapshot, entries } = server.storage;
    server.node = RaftNode.restart(this.nodeOptions(server.id), { hardState, snapshot, entries: [...entries] });
    const state = snapshot === null ? { index: 0, hash: 0 } : decodeSnapshotData(snapshot.data);
    server.applied = state.index;
    server.hash = state.hash;
    this.counters.restarts++;
    this.scheduleTick(server, 1 + Math.floor(this.rng() * this.profile.tickMs));
    this.afterEvent(server);
  }

  // ---------------------------------------------------------------- clients and operators

  private command(): Uint8Array {
    const data = new Uint8Array(4);
    new DataView(data.buffer).setUint32(0, this.nextCommand++);
    return data;
  }

  private proposeToLeader(): void {
    const leader = this.leader();
    if (leader === null) return;
    if (leader.propose(this.command()).ok) this.counters.proposalsAccepted++;
    this.drain(this.servers.get(leader.id)!);
  }

  /** Live servers that still lead an older term than the newest leader's. */
  private staleLeaders(): SimServer[] {
    const newest = this.leader();
    return [...this.servers.values()].filter((s) => s.node !== null && s.node !== newest && s.node.status().role === 'leader');
  }

  /** A proposal to an arbitrary server: a follower must refuse with a hint, not throw. */
  private proposeTo(server: SimServer): void {
    const node = server.node;
    if (node === null) return;
    const result = node.propose(this.command());
    if (!result.ok && result.reason === 'not_leader' && node.status().role === 'leader') {
      throw new SafetyViolation('API', `${node.id} refused as not_leader while leading`);
    }
    if (result.ok) this.counters.proposalsAccepted++;
    this.drain(server);
  }

  private addLearner(): void {
    const leader = this.leader();
    const id = this.spareIds[0];
    if (leader === null || id === undefined) return;
    const result = leader.proposeConfChange({ type: 'addLearner', id });
    this.drain(this.servers.get(leader.id)!);
    if (!result.ok) return;
    this.counters.confChangesAccepted++;
    // An id is used at most once: a removed server never comes back under the same id.
    this.spareIds.shift();
    const server = this.addServer(id);
    server.node = RaftNode.join(this.nodeOptions(id));
    this.scheduleTick(server, 1 + Math.floor(this.rng() * this.profile.tickMs));
    this.afterEvent(server);
  }

  private promoteLearner(): void {
    const leader = this.leader();
    const learner = leader?.status().config.learners[0];
    if (leader === null || learner === undefined) return;
    const result = leader.proposeConfChange({ type: 'addVoter', id: learner });
    if (result.ok) this.counters.confChangesAccepted++;
    this.drain(this.servers.get(leader.id)!);
  }

  private removeServer(id: string): void {
    const leader = this.leader();
    if (leader === null || leader.status().config.voters.length <= 2) return;
    const result = leader.proposeConfChange({ type: 'removeNode', id });
    if (result.ok) this.counters.confChangesAccepted++;
    this.drain(this.servers.get(leader.id)!);
  }

  private transferLeadership(to: string): void {
    const leader = this.leader();
    if (leader === null) return;
    if (leader.transferLeadership(to).ok) this.counters.transfersStarted++;
    this.drain(this.servers.get(leader.id)!);
  }

  /** A client read at the leader; every other one reuses the context of a read served earlier. */
  private readIndex(): void {
    const leader = this.leader();
    if (leader !== null) this.readAt(leader, this.readsIssued % 2 === 1);
  }

  /**
   * Starts a read at `leader`. With `reuse`, the context is the one of the read served last, as
   * clients with a small set of request ids do: acknowledgements of the earlier read (delayed,
   * duplicated) must not confirm this one.
   */
  private readAt(leader: RaftNode, reuse: boolean): void {
    this.readsIssued++;
    const served = this.servers.get(leader.id)!.servedReads;
    const context = reuse && served.length > 0 ? served.pop()! : `r${this.nextReadContext++}`;
    // Every write that any server knows committed before the read began must be visible.
    const required = this.checker.maxCommitted;
    const result = leader.readIndex(context);
    if (result.ok) this.pendingReads.set(context, { server: leader.id, requiredIndex: required });
    else if (result.reason === 'duplicate_read_context') throw new SafetyViolation('API', `${leader.id} refused ${context}, which is not pending`);
    this.drain(this.servers.get(leader.id)!);
  }

  private compact(server: SimServer): void {
    const node = server.node;
    if (node === null || server.applied <= node.status().snapshotIndex) return;
    const result = node.compact(server.applied, encodeSnapshotData(server.applied, server.hash));
    if (!result.ok) throw new Error(`${server.id}: compact refused: ${JSON.stringify(result)}`);
    server.storage.snapshot = result.snapshot;
    server.storage.entries = server.storage.entries.filter((e) => e.index > server.applied);
    this.counters.compactions++;
  }

  private maybeCompact(server: SimServer): void {
    const every = this.profile.compactEvery;
    const node = server.node;
    if (every === null || node === null) return;
    if (server.applied - node.status().snapshotIndex >= every) this.compact(server);
  }

  // ---------------------------------------------------------------- plumbing

  private addServer(id: string): SimServer {
    const server: SimServer = {
      id,
      node: null,
      incarnation: 0,
      storage: { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] },
      unsynced: [],
      applied: 0,
      hash: 0,
      crashPoint: null,
      crashWhen: null,
      leaderTicks: 0,
      servedReads: [],
    };
    this.servers.set(id, server);
    return server;
  }

  private serverAt(k: number): SimServer {
    const ids = this.serverIds();
    return this.servers.get(ids[Math.abs(k) % ids.length]!)!;
  }

  private nodeOptions(id: string) {
    const seed = Math.floor(this.rng() * 2 ** 32);
    return {
      id,
      electionTicks: this.profile.electionTicks,
      heartbeatTicks: this.profile.heartbeatTicks,
      rng: seededRng(seed),
      maxInflightMsgs: this.profile.maxInflightMsgs,
      maxSizePerMsgBytes: this.profile.maxSizePerMsgBytes,
    };
  }
}

/** Applies one log record to the durable state. */
function applyDiskWrite(storage: DurableStorage, record: DiskWrite): void {
  switch (record.kind) {
    case 'termVote':
      storage.hardState = { term: record.term, vote: record.vote, commit: storage.hardState.commit };
      return;
    case 'snapshot':
      storage.snapshot = record.snapshot;
      storage.entries = [];
      return;
    case 'entry': {
      // An entry record replaces the entry at its index and everything after it.
      const offset = record.entry.index - (storage.snapshot?.metadata.index ?? 0) - 1;
      if (offset < 0 || offset > storage.entries.length) throw new Error(`entry ${record.entry.index} written outside the log`);
      storage.entries.length = offset;
      storage.entries.push(record.entry);
      return;
    }
    case 'commit':
      storage.hardState = { ...storage.hardState, commit: record.commit };
      return;
  }
}

/** The simulated state machine's snapshot: the applied index and the hash of what was applied. */
export function encodeSnapshotData(index: number, hash: number): Uint8Array {
  const data = new Uint8Array(12);
  const view = new DataView(data.buffer);
  view.setFloat64(0, index);
  view.setUint32(8, hash);
  return data;
}

export function decodeSnapshotData(data: Uint8Array): { index: number; hash: number } {
  if (data.length === 0) return { index: 0, hash: 0 };
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { index: view.getFloat64(0), hash: view.getUint32(8) };
}

/** Runs a schedule, heals, and checks liveness; throws SafetyViolation on any broken property. */
export function runSchedule(profile: SimProfile, seed: number, ops: readonly SimOp[]): Simulator {
  const sim = new Simulator(profile, seed);
  for (const op of ops) sim.apply(op);
  sim.healAll();
  sim.awaitProgress(livenessBoundMs(profile), 3);
  return sim;
}

/** Generous but finite: enough election rounds for randomized timeouts to break every tie. */
export function livenessBoundMs(profile: SimProfile): number {
  return profile.tickMs * profile.electionTicks * 60;
}
