import type { Message } from '../../src/raft/index.ts';

/** Per-message fault levels of the simulated network. */
export interface NetworkFaults {
  /** Probability that a message is lost. */
  readonly drop: number;
  /** Probability that a message is delivered twice. */
  readonly duplicate: number;
  /** Delivery delay is uniform in [1, maxDelayMs]; different delays reorder messages. */
  readonly maxDelayMs: number;
}

export const RELIABLE: NetworkFaults = { drop: 0, duplicate: 0, maxDelayMs: 3 };

export type SimEvent =
  | { readonly kind: 'deliver'; readonly message: Message }
  | { readonly kind: 'tick'; readonly id: string; readonly incarnation: number };

interface Scheduled {
  readonly at: number;
  readonly seq: number;
  readonly event: SimEvent;
}

/** A binary min-heap of events ordered by (time, insertion order): deterministic. */
export class EventQueue {
  private readonly heap: Scheduled[] = [];
  private seq = 0;

  push(at: number, event: SimEvent): void {
    const item = { at, seq: this.seq++, event };
    const heap = this.heap;
    heap.push(item);
    let k = heap.length - 1;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!before(item, heap[parent]!)) break;
      heap[k] = heap[parent]!;
      k = parent;
    }
    heap[k] = item;
  }

  peekTime(): number | null {
    return this.heap[0]?.at ?? null;
  }

  pop(): Scheduled | null {
    const heap = this.heap;
    const top = heap[0];
    if (top === undefined) return null;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let k = 0;
      for (;;) {
        const left = 2 * k + 1;
        if (left >= heap.length) break;
        const right = left + 1;
        const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
        if (!before(heap[child]!, last)) break;
        heap[k] = heap[child]!;
        k = child;
      }
      heap[k] = last;
    }
    return top;
  }

  size(): number {
    return this.heap.length;
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * Which directed links are cut. A partition cuts links between groups; a one-way cut blocks
 * only from -> to. Checked at delivery time, so healing lets in-flight messages through.
 */
export class LinkCuts {
  private readonly cut = new Set<string>();

  cutOneWay(from: string, to: string): void {
    this.cut.add(`${from}>${to}`);
  }

  cutBoth(a: string, b: string): void {
    this.cutOneWay(a, b);
    this.cutOneWay(b, a);
  }

  isolate(id: string, others: readonly string[]): void {
    for (const other of others) if (other !== id) this.cutBoth(id, other);
  }

  blocked(from: string, to: string): boolean {
    return this.cut.size > 0 && this.cut.has(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  count(): number {
    return this.cut.size;
  }
}
