import { invariant } from './invariant.ts';

/**
 * A sliding window of in-flight append messages to one follower, each remembered by the last
 * index it carried. Bounded by maxInflightMsgs: a full window pauses replication.
 */
export class Inflights {
  private readonly capacity: number;
  private readonly lastIndexes: number[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  add(lastIndex: number): void {
    invariant(!this.full(), 'inflights window overflow');
    const newest = this.lastIndexes[this.lastIndexes.length - 1];
    invariant(newest === undefined || lastIndex > newest, `inflight ${lastIndex} not after ${newest}`);
    this.lastIndexes.push(lastIndex);
  }

  /** Frees every message whose entries are all acknowledged by `index`. */
  freeLE(index: number): void {
    let k = 0;
    while (k < this.lastIndexes.length && this.lastIndexes[k]! <= index) k++;
    if (k > 0) this.lastIndexes.splice(0, k);
  }

  freeFirstOne(): void {
    this.lastIndexes.shift();
  }

  full(): boolean {
    return this.lastIndexes.length >= this.capacity;
  }

  count(): number {
    return this.lastIndexes.length;
  }

  reset(): void {
    this.lastIndexes.length = 0;
  }
}

/**
 * The leader's view of one follower (etcd's Progress). In 'probe' the leader sends one append at
 * a time until it finds the match point; in 'replicate' it streams optimistically within the
 * inflight window; in 'snapshot' it waits for an installed snapshot to be acknowledged.
 */
export type ProgressState =
  | { readonly kind: 'probe'; probeSent: boolean }
  | { readonly kind: 'replicate' }
  | { readonly kind: 'snapshot'; readonly pendingIndex: number; readonly sentAtTick: number };

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = { kind: 'probe', probeSent: false };
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  readonly inflights: Inflights;

  constructor(next: number, maxInflightMsgs: number) {
    this.next = next;
    this.inflights = new Inflights(maxInflightMsgs);
  }

  becomeProbe(): void {
    // After a snapshot, resume right after what the snapshot covered.
    if (this.state.kind === 'snapshot') {
      this.next = Math.max(this.match + 1, this.state.pendingIndex + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = { kind: 'probe', probeSent: false };
    this.inflights.reset();
  }

  becomeReplicate(): void {
    this.next = this.match + 1;
    this.state = { kind: 'replicate' };
    this.inflights.reset();
  }

  becomeSnapshot(pendingIndex: number, nowTick: number): void {
    this.state = { kind: 'snapshot', pendingIndex, sentAtTick: nowTick };
    this.inflights.reset();
  }

  /** An acknowledgement up to `index`; returns whether match moved. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      if (this.state.kind === 'probe') this.state.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of the append whose prevLogIndex was `rejected`; `hint` is the follower's guess of
   * the highest matching index. Returns false when the rejection is stale.
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state.kind === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // Probes carry one append at a time: only the answer to the latest one counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1);
    if (this.state.kind === 'probe') this.state.probeSent = false;
    return true;
  }

  /** Records an append carrying entries up to `lastIndex` (count = number of entries). */
  sentEntries(count: number, lastIndex: number): void {
    switch (this.state.kind) {
      case 'replicate':
        if (count > 0) {
          this.next = lastIndex + 1;
          this.inflights.add(lastIndex);
        }
        return;
      case 'probe':
        this.state.probeSent = true;
        return;
      case 'snapshot':
        invariant(false, 'append sent in snapshot state');
    }
  }

  isPaused(): boolean {
    switch (this.state.kind) {
      case 'probe':
        return this.state.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}
