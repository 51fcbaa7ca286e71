import type { ReadState } from './types.ts';

interface PendingRead {
  readonly context: string;
  readonly index: number;
  readonly acks: Set<string>;
}

/**
 * The leader's queue of ReadIndex requests (thesis 6.4) awaiting a heartbeat quorum. Requests
 * are confirmed in order: a quorum for a later request also confirms every earlier one, because
 * the earlier ones were issued by the same leader with an index no larger.
 */
export class ReadOnlyQueue {
  private readonly queue: PendingRead[] = [];
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  full(): boolean {
    return this.queue.length >= this.capacity;
  }

  has(context: string): boolean {
    return this.queue.some((r) => r.context === context);
  }

  add(context: string, index: number, self: string): void {
    this.queue.push({ context, index, acks: new Set([self]) });
  }

  /** The newest context, carried by heartbeats so that one round confirms all pending reads. */
  lastContext(): string | null {
    return this.queue[this.queue.length - 1]?.context ?? null;
  }

  /**
   * Records that `from` acknowledged a heartbeat carrying `context`; that peer has thereby acked
   * every read queued up to `context`. Returns the reads now confirmed by `isQuorum`, in order.
   */
  recvAck(from: string, context: string, isQuorum: (acks: ReadonlySet<string>) => boolean): ReadState[] {
    const position = this.queue.findIndex((r) => r.context === context);
    if (position < 0) return [];
    for (let k = 0; k <= position; k++) this.queue[k]!.acks.add(from);
    let confirmed = -1;
    for (let k = position; k >= 0; k--) {
      if (isQuorum(this.queue[k]!.acks)) {
        confirmed = k;
        break;
      }
    }
    if (confirmed < 0) return [];
    return this.queue.splice(0, confirmed + 1).map((r) => ({ index: r.index, context: r.context }));
  }

  /** Re-evaluates every pending read, e.g. after the configuration shrank. */
  confirmAll(isQuorum: (acks: ReadonlySet<string>) => boolean): ReadState[] {
    let confirmed = -1;
    for (let k = this.queue.length - 1; k >= 0; k--) {
      if (isQuorum(this.queue[k]!.acks)) {
        confirmed = k;
        break;
      }
    }
    if (confirmed < 0) return [];
    return this.queue.splice(0, confirmed + 1).map((r) => ({ index: r.index, context: r.context }));
  }

  clear(): void {
    this.queue.length = 0;
  }

  size(): number {
    return this.queue.length;
  }
}
