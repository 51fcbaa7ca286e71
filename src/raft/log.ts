import type { Entry } from './types.ts';
import { invariant } from './invariant.ts';

/**
 * The in-memory Raft log: a snapshot point (snapshotIndex, snapshotTerm) followed by contiguous
 * entries. It also tracks how far the log is persisted (stabled), committed and applied.
 *
 *   snapshotIndex <= applied <= committed <= lastIndex, stabled <= lastIndex
 *   (applied may lag snapshotIndex only while a received snapshot awaits advance()).
 */
export class RaftLog {
  private snapshotIndex: number;
  private snapshotTerm: number;
  private entries: Entry[];
  committed: number;
  applied: number;
  /** The last index known to be on stable storage. */
  stabled: number;

  constructor(snapshotIndex: number, snapshotTerm: number, entries: readonly Entry[], committed: number) {
    this.snapshotIndex = snapshotIndex;
    this.snapshotTerm = snapshotTerm;
    this.entries = [...entries];
    for (let k = 0; k < this.entries.length; k++) {
      invariant(this.entries[k]!.index === snapshotIndex + 1 + k, `log entries are not contiguous at ${k}`);
    }
    invariant(committed >= snapshotIndex && committed <= this.lastIndex(), `commit ${committed} outside log`);
    this.committed = committed;
    this.applied = snapshotIndex;
    this.stabled = this.lastIndex();
  }

  firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  lastTerm(): number {
    const last = this.entries[this.entries.length - 1];
    return last === undefined ? this.snapshotTerm : last.term;
  }

  snapshotPoint(): { index: number; term: number } {
    return { index: this.snapshotIndex, term: this.snapshotTerm };
  }

  /** The term of the entry at `index`, or null when it is compacted away or not (yet) in the log. */
  term(index: number): number | null {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return null;
    return this.entries[index - this.snapshotIndex - 1]!.term;
  }

  entryAt(index: number): Entry | null {
    if (index <= this.snapshotIndex || index > this.lastIndex()) return null;
    return this.entries[index - this.snapshotIndex - 1]!;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft's "at least as up-to-date" comparison of a candidate's last entry with ours (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi), at least one if any, then as many as fit in maxBytes of payload. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    invariant(lo > this.snapshotIndex && hi <= this.lastIndex() + 1 && lo <= hi, `slice [${lo}, ${hi}) outside log`);
    const start = lo - this.snapshotIndex - 1;
    let end = start;
    const stop = hi - this.snapshotIndex - 1;
    let bytes = 0;
    while (end < stop) {
      bytes += this.entries[end]!.data.length;
      if (end > start && bytes > maxBytes) break;
      end++;
    }
    return this.entries.slice(start, end);
  }

  /** Leader-side append of new entries right after lastIndex. */
  appendNew(entries: readonly Entry[]): void {
    for (const entry of entries) {
      invariant(entry.index === this.lastIndex() + 1, `append of ${entry.index} after ${this.lastIndex()}`);
      this.entries.push(entry);
    }
  }

  /**
   * Follower-side append (AppendEntries receiver rules 2-5). Returns the last new index, or
   * null if the log does not contain prevIndex with prevTerm, or 'conflict_with_committed' if
   * the sender asks to overwrite a committed entry (a broken peer: the caller drops the message).
   */
  maybeAppend(prevIndex: number, prevTerm: number, committed: number, entries: readonly Entry[]): number | null | 'conflict_with_committed' {
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    const lastNew = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      if (conflict <= this.committed) return 'conflict_with_committed';
      this.truncateAndAppend(entries.slice(conflict - prevIndex - 1));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /**
   * The index of the first entry that is new or conflicts with ours, or 0 if all are present.
   * Entries below the snapshot point are covered by the snapshot, hence treated as present.
   */
  private findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (entry.index <= this.snapshotIndex) continue;
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  private truncateAndAppend(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    invariant(first.index > this.snapshotIndex && first.index <= this.lastIndex() + 1, `truncate at ${first.index}`);
    this.entries.length = first.index - this.snapshotIndex - 1;
    this.stabled = Math.min(this.stabled, first.index - 1);
    for (const entry of entries) {
      invariant(entry.index === this.lastIndex() + 1, `entries to append are not contiguous at ${entry.index}`);
      this.entries.push(entry);
    }
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term (etcd's
   * findConflictByTerm). A compacted index has an unknown term: it is returned with term 0.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = Math.min(index, this.lastIndex()); i > 0; i--) {
      const ours = this.term(i);
      if (ours === null) return { index: i, term: 0 };
      if (ours <= term) return { index: i, term: ours };
    }
    return { index: 0, term: 0 };
  }

  commitTo(index: number): boolean {
    if (index <= this.committed) return false;
    invariant(index <= this.lastIndex(), `commit ${index} beyond last index ${this.lastIndex()}`);
    this.committed = index;
    return true;
  }

  unstableEntries(): Entry[] {
    if (this.stabled >= this.lastIndex()) return [];
    return this.entries.slice(Math.max(this.stabled, this.snapshotIndex) - this.snapshotIndex);
  }

  /** Committed entries not yet handed to the application, at most maxBytes of payload (min one). */
  nextCommittedEntries(maxBytes: number): Entry[] {
    const lo = Math.max(this.applied, this.snapshotIndex) + 1;
    if (lo > this.committed) return [];
    return this.slice(lo, this.committed + 1, maxBytes);
  }

  stableTo(index: number): void {
    invariant(index <= this.lastIndex(), `stable ${index} beyond last ${this.lastIndex()}`);
    this.stabled = Math.max(this.stabled, index);
  }

  appliedTo(index: number): void {
    invariant(index <= this.committed && index >= this.applied, `applied ${index} outside [${this.applied}, ${this.committed}]`);
    this.applied = index;
  }

  /** Drops entries up to `index` (covered by a snapshot the application made at `index`). */
  compact(index: number): void {
    invariant(index > this.snapshotIndex && index <= this.applied, `compact ${index} outside (${this.snapshotIndex}, ${this.applied}]`);
    const term = this.term(index)!;
    this.entries = this.entries.slice(index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
  }

  /** Replaces the whole log by a received snapshot. */
  restore(index: number, term: number): void {
    invariant(index > this.committed, `restore to ${index} at or below commit ${this.committed}`);
    this.entries = [];
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.committed = index;
    this.stabled = index;
  }
}
