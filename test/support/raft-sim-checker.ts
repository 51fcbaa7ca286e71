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

/**
 * Checks the five safety properties of the Raft paper (Figure 3) plus same-apply-order,
 * incrementally: each entry is registered once when persisted, each application once when applied.
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
  /** Leader Completeness: the term of the entry at every committed index (once applied somewhere). */
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

  /** Called after every event that touched `node`. */
  observe(node: RaftNode): void {
    this.checks++;
    const status = node.status();
    this.noteTerm(status.term);
    if (status.commit > this.maxCommitted) {
      for (let index = this.maxCommitted + 1; index <= status.commit; index++) this.committedInTerm[index] ??= this.maxTerm;
      this.maxCommitted = status.commit;
    }
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
    if (known === undefined) {
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
