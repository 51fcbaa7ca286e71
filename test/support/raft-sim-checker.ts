import type { Entry, NodeStatus, RaftNode } from '../../src/raft/index.ts';

/** A safety property does not hold: the simulator found a bug. */
export class SafetyViolation extends Error {
  constructor(property: string, detail: string) {
    super(`${property}: ${detail}`);
    this.name = 'SafetyViolation';
  }
}

export function entryDigest(entry: Entry): string {
  let hex = '';
  for (const byte of entry.data) hex += byte.toString(16).padStart(2, '0');
  return `${entry.term}/${entry.type}/${hex}`;
}

/** FNV-1a style mixing of the applied sequence: equal hashes mean equal state machines. */
export function mixHash(hash: number, digest: string): number {
  let h = (hash ^ 0x811c9dc5) >>> 0;
  for (let k = 0; k < digest.length; k++) {
    h ^= digest.charCodeAt(k);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

interface LeaderWatch {
  readonly term: number;
  lastIndex: number;
  lastTerm: number;
}

/** What one node object looked like when last observed. */
interface NodeWatch {
  term: number;
  isLeader: boolean;
  commit: number;
  /** Every index up to here has been checked against the committed entries. */
  commitChecked: number;
}

/**
 * Checks the five safety properties of the Raft paper (Figure 3) plus same-apply-order,
 * incrementally: each entry is registered once when persisted, each application once when applied.
 * Beyond what the state machines show, it checks every node's commit index as it moves: all
 * nodes agree on the entry at every index any of them committed, a leader advances its commit
 * index only to an entry of its own term, and a follower only over entries it has verified
 * against the leader of its term (Figure 2's commit rules). Those catch bugs whose damage
 * needs a long, unlikely interleaving to reach a state machine (the paper's Figure 8).
 */
export class SafetyChecker {
  /** Election Safety: the one leader of each term. */
  private readonly leaderOfTerm = new Map<number, string>();
  /** Log Matching: for each (index, term), the previous entry's term and the entry's content. */
  private readonly entryAt = new Map<string, string>();
  /** State Machine Safety: the digest applied at each index, and the state hash after it. */
  readonly appliedDigest: string[] = [];
  readonly appliedHash: number[] = [];
  private readonly leaderWatch = new Map<string, LeaderWatch>();
  /** Per node object (a restart makes a new one): its term, role and commit when last seen. */
  private readonly nodeWatch = new WeakMap<RaftNode, NodeWatch>();
  /**
   * Commit agreement: the digest of the entry at every index that some node's commit index
   * covered while the node held that entry.
   */
  readonly committedDigest: string[] = [];
  /** Per server: the highest index verified to match the leader of `term` (see noteVerified). */
  private readonly verified = new Map<string, { term: number; index: number }>();
  /** Leader Completeness: the term of the entry at every committed index (once seen committed or applied). */
  readonly committedTerm: number[] = [];
  /**
   * Leader Completeness: for every committed index, a term in which it was already committed,
   * the highest term any server had when the index was first seen committed or applied. The
   * entry was committed in this term or earlier, so every leader of a later term must hold it.
   */
  readonly committedInTerm: number[] = [];
  /** The highest term any server has had. */
  maxTerm = 0;
  maxCommitted = 0;
  checks = 0;

  /** How many terms had a leader: the elections won so far. */
  electionsWon(): number {
    return this.leaderOfTerm.size;
  }

  /** Called after every event that touched `node`, and before each of its Readies. */
  observe(node: RaftNode): void {
    this.checks++;
    const status = node.status();
    this.noteTerm(status.term);
    if (status.commit > this.maxCommitted) {
      for (let index = this.maxCommitted + 1; index <= status.commit; index++) this.committedInTerm[index] ??= this.maxTerm;
      this.maxCommitted = status.commit;
    }
    this.checkLeader(node, status);
    this.checkCommitIndex(node, status);
  }

  private checkLeader(node: RaftNode, status: NodeStatus): void {
    if (status.role !== 'leader') {
      this.leaderWatch.delete(node.id);
      return;
    }
    const known = this.leaderOfTerm.get(status.term);
    if (known === undefined) {
      this.leaderOfTerm.set(status.term, node.id);
      this.checkLeaderCompleteness(node, status);
    } else if (known !== node.id) {
      throw new SafetyViolation('Election Safety', `term ${status.term} has leaders ${known} and ${node.id}`);
    }
    this.checkLeaderAppendOnly(node, status);
  }

  /**
   * Commit agreement and the leader's commit rule, for the part of `node`'s commit index not
   * checked yet. Compacted entries are skipped: their snapshot is checked when restored.
   */
  private checkCommitIndex(node: RaftNode, status: NodeStatus): void {
    const watch = this.nodeWatch.get(node);
    const isLeader = status.role === 'leader';
    if (watch !== undefined && isLeader && watch.isLeader && watch.term === status.term && status.commit > watch.commit) {
      this.checkLeaderCommit(node.id, status.term, status.commit, node.logTerm(status.commit));
    }
    let checked = Math.max(watch?.commitChecked ?? 0, status.snapshotIndex);
    for (; checked < status.commit; ) {
      const entry = node.logEntry(++checked);
      if (entry !== null) this.committed(node.id, entry);
    }
    if (watch === undefined) {
      this.nodeWatch.set(node, { term: status.term, isLeader, commit: status.commit, commitChecked: checked });
    } else {
      watch.term = status.term;
      watch.isLeader = isLeader;
      watch.commit = status.commit;
      watch.commitChecked = checked;
    }
  }

  /**
   * Figure 2, rules for leaders (§5.4.2): a leader moves its commit index only to an entry of
   * its current term; older entries commit indirectly. Counting replicas of an older-term entry
   * is the bug of the paper's Figure 8.
   */
  checkLeaderCommit(id: string, term: number, commit: number, commitTerm: number | null): void {
    if (commitTerm !== term) {
      throw new SafetyViolation('Leader commit rule', `leader ${id} of term ${term} advanced its commit index to ${commit}, an entry of term ${commitTerm}`);
    }
  }

  /**
   * Commit agreement (State Machine Safety before anything is applied): every node whose
   * commit index covers an index holds the same entry there.
   */
  committed(id: string, entry: Entry): void {
    const digest = entryDigest(entry);
    const known = this.committedDigest[entry.index];
    if (known === undefined) {
      this.committedDigest[entry.index] = digest;
      this.committedTerm[entry.index] = entry.term;
      this.committedInTerm[entry.index] ??= this.maxTerm;
    } else if (known !== digest) {
      throw new SafetyViolation('Commit agreement', `${id} committed ${digest} at ${entry.index}, another server committed ${known}`);
    }
  }

  /**
   * Server `id`, in `term`, holds the last entry of a message from the leader of `term` at
   * `index`: its log matches that leader's up to there.
   */
  noteVerified(id: string, term: number, index: number): void {
    const known = this.verified.get(id);
    if (known === undefined || known.term !== term) this.verified.set(id, { term, index });
    else if (index > known.index) known.index = index;
  }

  verifiedIndex(id: string, term: number): number {
    const known = this.verified.get(id);
    return known !== undefined && known.term === term ? known.index : 0;
  }

  /**
   * Figure 2, AppendEntries rule 5: handling a message from its leader moved a follower's
   * commit index from `before` to `after`; the message (with what the follower verified
   * earlier in the term) allows at most `allowed`.
   */
  checkFollowerCommit(id: string, what: string, before: number, after: number, allowed: number): void {
    if (after > before && after > allowed) {
      throw new SafetyViolation('Follower commit rule', `${id} advanced its commit index from ${before} to ${after} on a ${what} that verified only up to ${allowed}`);
    }
  }

  /** A server has (at least) this term now; call before it applies or sends anything. */
  noteTerm(term: number): void {
    if (term > this.maxTerm) this.maxTerm = term;
  }

  /** Leader Append-Only, in memory: while a node leads term t, its log only grows at the end. */
  private checkLeaderAppendOnly(node: RaftNode, status: NodeStatus): void {
    const watch = this.leaderWatch.get(node.id);
    if (watch === undefined || watch.term !== status.term) {
      this.leaderWatch.set(node.id, { term: status.term, lastIndex: status.lastIndex, lastTerm: node.logTerm(status.lastIndex) ?? -1 });
      return;
    }
    if (status.lastIndex < watch.lastIndex) {
      throw new SafetyViolation('Leader Append-Only', `${node.id} log shrank from ${watch.lastIndex} to ${status.lastIndex} in term ${status.term}`);
    }
    const term = node.logTerm(watch.lastIndex);
    if (term !== null && term !== watch.lastTerm) {
      throw new SafetyViolation('Leader Append-Only', `${node.id} rewrote entry ${watch.lastIndex} in term ${status.term}`);
    }
    watch.lastIndex = status.lastIndex;
    watch.lastTerm = node.logTerm(status.lastIndex) ?? -1;
  }

  /**
   * Leader Completeness (§5.4): an entry committed in term t is in the log of every leader of a
   * term > t (or covered by its snapshot). A leader of a term <= t need not have it: a candidate
   * can still win an older term through a delayed vote after a newer leader committed entries.
   */
  private checkLeaderCompleteness(node: RaftNode, status: NodeStatus): void {
    for (let index = status.snapshotIndex + 1; index < this.committedTerm.length; index++) {
      const term = this.committedTerm[index];
      const committedIn = this.committedInTerm[index];
      if (term === undefined || committedIn === undefined || committedIn >= status.term) continue;
      if (node.logTerm(index) !== term) {
        throw new SafetyViolation('Leader Completeness', `leader ${node.id} of term ${status.term} lacks committed entry ${index}/${term}`);
      }
    }
  }

  /** Leader Append-Only, durably: a leader's persisted writes never overwrite an entry. */
  checkLeaderPersist(id: string, isLeader: boolean, persistedLast: number, entries: readonly Entry[]): void {
    const first = entries[0];
    if (isLeader && first !== undefined && first.index <= persistedLast) {
      throw new SafetyViolation('Leader Append-Only', `leader ${id} overwrote persisted entries from ${first.index} (persisted up to ${persistedLast})`);
    }
  }

  /**
   * Log Matching, by induction over appends: every (index, term) pair, wherever it appears,
   * has the same content and the same term before it. Then two logs that agree on one entry
   * agree on every entry before it.
   */
  registerEntries(prevTerm: number, entries: readonly Entry[], id: string): void {
    let before = prevTerm;
    for (const entry of entries) {
      const key = `${entry.index}/${entry.term}`;
      const value = `${before}|${entryDigest(entry)}`;
      const known = this.entryAt.get(key);
      if (known === undefined) this.entryAt.set(key, value);
      else if (known !== value) {
        throw new SafetyViolation('Log Matching', `${id} has entry ${key} as ${value}, another log has ${known}`);
      }
      before = entry.term;
    }
  }

  /** State Machine Safety and same apply order: returns the state hash after applying. */
  applied(id: string, expectedIndex: number, entry: Entry, hash: number): number {
    if (entry.index !== expectedIndex) {
      throw new SafetyViolation('Apply order', `${id} applied ${entry.index}, expected ${expectedIndex}`);
    }
    const digest = entryDigest(entry);
    const known = this.appliedDigest[entry.index];
    const next = mixHash(hash, digest);
    const committed = this.committedDigest[entry.index];
    if (committed !== undefined && committed !== digest) {
      throw new SafetyViolation('State Machine Safety', `${id} applied ${digest} at ${entry.index}, which committed as ${committed}`);
    }
    if (known === undefined) {
      this.committedDigest[entry.index] ??= digest;
      this.appliedDigest[entry.index] = digest;
      this.appliedHash[entry.index] = next;
      this.committedTerm[entry.index] = entry.term;
      this.committedInTerm[entry.index] ??= this.maxTerm;
    } else if (known !== digest) {
      throw new SafetyViolation('State Machine Safety', `${id} applied ${digest} at ${entry.index}, another server applied ${known}`);
    } else if (this.appliedHash[entry.index] !== next) {
      throw new SafetyViolation('State Machine Safety', `${id} reached a different state at ${entry.index}`);
    }
    return next;
  }

  /** A snapshot restore must land on the same state some server reached by applying. */
  restored(id: string, index: number, hash: number): void {
    if (index === 0) return;
    const known = this.appliedHash[index];
    if (known === undefined) {
      throw new SafetyViolation('State Machine Safety', `${id} restored a snapshot at ${index} that no server applied`);
    }
    if (known !== hash) {
      throw new SafetyViolation('State Machine Safety', `${id} restored a snapshot at ${index} that differs from the applied state`);
    }
  }
}
