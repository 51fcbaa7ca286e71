import type { ReadState } from './types.ts';

interface PendingRead {
  readonly context: string;
  readonly index: number;
  /**
   * The first heartbeat round sent after this read was queued. An acknowledgement of this round
   * or of a later one proves the peer still followed this leader after the read arrived.
   */
  readonly round: number;
}

/**
 * The leader's queue of ReadIndex requests (thesis 6.4) awaiting a heartbeat quorum.
 *
 * Leadership is confirmed with heartbeat rounds that the leader numbers itself (1, 2, 3, ...;
 * the number goes on the wire in the heartbeat's `context` and is echoed back). A read queued
 * while round r is the newest one sent needs an acknowledgement of round r + 1 or later: only a
 * heartbeat sent after the read arrived proves leadership at a moment after the read began.
 * Matching acknowledgements by the caller's context instead would let an acknowledgement of an
 * earlier read that reused the context confirm a later one (a stale read on a deposed leader).
 *
 * Each peer's highest acknowledged round is kept; a read is confirmed once a quorum (the leader
 * included) acknowledged its round or a later one. Reads are queued in round order, so they are
 * released in order. Rounds are unique for the life of this queue, i.e. one leadership; a
 * response from another term never reaches it, and a server leads a term at most once.
 */
export class ReadOnlyQueue {
  private readonly queue: PendingRead[] = [];
  private readonly capacity: number;
  private readonly self: string;
  /** The newest round sent in a heartbeat; 0 before the first. */
  private sentRound = 0;
  /** For each peer, the highest round it acknowledged. */
  private readonly acked = new Map<string, number>();

  constructor(capacity: number, self: string) {
    this.capacity = capacity;
    this.self = self;
  }

  full(): boolean {
    return this.queue.length >= this.capacity;
  }

  has(context: string): boolean {
    return this.queue.some((r) => r.context === context);
  }

  /** Queues a read; it waits for the next round that roundToSend() starts. */
  add(context: string, index: number): void {
    this.queue.push({ context, index, round: this.sentRound + 1 });
  }

  /**
   * The round the next heartbeat broadcast must carry, or null if no read is pending: a new
   * round if a read was queued since the last one was sent, else the last one again (a resent
   * round confirms the same reads, so retransmitting it on lost heartbeats is safe).
   */
  roundToSend(): number | null {
    const last = this.queue[this.queue.length - 1];
    if (last === undefined) return null;
    if (last.round > this.sentRound) this.sentRound = last.round;
    return this.sentRound;
  }

  /**
   * Records that `from` acknowledged heartbeat round `round`. Returns the reads now confirmed by
   * `isQuorum`, in order, or null if `round` was never sent (an impossible acknowledgement,
   * which is ignored).
   */
  recvAck(from: string, round: number, isQuorum: (acks: ReadonlySet<string>) => boolean): ReadState[] | null {
    if (!Number.isSafeInteger(round) || round < 1 || round > this.sentRound) return null;
    if (round > (this.acked.get(from) ?? 0)) this.acked.set(from, round);
    return this.confirmAll(isQuorum);
  }

  /** Releases, in order, every pending read whose round a quorum acknowledged; e.g. after the configuration changed. */
  confirmAll(isQuorum: (acks: ReadonlySet<string>) => boolean): ReadState[] {
    if (this.queue.length === 0) return [];
    const confirmed = this.quorumRound(isQuorum);
    let count = 0;
    while (count < this.queue.length && this.queue[count]!.round <= confirmed) count++;
    return this.queue.splice(0, count).map((r) => ({ index: r.index, context: r.context }));
  }

  /** The highest round acknowledged by a quorum (the leader acknowledges every round), or 0. */
  private quorumRound(isQuorum: (acks: ReadonlySet<string>) => boolean): number {
    if (isQuorum(new Set([this.self]))) return Infinity;
    const rounds = [...new Set(this.acked.values())].sort((a, b) => b - a);
    for (const round of rounds) {
      const acks = new Set([this.self]);
      for (const [peer, acked] of this.acked) if (acked >= round) acks.add(peer);
      if (isQuorum(acks)) return round;
    }
    return 0;
  }

  clear(): void {
    this.queue.length = 0;
  }

  size(): number {
    return this.queue.length;
  }
}
